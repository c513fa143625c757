"""How far trained networks are from the CFM optimum, on the demo's scenes.

For each scene (full 128x128 images, no crops), the matting energy of the
energy-norm CFM loss (docs/method.md, section 2; `cfcls.losses.cfm_loss(norm='energy')`,
every class counted), split into its Laplacian part alpha^T L alpha / N and
its scribble part lam ||D (alpha - S)||^2 / N, and the mIoU of the labels
(threshold rule of docs/method.md, section 3), for:

* each run's network mattes (raw outputs; CFM runs only),
* the closed-form mattes (scipy, `solver.solve_alpha_direct`): the optimum,
* the ground-truth masks as one-hot mattes.

  python benchmarks/demo_energy.py --runs=runs/demo [--split=train --num=30]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from cfcls import config_schema, inference, losses  # pylint: disable=g-import-not-at-top
from cfcls.matting import constraints, laplacian, solver  # pylint: disable=g-import-not-at-top
from cfcls import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
from cfcls import objectives  # pylint: disable=g-import-not-at-top
from cfcls.training import run_lib  # pylint: disable=g-import-not-at-top
from cfcls.data import synthetic  # pylint: disable=g-import-not-at-top


def energy_parts(stats, alpha, scribbles, num_classes, lam):
  """(Laplacian part, scribble part) of the matting energy, each / N."""
  labelled, targets = constraints.scribble_constraints(scribbles, num_classes)
  n = alpha.shape[1] * alpha.shape[2]
  smooth = jnp.sum(alpha * laplacian.laplacian_matvec(stats, alpha)) / n
  fit = jnp.sum(lam * labelled * jnp.square(alpha - targets)) / n
  return float(smooth), float(fit)


def _merge(config, values):
  for key, value in values.items():
    if isinstance(value, dict) and key in config:
      _merge(config[key], value)
    elif key in config:
      config[key] = tuple(value) if isinstance(value, list) else value


def _demo_config():
  return config_schema.load_config_file(os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs',
      'demo.py'))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', default='runs/demo',
                      help='comma-separated workdirs of CFM runs of the demo')
  parser.add_argument('--split', default='train',
                      choices=('train', 'validation'))
  parser.add_argument('--num', type=int, default=30)
  args = parser.parse_args()
  config = _demo_config()
  syn, k = config.data.synthetic, synthetic.NUM_CLASSES
  nets = {}
  for workdir in args.runs.split(','):
    run_config = _demo_config()  # updated with the run's own values
    with open(os.path.join(workdir, 'config.json')) as f:
      _merge(run_config, json.load(f))
    run, state, step, _ = run_lib.restore_for_eval(run_config, workdir, None)
    apply = jax.jit(lambda v, x, m=run.eval_model: m.apply(
        v, inference.images_to_float(x), train=False)[0])
    nets[f'{workdir} (step {step})'] = (apply, state.variables())

  sums, confusion = {}, {}
  for i in range(args.num):
    ex = synthetic.generate_example(syn.seed, args.split, i, syn.image_size)
    image = ex['image'][None]
    scribbles = jnp.asarray(ex['scribbles'][None].astype(np.int32))
    mask = ex['mask'].astype(np.int32)
    stats = laplacian.window_stats(jnp.asarray(image / 255.0, jnp.float32),
                                   config.laplacian_eps,
                                   config.laplacian_radius)
    mattes = {name: np.asarray(apply(v, jnp.asarray(image)))
              for name, (apply, v) in nets.items()}
    mattes['closed-form mattes'] = solver.solve_alpha_direct(
        image[0] / 255.0, ex['scribbles'], k, lam=config.lam,
        eps=config.laplacian_eps, radius=config.laplacian_radius)[None]
    mattes['ground-truth masks'] = np.eye(k)[mask][None, ..., 1:]
    for name, alpha in mattes.items():
      alpha = jnp.asarray(alpha, jnp.float32)
      parts = energy_parts(stats, alpha, scribbles, k, config.lam)
      sums[name] = np.add(sums.get(name, 0.0), parts)
      labels = objectives.labels_from_scores(jnp.clip(alpha, 0, 1),
                                            config.threshold)[0]
      confusion[name] = confusion.get(name, 0) + np.asarray(
          metrics_lib.confusion_matrix(mask, labels, k))
  print(f'{args.num} {args.split} scenes, lam={config.lam}, '
        f'eps={config.laplacian_eps}, threshold {config.threshold}')
  print(f'{"mattes":45s} {"L part":>9s} {"scribble":>9s} {"energy":>9s} '
        f'{"mIoU":>6s}')
  for name, (smooth, fit) in sums.items():
    smooth, fit = smooth / args.num, fit / args.num
    miou = metrics_lib.segmentation_metrics(confusion[name])['miou']
    print(f'{name:45s} {smooth:9.5f} {fit:9.5f} {smooth + fit:9.5f} '
          f'{miou:6.3f}')


if __name__ == '__main__':
  main()
