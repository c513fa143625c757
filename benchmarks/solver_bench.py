"""Closed-form matting solve: cfcls's default call vs scipy's direct solve and pymatting.

For photo-like images with sparse strokes (tests/matting_scenes.py: flat
saturated sky, thin wire and pole, flat grey block, textured objects, ~1% of
pixels scribbled), in one process:
  * scipy's SuperLU on the assembled system, all classes: with the minimum
    degree ordering (the reference: `solve_alpha_direct`'s default), with
    our nested dissection (`ordering='nested_dissection'`) and with COLAMD;
  * `solver.solve_alpha` with default arguments (at these sizes the direct
    method, cfcls/matting/multifrontal.py; the median of 3 warm calls): time, max
    |alpha - reference| and info['error_estimate']; the same call with the
    compiled kernels on one thread, and without numba (NumPy loops); with --iterative also method='iterative' (jit,
    compile excluded) with its CG iterations;
  * pymatting's `estimate_alpha_cf` (ichol-preconditioned CG, hard
    constraints) per class, if pymatting is installed (it is not in
    requirements.txt: `pip install pymatting`): time per class, and its max
    difference to a tight (rtol 1e-12) run of itself.
and prints the ratios, and the factorisation's flops against this core's
matrix-product rate (the least time the factorisation can take).
Optionally scikit-image's photos with random strokes (--photos) and one
large image (--large, e.g. 1024x2048
with 9 classes): time and peak resident memory of the default call.

Run from the repository root:
  python benchmarks/solver_bench.py                  # 321x321 and 480x640
  python benchmarks/solver_bench.py --sizes 321x321 --skip-pymatting
  python benchmarks/solver_bench.py --sizes none --large 1024x2048
  python benchmarks/solver_bench.py --sizes none --coffee 160x240,320x480
  python benchmarks/solver_bench.py --sizes none --photos 320
"""
import argparse
import os
import resource
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

import jax  # noqa: E402

from cfcls.matting import direct_kernels  # noqa: E402
from cfcls.matting import solver  # noqa: E402
from cfcls.matting import multifrontal  # noqa: E402
import matting_scenes  # noqa: E402


def _size(text):
  h, w = text.split('x')
  return int(h), int(w)


def _ours(image, scribbles, num_classes, repeats=3, **kwargs):
  """(median seconds of `repeats` warm calls, alpha, info)."""
  run = lambda: solver.solve_alpha(image[None], scribbles[None], num_classes,
                                    **kwargs)
  jax.block_until_ready(run()[0])  # compile for this size, plan the grid
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    alpha, info = run()
    alpha = np.asarray(jax.block_until_ready(alpha))[0]
    times.append(time.perf_counter() - start)
  return float(np.median(times)), alpha, info


def _backends(image, scribbles, num_classes, t_ref, t_ours):
  """The default call with the compiled kernels on one thread, and with
  no compiled kernel at all (as without numba: the stencil, the plan's
  fronts, the factorisation and the solves in NumPy), in this process."""
  rows = (('compiled, one thread', 'auto', 1, True),
          ('without numba (NumPy loops)', 'numpy', 1, False))
  for name, backend, threads, compiled in rows:
    saved = (multifrontal.BACKEND, direct_kernels.THREADS,
             direct_kernels.available)
    multifrontal.BACKEND, direct_kernels.THREADS = backend, threads
    if not compiled:
      direct_kernels.available = lambda: False
    try:
      t, _, _ = _ours(image, scribbles, num_classes)
    finally:
      (multifrontal.BACKEND, direct_kernels.THREADS,
       direct_kernels.available) = saved
    print(f'  default call, {name}: {t:.2f} s ({t_ref / t:.1f}x the '
          f'reference; the default is {t / t_ours:.2f}x faster)')


def _pymatting(image, scribbles, num_classes):
  """Seconds per class and max |alpha - tight alpha| over classes, or None."""
  try:
    from pymatting.alpha.estimate_alpha_cf import estimate_alpha_cf
  except ImportError:
    print('pymatting is not installed (pip install pymatting): skipped')
    return None
  image = image.astype(np.float64)
  times, errs = [], []
  for c in range(1, num_classes):
    trimap = np.full(scribbles.shape, 0.5)
    trimap[scribbles != 255] = 0.0
    trimap[scribbles == c] = 1.0
    if c == 1:  # warm-up (numba compiles)
      estimate_alpha_cf(image, trimap)
    start = time.perf_counter()
    alpha = estimate_alpha_cf(image, trimap)
    times.append(time.perf_counter() - start)
    tight = estimate_alpha_cf(image, trimap, cg_kwargs={'rtol': 1e-12})
    errs.append(np.abs(alpha - tight).max())
  return float(np.mean(times)), float(np.max(errs))


def _dgemm_rate():
  """Flop/s of a 1000x1000 float64 matrix product on one BLAS thread (the
  best of 3): the fastest any dense kernel of the factorisation runs."""
  a = np.random.default_rng(0).random((1000, 1000))
  with multifrontal._one_blas_thread():  # pylint: disable=protected-access
    best = np.inf
    for _ in range(3):
      start = time.perf_counter()
      a @ a
      best = min(best, time.perf_counter() - start)
  return 2e9 / best


def _floor(h, w, t_ours):
  """The factorisation's flops against this core's dgemm rate."""
  flops = multifrontal.factor_flops(h, w, 2)
  rate = _dgemm_rate()
  print(f'  factorisation {flops / 1e9:.2f} Gflop (multifrontal.factor_flops)'
        f': at least {flops / rate:.2f} s at this core\'s dgemm rate '
        f'({rate / 1e9:.0f} Gflop/s, one thread); the whole default call '
        f'took {t_ours:.2f} s')


def _direct(image, scribbles, num_classes, ordering):
  start = time.perf_counter()
  out = solver.solve_alpha_direct(image, scribbles, num_classes,
                                   ordering=ordering)
  return time.perf_counter() - start, out


def compare(h, w, num_classes, skip_pymatting, iterative):
  image, scribbles = matting_scenes.photo_like_scene(h, w, num_classes)
  print(f'{h}x{w}, {num_classes - 1} mattes, '
        f'{100 * np.mean(scribbles != 255):.2f}% pixels scribbled')
  solver.solve_alpha_direct(image[:8, :8], scribbles[:8, :8], num_classes)
  # The reference: scipy's SuperLU with solve_alpha_direct's default
  # ordering (minimum degree, partial pivoting).
  t_ref, ref = _direct(image, scribbles, num_classes, 'MMD_AT_PLUS_A')
  print(f'  scipy SuperLU, minimum degree (solve_alpha_direct, all '
        f'classes): {t_ref:.2f} s')
  for ordering in ('nested_dissection', 'COLAMD'):
    t, out = _direct(image, scribbles, num_classes, ordering)
    print(f'  scipy SuperLU, {ordering}: {t:.2f} s ({t_ref / t:.1f}x), max '
          f'difference {np.abs(out - ref).max():.1e}')
  t_ours, alpha, info = _ours(image, scribbles, num_classes)
  print(f'  cfcls default ({info["method"]}): {t_ours:.2f} s '
        f'({t_ref / t_ours:.1f}x vs minimum degree), max |alpha - direct| '
        f'{np.abs(alpha - ref).max():.1e}, error estimate '
        f'{info["error_estimate"].max():.1e}')
  _backends(image, scribbles, num_classes, t_ref, t_ours)
  _floor(h, w, t_ours)
  if iterative:
    t_it, alpha, info = _ours(image, scribbles, num_classes,
                              method='iterative')
    print(f'  cfcls iterative: {t_it:.2f} s ({t_ref / t_it:.1f}x), '
          f'{info["iterations"]} CG iterations, {info["refinements"]} '
          f'refinements, max |alpha - direct| {np.abs(alpha - ref).max():.1e}'
          f', error estimate {info["error_estimate"].max():.1e}')
  if not skip_pymatting:
    out = _pymatting(image, scribbles, num_classes)
    if out is not None:
      t_py, err_py = out
      print(f'  pymatting estimate_alpha_cf (ichol CG): {t_py:.2f} s per class'
            f' (max |alpha - tight| {err_py:.1e}); cfcls per class '
            f'{t_ours / (num_classes - 1):.2f} s '
            f'({t_py * (num_classes - 1) / t_ours:.1f}x)')


# Hand-drawn-style strokes on scikit-image's coffee photo (600x400 pixel
# coordinates): class -> polyline. 0 = background (the table top and wall).
COFFEE_STROKES = {0: [(20, 20), (580, 30)], 1: [(200, 120), (380, 140)],
                  2: [(260, 300), (330, 360)], 3: [(60, 420), (120, 480)],
                  4: [(470, 330), (560, 360)]}


def coffee(h, w):
  """The default call against the reference on a real photo (scikit-image)."""
  try:
    import skimage.data  # pylint: disable=g-import-not-at-top
  except ImportError:
    print('scikit-image is not installed (pip install scikit-image): skipped')
    return
  import cv2  # pylint: disable=g-import-not-at-top
  image = cv2.resize(skimage.data.coffee(), (w, h),
                     interpolation=cv2.INTER_AREA).astype(np.float32) / 255
  scribbles = np.full((h, w), 255, np.uint8)
  for c, points in COFFEE_STROKES.items():
    pts = np.array([(x * w / 600, y * h / 400) for x, y in points], np.int32)
    cv2.polylines(scribbles, [pts], False, int(c), thickness=5)
  num_classes = len(COFFEE_STROKES)
  solver.laplacian.sparse_laplacian(image)  # compile for this size
  t_ref, ref = _direct(image, scribbles, num_classes, 'MMD_AT_PLUS_A')
  t_ours, alpha, info = _ours(image, scribbles, num_classes)
  print(f'coffee {h}x{w}, {num_classes - 1} mattes, 5-px strokes: reference '
        f'{t_ref:.2f} s, default ({info["method"]}) {t_ours:.2f} s '
        f'({t_ref / t_ours:.1f}x), max |alpha - reference| '
        f'{np.abs(alpha - ref).max():.1e}, error estimate '
        f'{info["error_estimate"].max():.1e}')
  _backends(image, scribbles, num_classes, t_ref, t_ours)
  _floor(h, w, t_ours)


# scikit-image's photos for --photos. Left out: hubble_deep_field, on which
# the reference (SuperLU) took 573 s at 279x320 (cfcls 0.28 s).
PHOTOS = ('astronaut', 'camera', 'cat', 'chelsea', 'coffee', 'colorwheel',
          'immunohistochemistry', 'retina', 'rocket')


def photos(side, num_classes=5, seed=1):
  """The default call against the reference on scikit-image's photos (the
  longer side resized to `side`), each class two random 3-point strokes
  3-5 px wide: first call at the size, warm median, reference, ratio."""
  try:
    import skimage.data  # pylint: disable=g-import-not-at-top
  except ImportError:
    print('scikit-image is not installed (pip install scikit-image): skipped')
    return
  import cv2  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  ratios = []
  for name in PHOTOS:
    photo = getattr(skimage.data, name)()
    if photo.ndim == 2:
      photo = np.stack([photo] * 3, -1)
    scale = side / max(photo.shape[:2])
    h, w = round(photo.shape[0] * scale), round(photo.shape[1] * scale)
    image = cv2.resize(photo[..., :3], (w, h), interpolation=cv2.INTER_AREA)
    image = image.astype(np.float32) / 255
    scribbles = np.full((h, w), 255, np.uint8)
    for c in range(num_classes):
      for _ in range(2):
        points = np.stack([rng.integers(0, w, 3), rng.integers(0, h, 3)], -1)
        cv2.polylines(scribbles, [points.astype(np.int32)], False, c,
                      thickness=int(rng.integers(3, 6)))
    start = time.perf_counter()
    jax.block_until_ready(solver.solve_alpha(image[None], scribbles[None],
                                              num_classes)[0])
    t_first = time.perf_counter() - start
    t_ours, alpha, info = _ours(image, scribbles, num_classes)
    t_ref, ref = _direct(image, scribbles, num_classes, 'MMD_AT_PLUS_A')
    ratios.append(t_ref / t_ours)
    print(f'{name} {h}x{w}, {num_classes - 1} mattes: first call '
          f'{t_first:.2f} s, default {t_ours:.2f} s, reference {t_ref:.2f} s '
          f'({t_ref / t_ours:.1f}x), max |alpha - reference| '
          f'{np.abs(alpha - ref).max():.1e}, error estimate '
          f'{info["error_estimate"].max():.1e}')
  print(f'photos at {side} px: {min(ratios):.1f}x to {max(ratios):.1f}x, '
        f'median {np.median(ratios):.1f}x')


def large(h, w, num_classes, method):
  image, scribbles = matting_scenes.photo_like_scene(h, w, num_classes)
  start = time.perf_counter()
  alpha, info = solver.solve_alpha(image[None], scribbles[None], num_classes,
                                    method=method)
  jax.block_until_ready(alpha)
  elapsed = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
  print(f'{h}x{w}, {num_classes - 1} mattes: {elapsed:.1f} s incl. compile, '
        f'method {info["method"]}, {info["iterations"]} CG iterations, '
        f'{info["refinements"]} refinement steps, error estimate '
        f'{info["error_estimate"].max():.1e}, peak RSS {peak:.2f} GiB')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', default='321x321,480x640',
                      help="comma-separated HxW, or 'none'")
  parser.add_argument('--num-classes', type=int, default=7,
                      help='K incl. background: K-1 mattes (default 6)')
  parser.add_argument('--skip-pymatting', action='store_true')
  parser.add_argument('--iterative', action='store_true',
                      help="also time solve_alpha(method='iterative')")
  parser.add_argument('--coffee', default='',
                      help="comma-separated HxW of scikit-image's coffee "
                      'photo with hand-drawn-style strokes (e.g. 320x480)')
  parser.add_argument('--photos', type=int, default=0,
                      help="longer side of scikit-image's photos with random "
                      'strokes (e.g. 320; 0: none)')
  parser.add_argument('--large', default='',
                      help='HxW of one large image (e.g. 1024x2048)')
  parser.add_argument('--large-classes', type=int, default=10,
                      help='K of the large image (default 9 mattes)')
  parser.add_argument('--large-method', default='auto',
                      choices=solver.METHODS,
                      help="solve_alpha's method for --large")
  args = parser.parse_args()
  numba = (f'numba {direct_kernels.numba.__version__}'
           if direct_kernels.available() else 'no numba (NumPy loop)')
  print(f'jax {jax.__version__} on {jax.devices()[0].platform}, '
        f'{os.cpu_count()} cores, {numba}, solver threads '
        f'{direct_kernels.threads()}, {time.strftime("%Y-%m-%d")}')
  if args.sizes != 'none':
    for text in args.sizes.split(','):
      compare(*_size(text), args.num_classes, args.skip_pymatting,
              args.iterative)
  for text in filter(None, args.coffee.split(',')):
    coffee(*_size(text))
  if args.photos:
    photos(args.photos)
  if args.large:
    large(*_size(args.large), args.large_classes, args.large_method)


if __name__ == '__main__':
  main()
