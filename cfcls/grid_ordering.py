"""Fill-reducing orderings of the pixel grid for sparse factorisations.

The matting system couples pixels up to `reach` = 2 * radius apart in each
axis (two windows that share a pixel), so a band of `reach` full rows (or
columns) separates the grid into two halves with no coupling between them.
Geometric nested dissection orders each half recursively, then the band:
the elimination of one half never fills in the other, and the fill of a
Cholesky / LU factor is O(N log N) for N pixels instead of what general
minimum-degree heuristics find on this 25-point stencil (about 1.3-1.5x
more nonzeros and 2-4x the factorisation time at 321x321 and 480x640,
benchmarks/solver_bench.py).
"""
import numpy as np

LEAF_PIXELS = 64  # blocks this small are eliminated in row-major order


def nested_dissection(height: int, width: int, reach: int) -> np.ndarray:
  """A nested-dissection permutation of the row-major pixels of a grid.

  Args:
    height, width: the grid.
    reach: the largest |dy| or |dx| of a nonzero coupling (2 * radius for
      the matting Laplacian); the separators are this many rows or columns.

  Returns:
    int64 [height * width]: perm such that A[perm][:, perm] eliminates
    both halves of every split before their separator.
  """
  if height < 1 or width < 1 or reach < 1:
    raise ValueError(f'nested_dissection needs a non-empty grid and '
                     f'reach >= 1, got {height}x{width}, reach {reach}')
  index = np.arange(height * width).reshape(height, width)
  order = []
  # Depth-first over (y0, y1, x0, x1, is_separator): halves before the band.
  stack = [(0, height, 0, width, False)]
  while stack:
    y0, y1, x0, x1, separator = stack.pop()
    h, w = y1 - y0, x1 - x0
    if separator or h * w <= LEAF_PIXELS or max(h, w) <= 2 * reach + 1:
      order.append(index[y0:y1, x0:x1].ravel())
      continue
    if h >= w:
      mid = y0 + (h - reach) // 2
      parts = [(y0, mid, x0, x1), (mid + reach, y1, x0, x1)]
      band = (mid, mid + reach, x0, x1, True)
    else:
      mid = x0 + (w - reach) // 2
      parts = [(y0, y1, x0, mid), (y0, y1, mid + reach, x1)]
      band = (y0, y1, mid, mid + reach, True)
    stack.append(band)  # popped last: after both halves
    for part in reversed(parts):
      stack.append(part + (False,))
  return np.concatenate(order)
