"""Inference refinements compared on saved network outputs (no training).

benchmarks/demo_sweep.py --dump=DIR saves each trained network's class
probabilities on the first 60 training images and on the validation images
of its family. This script labels them in several ways and prints the mIoU
of each, per run and averaged over the runs (seeds) of each variant:

  net       the argmax of the probabilities (--source: the network's, or
            after configs/demo.py's guided filter)
  gf        the guided filter (radius 8, eps 1e-3: configs/demo.py's)
  seeds     cfcls.matting.refine.refine_image (confident, eroded seeds;
            config.refine='matting')
  soft_W_LAM_EPS  (e.g. soft_max_0.1_0.0001) the soft matting system
            (cfcls.matting.refine.soft_refine_image): (L + lam W) x = lam W p on all K probabilities p, W = the
            network's confidence per pixel (max p: 'max'; max p minus the
            second largest: 'margin'), labels by argmax of x

  python benchmarks/demo_sweep.py --family=scenes --variants=default,ce \\
      --steps=1500 --set seed=0 --dump=/tmp/dump --no_refine_grid
  python benchmarks/refine_sweep.py --dump=/tmp/dump --family=scenes \\
      --split=train --source=gf      # choose on the training images
  python benchmarks/refine_sweep.py --dump=/tmp/dump --family=scenes \\
      --split=validation --source=gf --methods=net,seeds,soft_max_0.1_0.0001
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

GF_RADIUS, GF_EPS = 8, 1e-3
SOFT_LAMS = (0.01, 0.03, 0.1, 0.3, 1.0)
SOFT_EPS = (1e-5, 1e-4)


def all_methods():
  out = ['net', 'gf', 'seeds']
  from cfcls.matting import refine  # pylint: disable=g-import-not-at-top
  for w in refine.SOFT_WEIGHTS:
    for lam in SOFT_LAMS:
      for eps in SOFT_EPS:
        out.append(f'soft_{w}_{lam:g}_{eps:g}')
  return out


def guided(image, probs):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from cfcls.matting import guided_filter  # pylint: disable=g-import-not-at-top
  out = guided_filter.guided_filter(
      jnp.asarray(image[None], jnp.float32) / 255.0,
      jnp.asarray(probs[None]), GF_RADIUS, GF_EPS)
  return np.maximum(np.asarray(out[0]), 1e-6)


def label_image(image, probs, methods, cache):
  """{method: int labels [H, W]} for one image."""
  from cfcls.matting import refine  # pylint: disable=g-import-not-at-top
  out = {}
  filtered = None
  for m in methods:
    if m == 'net':
      out[m] = np.argmax(probs, -1)
    elif m == 'gf':
      filtered = guided(image, probs) if filtered is None else filtered
      out[m] = np.argmax(filtered, -1)
    elif m == 'seeds':
      out[m] = refine.refine_image(image, probs)[0]
    else:
      _, w, lam, eps = m.split('_')
      labels, _, info = refine.soft_refine_image(image, probs, float(lam),
                                                 float(eps), w)
      cache.setdefault('seconds', []).append(info['seconds'])
      out[m] = labels
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--dump', required=True)
  parser.add_argument('--family', default='scenes')
  parser.add_argument('--data', default='',
                      help='the sweep npz (default /tmp/cfcls_sweep_<family>.npz)')
  parser.add_argument('--split', default='train',
                      choices=('train', 'validation'))
  parser.add_argument('--methods', default='all')
  parser.add_argument('--source', default='net', choices=('net', 'gf'),
                      help='the probabilities refined: the network\'s, or '
                      'after the guided filter')
  parser.add_argument('--runs', default='',
                      help='regex on the dump names (default: all of family)')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  from cfcls import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  data = np.load(args.data or f'/tmp/cfcls_sweep_{args.family}.npz')
  methods = all_methods() if args.methods == 'all' else args.methods.split(',')
  files = sorted(glob.glob(os.path.join(args.dump, f'{args.family}_*.npz')))
  files = [f for f in files if re.search(args.runs, os.path.basename(f))]
  if not files:
    parser.error(f'no {args.family}_*.npz in {args.dump}')
  results = {}
  for path in files:
    run = os.path.basename(path)[len(args.family) + 1:-4]
    saved = np.load(path)
    # Dumps before 2026-12-06 10:00 hold only the guided filter's outputs,
    # under '<split>_probs'.
    key = f'{args.split}_{args.source}'
    if key not in saved and args.source == 'gf':
      key = f'{args.split}_probs'
    if key not in saved:
      print(f'{run}: no {key}, skipped')
      continue
    probs = saved[key].astype(np.float32)
    images = data[f'{args.split}_image'][:len(probs)]
    masks = data[f'{args.split}_mask'][:len(probs)].astype(np.int32)
    k = probs.shape[-1]
    conf, cache = {}, {}
    t0 = time.time()
    for i in range(len(probs)):
      for m, labels in label_image(images[i], probs[i], methods,
                                   cache).items():
        conf[m] = conf.get(m, 0) + np.asarray(
            metrics_lib.confusion_matrix(masks[i], labels, k))
    results[run] = {m: round(metrics_lib.segmentation_metrics(c)['miou'], 4)
                    for m, c in conf.items()}
    solve = np.mean(cache['seconds']) if cache.get('seconds') else 0.0
    print(f'{run}: {len(probs)} images, {time.time() - t0:.0f} s '
          f'(soft solve {solve:.3f} s/image) ' + json.dumps(results[run]),
          flush=True)
  # Mean over the runs of each variant (run names end in _s<seed>).
  variants = sorted({re.sub(r'_s\d+$', '', r) for r in results})
  print(f'\n{args.family}, {args.split}, from {args.source}: mean mIoU '
        'over seeds')
  header = f'{"method":24s}' + ''.join(f'{v:>18s}' for v in variants)
  print(header)
  summary = {}
  for m in methods:
    row = []
    for v in variants:
      vals = [results[r][m] for r in results if re.sub(r'_s\d+$', '', r) == v]
      summary.setdefault(v, {})[m] = (round(float(np.mean(vals)), 4),
                                      len(vals))
      row.append(f'{np.mean(vals):.4f} (n={len(vals)})')
    print(f'{m:24s}' + ''.join(f'{x:>18s}' for x in row))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump({'runs': results, 'mean': summary}, f, indent=1)


if __name__ == '__main__':
  main()
