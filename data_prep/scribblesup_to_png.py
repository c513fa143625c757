"""Convert ScribbleSup XML annotations to scribble PNGs.

  python data_prep/scribblesup_to_png.py --xml_dir pascal_2012 \
      --out_dir scribbles [--images_dir VOCdevkit/VOC2012/JPEGImages] \
      [--width 3] [--skip_corrupt]

Each <name>.xml becomes <name>.png: uint8 class ids in VOC order
(background=0, plane=1, ..., monitor=20), 255 = unlabelled; polylines are
drawn --width px wide, later strokes over earlier ones, points outside the
image clamped. With --images_dir the XML's <size> is checked against
<images_dir>/<name>.jpg. The PNGs can replace pascal_2012/ for the
scribble_voc builder (put them in <manual_dir>/scribbles/).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402

from cfcls.data import scribbles as scribbles_lib  # noqa: E402


def convert(xml_dir, out_dir, images_dir=None, width=3, skip_corrupt=False):
  """Converts every XML file of xml_dir; returns (written, skipped) names."""
  if not os.path.isdir(xml_dir):
    raise ValueError(f'{xml_dir}: missing folder (--xml_dir)')
  names = sorted(f[:-4] for f in os.listdir(xml_dir) if f.endswith('.xml'))
  if not names:
    raise ValueError(f'{xml_dir}: no .xml files')
  os.makedirs(out_dir, exist_ok=True)
  written, skipped = [], []
  for name in names:
    xml = os.path.join(xml_dir, name + '.xml')
    try:
      shape = None
      if images_dir:
        img_path = os.path.join(images_dir, name + '.jpg')
        img = cv2.imread(img_path, cv2.IMREAD_UNCHANGED)
        if img is None:
          raise ValueError(f'{img_path}: missing or unreadable image')
        shape = img.shape[:2]
      scrib = scribbles_lib.scribbles_from_xml(
          xml, thickness=width, expected_shape=shape)
    except ValueError as e:
      if not skip_corrupt:
        raise
      print(f'skipping: {e}', file=sys.stderr)
      skipped.append(name)
      continue
    cv2.imwrite(os.path.join(out_dir, name + '.png'), scrib)
    written.append(name)
  return written, skipped


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--xml_dir', required=True)
  p.add_argument('--out_dir', required=True)
  p.add_argument('--images_dir', default=None)
  p.add_argument('--width', type=int, default=3)
  p.add_argument('--skip_corrupt', action='store_true')
  a = p.parse_args(argv)
  written, skipped = convert(a.xml_dir, a.out_dir, a.images_dir, a.width,
                             a.skip_corrupt)
  print(f'wrote {len(written)} scribble PNGs to {a.out_dir}'
        + (f', skipped {len(skipped)}' if skipped else ''))


if __name__ == '__main__':
  main()
