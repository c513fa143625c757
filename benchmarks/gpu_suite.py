"""Every accelerator measurement in one run: JSON + markdown table to --out.

  python benchmarks/gpu_suite.py --out runs/gpu_suite           # one H100/H200
  python benchmarks/gpu_suite.py --out /tmp/gpu_smoke --smoke   # CPU, tiny

Sections (each timed after its compilation; a failing section is recorded
with its error and the rest still run; --budget_s skips what is left once
the budget is spent):
  train_step   images/s of the sharded train step (DeepLabV3+ ResNet-101
               OS16, 321x321, global batch 16, bfloat16 compute, float32
               params) for loss ce, pce, cfm (6 classes + background, window
               statistics included), cfm with float32-only statistics, ce
               with the matting-Laplacian regulariser (laplacian_weight 1);
               the CFM and regulariser overheads over CE (target <= 3 %)
  torchvision  the peer: torchvision deeplabv3_resnet101 trained with
               cross-entropy, channels_last, bf16 autocast, same batch and
               size, eager and torch.compile (skipped if torch is missing)
  cfm_loss     the CFM loss alone, value + gradient, window statistics
               included, per image at batch 16: float64 island vs
               float32-only; the temporary memory XLA allocates for it
  solver       solve_alpha per 321x321 image, 6 classes: the iterative
               method on the accelerator and the default (the direct
               multifrontal method, host CPU), vs scipy's direct solve on
               all CPU cores (one process per image)
  scaling      train step time and peak memory at 513x513 (batch 16) and at
               batch 32 (321x321), ce vs cfm: the loss's cost per pixel

No tensorflow: batches are synthetic (benchmarks/loss_bench.photo_like_batch)
and device-resident. Needs ml_collections (pure Python) for the config.
"""

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import sys
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.loss_bench import photo_like_batch  # noqa: E402
from cfcls import config_schema  # noqa: E402
from cfcls.matting import laplacian  # noqa: E402
from cfcls import losses  # noqa: E402
from cfcls.matting import solver  # noqa: E402
from cfcls import parallel  # noqa: E402
from cfcls.training import run_lib  # noqa: E402

NUM_CLASSES = 7  # 6 foreground classes + background
TRAIN_KEYS = ('image', 'scribbles', 'mask', 'valid', 'presence')

FULL = dict(backbone='resnet101', width=1.0, size=321, batch=16, big=513,
            steps=10, warmup=2, solver_images=16, dtype='bfloat16',
            scaling_cases=2, torch_compile=(False, True),
            torch_model='deeplabv3_resnet101')
SMOKE = dict(backbone='resnet18', width=0.125, size=33, batch=2, big=41,
             steps=2, warmup=1, solver_images=1, dtype='float32',
             scaling_cases=1, torch_compile=(False,),
             torch_model='deeplabv3_resnet50')


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True, help='output folder')
  parser.add_argument('--smoke', action='store_true',
                      help='tiny sizes on the CPU: the same code paths')
  parser.add_argument('--sections', default='train_step,torchvision,cfm_loss,'
                      'solver,scaling,models')
  parser.add_argument('--budget_s', type=float, default=420.0,
                      help='skip the remaining sections after this long')
  return parser.parse_args(argv)


def device_info():
  d = jax.devices()[0]
  return {'platform': d.platform, 'device_kind': d.device_kind,
          'device_count': jax.device_count(), 'jax': jax.__version__,
          'python': platform.python_version(),
          'date': datetime.date.today().isoformat(),
          'cpu_count': os.cpu_count()}


def peak_memory_bytes():
  """Peak bytes in use on device 0 so far (None where not reported)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def timed(fn, steps, warmup):
  """(seconds per call, compile+first call seconds); fn returns arrays."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  for _ in range(warmup - 1):
    jax.block_until_ready(fn())
  start = time.perf_counter()
  for _ in range(steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps, first


def _batch(size, batch, seed=0):
  images, scribbles = photo_like_batch(batch, size, NUM_CLASSES, seed=seed)
  mask = np.where(scribbles == 255, 0, scribbles).astype(np.int32)
  presence = np.stack([(scribbles == c).any(axis=(1, 2))
                       for c in range(1, NUM_CLASSES)], -1)
  return {'image': np.round(images * 255).astype(np.uint8),
          'scribbles': scribbles, 'mask': mask,
          'valid': np.ones(scribbles.shape, np.float32),
          'presence': presence.astype(np.float32)}


def _config(p, loss, size, batch, precision='float64', model='deeplabv3plus',
            laplacian_weight=0.0):
  config = config_schema.get_config()
  if laplacian_weight:
    config.laplacian_weight = laplacian_weight
  if 'name' in config.model:
    config.model.name = model
  config.model.backbone = p['backbone']
  config.model.width = p['width']
  config.model.dtype = p['dtype']
  config.data.crop_size = size
  config.batch_size = batch
  config.loss = loss
  if 'laplacian_precision' in config:
    config.laplacian_precision = precision
  return config


def train_step_figure(p, loss, size, batch, precision='float64',
                      model='deeplabv3plus', laplacian_weight=0.0):
  """images/s, step ms, compile s and peak memory of one train step."""
  config = _config(p, loss, size, batch, precision, model, laplacian_weight)
  run = run_lib.build(config, NUM_CLASSES, [str(c) for c in range(7)])
  state = run_lib.initial_state(run)
  host = _batch(size, batch)
  global_batch = parallel.host_batch_to_global(host, run.mesh, keys=TRAIN_KEYS)
  holder = {'state': state}

  def step():
    holder['state'], metrics = run.train_step(holder['state'], global_batch)
    return metrics['loss']

  seconds, first = timed(step, p['steps'], p['warmup'])
  return {'model': model, 'loss': loss, 'size': size, 'batch': batch,
          'precision': precision, 'laplacian_weight': laplacian_weight,
          'images_per_s': batch / seconds, 'step_ms': 1e3 * seconds,
          'compile_s': first, 'peak_bytes': peak_memory_bytes()}


def section_train_step(p):
  rows = [train_step_figure(p, loss, p['size'], p['batch'])
          for loss in ('ce', 'pce', 'cfm')]
  if 'laplacian_precision' in config_schema.get_config():
    rows.append(train_step_figure(p, 'cfm', p['size'], p['batch'],
                                  precision='float32'))
  # The matting-Laplacian regulariser of the softmax losses (issue 30).
  rows.append(train_step_figure(p, 'ce', p['size'], p['batch'],
                                laplacian_weight=1.0))
  ce = rows[0]['step_ms']
  for row in rows:
    row['over_ce'] = row['step_ms'] / ce - 1.0
  return rows


def section_models(p):
  """The train step of each network (issue 18), CE and CFM, same batch."""
  return [train_step_figure(p, loss, p['size'], p['batch'], model=model)
          for model in ('deeplabv3plus', 'unet', 'erfnet')
          for loss in ('ce', 'cfm')]


def section_torchvision(p):
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    return [{'skipped': f'torch/torchvision not installed ({e})'}]
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  rows = []
  for compiled in p['torch_compile']:
    model = getattr(torchvision.models.segmentation, p['torch_model'])(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
        aux_loss=False).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fwd = torch.compile(model) if compiled else model
    host = _batch(p['size'], p['batch'])
    x = torch.from_numpy(host['image']).permute(0, 3, 1, 2).float().div(255)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(host['mask']).long().to(device)
    amp = torch.autocast(device_type=device, dtype=torch.bfloat16)

    def step():
      opt.zero_grad(set_to_none=True)
      with amp:
        loss = torch.nn.functional.cross_entropy(fwd(x)['out'], y)
      loss.backward()
      opt.step()
      return loss

    def sync():
      if device == 'cuda':
        torch.cuda.synchronize()

    try:
      start = time.perf_counter()
      step()
      sync()
      first = time.perf_counter() - start
      for _ in range(p['warmup'] - 1):
        step()
      sync()
      start = time.perf_counter()
      for _ in range(p['steps']):
        step()
      sync()
      seconds = (time.perf_counter() - start) / p['steps']
      rows.append({'torch_compile': compiled, 'model': p['torch_model'],
                   'images_per_s': p['batch'] / seconds,
                   'step_ms': 1e3 * seconds, 'compile_s': first,
                   'torch': torch.__version__})
    except Exception as e:  # pylint: disable=broad-except
      rows.append({'torch_compile': compiled, 'error': repr(e)[:300]})
  return rows


def section_cfm_loss(p):
  host = _batch(p['size'], p['batch'])
  images = jnp.asarray(host['image'], jnp.float32) / 255.0
  scribbles = jnp.asarray(host['scribbles'])
  alpha = jax.random.uniform(jax.random.key(0), scribbles.shape + (
      NUM_CLASSES - 1,))
  rows = []
  for precision in ('float64', 'float32'):
    def loss(a, precision=precision):
      stats = laplacian.window_stats(images, precision=precision)
      return losses.cfm_loss(stats, a, scribbles, NUM_CLASSES)[0]
    start = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss)).lower(alpha).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    seconds, _ = timed(lambda c=compiled: c(alpha), p['steps'], p['warmup'])
    rows.append({'precision': precision, 'batch': p['batch'],
                 'ms_per_image': 1e3 * seconds / p['batch'],
                 'compile_s': compile_s,
                 'temp_bytes': getattr(memory, 'temp_size_in_bytes', None)})
  return rows


def _direct(args):
  image, scribbles = args
  return solver.solve_alpha_direct(image, scribbles, NUM_CLASSES)


def section_solver(p):
  images, scribbles = photo_like_batch(p['solver_images'], p['size'],
                                       NUM_CLASSES, seed=1)
  fn = lambda: solver.solve_alpha(jnp.asarray(images), jnp.asarray(scribbles),
                                   NUM_CLASSES, method='iterative')[0]
  seconds, first = timed(fn, 1, 1)
  alpha = np.asarray(fn())
  solver.solve_alpha(images[:1], scribbles[:1], NUM_CLASSES)  # plan cache
  start = time.perf_counter()
  default = np.asarray(solver.solve_alpha(images, scribbles, NUM_CLASSES)[0])
  default_s = time.perf_counter() - start
  default_error = float(np.max(np.abs(default - alpha)))
  workers = max(1, min(os.cpu_count() or 1, len(images)))
  # 'spawn': forking a process that runs JAX's threads can deadlock.
  context = multiprocessing.get_context('spawn')
  with concurrent.futures.ProcessPoolExecutor(workers,
                                              mp_context=context) as pool:
    # Start the workers (imports, and the reference's first call): not
    # timed.
    list(pool.map(_direct, [(images[0], scribbles[0])] * workers))
    start = time.perf_counter()
    direct = list(pool.map(_direct, zip(images, scribbles)))
    direct_s = time.perf_counter() - start
  error = max(float(np.max(np.abs(a - d))) for a, d in zip(alpha, direct))
  per_image = seconds / len(images)
  return [{'size': p['size'], 'images': len(images),
           'ms_per_image': 1e3 * per_image, 'compile_s': first,
           'direct_ms_per_image': 1e3 * direct_s / len(images),
           'direct_workers': workers, 'max_abs_error': error,
           'speedup': (direct_s / len(images)) / per_image,
           'default_ms_per_image': 1e3 * default_s / len(images),
           'default_vs_iterative_max_diff': default_error}]


def section_scaling(p):
  rows = []
  cases = [(p['big'], p['batch']), (p['size'], 2 * p['batch'])]
  for size, batch in cases[:p['scaling_cases']]:
    pair = [train_step_figure(p, loss, size, batch) for loss in ('ce', 'cfm')]
    extra = pair[1]['step_ms'] - pair[0]['step_ms']
    for row in pair:
      row['cfm_extra_ns_per_pixel'] = 1e6 * extra / (batch * size * size)
    rows += pair
  return rows


SECTIONS = {'train_step': section_train_step,
            'torchvision': section_torchvision,
            'cfm_loss': section_cfm_loss, 'solver': section_solver,
            'scaling': section_scaling, 'models': section_models}


def markdown(result) -> str:
  info = result['device']
  lines = [f"# cfcls accelerator suite ({'smoke' if result['smoke'] else 'full'})",
           '',
           f"{info['device_kind']} x{info['device_count']} ({info['platform']}),"
           f" jax {info['jax']}, {info['date']}", '']
  for name, rows in result['sections'].items():
    lines.append(f'## {name}')
    if isinstance(rows, dict):  # an error or a skip
      lines += [f"- {rows.get('error') or rows.get('skipped')}", '']
      continue
    keys = sorted({k for r in rows for k in r})
    lines.append('| ' + ' | '.join(keys) + ' |')
    lines.append('|' + '---|' * len(keys))
    for r in rows:
      cells = []
      for k in keys:
        v = r.get(k, '')
        cells.append(f'{v:.4g}' if isinstance(v, float) else str(v))
      lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
  return '\n'.join(lines)


def main(argv=None):
  args = parse_args(argv)
  p = SMOKE if args.smoke else FULL
  os.makedirs(args.out, exist_ok=True)
  result = {'smoke': args.smoke, 'params': p, 'device': device_info(),
            'sections': {}}
  started = time.perf_counter()
  for name in args.sections.split(','):
    if time.perf_counter() - started > args.budget_s:
      result['sections'][name] = {'skipped': f'budget {args.budget_s} s spent'}
      continue
    section_start = time.perf_counter()
    try:
      result['sections'][name] = SECTIONS[name](p)
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      result['sections'][name] = {'error': repr(e)[:500]}
    print(f'{name}: {time.perf_counter() - section_start:.1f} s', flush=True)
  result['total_s'] = time.perf_counter() - started
  with open(os.path.join(args.out, 'gpu_suite.json'), 'w') as f:
    json.dump(result, f, indent=1, default=str)
  table = markdown(result)
  with open(os.path.join(args.out, 'gpu_suite.md'), 'w') as f:
    f.write(table + '\n')
  print(table)
  return result


if __name__ == '__main__':
  main()
