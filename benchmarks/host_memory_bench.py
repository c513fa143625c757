"""The demo's train step on the CPU with glibc's malloc defaults and with
cfcls.training.host_memory.keep_freed_memory (what train.py sets).

  python benchmarks/host_memory_bench.py [--rounds 3] [--steps 50]
      [--config configs/demo.py] [--set loss=ce ...]

Each measurement is a fresh process (the allocator's settings hold for a
whole process and glibc's defaults cannot be restored once changed), so the
script starts itself `--rounds` times per setting, alternating the two, and
each child compiles the config's train step, runs it once, then times
`--steps` steps on a fixed random batch: milliseconds per step and minor page
faults per step (getrusage), and its peak resident memory. Printed: every
child's figures, then the medians and their ratio. Run it on an otherwise
idle machine; on a shared one the spread between rounds says how far to
trust the ratio.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def child(args):
  """One measurement in this process; prints one JSON line."""
  import resource  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from cfcls.training import host_memory  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cfcls import config_schema  # pylint: disable=g-import-not-at-top
  from cfcls import parallel  # pylint: disable=g-import-not-at-top
  from cfcls.training import run_lib  # pylint: disable=g-import-not-at-top

  config = config_schema.load_config_file(args.config, args.set)
  config_schema.apply_per_network(config)
  num_classes = 6
  mesh = parallel.create_mesh(jax.devices()[:1])
  # Before anything is built (train_lib sets it later, when the loop starts;
  # either way before the steps timed here).
  kept = host_memory.keep_freed_memory() if args.child == 'keep' else False
  run = run_lib.build(config, num_classes,
                      [str(i) for i in range(num_classes)], mesh)
  state = run_lib.initial_state(run)
  rng = np.random.default_rng(0)
  b, s = config.batch_size, config.data.crop_size
  host = {
      'image': rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8),
      'scribbles': rng.integers(0, num_classes, (b, s, s)).astype(np.int32),
      'mask': rng.integers(0, num_classes, (b, s, s)).astype(np.int32),
      'valid': np.ones((b, s, s), np.float32),
      'presence': np.ones((b, num_classes - 1), np.float32),
      'targets': rng.random((b, s, s, num_classes - 1)).astype(np.float32),
  }
  host['check_targets'] = host['targets']
  batch = parallel.host_batch_to_global(host, mesh)
  state, _ = run.train_step(state, batch)
  jax.block_until_ready(state)
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  start = time.perf_counter()
  for _ in range(args.steps):
    state, _ = run.train_step(state, batch)
  jax.block_until_ready(state)
  seconds = (time.perf_counter() - start) / args.steps
  usage = resource.getrusage(resource.RUSAGE_SELF)
  print(json.dumps({
      'setting': args.child, 'took_effect': kept, 'ms_per_step': 1e3 * seconds,
      'faults_per_step': (usage.ru_minflt - faults) / args.steps,
      'peak_rss_mb': usage.ru_maxrss / 1024}))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=50)
  parser.add_argument('--config', default=os.path.join(ROOT, 'configs',
                                                       'demo.py'))
  parser.add_argument('--set', action='append', default=[],
                      help='config override FIELD=VALUE (repeatable)')
  parser.add_argument('--child', choices=('default', 'keep'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(args)
    return
  results = {'default': [], 'keep': []}
  for r in range(args.rounds):
    for setting in ('default', 'keep'):
      cmd = [sys.executable, os.path.abspath(__file__), '--child', setting,
             '--steps', str(args.steps), '--config', args.config]
      for item in args.set:
        cmd += ['--set', item]
      out = subprocess.run(cmd, check=True, capture_output=True, text=True)
      line = json.loads(out.stdout.strip().splitlines()[-1])
      results[setting].append(line)
      print(f'round {r + 1} {setting:8s} {line["ms_per_step"]:7.1f} ms/step '
            f'{line["faults_per_step"]:8.0f} faults/step '
            f'peak {line["peak_rss_mb"]:6.0f} MB', flush=True)
  med = {k: {f: statistics.median(x[f] for x in v)
             for f in ('ms_per_step', 'faults_per_step', 'peak_rss_mb')}
         for k, v in results.items()}
  for k, m in med.items():
    print(f'median {k:8s} {m["ms_per_step"]:7.1f} ms/step '
          f'{m["faults_per_step"]:8.0f} faults/step '
          f'peak {m["peak_rss_mb"]:6.0f} MB')
  print(f'keep_freed_memory / default, time per step: '
        f'{med["keep"]["ms_per_step"] / med["default"]["ms_per_step"]:.3f}')
  if not all(x['took_effect'] for x in results['keep']):
    print('note: keep_freed_memory did not take effect here (not glibc)')


if __name__ == '__main__':
  main()
