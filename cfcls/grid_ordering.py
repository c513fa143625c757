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
from typing import List, NamedTuple, Tuple

import numpy as np

LEAF_PIXELS = 64  # blocks this small are eliminated in row-major order


class Node(NamedTuple):
  """One node of the dissection tree.

  Attributes:
    pixels: int64 row-major indices of the node's own pixels: the whole
      block for a leaf, the separating band for an inner node.
    region: (y0, y1, x0, x1), the rectangle that the node's subtree covers.
    children: indices (into the post-ordered node list) of its two halves.
  """
  pixels: np.ndarray
  region: Tuple[int, int, int, int]
  children: Tuple[int, ...]


class Region(NamedTuple):
  """A node of the dissection tree without its pixel list.

  Attributes:
    region: (y0, y1, x0, x1), the rectangle that the node's subtree covers.
    own: the rectangle of the node's own pixels (the whole region for a
      leaf, the separating band for an inner node).
    children: indices (into the post-ordered list) of its two halves.
  """
  region: Tuple[int, int, int, int]
  own: Tuple[int, int, int, int]
  children: Tuple[int, ...]


def dissection_regions(height: int, width: int, reach: int,
                       leaf_pixels: int = LEAF_PIXELS) -> List[Region]:
  """The nested-dissection tree as rectangles, children before parents.

  Every split cuts the longer side of a region with a band of `reach`
  rows (or columns); regions of at most `leaf_pixels` pixels, or too thin
  to split, are leaves. The root is the last node.
  """
  if height < 1 or width < 1 or reach < 1:
    raise ValueError(f'nested_dissection needs a non-empty grid and '
                     f'reach >= 1, got {height}x{width}, reach {reach}')
  nodes: List[Region] = []

  def build(y0, y1, x0, x1):
    h, w = y1 - y0, x1 - x0
    if h * w <= leaf_pixels or max(h, w) <= 2 * reach + 1:
      nodes.append(Region((y0, y1, x0, x1), (y0, y1, x0, x1), ()))
      return len(nodes) - 1
    if h >= w:
      mid = y0 + (h - reach) // 2
      kids = (build(y0, mid, x0, x1), build(mid + reach, y1, x0, x1))
      band = (mid, mid + reach, x0, x1)
    else:
      mid = x0 + (w - reach) // 2
      kids = (build(y0, y1, x0, mid), build(y0, y1, mid + reach, x1))
      band = (y0, y1, mid, mid + reach)
    nodes.append(Region((y0, y1, x0, x1), band, kids))
    return len(nodes) - 1

  build(0, height, 0, width)
  return nodes


def dissection_tree(height: int, width: int, reach: int,
                    leaf_pixels: int = LEAF_PIXELS) -> List[Node]:
  """`dissection_regions` with each node's own pixels (row-major ids)."""
  index = np.arange(height * width).reshape(height, width)
  return [Node(index[y0:y1, x0:x1].ravel(), node.region, node.children)
          for node in dissection_regions(height, width, reach, leaf_pixels)
          for y0, y1, x0, x1 in [node.own]]


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
  nodes = dissection_tree(height, width, reach)
  return np.concatenate([node.pixels for node in nodes])
