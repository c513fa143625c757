"""The annotation server (data_prep/annotate.py) over HTTP on the loopback.

Every route, and every bad input of issue 28 (traversal, symlinks out of the
folder, wrong size, unknown class id, not a PNG, oversized body, missing
headers, foreign Host or Origin): each refused with a message and none
writing a file (the folder is compared byte for byte before and after).
Two saves at once leave one whole file; a server killed mid-save leaves the
previous one.
"""
import hashlib
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from PIL import Image

import data_fixtures
from cfcls import visualize
from cfcls.data import annotation_server as srv
from cfcls.data import teacher

ROOT = data_fixtures.ROOT
H, W = 24, 20


def _folder(root):
  data_fixtures.make_folder(str(root), names=('a', 'b', 'c'), size=(H, W))
  os.remove(root / 'scribbles' / 'c.png')  # an image without scribbles yet
  return root


def snapshot(root):
  """path -> sha256 of every file under root (links: their target)."""
  out = {}
  for folder, dirs, files in os.walk(root):
    for f in files + [d for d in dirs if os.path.islink(os.path.join(
        folder, d))]:
      path = os.path.join(folder, f)
      rel = os.path.relpath(path, root)
      if os.path.islink(path):
        out[rel] = 'link:' + os.readlink(path)
      else:
        with open(path, 'rb') as fh:
          out[rel] = hashlib.sha256(fh.read()).hexdigest()
  return out


@pytest.fixture()
def served(tmp_path):
  root = _folder(tmp_path / 'site')
  outside = tmp_path / 'outside.png'
  cv2.imwrite(str(outside), np.zeros((H, W, 3), np.uint8))
  os.symlink(outside, root / 'images' / 'evil.png')
  os.symlink(outside, root / 'scribbles' / 'b.png.link')
  os.replace(root / 'scribbles' / 'b.png.link', root / 'scribbles' / 'b.png')
  server = srv.make_server(str(root), port=0, settings=teacher.Settings())
  thread = threading.Thread(target=server.serve_forever, args=(0.02,),
                            daemon=True)
  thread.start()
  yield server, root
  server.shutdown()
  server.server_close()


def request(server, method, path, body=None, headers=None, host=None):
  port = server.server_address[1]
  conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  hdrs = {'Host': host or f'127.0.0.1:{port}'}
  if method == 'POST':
    hdrs['X-Annotate'] = '1'
  hdrs.update(headers or {})
  conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
  for k, v in hdrs.items():
    if v is not None:
      conn.putheader(k, v)
  if body is not None and 'Content-Length' not in hdrs:
    conn.putheader('Content-Length', str(len(body)))
  conn.endheaders()
  if body is not None:
    conn.send(body)
  resp = conn.getresponse()
  data = resp.read()
  conn.close()
  return resp.status, dict(resp.getheaders()), data


def ids_png(ids):
  return srv.encode_ids_png(np.asarray(ids, np.uint8))


def png_array(data):
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im)


def stroke(cls_a=1, cls_b=0):
  ids = np.full((H, W), 255, np.uint8)
  ids[5:8, 3:12] = cls_a
  ids[18:20, 2:18] = cls_b
  return ids


def test_page_and_script_are_served_and_fetch_nothing_from_outside(served):
  server, _ = served
  status, headers, html = request(server, 'GET', '/')
  assert status == 200 and headers['Content-Type'].startswith('text/html')
  assert b'<canvas id="photo">' in html and b'src="/annotate.js"' in html
  status, headers, js = request(server, 'GET', '/annotate.js')
  assert status == 200 and b'/api/solve/' in js
  for text in (html, js):  # no URL of another host, no CDN
    assert b'http://' not in text and b'https://' not in text
    assert b'//cdn' not in text and b'@import' not in text


def test_folder_lists_images_classes_and_leaves_out_links_outside(served):
  server, root = served
  status, _, body = request(server, 'GET', '/api/folder')
  state = json.loads(body)
  assert status == 200 and state['classes'] == ['background', 'rust', 'paint']
  assert [(i['name'], i['height'], i['width'], i['saved'])
          for i in state['images']] == [('a', H, W, True), ('b', H, W, True),
                                        ('c', H, W, False)]
  assert state['refused'] == ['evil']
  assert state['colours'][1] == visualize.palette(2)[1].tolist()
  assert 'threshold 0.6, margin 0.2' in state['teacher']


def test_image_is_the_decoded_photo(served):
  server, root = served
  status, headers, body = request(server, 'GET', '/api/image/b')
  assert status == 200 and headers['Content-Type'] == 'image/png'
  with Image.open(root / 'images' / 'b.png') as im:
    expected = np.asarray(im.convert('RGB'))
  np.testing.assert_array_equal(png_array(body), expected)


def test_scribbles_are_the_saved_ones_or_none(served):
  server, root = served
  status, headers, body = request(server, 'GET', '/api/scribbles/a')
  assert status == 200 and headers['X-Saved'] == '1'
  rgba = png_array(body)
  with Image.open(root / 'scribbles' / 'a.png') as im:
    np.testing.assert_array_equal(rgba[..., 0], np.asarray(im))
  assert np.all(rgba[..., 3] == 255)
  status, headers, body = request(server, 'GET', '/api/scribbles/c')
  assert status == 200 and headers['X-Saved'] == '0'
  assert np.all(png_array(body)[..., :3] == 255)


def test_solve_returns_the_overlay_of_the_sure_labels(served):
  server, root = served
  ids = stroke()
  status, headers, body = request(server, 'POST', '/api/solve/a?seq=1',
                                  ids_png(ids))
  assert status == 200 and headers['X-Seq'] == '1'
  assert float(headers['X-Solve-Seconds']) > 0
  overlay = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
  overlay = cv2.cvtColor(overlay, cv2.COLOR_BGRA2RGBA)
  image = np.asarray(Image.open(root / 'images' / 'a.jpg').convert('RGB'))
  expected = teacher.overlay_rgba(teacher.solve(
      image, ids, 3, teacher.Settings(), max_pixels=srv.PREVIEW_PIXELS
  ).labels)
  np.testing.assert_array_equal(overlay, expected)
  # Scribbled pixels keep their class: rust's colour on the first stroke.
  assert overlay[6, 5, :3].tolist() == visualize.palette(2)[1].tolist()
  # The page's encoding, one byte a pixel: the same overlay.
  status, headers, raw = request(server, 'POST', '/api/solve/a?seq=2',
                                 ids.tobytes(),
                                 {'Content-Type': srv.RAW_IDS})
  assert status == 200 and headers['X-Seq'] == '2' and raw == body
  # An older stroke than one already solved is superseded.
  status, headers, _ = request(server, 'POST', '/api/solve/a?seq=1',
                               ids_png(ids))
  assert status == 204 and headers['X-Superseded'] == '1'


def test_a_newer_stroke_supersedes_an_older_solve(served, monkeypatch):
  server, root = served
  real, calls = teacher.solve, []

  def slow(image, ids, *args, **kw):
    calls.append(int(np.sum(ids != 255)))
    time.sleep(0.4)
    return real(image, ids, *args, **kw)

  monkeypatch.setattr(teacher, 'solve', slow)
  results = {}

  def send(seq, ids):
    results[seq] = request(server, 'POST', f'/api/solve/b?seq={seq}',
                           ids_png(ids))

  first = threading.Thread(target=send, args=(10, stroke()))
  first.start()
  time.sleep(0.15)  # the worker is solving seq 10
  middle = threading.Thread(target=send, args=(11, stroke(2)))
  middle.start()
  time.sleep(0.1)
  last_ids = stroke(2, 1)
  last_ids[0, 0] = 0
  send(12, last_ids)
  first.join()
  middle.join()
  # 10's answer is dropped once 11 arrives (its solve, already running,
  # finishes); 11 is never solved: 12 came before its turn.
  assert [results[s][0] for s in (10, 11, 12)] == [204, 204, 200]
  assert results[12][1]['X-Seq'] == '12'
  assert calls == [int(np.sum(stroke() != 255)),
                   int(np.sum(last_ids != 255))]


def test_save_writes_a_palette_png_atomically_and_nothing_else(served):
  server, root = served
  before = snapshot(root)
  ids = stroke(2, 0)
  status, _, body = request(server, 'POST', '/api/save/c', ids_png(ids))
  assert status == 200
  assert json.loads(body) == {'saved': 'scribbles/c.png',
                              'labelled': int(np.sum(ids != 255))}
  with Image.open(root / 'scribbles' / 'c.png') as im:
    assert im.mode == 'P'
    np.testing.assert_array_equal(np.asarray(im), ids)
  after = snapshot(root)
  assert set(after) - set(before) == {os.path.join('scribbles', 'c.png')}
  assert {k: v for k, v in after.items() if k in before} == before
  # A grey PNG upload (as other tools write) is accepted too.
  grey = cv2.imencode('.png', stroke(1, 1))[1].tobytes()
  assert request(server, 'POST', '/api/save/c', grey)[0] == 200
  assert request(server, 'GET', '/api/folder')[2].count(b'"saved": true') == 3


def test_add_class(served):
  server, root = served
  status, _, body = request(server, 'POST', '/api/classes',
                            json.dumps({'name': ' mud '}).encode(),
                            {'Content-Type': 'application/json'})
  assert status == 200
  assert json.loads(body)['classes'] == ['background', 'rust', 'paint', 'mud']
  assert (root / 'classes.txt').read_text() == 'background\nrust\npaint\nmud\n'
  ids = stroke(3, 0)  # the new id is accepted now
  assert request(server, 'POST', '/api/save/a', ids_png(ids))[0] == 200


BAD_CLASSES = [
    ({'name': 'rust'}, 409, "class 'rust' exists already (id 1)"),
    ({'name': 'two\nlines'}, 400, 'printable characters on one line'),
    ({'name': ''}, 400, 'a class name is 1-40'),
    ({'name': 'x' * 41}, 400, 'a class name is 1-40'),
    ({'name': 3}, 400, 'must be a string'),
    ('not json', 400, 'the body must be JSON'),
]


@pytest.mark.parametrize('body,status,message', BAD_CLASSES)
def test_bad_class_is_refused_and_writes_nothing(served, body, status,
                                                 message):
  server, root = served
  before = snapshot(root)
  data = (json.dumps(body) if not isinstance(body, str) else body).encode()
  got, _, reply = request(server, 'POST', '/api/classes', data)
  assert got == status and message in json.loads(reply)['error']
  assert snapshot(root) == before


def _jpeg():
  return cv2.imencode('.jpg', np.zeros((H, W, 3), np.uint8))[1].tobytes()


def _rgba(alpha=255, green_differs=False):
  rgba = np.full((H, W, 4), 255, np.uint8)
  rgba[..., 3] = alpha
  if green_differs:
    rgba[0, 0, 1] = 7
  return cv2.imencode('.png', rgba)[1].tobytes()


# (method, path, body, extra headers, status, message); each is tried where
# it applies, and none may write a file.
BAD_REQUESTS = {
    'encoded traversal': ('GET', '/api/image/..%2F..%2Fetc%2Fpasswd', None,
                          {}, 403, 'leads outside the folder'),
    'dot-dot segments': ('GET', '/api/image/../../etc/passwd', None, {}, 403,
                         'leads outside the folder'),
    'dot-dot at the root': ('GET', '/../classes.txt', None, {}, 403,
                            'leads outside the folder'),
    'encoded dots': ('GET', '/api/scribbles/%2e%2e', None, {}, 403,
                     'leads outside the folder'),
    'backslash': ('GET', '/api/image/..%5C..%5Cwin.ini', None, {}, 403,
                  'leads outside the folder'),
    'absolute path': ('GET', '/api/image//etc/passwd', None, {}, 403,
                      'refused'),
    'absolute URL': ('GET', 'http://example.org/api/folder', None, {}, 400,
                     'absolute URLs are refused'),
    'NUL': ('GET', '/api/image/a%00.png', None, {}, 403,
            'leads outside the folder'),
    'not UTF-8': ('GET', '/api/image/%ff', None, {}, 400, 'not valid UTF-8'),
    'a file of the folder by path': ('GET', '/classes.txt', None, {}, 404,
                                     'not found: /classes.txt'),
    'image linked outside': ('GET', '/api/image/evil', None, {}, 403,
                             'images/evil: leads outside the folder'),
    'scribbles linked outside': ('GET', '/api/scribbles/b', None, {}, 403,
                                 'scribbles/b.png: leads outside the folder'),
    'unknown image': ('GET', '/api/image/zzz', None, {}, 404,
                      "no image named 'zzz'"),
    'unknown route': ('GET', '/api/nothing', None, {}, 404, 'not found'),
    'wrong method': ('GET', '/api/save/a', None, {}, 405,
                     'GET is not allowed'),
    'PUT': ('PUT', '/api/save/a', b'x', {}, 405, 'PUT is not allowed'),
    'foreign Host': ('GET', '/api/folder', None, {'Host': 'evil.example:80'},
                     403, "Host 'evil.example:80' refused"),
    'save: wrong size': ('POST', '/api/save/a', 'small', {}, 400,
                         'the scribbles are 10x12 but the image is 20x24'),
    'save: unknown class id': ('POST', '/api/save/a', 'class7', {}, 400,
                               'unknown class ids [7]'),
    'save: not a PNG': ('POST', '/api/save/a', 'jpeg', {}, 415,
                        'must be a PNG'),
    'save: text': ('POST', '/api/save/a', b'hello', {}, 415, 'must be a PNG'),
    'save: truncated PNG': ('POST', '/api/save/a', 'truncated', {}, 400,
                            'not a readable PNG'),
    'save: colour PNG': ('POST', '/api/save/a', 'colour', {}, 400,
                         'R = G = B'),
    'save: transparent PNG': ('POST', '/api/save/a', 'transparent', {}, 400,
                              'opaque'),
    'save: oversized body': ('POST', '/api/save/a', b'',
                             {'Content-Length': str(srv.MAX_BODY + 1)}, 413,
                             'at most'),
    'save: no length': ('POST', '/api/save/a', None, {}, 411,
                        'Content-Length header is required'),
    'save: no page header': ('POST', '/api/save/a', 'good',
                             {'X-Annotate': None}, 403, 'X-Annotate: 1'),
    'save: foreign Origin': ('POST', '/api/save/a', 'good',
                             {'Origin': 'http://evil.example'}, 403,
                             "Origin 'http://evil.example' refused"),
    'save: unknown image': ('POST', '/api/save/zzz', 'good', {}, 404,
                            "no image named 'zzz'"),
    'save: linked image': ('POST', '/api/save/evil', 'good', {}, 403,
                           'leads outside the folder'),
    'save: traversal': ('POST', '/api/save/..%2Fimages%2Fa', 'good', {}, 403,
                        'leads outside the folder'),
    'solve: wrong size': ('POST', '/api/solve/a?seq=1', 'small', {}, 400,
                          'the scribbles are 10x12'),
    'solve: unknown class id': ('POST', '/api/solve/a?seq=1', 'class7', {},
                                400, 'unknown class ids [7]'),
    'solve: not a PNG': ('POST', '/api/solve/a?seq=1', 'jpeg', {}, 415,
                         'must be a PNG'),
    'solve: oversized body': ('POST', '/api/solve/a?seq=1', b'',
                              {'Content-Length': str(srv.MAX_BODY + 1)}, 413,
                              'at most'),
    'solve: raw, wrong length': ('POST', '/api/solve/a?seq=1', b'\xff' * 99,
                                 {'Content-Type': srv.RAW_IDS}, 400,
                                 'the scribbles are 99 bytes but the image '
                                 'is 20x24 (480 bytes'),
    'solve: raw, unknown class id': ('POST', '/api/solve/a?seq=1',
                                     b'\x09' * (H * W),
                                     {'Content-Type': srv.RAW_IDS}, 400,
                                     'unknown class ids [9]'),
    'save: raw bytes': ('POST', '/api/save/a', b'\xff' * (H * W),
                        {'Content-Type': srv.RAW_IDS}, 415, 'must be a PNG'),
    'solve: bad seq': ('POST', '/api/solve/a?seq=x', 'good', {}, 400,
                       'seq must be an integer'),
    'classes: oversized body': ('POST', '/api/classes', b'',
                                {'Content-Length': str(srv.MAX_BODY + 1)},
                                413, 'at most'),
}


def _body(kind):
  if not isinstance(kind, str):
    return kind
  ids = np.full((H, W), 255, np.uint8)
  return {
      'good': lambda: ids_png(ids),
      'small': lambda: ids_png(np.full((12, 10), 255, np.uint8)),
      'class7': lambda: ids_png(np.where(stroke() == 1, 7, 255)),
      'jpeg': _jpeg,
      'truncated': lambda: ids_png(stroke())[:40],
      'colour': lambda: _rgba(green_differs=True),
      'transparent': lambda: _rgba(alpha=0),
  }[kind]()


@pytest.mark.parametrize('case', sorted(BAD_REQUESTS))
def test_bad_request_is_refused_with_a_message_and_writes_nothing(served,
                                                                  case):
  server, root = served
  method, path, body, headers, status, message = BAD_REQUESTS[case]
  before = snapshot(root)
  beside = snapshot(root.parent)
  got, reply_headers, reply = request(server, method, path, _body(body),
                                      headers, host=headers.get('Host'))
  assert got == status, (got, reply)
  assert message in json.loads(reply)['error'], reply
  assert snapshot(root) == before
  assert snapshot(root.parent) == beside  # nothing beside the folder either


def test_two_saves_at_once_leave_one_whole_file(served):
  server, root = served
  maps = [stroke(1, 0), stroke(2, 1)]
  bodies = [ids_png(m) for m in maps]
  for _ in range(6):
    codes = []
    threads = [threading.Thread(target=lambda b=b: codes.append(
        request(server, 'POST', '/api/save/c', b)[0])) for b in bodies]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    assert codes == [200, 200]
    with Image.open(root / 'scribbles' / 'c.png') as im:
      saved = np.asarray(im)
    assert any(np.array_equal(saved, m) for m in maps)
  assert not [f for f in os.listdir(root / 'scribbles')
              if f.startswith(srv.TMP_PREFIX)]


KILLED_SERVER = r'''
import os, signal, sys
from cfcls.data import annotation_server as srv
def kill(src, dst):  # the process dies between writing and renaming
  os.kill(os.getpid(), signal.SIGKILL)
srv.os.replace = kill
server = srv.make_server(sys.argv[1], port=0)
print(server.server_address[1], flush=True)
server.serve_forever()
'''


def test_a_server_killed_mid_save_leaves_the_previous_file(tmp_path):
  root = _folder(tmp_path / 'site')
  target = root / 'scribbles' / 'a.png'
  previous = target.read_bytes()
  env = dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES='')
  proc = subprocess.Popen([sys.executable, '-c', KILLED_SERVER, str(root)],
                          stdout=subprocess.PIPE, env=env, text=True)
  try:
    port = int(proc.stdout.readline())
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
    body = ids_png(stroke())
    conn.request('POST', '/api/save/a', body, {'X-Annotate': '1'})
    with pytest.raises((ConnectionError, http.client.HTTPException)):
      conn.getresponse()
    assert proc.wait(timeout=30) == -signal.SIGKILL
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.stdout.close()
  assert target.read_bytes() == previous  # the previous file, whole
  stale = [f for f in os.listdir(root / 'scribbles')
           if f.startswith(srv.TMP_PREFIX)]
  assert len(stale) == 1  # the half-done save's temporary file...
  server = srv.make_server(str(root), port=0)  # ...removed by the next start
  server.server_close()
  assert not [f for f in os.listdir(root / 'scribbles')
              if f.startswith(srv.TMP_PREFIX)]


def test_command_line_binds_to_loopback_and_warns_when_told_otherwise(
    tmp_path, capsys):
  root = _folder(tmp_path / 'site')
  before = snapshot(root)
  annotate = data_fixtures.data_prep_script('annotate')
  server = annotate.main([str(root), '--port', '0'], serve=False)
  try:
    assert server.server_address[0] == '127.0.0.1'
  finally:
    server.server_close()
  out = capsys.readouterr()
  assert 'open http://127.0.0.1:' in out.out and 'warning' not in out.err
  server = annotate.main([str(root), '--port', '0', '--host', '0.0.0.0'],
                         serve=False)
  server.server_close()
  err = capsys.readouterr().err
  assert 'warning: listening on 0.0.0.0, not 127.0.0.1' in err
  for argv, message in (
      ([str(tmp_path / 'nowhere')], 'no such folder'),
      ([str(tmp_path)], 'classes.txt: missing file'),
  ):
    with pytest.raises(SystemExit) as e:
      annotate.main(argv + ['--port', '0'], serve=False)
    assert message in str(e.value)
  with pytest.raises(SystemExit):
    annotate.main([str(root), '--port', '70000'], serve=False)
  assert '--port 70000: not a port number' in capsys.readouterr().err
  # --set changes the teacher the page shows; a typo is refused by name.
  server = annotate.main([str(root), '--port', '0', '--set',
                          'target_margin=0.35', '--set',
                          'target_threshold=0.55'], serve=False)
  server.server_close()
  settings = server.app.settings
  assert (settings.threshold, settings.margin) == (0.55, 0.35)
  with pytest.raises(SystemExit):
    annotate.main([str(root), '--port', '0', '--set', 'target_margn=0.3'],
                  serve=False)
  assert "--set target_margn: the config has no field 'target_margn'" in (
      capsys.readouterr().err)
  assert snapshot(root) == before  # starting and stopping write nothing


def test_preview_gets_coarser_while_solves_are_slow_and_finer_again():
  """SolveWorker's preview factor at 500x375 (finest 2 at 50k pixels, 0.3 s
  budget); a size's first solve at a factor (the solver's plan) is left
  out."""
  worker = srv.SolveWorker.__new__(srv.SolveWorker)  # no thread needed
  worker.max_pixels, worker.budget = 50_000, 0.3
  worker._factor, worker._seen = {}, set()
  shape = (375, 500)
  factors = []
  for factor_seconds in ((2, 0.5), (2, 0.5), (3, 0.1), (3, 0.1), (3, 0.05),
                         (2, 0.2)):
    assert worker._preview_factor(shape) == factor_seconds[0]
    worker._adapt(shape, *factor_seconds)
    factors.append(worker._preview_factor(shape))
  # 0.5 s twice at 1/2 (the first is the plan's): coarser. 0.1 s at 1/3
  # predicts 0.34 s at 1/2: stay. 0.05 s predicts 0.17 s: finer again.
  assert factors == [2, 3, 3, 3, 2, 2]
  worker.budget = 0  # 0: always the finest
  worker._adapt(shape, 2, 5.0)
  assert worker._preview_factor(shape) == 2


def test_opens_a_folder_imported_from_labelme_with_its_scribbles(tmp_path):
  """import_scribbles' output opens as it is: its strokes come back as the
  page's ids, and saving them again changes no pixel."""
  import test_importers as ti  # pylint: disable=g-import-not-at-top
  from cfcls.data import importers  # pylint: disable=g-import-not-at-top
  _, expected = ti._labelme_a(str(tmp_path / 'ann' / 'a.json'))
  folder = tmp_path / 'site'
  importers.import_folder('labelme', str(tmp_path / 'ann'), str(folder))
  server = srv.make_server(str(folder), port=0)
  threading.Thread(target=server.serve_forever, args=(0.02,),
                   daemon=True).start()
  try:
    status, headers, body = request(server, 'GET', '/api/scribbles/a')
    assert status == 200 and headers['X-Saved'] == '1'
    ids = png_array(body)[..., 0]
    np.testing.assert_array_equal(ids, expected)
    assert request(server, 'POST', '/api/save/a', ids_png(ids))[0] == 200
  finally:
    server.shutdown()
    server.server_close()
  with Image.open(folder / 'scribbles' / 'a.png') as im:
    np.testing.assert_array_equal(np.asarray(im), expected)


def test_an_unreadable_photo_is_listed_not_fatal(tmp_path):
  root = _folder(tmp_path / 'site')
  (root / 'images' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
  server = srv.make_server(str(root), port=0)
  try:
    state = server.app.state()
    assert 'broken' not in [i['name'] for i in state['images']]
    assert state['unreadable'] == ['broken']
  finally:
    server.server_close()
  # A photo whose header reads but whose pixels do not: a message, not a
  # dropped connection (its overlay request included).
  good = cv2.imencode('.png', np.zeros((H, W, 3), np.uint8))[1].tobytes()
  (root / 'images' / 'cut.png').write_bytes(good[:60])
  server = srv.make_server(str(root), port=0)
  threading.Thread(target=server.serve_forever, args=(0.02,),
                   daemon=True).start()
  try:
    for method, path, body in (('GET', '/api/image/cut', None),
                               ('POST', '/api/solve/cut?seq=1',
                                ids_png(stroke()))):
      status, _, reply = request(server, method, path, body)
      assert status in (409, 500), (status, reply)
      assert 'cut' in json.loads(reply)['error']
  finally:
    server.shutdown()
    server.server_close()
