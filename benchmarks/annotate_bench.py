"""Stroke-to-overlay latency of the annotation page (data_prep/annotate.py).

  python benchmarks/annotate_bench.py [--sizes 320x480,375x500] [--strokes 15]
      [--pause 0.3] [--no-browser] [--no-full]
  python benchmarks/annotate_bench.py --screenshot docs/annotate.png

Sizes are HEIGHTxWIDTH (375x500 is a 500x375 VOC photo). Per size, one image
(scikit-image's coffee photo resized when scikit-image is installed, else a
synthetic demo scene) in a scribble folder with three classes, served by
`cfcls.data.annotation_server` in this process, and a sequence of seeded
strokes (3-point polylines, 5 px, classes in turn), each added to the
previous ones:

- browser (Debian's chromium through selenium, when present): each stroke is
  drawn on the page with the pointer; the time is the page's own, from the
  stroke's end (pointerup) to the overlay drawn on the canvas: the request,
  the solve on the server's worker, the answer decoded and drawn
  (window.annotate.timings). The next stroke starts
  --pause s after the overlay.
- http: the same strokes sent to /api/solve by this process as the page
  sends them (one byte a pixel, POST, the overlay PNG decoded), with the
  live preview (at most
  PREVIEW_PIXELS pixels) and with full=1 (the photo itself).

Prints the median and worst time per size and mode, the solve's own median,
and the load average before and after (other work on the machine slows it).
"""
from __future__ import annotations

import argparse
import http.client
import io
import itertools
import os
import shutil
import sys
import tempfile
import threading
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from cfcls.data import annotation_server as srv  # noqa: E402
from cfcls.data import scribbles as S  # noqa: E402
from cfcls.data import synthetic, teacher  # noqa: E402

CLASSES = ('background', 'cup', 'saucer')
WIDTH = 5
_LAST_SEQ = [0]


def next_seq():
  """Request numbers as the page makes them: the time in ms, increasing."""
  _LAST_SEQ[0] = max(_LAST_SEQ[0] + 1, int(time.time() * 1000))
  return _LAST_SEQ[0]


def photo(h, w):
  try:
    import skimage.data  # pylint: disable=g-import-not-at-top
    return cv2.resize(skimage.data.coffee(), (w, h),
                      interpolation=cv2.INTER_AREA), 'coffee'
  except ImportError:
    size = max(h, w)
    ex = synthetic.generate_example(0, 'validation', 0, size)
    return np.ascontiguousarray(ex['image'][:h, :w]), 'demo scene'


def make_folder(root, h, w):
  os.makedirs(os.path.join(root, 'images'))
  image, source = photo(h, w)
  cv2.imwrite(os.path.join(root, 'images', 'photo.png'), image[..., ::-1])
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('\n'.join(CLASSES) + '\n')
  return source


def strokes(h, w, n, seed=0):
  """n seeded strokes: (class, [3 points (x, y)]) inside the image."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    start = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])
    pts = [start]
    for _ in range(2):
      pts.append(np.clip(pts[-1] + rng.normal(0, 0.08 * min(h, w), 2),
                         [2, 2], [w - 3, h - 3]))
    out.append((i % len(CLASSES), np.rint(pts).astype(int)))
  return out


BUDGET = [srv.PREVIEW_SECONDS]  # --preview-seconds


def serve(folder, max_pixels, check_radius=teacher.Settings.check_radius):
  settings = teacher.Settings(check_radius=check_radius)
  server = srv.make_server(folder, port=0, settings=settings,
                           max_pixels=max_pixels, budget=BUDGET[0])
  threading.Thread(target=server.serve_forever, args=(0.05,),
                   daemon=True).start()
  return server


def http_latency(server, h, w, plan, full, pause):
  port = server.server_address[1]
  ids = np.full((h, w), 255, np.uint8)
  times, solves, factors = [], [], []
  for cls, pts in plan:
    seq = next_seq()
    S.draw_polyline(ids, pts, cls, WIDTH)
    start = time.perf_counter()
    body = ids.tobytes()  # as the page sends them
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=300)
    conn.request('POST', f'/api/solve/photo?seq={seq}'
                 + ('&full=1' if full else ''), body,
                 {'X-Annotate': '1', 'Content-Type': srv.RAW_IDS})
    resp = conn.getresponse()
    data = resp.read()
    assert resp.status == 200, (resp.status, data[:200])
    overlay = cv2.imdecode(np.frombuffer(data, np.uint8),
                           cv2.IMREAD_UNCHANGED)
    assert overlay.shape[:2] == (h, w)
    times.append(time.perf_counter() - start)
    solves.append(float(resp.getheader('X-Solve-Seconds')))
    factors.append(int(resp.getheader('X-Factor')))
    conn.close()
    time.sleep(pause)
  return times, solves, factors


def browser_latency(server, h, w, plan, pause):
  import test_annotate_browser as tb  # pylint: disable=g-import-not-at-top
  profile = tempfile.mkdtemp(prefix='annotate_bench_chromium_')
  driver = tb.browser(profile)
  try:
    driver.set_window_size(1000 if w <= 520 else w + 300, max(700, h + 60))
    driver.get(f'http://127.0.0.1:{server.server_address[1]}/')
    tb.wait_for(driver, 'return window.annotate.ready && '
                'window.annotate.timings.length >= 1')
    rect = driver.execute_script(
        'const r = document.getElementById("draw").getBoundingClientRect();'
        'return {left: r.left, top: r.top, width: r.width, height: r.height}')
    body = driver.find_element('tag name', 'body')
    seqs = []
    for cls, pts in plan:
      body.send_keys(str(cls))
      drag_polyline(driver, rect, (h, w), pts)
      seq = tb.wait_for(driver, 'return window.annotate.seq')
      tb.wait_for(driver, 'const a = window.annotate; '
                  f'return a.overlaySeq === {seq}', timeout=300)
      seqs.append(seq)
      time.sleep(pause)
    timings = driver.execute_script('return window.annotate.timings')
  finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
  by_seq = {t['seq']: t for t in timings}
  got = [by_seq[s] for s in seqs if s in by_seq]
  print('  browser parts (median ms): request %.0f, of which solve %.0f'
        % (np.median([t['request'] for t in got]),
           1000 * np.median([t['solve'] for t in got])))
  return ([t['ms'] / 1000 for t in got], [t['solve'] for t in got],
          [t['factor'] for t in got])


# Strokes for the README's screenshot, on the coffee photo at 500x375.
SCREENSHOT_STROKES = (
    (1, [(180, 130), (240, 120), (300, 130)]),                  # cup
    (1, [(160, 90), (200, 40), (280, 35), (330, 70)]),
    (1, [(190, 200), (250, 215), (300, 200)]),
    (2, [(85, 200), (95, 270), (140, 320)]),                    # saucer
    (2, [(180, 330), (260, 345), (330, 330)]),
    (2, [(370, 200), (375, 160)]),
    (0, [(20, 300), (30, 200), (40, 120)]),                     # background
    (0, [(440, 330), (470, 250)]),
    (0, [(420, 60), (470, 30)]),
    (0, [(30, 30), (90, 20)]),
)


def screenshot(path, pause=0.2):
  """The page after SCREENSHOT_STROKES on the coffee photo, saved to path."""
  import test_annotate_browser as tb  # pylint: disable=g-import-not-at-top
  h, w = 375, 500
  with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.join(tmp, 'coffee')
    make_folder(folder, h, w)
    server = serve(folder, srv.PREVIEW_PIXELS)
    driver = tb.browser(os.path.join(tmp, 'chromium'))
    try:
      driver.set_window_size(790, 690)
      driver.get(f'http://127.0.0.1:{server.server_address[1]}/')
      tb.wait_for(driver, 'return window.annotate.ready && '
                  'window.annotate.timings.length >= 1')
      rect = driver.execute_script(
          'const r = document.getElementById("draw").getBoundingClientRect();'
          'return {left: r.left, top: r.top, width: r.width, '
          'height: r.height}')
      body = driver.find_element('tag name', 'body')
      for cls, pts in SCREENSHOT_STROKES:
        body.send_keys(str(cls))
        drag_polyline(driver, rect, (h, w), np.array(pts, float))
        seq = tb.wait_for(driver, 'return window.annotate.seq')
        tb.wait_for(driver, 'const a = window.annotate; '
                    f'return a.overlaySeq === {seq}', timeout=300)
        time.sleep(pause)
      body.send_keys('1')
      png = driver.get_screenshot_as_png()
    finally:
      driver.quit()
      server.shutdown()
      server.server_close()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(png)) as im:  # 256 colours: a third the bytes
    im.convert('RGB').quantize(256, dither=Image.Dither.NONE).save(
        path, optimize=True)
  return path


def drag_polyline(driver, rect, size, pts):
  from selenium.webdriver.common.action_chains import ActionChains  # pylint: disable=g-import-not-at-top
  h, w = size

  def client(p):
    return (int(round(rect['left'] + (p[0] + 0.5) * rect['width'] / w)),
            int(round(rect['top'] + (p[1] + 0.5) * rect['height'] / h)))

  actions = ActionChains(driver, duration=20)
  pointer = actions.w3c_actions.pointer_action
  pointer.move_to_location(*client(pts[0]))
  pointer.pointer_down()
  for a, b in zip(pts[:-1], pts[1:]):
    for t in (0.25, 0.5, 0.75, 1.0):
      pointer.move_to_location(*client(a + t * (b - a)))
  pointer.pointer_up()
  actions.perform()


def summary(times, solves, factors):
  t = np.asarray(times)
  used = ', '.join(f'1/{f} x{factors.count(f)}' for f in sorted(set(factors)))
  return (f'median {np.median(t):.3f} s, worst {t.max():.3f} s (n={t.size}); '
          f'solve median {np.median(solves):.3f} s; solved at {used}')


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--sizes', default='320x480,375x500')
  p.add_argument('--strokes', type=int, default=15)
  p.add_argument('--pause', type=float, default=0.3,
                 help='seconds between an overlay and the next stroke')
  p.add_argument('--preview-pixels', type=int, default=srv.PREVIEW_PIXELS)
  p.add_argument('--preview-seconds', type=float,
                 default=srv.PREVIEW_SECONDS,
                 help='the server\'s time budget per preview solve (0: '
                 'always the finest preview)')
  p.add_argument('--check-radius', default=str(
      teacher.Settings.check_radius),
                 help='the teacher\'s data.targets.check_radius; a comma '
                 'list (e.g. 2,0) measures each in turn, the same strokes')
  p.add_argument('--no-browser', action='store_true')
  p.add_argument('--no-full', action='store_true',
                 help='skip the full-resolution http pass')
  p.add_argument('--screenshot', default=None,
                 help='only save a screenshot of the page (coffee, 500x375, '
                 'a few strokes of each class) to this PNG')
  a = p.parse_args(argv)
  browser = (not a.no_browser and shutil.which('chromium')
             and shutil.which('chromedriver'))
  if a.screenshot:
    print(f'screenshot: {screenshot(a.screenshot)}')
    return
  BUDGET[0] = a.preview_seconds
  print(f'load average before: {os.getloadavg()[0]:.2f} '
        f'({os.cpu_count()} CPUs); preview at most {a.preview_pixels} px, '
        f'coarser while a solve takes over {a.preview_seconds} s')
  sizes = [tuple(int(v) for v in s.split('x')) for s in a.sizes.split(',')]
  checks = [int(v) for v in a.check_radius.split(',')]
  for (h, w), check in itertools.product(sizes, checks):
    with tempfile.TemporaryDirectory() as tmp:
      folder = os.path.join(tmp, f'bench_{h}x{w}')
      source = make_folder(folder, h, w)
      plan = strokes(h, w, a.strokes)
      server = serve(folder, a.preview_pixels, check)
      try:
        # Warm-up: jax, the solver's plans for this size, and the preview
        # size settling (SolveWorker) on three strokes.
        warm = http_latency(server, h, w, plan[:3], False, 0)
        if not a.no_full:
          http_latency(server, h, w, plan[:1], True, 0)
        print(f'{h}x{w} ({source}), check radius {check}, {a.strokes} '
              'strokes (warm-up solves '
              f'{", ".join(f"{t:.2f}" for t in warm[1])} s):')
        if browser:
          got = browser_latency(server, h, w, plan, a.pause)
          print(f'  browser, preview: stroke to overlay {summary(*got)}')
        got = http_latency(server, h, w, plan, False, a.pause)
        print(f'  http, preview: {summary(*got)}')
        if not a.no_full:
          got = http_latency(server, h, w, plan, True, a.pause)
          print(f'  http, full size: {summary(*got)}')
      finally:
        server.shutdown()
        server.server_close()
  print(f'load average after: {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  main()
