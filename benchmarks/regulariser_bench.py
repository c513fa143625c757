"""What the matting-Laplacian regulariser costs in the training step.

  python benchmarks/regulariser_bench.py                  # configs/demo.py's step
  python benchmarks/regulariser_bench.py --steps 50 --rounds 5

Times the full sharded train step of configs/demo.py (its network, crop and
batch; loss two_stage on synthetic closed-form targets) with
laplacian_weight 0 and with the config's laplacian_weight (or --weight), in
interleaved rounds in one process, and prints ms per step, the median of
the rounds and the ratio. No tensorflow: batches are synthetic and
device-resident. Window statistics at the config's laplacian_precision.
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402

from benchmarks.loss_bench import photo_like_batch  # noqa: E402
from cfcls import config_schema  # noqa: E402
from cfcls import parallel  # noqa: E402
from cfcls.training import run_lib  # noqa: E402

KEYS = ('image', 'scribbles', 'mask', 'valid', 'presence', 'targets')


def _batch(config, num_classes, seed=0):
  size, batch = config.data.crop_size, config.batch_size
  images, scribbles = photo_like_batch(batch, size, num_classes, seed=seed)
  rng = np.random.default_rng(seed)
  targets = rng.uniform(0, 1, (batch, size, size, num_classes - 1))
  presence = np.stack([(scribbles == c).any(axis=(1, 2))
                       for c in range(1, num_classes)], -1)
  return {'image': np.round(images * 255).astype(np.uint8),
          'scribbles': scribbles.astype(np.int32),
          'mask': np.where(scribbles == 255, 0, scribbles).astype(np.int32),
          'valid': np.ones(scribbles.shape, np.float32),
          'presence': presence.astype(np.float32),
          'targets': targets.astype(np.float32)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=os.path.join(ROOT, 'configs',
                                                       'demo.py'))
  parser.add_argument('--weight', type=float, default=0.0,
                      help="laplacian_weight to time (0: the config's, or 1)")
  parser.add_argument('--steps', type=int, default=20, help='per round')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--num_classes', type=int, default=5)
  args = parser.parse_args(argv)
  base = config_schema.load_config_file(args.config)
  config_schema.apply_per_network(base)
  weight = args.weight or base.get('laplacian_weight', 0.0) or 1.0
  runs = {}
  for w in (0.0, weight):
    config = base.copy_and_resolve_references()
    config.loss = 'two_stage'
    config.laplacian_weight = w
    run = run_lib.build(config, args.num_classes,
                        [str(c) for c in range(args.num_classes)])
    batch = parallel.host_batch_to_global(_batch(config, args.num_classes),
                                          run.mesh, keys=KEYS)
    state = run_lib.initial_state(run)
    t = time.perf_counter()
    state, m = run.train_step(state, batch)
    jax.block_until_ready(m)
    runs[w] = {'run': run, 'state': state, 'batch': batch,
               'compile_s': time.perf_counter() - t, 'ms': []}
  for _ in range(args.rounds):
    for w, r in runs.items():
      t = time.perf_counter()
      for _ in range(args.steps):
        r['state'], m = r['run'].train_step(r['state'], r['batch'])
      jax.block_until_ready(m)
      r['ms'].append(1e3 * (time.perf_counter() - t) / args.steps)
  print(f'{jax.devices()[0].device_kind}, jax {jax.__version__}, '
        f'crop {base.data.crop_size}, batch {base.batch_size}, '
        f'{base.model.name} width {base.model.width}, '
        f'precision {base.laplacian_precision}')
  med = {w: float(np.median(r['ms'])) for w, r in runs.items()}
  for w, r in runs.items():
    print(f"laplacian_weight={w:g}: {med[w]:.1f} ms/step (rounds "
          f"{', '.join(f'{x:.1f}' for x in r['ms'])}; compile "
          f"{r['compile_s']:.1f} s)")
  print(f'ratio: {med[weight] / med[0.0]:.3f}x '
        f'(+{100 * (med[weight] / med[0.0] - 1):.1f} %)')


if __name__ == '__main__':
  main()
