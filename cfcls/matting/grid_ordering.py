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


def leaf_interior(region, height: int, width: int, reach: int):
  """The rectangle of a leaf's pixels that no pixel outside the leaf
  couples to: more than `reach` - 1 away from every side of the leaf that
  borders other pixels (sides on the grid's border do not count). May be
  empty (y1 <= y0 or x1 <= x0)."""
  y0, y1, x0, x1 = region
  return (y0 + reach * (y0 > 0), y1 - reach * (y1 < height),
          x0 + reach * (x0 > 0), x1 - reach * (x1 < width))


def interior_pixels(region, height: int, width: int, reach: int) -> int:
  """How many pixels `leaf_interior` holds."""
  iy0, iy1, ix0, ix1 = leaf_interior(region, height, width, reach)
  return max(0, iy1 - iy0) * max(0, ix1 - ix0)


def dissection_tree(height: int, width: int, reach: int,
                    leaf_pixels: int = LEAF_PIXELS) -> List[Node]:
  """`dissection_regions` with each node's own pixels (row-major ids).

  A separator's pixels are in row-major order; a leaf's interior pixels
  (`leaf_interior`) come first, then its border pixels (each row-major):
  the rest of the grid couples to the border only, so the columns of the
  interior are zero in the leaf's part of the factor below the leaf
  (`cfcls.matting.multifrontal` does not compute them).
  """
  index = np.arange(height * width).reshape(height, width)
  nodes = []
  for node in dissection_regions(height, width, reach, leaf_pixels):
    y0, y1, x0, x1 = node.own
    pixels = index[y0:y1, x0:x1]
    if not node.children:
      iy0, iy1, ix0, ix1 = leaf_interior(node.region, height, width, reach)
      inner = np.zeros(pixels.shape, bool)
      inner[max(0, iy0 - y0):max(0, iy1 - y0),
            max(0, ix0 - x0):max(0, ix1 - x0)] = True
      pixels = np.concatenate([pixels[inner], pixels[~inner]])
    nodes.append(Node(pixels.ravel(), node.region, node.children))
  return nodes


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
