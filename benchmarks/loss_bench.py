"""CFM loss value + gradient: cfcls (jit, matrix-free) vs the sparse CPU path.

(a) cfcls: jit-compiled value and gradient of `cfm_loss` w.r.t. the mattes,
    window statistics (`window_stats`) included, for the whole batch.
(b) the original method's sparse path done as fast as the CPU allows:
    pymatting's numba `cf_laplacian` per image, then A = L + lam D (D is the
    same for every class), the residuals A alpha_c - lam D S_c of all classes
    and the gradient 2 A^T r with scipy.

(a) is timed for each precision of the window statistics
(`window_stats(precision=...)`: the float64 island, the default, and the
float32-only path), with the window statistics alone and the loss value +
gradient, in the same process.

Run from the repository root:
  python benchmarks/loss_bench.py                 # 4 x 321x321, 6 mattes
  python benchmarks/loss_bench.py --size 161 --repeats 3   # quicker
  python benchmarks/loss_bench.py --skip-reference         # cfcls only
  python benchmarks/loss_bench.py --precisions float32     # one path only
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import scipy.sparse  # noqa: E402

from cfcls.matting import laplacian  # noqa: E402
from cfcls import losses  # noqa: E402


def photo_like_batch(batch: int, size: int, num_classes: int, seed: int = 0):
  """Smooth backgrounds with textured objects and scribbles, 8-bit quantised.

  Args:
    batch: number of images B.
    size: image side (H = W = size).
    num_classes: K including background; objects of classes 1..K-1.
    seed: random seed.

  Returns:
    images float32 [B, size, size, 3] in [0, 1] (multiples of 1/255) and
    scribbles int32 [B, size, size] (class ids, 255 = unlabelled), about 3%
    of the pixels labelled, every class scribbled in every image.
  """
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[0:size, 0:size] / size
  images = np.zeros((batch, size, size, 3))
  scribbles = np.full((batch, size, size), 255, np.int32)
  for b in range(batch):
    base = np.stack([0.3 + 0.4 * xs, 0.4 + 0.2 * np.sin(4 * ys + b),
                     0.5 - 0.3 * ys * xs], axis=-1)
    img = base.copy()
    labels = np.zeros((size, size), np.int32)
    for c in range(1, num_classes):
      cy, cx = rng.uniform(0.15, 0.85, 2)
      ry, rx = rng.uniform(0.06, 0.16, 2)
      inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1
      colour = rng.uniform(0.05, 0.95, 3)
      shade = 0.15 * np.sin(20 * (ys * rng.uniform(-1, 1) + xs))[..., None]
      img[inside] = np.clip(colour + shade[inside], 0, 1)
      labels[inside] = c
    img += 0.03 * rng.standard_normal(img.shape)
    images[b] = np.round(np.clip(img, 0, 1) * 255) / 255
    # Scribbles: a short horizontal stroke (3 px wide) through each object
    # and a few background strokes.
    for c in range(num_classes):
      yy, xx = np.nonzero(labels == c)
      if yy.size == 0:
        continue
      for _ in range(2 if c else 8):
        k = rng.integers(yy.size)
        y, x = yy[k], xx[k]
        row = slice(max(y - 1, 0), y + 2)
        cols = slice(max(x - size // 10, 0), x + size // 10)
        stroke = labels[row, cols] == c
        scribbles[b, row, cols] = np.where(stroke, c,
                                           scribbles[b, row, cols])
  return images.astype(np.float32), scribbles


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
  return float(np.median(times)), out


def make_ours(num_classes, lam, eps, precision='float64'):
  def loss_fn(alpha, images, scribbles):
    stats = laplacian.window_stats(images, eps=eps, precision=precision)
    return losses.cfm_loss(stats, alpha, scribbles, num_classes, lam=lam)[0]
  return jax.jit(jax.value_and_grad(loss_fn))


def make_stats(eps, precision):
  return jax.jit(lambda images: laplacian.window_stats(
      images, eps=eps, precision=precision).stencil)


def sparse_reference(images, alpha, scribbles, num_classes, lam, eps,
                     per_class=True):
  """(b): loss and gradient with pymatting's Laplacian and scipy.

  per_class=True follows the original code: A_c = L + lam D_c built and
  applied class by class. per_class=False builds A once per image (D_c is the
  same for every class) and multiplies all classes in one sparse product.
  """
  from pymatting import cf_laplacian  # benchmark-only dependency
  b, h, w, k1 = alpha.shape
  n = h * w
  loss = 0.0
  grad = np.empty(alpha.shape, np.float64)
  classes = np.arange(1, num_classes)
  for i in range(b):
    lmat = cf_laplacian(images[i].astype(np.float64), epsilon=eps, radius=1)
    labelled = (scribbles[i] != 255).ravel().astype(np.float64)
    targets = (scribbles[i].reshape(-1, 1) == classes[None, :])
    a = alpha[i].reshape(n, k1).astype(np.float64)
    gate = targets.any(axis=0)
    if per_class:
      for c in range(k1):
        a_mat = (lmat + lam * scipy.sparse.diags(labelled)).tocsr()
        res = a_mat @ a[:, c] - lam * labelled * targets[:, c]
        loss += gate[c] * float(res @ res) / n / b
        grad[i, ..., c] = (2.0 * gate[c] / (n * b) * (a_mat.T @ res)).reshape(
            h, w)
    else:
      a_mat = lmat + lam * scipy.sparse.diags(labelled)
      res = a_mat @ a - lam * labelled[:, None] * targets
      loss += float(np.sum(gate * np.sum(res * res, axis=0))) / n / b
      grad[i] = (2.0 / (n * b) * (a_mat.T @ (res * gate))).reshape(h, w, k1)
  return loss, grad


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--size', type=int, default=321)
  parser.add_argument('--num-classes', type=int, default=7,
                      help='K incl. background: K-1 mattes (default 6)')
  parser.add_argument('--lam', type=float, default=100.0)
  parser.add_argument('--eps', type=float, default=1e-7)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--skip-reference', action='store_true',
                      help='time only cfcls (no pymatting)')
  parser.add_argument('--precisions', default='float64,float32',
                      help='comma-separated window_stats precisions for (a); '
                      'the first is compared with (b)')
  args = parser.parse_args()
  precisions = args.precisions.split(',')

  images, scribbles = photo_like_batch(args.batch, args.size,
                                       args.num_classes)
  rng = np.random.default_rng(1)
  k1 = args.num_classes - 1
  alpha = rng.uniform(0, 1, images.shape[:3] + (k1,)).astype(np.float32)
  print(f'batch {args.batch} x {args.size}x{args.size}, {k1} mattes, '
        f'lam {args.lam}, eps {args.eps}, jax {jax.__version__} on '
        f'{jax.devices()[0].platform} ({len(jax.devices())} devices), '
        f'{os.cpu_count()} CPUs')

  inputs = [jnp.asarray(x) for x in (alpha, images, scribbles)]
  # Compile everything first, then time the precisions interleaved, so
  # that a shared machine's load changes hit them alike.
  fns, compile_s = {}, {}
  for precision in precisions:
    stats_fn = make_stats(args.eps, precision)
    jax.block_until_ready(stats_fn(inputs[1]))
    ours = make_ours(args.num_classes, args.lam, args.eps, precision)
    start = time.perf_counter()
    jax.block_until_ready(ours(*inputs))
    compile_s[precision] = time.perf_counter() - start
    fns[precision] = (stats_fn, ours)
  times = {p: ([], []) for p in precisions}
  outs = {}
  for _ in range(args.repeats):
    for precision, (stats_fn, ours) in fns.items():
      t_stats, stencil = _median_time(lambda: stats_fn(inputs[1]), 1)
      t_loss, value_grad = _median_time(lambda: ours(*inputs), 1)
      times[precision][0].append(t_stats)
      times[precision][1].append(t_loss)
      outs[precision] = (stencil, *value_grad)
  results = {}
  for precision in precisions:
    t_stats, t_ours = (float(np.median(t)) for t in times[precision])
    stencil, loss_ours, grad_ours = outs[precision]
    results[precision] = (t_stats, t_ours, stencil, loss_ours, grad_ours)
    print(f'(a) cfcls, window stats in {precision}: window_stats '
          f'{t_stats * 1e3:.1f} ms; jit value+grad incl. window stats: '
          f'{t_ours * 1e3:.1f} ms per batch ({t_ours * 1e3 / args.batch:.1f} '
          f'ms/image; first call incl. compile {compile_s[precision]:.1f} '
          f's); loss {float(loss_ours):.6f}')
    if jax.devices()[0].platform == 'gpu':
      print(f'GPU ({precision}): {t_ours * 1e3 / args.batch:.3f} ms per '
            f'{args.size}x{args.size} image with {k1} mattes')
  if len(precisions) > 1:
    first, *others = precisions
    t_stats0, t_ours0, stencil0, loss0, grad0 = results[first]
    for precision in others:
      t_stats, t_ours, stencil, loss1, grad1 = results[precision]
      print(f'{precision} / {first} time: window_stats '
            f'{t_stats / t_stats0:.2f}, value+grad {t_ours / t_ours0:.2f}; '
            f'stencil max abs difference '
            f'{float(jnp.max(jnp.abs(stencil - stencil0))):.1e}, loss '
            f'relative {abs(float(loss1) - float(loss0)) / float(loss0):.1e}, '
            f'gradient max abs {float(jnp.max(jnp.abs(grad1 - grad0))):.1e} '
            f'(max |grad| {float(jnp.max(jnp.abs(grad0))):.1e})')
  _, t_ours, _, loss_ours, grad_ours = results[precisions[0]]

  if args.skip_reference:
    return
  # Warm up numba (compiles on first use, or loads its cache).
  sparse_reference(images[:1, :16, :16], alpha[:1, :16, :16],
                   scribbles[:1, :16, :16], args.num_classes, args.lam,
                   args.eps)
  t_ref, (loss_ref, grad_ref) = _median_time(
      lambda: sparse_reference(images, alpha, scribbles, args.num_classes,
                               args.lam, args.eps), args.repeats)
  print(f'(b) pymatting cf_laplacian + per-class L + lam D, scipy residual '
        f'and gradient: {t_ref * 1e3:.1f} ms per batch; loss {loss_ref:.6f}')
  t_shared, (loss_shared, _) = _median_time(
      lambda: sparse_reference(images, alpha, scribbles, args.num_classes,
                               args.lam, args.eps, per_class=False),
      args.repeats)
  print(f"(b') the same with one A per image and all classes in one sparse "
        f'product: {t_shared * 1e3:.1f} ms per batch; loss {loss_shared:.6f}')
  grad_ours = np.asarray(grad_ours, np.float64)
  print(f'ratio (b)/(a): {t_ref / t_ours:.2f}x   '
        f"(b')/(a): {t_shared / t_ours:.2f}x")
  print(f'loss relative difference (a) vs (b): '
        f'{abs(float(loss_ours) - loss_ref) / loss_ref:.2e}; gradient max abs '
        f'difference {np.abs(grad_ours - grad_ref).max():.2e} (max |grad| '
        f'{np.abs(grad_ref).max():.2e})')


if __name__ == '__main__':
  main()
