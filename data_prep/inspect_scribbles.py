"""Look at a scribble folder before training: statistics and a contact sheet.

  python data_prep/inspect_scribbles.py my_folder [--out DIR] \
      [--max-images 48] [--tile 160] [--columns 6]

Prints, per class, the images with a stroke, the labelled pixels and the
stroke length; the images with no scribble, the classes with no scribble
anywhere, and scribbles that fall on another class in masks/ (when the folder
has masks). Writes DIR/contact_sheet.png (each image with its scribbles in
the class colours, a legend on top) and DIR/report.txt. DIR defaults to
./inspect_<folder name>, outside the folder: files added to the folder would
make training prepare it again.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cfcls.data import inspection  # noqa: E402


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('folder')
  p.add_argument('--out', default=None)
  p.add_argument('--max-images', type=int, default=48)
  p.add_argument('--tile', type=int, default=160)
  p.add_argument('--columns', type=int, default=6)
  a = p.parse_args(argv)
  folder = a.folder.rstrip('/') or a.folder
  out = a.out or f'inspect_{os.path.basename(os.path.abspath(folder))}'
  try:
    report = inspection.inspect_folder(folder)
  except ValueError as e:
    sys.exit(f'inspect_scribbles.py: error: {e}')
  text = report.format()
  print(text)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'report.txt'), 'w', encoding='utf-8') as f:
    f.write(text + '\n')
  sheet = inspection.write_contact_sheet(
      folder, os.path.join(out, 'contact_sheet.png'), tile=a.tile,
      columns=a.columns, max_images=a.max_images)
  print(f'contact sheet: {sheet}')
  return report


if __name__ == '__main__':
  main()
