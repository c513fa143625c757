"""mIoU of the closed-form mattes themselves on the demo's validation split.

No network: for each validation scene, the closed-form matte of every class
from its scribbles (docs/method.md, section 2, `cfcls.matting.solver.solve_alpha_direct`,
scipy), then the labels of docs/method.md, section 3 (argmax over the clipped mattes,
background below the threshold; every class with a scribble is kept). This
is what the CFM loss asks the network to reproduce, so it bounds what a
network trained with it can reach from these scribbles.

  python benchmarks/demo_closed_form.py [--config=configs/demo.py]
  python benchmarks/demo_closed_form.py --family=textures --eps=1e-5 --radius=2
  python benchmarks/demo_closed_form.py --family=textures --extra_radius=2 --combine=min

The system's parameters default to the config's closed-form targets
(data.targets: lam, eps, radius), i.e. the teacher of `loss='two_stage'`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cfcls import config_schema, objectives  # pylint: disable=g-import-not-at-top
from cfcls.matting import solver  # pylint: disable=g-import-not-at-top
from cfcls import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
from demo_sweep import FAMILIES, add_teacher_flags, combined_mattes, family_module  # pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/demo.py')
  parser.add_argument('--family', default='scenes', choices=list(FAMILIES))
  parser.add_argument('--lam', type=float, default=None)
  parser.add_argument('--eps', type=float, default=None)
  parser.add_argument('--radius', type=int, default=None)
  add_teacher_flags(parser)
  args = parser.parse_args()
  config = config_schema.load_config_file(args.config)
  syn = config.data.synthetic
  family = family_module(args.family)
  k = family.NUM_CLASSES
  lam = config.data.targets.lam if args.lam is None else args.lam
  eps = config.data.targets.eps if args.eps is None else args.eps
  radius = config.data.targets.radius if args.radius is None else args.radius
  thresholds = tuple(config.thresholds)
  confusion = np.zeros((len(thresholds), k, k), np.int64)
  start = time.time()
  for i in range(syn.num_val):
    ex = family.generate_example(syn.seed, 'validation', i, syn.image_size)
    scores = combined_mattes(
        lambda r: solver.solve_alpha_direct(  # pylint: disable=cell-var-from-loop
            ex['image'] / 255.0, ex['scribbles'], k, lam=lam, eps=eps,
            radius=r), radius, args.extra_radius, args.combine)[None]
    for t, thr in enumerate(thresholds):
      labels = np.asarray(objectives.labels_from_scores(scores, thr))[0]
      confusion[t] += np.asarray(metrics_lib.confusion_matrix(
          ex['mask'].astype(np.int32), labels, k))
  print(f'{args.family}: {syn.num_val} validation scenes, lam={lam}, '
        f'eps={eps:g}, radius={radius}, extra_radius={args.extra_radius} '
        f'({args.combine}), {time.time() - start:.1f} s')
  for t, thr in enumerate(thresholds):
    miou = metrics_lib.segmentation_metrics(confusion[t])['miou']
    print(f'closed-form mattes, threshold {thr}: mIoU {miou:.4f}')


if __name__ == '__main__':
  main()
