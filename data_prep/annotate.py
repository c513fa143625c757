"""Draw scribbles in your browser and see the closed-form labels as you draw.

  python data_prep/annotate.py FOLDER [--port 8000] [--config configs/folder.py]
      [--set KEY=VALUE ...] [--host 127.0.0.1] [--preview-pixels 50000]
      [--preview-seconds 0.3]

Serves a page for a scribble folder (images/, classes.txt; scribbles/ and
masks/ optional, as data_prep/README.md describes) on http://127.0.0.1:PORT/:
pick a class (or add one to classes.txt), draw strokes, erase, undo, go to
the next or previous image. After each stroke the closed-form labels that
training would use (the config's teacher: data.targets lam, eps, radius,
target_threshold, target_margin; --set changes a field, e.g. --set
target_margin=0.35) are laid over the photo, unsure pixels
hatched; they are solved on a copy of at most --preview-pixels pixels (0:
the full photo; the page's "full resolution" box asks for that per stroke),
a coarser one while solves take longer than --preview-seconds.
Save writes scribbles/NAME.png (palette PNG, index = class id, 255 =
unlabelled), atomically; images/ and masks/ are never written.

The server listens on 127.0.0.1 only, unless --host says otherwise (then it
warns: anyone who can reach that address can read the photos and write
scribbles). Stop it with Ctrl+C.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cfcls.data import annotation_server  # noqa: E402


def main(argv=None, serve=True):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('folder')
  p.add_argument('--port', type=int, default=8000,
                 help='0 picks a free port (default 8000)')
  p.add_argument('--host', default='127.0.0.1',
                 help='address to listen on (default 127.0.0.1: this '
                 'machine only)')
  p.add_argument('--config', default=os.path.join(ROOT, 'configs',
                                                  'folder.py'),
                 help="the training config whose teacher settings to show "
                 "(default: configs/folder.py)")
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='change a field of the config, e.g. --set '
                 'target_margin=0.35 (repeatable)')
  p.add_argument('--preview-pixels', type=int,
                 default=annotation_server.PREVIEW_PIXELS,
                 help='solve the live overlay on a copy of at most this many '
                 'pixels (default %(default)s; 0: full size)')
  p.add_argument('--preview-seconds', type=float,
                 default=annotation_server.PREVIEW_SECONDS,
                 help='solve coarser previews while a solve takes longer '
                 'than this (default %(default)s; 0: always the finest)')
  p.add_argument('--verbose', action='store_true', help='log each request')
  a = p.parse_args(argv)
  if not 0 <= a.port <= 65535:
    p.error(f'--port {a.port}: not a port number (0-65535)')
  if a.preview_pixels < 0 or a.preview_seconds < 0:
    p.error('--preview-pixels and --preview-seconds must be >= 0')
  if not os.path.isfile(a.config):
    p.error(f'--config {a.config}: no such file')
  from cfcls import config_schema  # pylint: disable=g-import-not-at-top
  from cfcls.data import teacher  # pylint: disable=g-import-not-at-top
  try:
    config = config_schema.load_config_file(a.config, a.set)
  except ValueError as e:
    p.error(f'--set {e}')
  settings = teacher.Settings.from_config(config)
  try:
    server = annotation_server.make_server(
        a.folder, host=a.host, port=a.port, settings=settings,
        max_pixels=a.preview_pixels, verbose=a.verbose,
        budget=a.preview_seconds)
  except (ValueError, OSError) as e:
    sys.exit(f'annotate.py: error: {e}')
  host, port = server.server_address[:2]
  if a.host not in annotation_server.LOOPBACK:
    print(f'annotate.py: warning: listening on {a.host}, not 127.0.0.1: '
          'anyone who can reach this address can read the photos and write '
          'scribbles in the folder', file=sys.stderr)
  app = server.app
  print(f'{len(app.folder.images)} images and {len(app.folder.classes)} '
        f'classes in {app.folder.root}; teacher: {settings.describe()}')
  if app.folder.refused:
    print(f'left out (they lead outside the folder): '
          f'{", ".join(app.folder.refused)}')
  if app.folder.unreadable:
    print(f'left out (unreadable): {", ".join(app.folder.unreadable)}')
  shown = '127.0.0.1' if host in ('0.0.0.0', '127.0.0.1') else host
  print(f'open http://{shown}:{port}/  (Ctrl+C to stop)', flush=True)
  if not serve:
    return server
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    print('stopped')
  finally:
    server.server_close()
  return server


if __name__ == '__main__':
  main()
