"""The README's demo picture: scribbles, ground truth and each run's labels.

After the three demo runs (see configs/demo.py), e.g.

  python benchmarks/demo_figure.py --runs=CE:runs/demo_ce,pCE:runs/demo_pce,CFM:runs/demo

reads WORKDIR/predictions/NAME_labels.png of each run (written by
`predict_after_training`) for the images all runs predicted, regenerates each
synthetic validation scene (input, mask, scribbles) from its name, and writes
one row per image: input with scribbles | ground truth | one column per run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cfcls import visualize  # pylint: disable=g-import-not-at-top
from cfcls.data import synthetic  # pylint: disable=g-import-not-at-top


def _tile(image, text, scale):
  tile = cv2.resize(image, None, fx=scale, fy=scale,
                    interpolation=cv2.INTER_NEAREST)
  cv2.putText(tile, text, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
              (255, 255, 255), 1, cv2.LINE_AA)
  return tile


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', required=True,
                      help='comma-separated TITLE:WORKDIR pairs')
  parser.add_argument('--rows', type=int, default=3)
  parser.add_argument('--scale', type=int, default=2)
  parser.add_argument('--out', default='benchmarks/figures/demo_predictions.png')
  args = parser.parse_args()
  runs = [tuple(item.split(':', 1)) for item in args.runs.split(',')]
  names = None
  for _, workdir in runs:
    folder = os.path.join(workdir, 'predictions')
    if not os.path.isdir(folder):
      parser.error(f'{folder}: missing folder (run the demo with '
                   'predict_after_training > 0 first)')
    found = {f[:-len('_labels.png')] for f in os.listdir(folder)
             if f.endswith('_labels.png')}
    names = found if names is None else names & found
  names = sorted(n for n in names if n.startswith('validation_'))[:args.rows]
  if not names:
    parser.error('the runs have no predicted validation image in common')
  with open(os.path.join(runs[0][1], 'config.json')) as f:
    syn = json.load(f)['data']['synthetic']
  rows = []
  for name in names:
    ex = synthetic.generate_example(syn['seed'], 'validation',
                                    int(name.split('_')[-1]), syn['image_size'])
    scribbled = ex['scribbles'] != 255
    with_scribbles = ex['image'].copy()
    with_scribbles[scribbled] = visualize.colorize(ex['scribbles'])[scribbled]
    tiles = [_tile(with_scribbles, 'scribbles', args.scale),
             _tile(visualize.overlay(ex['image'], ex['mask'], 0.6),
                   'ground truth', args.scale)]
    for title, workdir in runs:
      labels = cv2.imread(os.path.join(workdir, 'predictions',
                                       f'{name}_labels.png'),
                          cv2.IMREAD_UNCHANGED)
      tiles.append(_tile(visualize.overlay(ex['image'], labels, 0.6), title,
                         args.scale))
    rows.append(np.concatenate(tiles, axis=1))
  figure = np.concatenate(rows, axis=0)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  cv2.imwrite(args.out, figure[..., ::-1])
  print(f'wrote {args.out}: {len(names)} images x {len(runs)} runs')


if __name__ == '__main__':
  main()
