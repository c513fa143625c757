"""CFM loss value + gradient: cfcls (jit, matrix-free) vs the sparse CPU path.

(a) cfcls: jit-compiled value and gradient of `cfm_loss` w.r.t. the mattes,
    window statistics (`window_stats`) included, for the whole batch.
(b) the original method's sparse path done as fast as the CPU allows:
    pymatting's numba `cf_laplacian` per image, then A = L + lam D (D is the
    same for every class), the residuals A alpha_c - lam D S_c of all classes
    and the gradient 2 A^T r with scipy.

Run from the repository root:
  python benchmarks/loss_bench.py                 # 4 x 321x321, 6 mattes
  python benchmarks/loss_bench.py --size 161 --repeats 3   # quicker
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

from benchmarks.scenes import photo_like_batch  # noqa: E402
from cfcls import laplacian  # noqa: E402
from cfcls import losses  # noqa: E402


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
  return float(np.median(times)), out


def make_ours(num_classes, lam, eps):
  def loss_fn(alpha, images, scribbles):
    stats = laplacian.window_stats(images, eps=eps)
    return losses.cfm_loss(stats, alpha, scribbles, num_classes, lam=lam)[0]
  return jax.jit(jax.value_and_grad(loss_fn))


def sparse_reference(images, alpha, scribbles, num_classes, lam, eps):
  """(b): loss and gradient with pymatting's Laplacian and scipy."""
  from pymatting import cf_laplacian  # benchmark-only dependency
  b, h, w, k1 = alpha.shape
  n = h * w
  loss = 0.0
  grad = np.empty(alpha.shape, np.float64)
  classes = np.arange(1, num_classes)
  for i in range(b):
    lmat = cf_laplacian(images[i].astype(np.float64), epsilon=eps, radius=1)
    labelled = (scribbles[i] != 255).ravel().astype(np.float64)
    a_mat = lmat + lam * scipy.sparse.diags(labelled)
    targets = (scribbles[i].reshape(-1, 1) == classes[None, :])
    a = alpha[i].reshape(n, k1).astype(np.float64)
    res = a_mat @ a - lam * labelled[:, None] * targets
    gate = targets.any(axis=0)
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
  args = parser.parse_args()

  images, scribbles = photo_like_batch(args.batch, args.size,
                                       args.num_classes)
  rng = np.random.default_rng(1)
  k1 = args.num_classes - 1
  alpha = rng.uniform(0, 1, images.shape[:3] + (k1,)).astype(np.float32)
  print(f'batch {args.batch} x {args.size}x{args.size}, {k1} mattes, '
        f'lam {args.lam}, eps {args.eps}, jax {jax.__version__} on '
        f'{jax.devices()[0].platform} ({len(jax.devices())} devices), '
        f'{os.cpu_count()} CPUs')

  ours = make_ours(args.num_classes, args.lam, args.eps)
  inputs = [jnp.asarray(x) for x in (alpha, images, scribbles)]
  start = time.perf_counter()
  jax.block_until_ready(ours(*inputs))
  compile_s = time.perf_counter() - start
  t_ours, (loss_ours, grad_ours) = _median_time(lambda: ours(*inputs),
                                                args.repeats)
  print(f'(a) cfcls jit value+grad incl. window stats: {t_ours * 1e3:.1f} ms '
        f'per batch ({t_ours * 1e3 / args.batch:.1f} ms/image; first call '
        f'incl. compile {compile_s:.1f} s); loss {float(loss_ours):.6f}')
  if jax.devices()[0].platform == 'gpu':
    print(f'GPU: {t_ours * 1e3 / args.batch:.3f} ms per {args.size}x'
          f'{args.size} image with {k1} mattes')

  if args.skip_reference:
    return
  # Warm up numba (compiles on first use, or loads its cache).
  sparse_reference(images[:1, :16, :16], alpha[:1, :16, :16],
                   scribbles[:1, :16, :16], args.num_classes, args.lam,
                   args.eps)
  t_ref, (loss_ref, grad_ref) = _median_time(
      lambda: sparse_reference(images, alpha, scribbles, args.num_classes,
                               args.lam, args.eps), args.repeats)
  print(f'(b) pymatting cf_laplacian + scipy residual/gradient: '
        f'{t_ref * 1e3:.1f} ms per batch; loss {loss_ref:.6f}')
  grad_ours = np.asarray(grad_ours, np.float64)
  print(f'ratio (b)/(a): {t_ref / t_ours:.2f}x')
  print(f'loss relative difference: {abs(float(loss_ours) - loss_ref) / loss_ref:.2e}; '
        f'gradient max abs difference {np.abs(grad_ours - grad_ref).max():.2e} '
        f'(max |grad| {np.abs(grad_ref).max():.2e})')


if __name__ == '__main__':
  main()
