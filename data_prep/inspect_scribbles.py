"""Look at a scribble folder before training: statistics, the closed-form
teacher and a contact sheet.

  python data_prep/inspect_scribbles.py my_folder [--out DIR] \
      [--config configs/folder.py] [--set KEY=VALUE ...] [--no-teacher] \
      [--rank 10] [--max-images 48] [--tile 160] [--columns 6]

Prints, per class, the images with a stroke, the labelled pixels and the
stroke length; the images with no scribble, the classes with no scribble
anywhere, and scribbles that fall on another class in masks/ (when the folder
has masks). Then the teacher: each image's closed-form labels as training
would use them with the config's settings (data.targets lam, eps, radius;
target_threshold, target_margin; cfcls.data.teacher; --set changes a
field, e.g. --set target_margin=0.35), its solve time and
share of unsure pixels (left out by the margin); with masks/, the teacher's
mIoU and each image's IoU; and the images where one more stroke helps most
(no stroke, then the lowest IoU, or without masks the most unsure).
Writes DIR/contact_sheet.png (each image with its scribbles in the class
colours, beside it the teacher's labels with unsure pixels hatched, a legend
on top) and DIR/report.txt. DIR defaults to ./inspect_<folder name>,
outside the folder: files added to the folder would make training prepare it
again.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cfcls.data import inspection  # noqa: E402


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('folder')
  p.add_argument('--out', default=None)
  p.add_argument('--config', default=os.path.join(ROOT, 'configs',
                                                  'folder.py'),
                 help='the training config whose teacher settings to use '
                 '(default: configs/folder.py)')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='change a field of the config, e.g. --set '
                 'target_margin=0.35 (repeatable)')
  p.add_argument('--no-teacher', action='store_true',
                 help='statistics and scribbles only (no solve)')
  p.add_argument('--rank', type=int, default=10,
                 help='how many images to list where a stroke helps most')
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
  taught = None
  if not a.no_teacher:
    from cfcls import config_schema  # pylint: disable=g-import-not-at-top
    from cfcls.data import teacher  # pylint: disable=g-import-not-at-top
    if not os.path.isfile(a.config):
      sys.exit(f'inspect_scribbles.py: error: {a.config}: no such config '
               'file')
    try:
      config = config_schema.load_config_file(a.config, a.set)
    except ValueError as e:
      sys.exit(f'inspect_scribbles.py: error: --set {e}')
    settings = teacher.Settings.from_config(config)
    print(f'\nsolving the closed-form labels ({settings.describe()}):')

    def progress(t):
      iou = '' if t.iou is None else f', IoU {t.iou:.3f}'
      print(f'  {t.name}: {t.seconds:.2f} s, unsure {100 * t.unsure:.1f} %'
            f'{iou}', flush=True)

    taught = inspection.teacher_report(folder, settings, progress=progress)
    teacher_text = taught.format(top=a.rank)
    print('\n' + teacher_text)
    text += '\n\n' + teacher_text
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'report.txt'), 'w', encoding='utf-8') as f:
    f.write(text + '\n')
  sheet = inspection.write_contact_sheet(
      folder, os.path.join(out, 'contact_sheet.png'), tile=a.tile,
      columns=a.columns, max_images=a.max_images,
      teacher_labels=None if taught is None else taught.labels)
  print(f'contact sheet: {sheet}')
  report.teacher = taught
  return report


if __name__ == '__main__':
  main()
