"""Closed-form matting solve: cfcls's batched PCG vs scipy's direct solve.

For photo-like images with scribbles, times `matting.solve_alpha` (jit,
matrix-free Jacobi-PCG, all classes at once; compile excluded) for each
tolerance and `matting.solve_alpha_direct` (sparse LU, all classes), and
prints iterations, achieved relative residuals and the max |difference|.

Run from the repository root:
  python benchmarks/solver_bench.py          # 1 x 321x321, 6 mattes
  python benchmarks/solver_bench.py --size 121 --tols 1e-6  # quicker
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.loss_bench import photo_like_batch  # noqa: E402
from cfcls import matting  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--size', type=int, default=321)
  parser.add_argument('--num-classes', type=int, default=7,
                      help='K incl. background: K-1 mattes (default 6)')
  parser.add_argument('--lam', type=float, default=100.0)
  parser.add_argument('--tols', default='1e-6,1e-8',
                      help='comma-separated CG tolerances')
  parser.add_argument('--max-iters', type=int, default=5000)
  parser.add_argument('--float64', action='store_true',
                      help='also run the solver in float64')
  parser.add_argument('--coarse-blocks', default='16,0',
                      help='comma-separated coarse tile sides (0: Jacobi)')
  parser.add_argument('--skip-direct', action='store_true')
  args = parser.parse_args()

  images, scribbles = photo_like_batch(args.batch, args.size,
                                       args.num_classes)
  print(f'batch {args.batch} x {args.size}x{args.size}, '
        f'{args.num_classes - 1} mattes, {100 * np.mean(scribbles != 255):.1f}'
        f'% pixels scribbled, on {jax.devices()[0].platform}')
  direct = None
  if not args.skip_direct:
    # Warm up (compiles the float64 Laplacian builder for this size).
    matting.solve_alpha_direct(images[0], scribbles[0], args.num_classes)
    start = time.perf_counter()
    direct = np.stack([
        matting.solve_alpha_direct(img, scr, args.num_classes, lam=args.lam)
        for img, scr in zip(images, scribbles)])
    t_direct = time.perf_counter() - start
    print(f'direct (scipy sparse LU, all classes): {t_direct:.2f} s')

  dtypes = [jnp.float32] + ([jnp.float64] if args.float64 else [])
  configs = [(dtype, int(block), float(tol)) for dtype in dtypes
             for block in args.coarse_blocks.split(',')
             for tol in args.tols.split(',')]
  for dtype, block, tol in configs:
    with jax.enable_x64(dtype == jnp.float64):
      run = lambda: matting.solve_alpha(
          images, scribbles, args.num_classes, lam=args.lam, tol=tol,
          max_iters=args.max_iters, dtype=dtype, coarse_block=block)
      jax.block_until_ready(run())  # compile
      start = time.perf_counter()
      alpha, info = jax.block_until_ready(run())
      elapsed = time.perf_counter() - start
      alpha = np.asarray(alpha, np.float64)
      rel = np.asarray(info['relative_residual'])
      line = (f'cfcls PCG {jnp.dtype(dtype).name} coarse {block} '
              f'tol {tol:g}: '
              f'{elapsed:.2f} s, {int(info["iterations"])} iterations, '
              f'true relative residual max {rel.max():.2e}')
      if direct is not None:
        line += f', max |alpha - direct| {np.abs(alpha - direct).max():.2e}'
      print(line)


if __name__ == '__main__':
  main()
