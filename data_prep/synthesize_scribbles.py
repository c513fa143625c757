"""Synthesise scribbles (and dots) for a folder of ground-truth masks.

  python data_prep/synthesize_scribbles.py --masks_dir masks \
      --out_dir scribbles [--dots_dir dots] [--width 3] [--num_classes K]

Each <name>.png mask (grey or palette PNG of class ids, 255 = void) gets a
scribble PNG <out_dir>/<name>.png: one stroke --width px wide (0: scaled with
the image size, 3 px at VOC's 500x375) along the
middle of every connected region, never leaving it (see
cfcls.data.scribbles.synthesize_scribbles); about 1-6 % of the pixels end up
labelled. With --dots_dir, a few dots per stroke are written too (seeded by
--seed and the file name). With --num_classes, ids >= K (other than 255) are
an error naming the file. The output folder plus images/ and classes.txt is a
scribble_folder dataset.
"""
import argparse
import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from cfcls.data import scribbles as scribbles_lib  # noqa: E402


def read_mask(path):
  try:
    with Image.open(path) as im:
      if im.mode not in ('P', 'L'):
        raise ValueError(f'{path}: mask PNG mode {im.mode}; expected a grey or'
                         ' palette PNG of class ids')
      return np.asarray(im)
  except OSError as e:
    raise ValueError(f'{path}: corrupt or unreadable mask ({e})') from e


def synthesize_folder(masks_dir, out_dir, dots_dir=None, width=3,
                      num_classes=None, seed=0):
  """Writes scribble (and dot) PNGs; returns the list of names."""
  if not os.path.isdir(masks_dir):
    raise ValueError(f'{masks_dir}: missing folder (--masks_dir)')
  names = sorted(f[:-4] for f in os.listdir(masks_dir) if f.endswith('.png'))
  if not names:
    raise ValueError(f'{masks_dir}: no .png masks')
  os.makedirs(out_dir, exist_ok=True)
  if dots_dir:
    os.makedirs(dots_dir, exist_ok=True)
  for name in names:
    path = os.path.join(masks_dir, name + '.png')
    mask = read_mask(path)
    if num_classes is not None:
      bad = np.unique(mask[(mask >= num_classes) & (mask != 255)])
      if bad.size:
        raise ValueError(f'{path}: unknown class ids {bad.tolist()[:10]} '
                         f'(num_classes={num_classes})')
    scrib = scribbles_lib.synthesize_scribbles(
        mask, width=width or scribbles_lib.auto_width(mask.shape))
    cv2.imwrite(os.path.join(out_dir, name + '.png'), scrib)
    if dots_dir:
      rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
      cv2.imwrite(os.path.join(dots_dir, name + '.png'),
                  scribbles_lib.dots_from_scribbles(scrib, rng))
  return names


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--masks_dir', required=True)
  p.add_argument('--out_dir', required=True)
  p.add_argument('--dots_dir', default=None)
  p.add_argument('--width', type=int, default=3,
                 help='stroke width in px; 0 = scaled with the image size '
                 '(3 px at 500x375)')
  p.add_argument('--num_classes', type=int, default=None)
  p.add_argument('--seed', type=int, default=0)
  a = p.parse_args(argv)
  names = synthesize_folder(a.masks_dir, a.out_dir, a.dots_dir, a.width,
                            a.num_classes, a.seed)
  print(f'wrote {len(names)} scribble PNGs to {a.out_dir}')


if __name__ == '__main__':
  main()
