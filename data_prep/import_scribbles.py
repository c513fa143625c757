"""Import scribbles drawn in labelme, CVAT or COCO into a scribble folder.

  python data_prep/import_scribbles.py --format=labelme --input labelme_dir \
      --output my_folder [--classes classes.txt] [--width N] \
      [--polygons=outline|fill] [--coco-strokes] [--images DIR] \
      [--skip-unknown] [--skip-bad] \
      [--background-labels background,_background_] \
      [--val-fraction F | --val-list val_names.txt] [--seed S] [--overwrite]

--input is an annotation file or a folder of them (labelme: one JSON per
image; CVAT for images 1.1: XML; COCO: JSON). --output becomes the
scribble_folder layout (images/, scribbles/, classes.txt, train.txt/val.txt
with --val-fraction or --val-list) that configs/folder.py trains on; it is
written complete or not at all. Strokes are --width px wide (default: scaled
with the image size, 3 px at 500x375), nearest-neighbour; polygons are
outlines unless --polygons=fill. Details, formats and examples:
data_prep/README.md and cfcls/data/importers.py. Bad input stops with an error
naming the file; --skip-bad leaves such images out with a warning.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cfcls.data import importers  # noqa: E402
from cfcls.data import inspection  # noqa: E402


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--format', required=True, choices=importers.FORMATS)
  p.add_argument('--input', required=True)
  p.add_argument('--output', required=True)
  p.add_argument('--classes', default=None,
                 help='classes.txt (line 0 = background); default: built '
                 'from the labels found')
  p.add_argument('--width', type=int, default=None,
                 help='stroke width in px (default: from the image size)')
  p.add_argument('--polygons', choices=('outline', 'fill'), default='outline')
  p.add_argument('--coco-strokes', action='store_true',
                 help='COCO segmentation lists are open strokes')
  p.add_argument('--images', default=None,
                 help='CVAT/COCO image folder (default: beside --input)')
  p.add_argument('--skip-unknown', action='store_true',
                 help='drop shapes whose label is not in --classes')
  p.add_argument('--skip-bad', action='store_true',
                 help='leave bad images/files out with a warning')
  p.add_argument('--background-labels', default='background,_background_',
                 help='comma-separated labels meaning class 0')
  split = p.add_mutually_exclusive_group()
  split.add_argument('--val-fraction', type=float, default=None)
  split.add_argument('--val-list', default=None,
                     help='file of validation image names, one per line')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--overwrite', action='store_true')
  a = p.parse_args(argv)
  try:
    report = importers.import_folder(
        a.format, a.input, a.output, classes_path=a.classes, width=a.width,
        polygons=a.polygons, coco_strokes=a.coco_strokes,
        images_dir=a.images, skip_unknown=a.skip_unknown,
        skip_bad=a.skip_bad,
        background_labels=a.background_labels.split(','),
        val_fraction=a.val_fraction, val_list=a.val_list, seed=a.seed,
        overwrite=a.overwrite)
  except importers.AnnotationError as e:
    sys.exit(f'import_scribbles.py: error: {e}')
  print(report.summary())
  print(inspection.summary_line(report.output))
  return report


if __name__ == '__main__':
  main()
