"""A local annotation page for a scribble folder (data_prep/annotate.py).

  server = make_server('my_folder', port=8000)   # 127.0.0.1 unless told
  server.serve_forever()

Standard library only (http.server's ThreadingHTTPServer): one process, a
thread per request, one background thread that solves the closed-form labels
(`cfcls.data.teacher`) of the newest strokes. The page (static/annotate.html
and annotate.js beside this file: plain HTML and JavaScript on canvases, no
build step, nothing fetched from elsewhere) talks to these routes:

  GET  /                       the page (and /annotate.js)
  GET  /api/folder             JSON: classes, colours, images (name, size,
                               saved), the teacher's settings
  GET  /api/image/NAME         the photo as the solver and the builder see it
                               (decoded, RGB, re-encoded as PNG)
  GET  /api/scribbles/NAME     its scribbles/NAME.png (or none yet) as an
                               RGBA PNG with R = G = B = class id (255 none)
  POST /api/solve/NAME?seq=N[&full=1]   body: the scribbles, one byte per
                               pixel (Content-Type application/octet-stream:
                               the page's, nothing to encode per stroke) or
                               a PNG as for save; answer: the sure
                               labels as an RGBA overlay PNG (class colours,
                               unsure pixels hatched), or 204 when a newer
                               stroke (higher seq) of that image came first
  POST /api/save/NAME          body: the scribbles as a PNG (RGBA with R = G
                               = B = id, or grey / palette); writes
                               scribbles/NAME.png
                               (palette PNG, index = class id) atomically
  POST /api/classes            body: {"name": "..."}: appends a class to
                               classes.txt (atomically)

Safety: only the folder's images (by name, from images/), their scribbles
and classes.txt are read; a path with '..', an encoded separator, a name
not in images/ or a file whose real path (symlinks followed) is outside the
folder is refused. Writes go to scribbles/ and classes.txt only, through a
temporary file in the same folder and os.replace: two saves at once leave
one whole file, a process killed mid-save leaves the previous one. An upload
that is not a PNG (or, to /api/solve, not one byte per pixel), of another
size than its image, with a class id that
classes.txt lacks, or larger than MAX_BODY is refused with a message, and
nothing is written. Requests must name this server in their Host header
(127.0.0.1 / localhost:PORT when bound to the loopback: no DNS rebinding),
and POSTs carry the header X-Annotate: 1 (a page of another origin cannot
send it without a preflight this server never grants).
"""
from __future__ import annotations

import dataclasses
import http.server
import io
import json
import os
import re
import socketserver
import tempfile
import threading
import time
import urllib.parse

import cv2
import numpy as np
from PIL import Image

from cfcls import visualize
from cfcls.data import inspection
from cfcls.labels import IGNORE

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
STATIC_FILES = {'/': ('annotate.html', 'text/html; charset=utf-8'),
                '/index.html': ('annotate.html', 'text/html; charset=utf-8'),
                '/annotate.js': ('annotate.js',
                                 'text/javascript; charset=utf-8')}
MAX_BODY = 32 * 2 ** 20        # bytes of one upload
MAX_CLASS_NAME = 40
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
TMP_PREFIX = '.annotate-'       # temporary files in scribbles/ and the folder
LOOPBACK = ('127.0.0.1', 'localhost', '::1')
# The live overlay solves a copy of at most this many pixels (teacher.solve's
# max_pixels: 500x375 -> 250x188), then upsamples; full=1 solves the photo.
PREVIEW_PIXELS = 50_000
# ... and a coarser copy (up to 1/MAX_FACTOR a side) while solves take longer
# than this (SolveWorker): the overlay within ~0.5 s of a stroke.
PREVIEW_SECONDS = 0.3
MAX_FACTOR = 6


class Refused(Exception):
  """A request refused with an HTTP status and a message for the user."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


def _inside(path: str, root: str) -> bool:
  real, root = os.path.realpath(path), os.path.realpath(root)
  return os.path.commonpath([real, root]) == root


def _atomic_write(path: str, data: bytes) -> None:
  """data to path via a temporary file in its folder and os.replace."""
  folder = os.path.dirname(path)
  fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix='.tmp', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  try:  # the rename itself on disk
    dfd = os.open(folder, os.O_RDONLY)
    try:
      os.fsync(dfd)
    finally:
      os.close(dfd)
  except OSError:
    pass


def encode_ids_png(labels: np.ndarray) -> bytes:
  """uint8 [H, W] ids -> RGBA PNG, R = G = B = id, A = 255 (the page's
  encoding: a canvas reads it back exactly)."""
  rgba = np.repeat(labels[..., None], 4, axis=-1)
  rgba[..., 3] = 255
  ok, buf = cv2.imencode('.png', rgba, [cv2.IMWRITE_PNG_COMPRESSION, 1])
  assert ok
  return buf.tobytes()


def palette_png(labels: np.ndarray) -> bytes:
  """uint8 [H, W] ids -> a palette PNG (index = id, VOC colours)."""
  im = Image.fromarray(labels, 'P')
  im.putpalette(visualize.palette(256).reshape(-1).tolist())
  buf = io.BytesIO()
  im.save(buf, format='PNG')
  return buf.getvalue()


RAW_IDS = 'application/octet-stream'


def decode_ids_raw(data: bytes, shape, num_classes: int) -> np.ndarray:
  """Scribbles sent as one byte per pixel (row-major, the page's encoding
  for /api/solve: no PNG to compress on every stroke) -> uint8 [H, W]."""
  h, w = shape
  if len(data) != h * w:
    raise Refused(400, f'the scribbles are {len(data)} bytes but the image '
                  f'is {w}x{h} ({h * w} bytes, one per pixel)')
  ids = np.frombuffer(data, np.uint8).reshape(h, w).copy()
  _check_ids(ids, num_classes)
  return ids


def _check_ids(ids, num_classes):
  bad = np.unique(ids[(ids >= num_classes) & (ids != IGNORE)])
  if bad.size:
    raise Refused(400, f'unknown class ids {bad[:10].tolist()} (classes.txt '
                  f'has {num_classes} classes, ids 0-{num_classes - 1}; '
                  '255 = unlabelled)')


def decode_ids_png(data: bytes, shape, num_classes: int) -> np.ndarray:
  """An uploaded scribble PNG -> uint8 [H, W] class ids.

  Accepted: grey or palette PNGs (value / index = id) and RGB(A) PNGs with
  R = G = B (= id) and A = 255, of exactly shape (H, W), ids < num_classes
  or 255. Anything else raises Refused (400) saying what is wrong.
  """
  if not data.startswith(PNG_MAGIC):
    raise Refused(415, 'the scribbles must be a PNG file (the upload does '
                  'not start with the PNG signature)')
  try:
    with Image.open(io.BytesIO(data)) as im:
      if im.format != 'PNG':
        raise Refused(415, f'the scribbles must be a PNG, not {im.format}')
      w, h = im.size
      if (h, w) != tuple(shape):
        raise Refused(400, f'the scribbles are {w}x{h} but the image is '
                      f'{shape[1]}x{shape[0]}')
      im.load()
      mode = im.mode
      arr = np.asarray(im)
  except Refused:
    raise
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise Refused(400, f'the scribbles are not a readable PNG ({e})') from e
  if mode in ('L', 'P'):
    ids = arr
  elif mode in ('RGB', 'RGBA'):
    if not (np.array_equal(arr[..., 0], arr[..., 1])
            and np.array_equal(arr[..., 0], arr[..., 2])):
      raise Refused(400, 'a colour PNG of scribbles must hold the class id '
                    'in R = G = B')
    if mode == 'RGBA' and np.any(arr[..., 3] != 255):
      raise Refused(400, 'the scribble PNG must be opaque (A = 255)')
    ids = arr[..., 0]
  else:
    raise Refused(400, f'unsupported PNG mode {mode} for scribbles (grey, '
                  'palette or R = G = B colour)')
  ids = np.ascontiguousarray(ids, np.uint8)
  _check_ids(ids, num_classes)
  return ids


class Folder:
  """A scribble folder as the page sees it: images by name, classes."""

  def __init__(self, path: str):
    self.root = os.path.realpath(path)
    if not os.path.isdir(self.root):
      raise ValueError(f'{path}: no such folder')
    self.classes = inspection._class_names(self.root)  # pylint: disable=protected-access
    found = inspection._images(self.root)  # pylint: disable=protected-access
    self.images, self.refused, self.unreadable = {}, [], []
    self.sizes = {}
    for name, file in found.items():
      if not (_inside(file, self.root) and os.path.isfile(file)):
        self.refused.append(name)
        continue
      try:
        with Image.open(file) as im:
          self.sizes[name] = (im.height, im.width)
      except (OSError, ValueError, SyntaxError):
        self.unreadable.append(name)
        continue
      self.images[name] = file
    if not self.images:
      raise ValueError(f'{path}/images: no readable image inside the folder')
    self.scribble_dir = os.path.join(self.root, 'scribbles')
    self._lock = threading.Lock()
    self._save_locks = {}
    self._pixels = {}
    self._remove_stale_temporaries()

  def _remove_stale_temporaries(self):
    """Temporary files of a save that a killed server left behind."""
    for d in (self.scribble_dir, self.root):
      if os.path.isdir(d) and _inside(d, self.root):
        for f in os.listdir(d):
          if f.startswith(TMP_PREFIX) and f.endswith('.tmp'):
            os.unlink(os.path.join(d, f))

  def file(self, name: str) -> str:
    """The image file of a name; Refused (404/403) otherwise."""
    if name not in self.images:
      if name in self.refused:
        raise Refused(403, f'images/{name}: leads outside the folder; '
                      'refused')
      raise Refused(404, f'no image named {name!r} in {self.root}/images')
    path = self.images[name]
    if not _inside(path, self.root):  # the link changed since start
      raise Refused(403, f'images/{name}: leads outside the folder; refused')
    return path

  def pixels(self, name: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB of an image (decoded once, kept)."""
    path = self.file(name)
    with self._lock:
      if name in self._pixels:
        return self._pixels[name]
    try:
      with Image.open(path) as im:
        rgb = np.asarray(im.convert('RGB'))
    except (OSError, ValueError, SyntaxError) as e:
      raise Refused(409, f'images/{os.path.basename(path)} is unreadable '
                    f'({e})') from e
    with self._lock:
      if len(self._pixels) > 16:
        self._pixels.pop(next(iter(self._pixels)))
      self._pixels[name] = rgb
    return rgb

  def scribble_path(self, name: str) -> str:
    self.file(name)
    return os.path.join(self.scribble_dir, name + '.png')

  def read_scribbles(self, name: str):
    """(uint8 [H, W] ids, saved?) of an image; 255s where none is saved."""
    path = self.scribble_path(name)
    shape = self.sizes[name]
    if not os.path.lexists(path):
      return np.full(shape, IGNORE, np.uint8), False
    if not _inside(path, self.root):
      raise Refused(403, f'scribbles/{name}.png: leads outside the folder; '
                    'refused')
    try:
      ids = inspection.read_labels(path)
    except (OSError, ValueError, SyntaxError) as e:
      raise Refused(409, f'scribbles/{name}.png is unreadable ({e})') from e
    if ids.shape != shape:
      raise Refused(409, f'scribbles/{name}.png is {ids.shape[1]}x'
                    f'{ids.shape[0]} but its image is {shape[1]}x{shape[0]}')
    return ids, True

  def save(self, name: str, ids: np.ndarray) -> str:
    """Writes scribbles/NAME.png atomically (one save per name at a time)."""
    path = self.scribble_path(name)
    os.makedirs(self.scribble_dir, exist_ok=True)
    if not _inside(self.scribble_dir, self.root):
      raise Refused(403, 'scribbles/ leads outside the folder; refused')
    data = palette_png(ids)
    with self._lock:
      lock = self._save_locks.setdefault(name, threading.Lock())
    with lock:
      _atomic_write(path, data)
    return path

  def add_class(self, name) -> list:
    if not isinstance(name, str):
      raise Refused(400, 'the class name must be a string')
    name = name.strip()
    if not name or len(name) > MAX_CLASS_NAME or not name.isprintable():
      raise Refused(400, f'a class name is 1-{MAX_CLASS_NAME} printable '
                    f'characters on one line, not {name[:60]!r}')
    with self._lock:
      if name in self.classes:
        raise Refused(409, f'class {name!r} exists already (id '
                      f'{self.classes.index(name)})')
      if len(self.classes) >= IGNORE:
        raise Refused(400, f'at most {IGNORE} classes (255 = unlabelled)')
      classes = self.classes + [name]
      path = os.path.join(self.root, 'classes.txt')
      _atomic_write(path, ('\n'.join(classes) + '\n').encode('utf-8'))
      self.classes = classes
      return list(classes)


@dataclasses.dataclass
class Solved:
  seq: int
  png: bytes
  seconds: float       # the solve
  unsure: float        # share of unsure pixels
  factor: int          # downscale of the solve (1 = the photo itself)
  error: str = ''      # why the solve failed, if it did


class SolveWorker:
  """One background thread; per image only the newest stroke is solved.

  `solve(name, seq, ids)` waits for that stroke's overlay and returns it, or
  None as soon as a newer stroke (higher seq) of the same image arrives: its
  solve supersedes this one (a solve already running finishes; its result
  is dropped if a newer one is pending).

  Preview size: the finest integer downscale with at most max_pixels pixels,
  coarser while a solve at an image size takes longer than budget seconds
  (a busy machine), finer again when the finer one is expected to fit
  (solve time ~ pixels^1.5); budget 0 keeps the finest. The first solve of a
  size and factor (the solver's plan for that grid) does not count.
  """

  def __init__(self, folder: Folder, settings, max_pixels: int,
               budget: float = PREVIEW_SECONDS):
    self.folder, self.settings, self.max_pixels = folder, settings, max_pixels
    self.budget = budget
    self._factor = {}    # image shape -> preview factor in use
    self._seen = set()   # (shape, factor) solved once
    self._cv = threading.Condition()
    self._latest = {}    # name -> newest seq submitted
    self._pending = {}   # name -> (order, seq, ids, full)
    self._done = {}      # name -> Solved
    self._order = 0
    self._stop = False
    self._thread = threading.Thread(target=self._run, name='solve',
                                    daemon=True)
    self._thread.start()

  def close(self):
    with self._cv:
      self._stop = True
      self._cv.notify_all()

  def solve(self, name, seq, ids, full=False, timeout=120.0):
    deadline = time.monotonic() + timeout
    with self._cv:
      if seq <= self._latest.get(name, -1):
        return None
      self._latest[name] = seq
      self._order += 1
      self._pending[name] = (self._order, seq, ids, full)
      self._cv.notify_all()
      while True:
        done = self._done.get(name)
        if done is not None and done.seq == seq:
          return done
        if self._latest[name] != seq:
          return None
        left = deadline - time.monotonic()
        if left <= 0:
          raise Refused(503, f'no overlay for {name} within {timeout:.0f} s')
        self._cv.wait(left)

  def _run(self):
    from cfcls.data import teacher  # pylint: disable=g-import-not-at-top
    while True:
      with self._cv:
        while not self._pending and not self._stop:
          self._cv.wait()
        if self._stop:
          return
        # The newest submission first (the image the user is on).
        name = max(self._pending, key=lambda n: self._pending[n][0])
        _, seq, ids, full = self._pending.pop(name)
      try:
        image = self.folder.pixels(name)
        factor = 1 if full else self._preview_factor(ids.shape)
        result = teacher.solve(image, ids, len(self.folder.classes),
                               self.settings, factor=factor, decision=False)
        if not full:
          self._adapt(ids.shape, factor, result.seconds)
        rgba = teacher.overlay_rgba(result.labels)
        ok, buf = cv2.imencode('.png', cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1])
        assert ok
        solved = Solved(seq, buf.tobytes(), result.seconds,
                        result.unsure_share, result.factor)
      except Exception as e:  # pylint: disable=broad-except
        solved = Solved(seq, b'', 0.0, 0.0, 0, error=str(e) or repr(e))
      with self._cv:
        self._done[name] = solved
        self._cv.notify_all()


  def _preview_factor(self, shape):
    from cfcls.data import teacher  # pylint: disable=g-import-not-at-top
    finest = teacher.preview_factor(shape, self.max_pixels)
    return self._factor.get(shape, finest)

  def _adapt(self, shape, factor, seconds):
    from cfcls.data import teacher  # pylint: disable=g-import-not-at-top
    if not self.budget or (shape, factor) not in self._seen:
      self._seen.add((shape, factor))
      return
    finest = teacher.preview_factor(shape, self.max_pixels)
    if seconds > self.budget and factor < MAX_FACTOR:
      self._factor[shape] = factor + 1
    elif factor > finest and seconds * (factor / (factor - 1)) ** 3 < (
        0.8 * self.budget):
      self._factor[shape] = factor - 1


class App:
  """What the handlers share: the folder, the worker, the settings."""

  def __init__(self, folder: str, settings, host: str, port: int,
               max_pixels: int = PREVIEW_PIXELS,
               budget: float = PREVIEW_SECONDS):
    self.folder = Folder(folder)
    self.settings = settings
    self.host, self.port = host, port
    self.max_pixels = max_pixels
    self.worker = SolveWorker(self.folder, settings, max_pixels, budget)
    self._png_cache = {}

  def allowed_hosts(self):
    if self.host not in LOOPBACK:
      return None  # told to serve elsewhere: any Host
    return {f'{h}:{self.port}' for h in ('127.0.0.1', 'localhost', '[::1]')}

  def state(self):
    colours = visualize.palette(256)
    return {
        'folder': os.path.basename(self.folder.root),
        'classes': self.folder.classes,
        'colours': [list(map(int, colours[i])) for i in range(256)],
        'images': [{'name': n, 'height': self.folder.sizes[n][0],
                    'width': self.folder.sizes[n][1],
                    'saved': os.path.isfile(os.path.join(
                        self.folder.scribble_dir, n + '.png'))}
                   for n in sorted(self.folder.images)],
        'refused': self.folder.refused,
        'unreadable': self.folder.unreadable,
        'teacher': self.settings.describe(),
        'preview_pixels': self.max_pixels,
    }

  def image_png(self, name):
    png = self._png_cache.get(name)
    if png is None:
      rgb = self.folder.pixels(name)
      ok, buf = cv2.imencode('.png', rgb[..., ::-1],
                             [cv2.IMWRITE_PNG_COMPRESSION, 1])
      assert ok
      png = buf.tobytes()
      if len(self._png_cache) > 16:  # the last few images only
        self._png_cache.pop(next(iter(self._png_cache)), None)
      self._png_cache[name] = png
    return png


_NAME_ROUTES = re.compile(r'^/api/(image|scribbles|solve|save)/([^/]+)$')


def _route(raw_path: str):
  """(decoded path, query dict) of a request target; Refused on a path that
  could leave the folder (.., encoded separators, NUL, backslashes)."""
  parts = urllib.parse.urlsplit(raw_path)
  if parts.scheme or parts.netloc:
    raise Refused(400, 'absolute URLs are refused')
  segments = parts.path.split('/')
  decoded = [urllib.parse.unquote(s, errors='strict') for s in segments]
  for seg in decoded:
    if seg in ('.', '..') or '/' in seg or '\\' in seg or '\x00' in seg:
      raise Refused(403, f'path {parts.path!r} leads outside the folder; '
                    'refused')
  if not parts.path.startswith('/') or '//' in parts.path:
    raise Refused(403, f'path {parts.path!r} refused')
  query = urllib.parse.parse_qs(parts.query)
  return '/'.join(decoded), query


class Handler(http.server.BaseHTTPRequestHandler):
  server_version = 'cfcls-annotate'
  protocol_version = 'HTTP/1.1'

  @property
  def app(self) -> App:
    return self.server.app

  def log_message(self, fmt, *args):  # quiet unless asked
    if getattr(self.server, 'verbose', False):
      super().log_message(fmt, *args)

  # -- replies
  def _send(self, status, body=b'', ctype='application/json', headers=()):
    self.send_response(status)
    self.send_header('Content-Type', ctype)
    self.send_header('Content-Length', str(len(body)))
    self.send_header('Cache-Control', 'no-store')
    self.send_header('X-Content-Type-Options', 'nosniff')
    for k, v in headers:
      self.send_header(k, v)
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(body)

  def _json(self, status, obj, headers=()):
    self._send(status, json.dumps(obj).encode(), headers=headers)

  def _error(self, status, message):
    self.close_connection = True
    self._json(status, {'error': message}, headers=(('Connection', 'close'),))

  # -- checks
  def _check_host(self):
    allowed = self.app.allowed_hosts()
    host = self.headers.get('Host', '')
    if allowed is not None and host not in allowed:
      raise Refused(403, f'Host {host!r} refused: this server answers to '
                    f'127.0.0.1:{self.app.port} or localhost:{self.app.port}')

  def _body(self):
    if self.headers.get('X-Annotate') != '1':
      raise Refused(403, 'POST requests need the header X-Annotate: 1 (sent '
                    'by the annotation page)')
    origin = self.headers.get('Origin')
    if origin is not None and urllib.parse.urlsplit(origin).netloc != (
        self.headers.get('Host')):
      raise Refused(403, f'Origin {origin!r} refused')
    if 'Transfer-Encoding' in self.headers:
      raise Refused(411, 'send the body with a Content-Length, not chunked')
    length = self.headers.get('Content-Length')
    if length is None or not length.isdigit():
      raise Refused(411, 'a Content-Length header is required')
    length = int(length)
    if length > MAX_BODY:
      raise Refused(413, f'the upload is {length} bytes; at most {MAX_BODY}')
    data = self.rfile.read(length)
    if len(data) != length:
      raise Refused(400, 'the upload ended early')
    return data

  def _dispatch(self, method):
    try:
      self._check_host()
      path, query = _route(self.path)
      if method in ('GET', 'HEAD') and path in STATIC_FILES:
        fname, ctype = STATIC_FILES[path]
        with open(os.path.join(STATIC, fname), 'rb') as f:
          return self._send(200, f.read(), ctype)
      if path == '/api/folder' and method in ('GET', 'HEAD'):
        return self._json(200, self.app.state())
      if path == '/api/classes' and method == 'POST':
        try:
          name = json.loads(self._body().decode('utf-8')).get('name')
        except (ValueError, AttributeError) as e:
          raise Refused(400, 'the body must be JSON {"name": "..."}') from e
        return self._json(200, {'classes': self.app.folder.add_class(name)})
      m = _NAME_ROUTES.match(path)
      if not m:
        if path in ('/api/folder', '/api/classes') or path in STATIC_FILES:
          raise Refused(405, f'{method} is not allowed on {path}')
        raise Refused(404, f'not found: {path}')
      kind, name = m.groups()
      wants = 'POST' if kind in ('solve', 'save') else 'GET'
      if method != wants and not (wants == 'GET' and method == 'HEAD'):
        raise Refused(405, f'{method} is not allowed on /api/{kind}/')
      folder = self.app.folder
      if kind == 'image':
        return self._send(200, self.app.image_png(name), 'image/png')
      if kind == 'scribbles':
        ids, saved = folder.read_scribbles(name)
        return self._send(200, encode_ids_png(ids), 'image/png',
                          (('X-Saved', str(int(saved))),))
      folder.file(name)  # refused unless one of the folder's images
      shape = folder.sizes[name]
      body = self._body()
      if kind == 'solve' and self.headers.get('Content-Type') == RAW_IDS:
        ids = decode_ids_raw(body, shape, len(folder.classes))
      else:
        ids = decode_ids_png(body, shape, len(folder.classes))
      if kind == 'save':
        path = folder.save(name, ids)
        return self._json(200, {'saved': os.path.relpath(path, folder.root),
                                'labelled': int(np.sum(ids != IGNORE))})
      try:
        seq = int(query.get('seq', ['0'])[0])
      except ValueError as e:
        raise Refused(400, 'seq must be an integer') from e
      full = query.get('full', ['0'])[0] == '1'
      solved = self.app.worker.solve(name, seq, ids, full)
      if solved is None:
        return self._send(204, headers=(('X-Superseded', '1'),))
      if solved.error:
        raise Refused(500, f'the solve failed: {solved.error}')
      return self._send(200, solved.png, 'image/png', (
          ('X-Seq', str(solved.seq)),
          ('X-Solve-Seconds', f'{solved.seconds:.3f}'),
          ('X-Unsure', f'{solved.unsure:.4f}'),
          ('X-Factor', str(solved.factor))))
    except Refused as e:
      return self._error(e.status, str(e))
    except UnicodeDecodeError:
      return self._error(400, 'the path is not valid UTF-8')
    except (BrokenPipeError, ConnectionResetError):
      return None

  def do_GET(self):  # noqa: N802
    self._dispatch('GET')

  def do_HEAD(self):  # noqa: N802
    self._dispatch('HEAD')

  def do_POST(self):  # noqa: N802
    self._dispatch('POST')

  def do_PUT(self):  # noqa: N802
    self._dispatch('PUT')

  def do_DELETE(self):  # noqa: N802
    self._dispatch('DELETE')


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
  daemon_threads = True
  allow_reuse_address = True

  def server_close(self):
    self.app.worker.close()
    super().server_close()


def make_server(folder: str, host: str = '127.0.0.1', port: int = 8000,
                settings=None, max_pixels: int = PREVIEW_PIXELS,
                verbose: bool = False,
                budget: float = PREVIEW_SECONDS) -> Server:
  """A server for `folder`, bound (port 0: a free port); call
  serve_forever(). settings: `teacher.Settings` (default: configs/folder.py's
  values); max_pixels and budget: the live preview's size and time (see
  SolveWorker). Raises ValueError for a folder that is not a scribble
  folder."""
  from cfcls.data import teacher  # pylint: disable=g-import-not-at-top
  settings = settings or teacher.Settings()
  if ':' in host and not host.startswith('['):
    raise ValueError(f'--host {host}: IPv6 is not supported; use 127.0.0.1')
  app = App(folder, settings, host, port, max_pixels,
            budget)  # a bad folder raises before the port is taken
  server = Server((host, port), Handler, bind_and_activate=False)
  try:
    server.server_bind()
    server.server_activate()
  except OSError:
    server.socket.close()
    app.worker.close()
    raise
  app.port = server.server_address[1]
  server.app, server.verbose = app, verbose
  return server
