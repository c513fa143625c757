"""Tests for cfcls.matting.grid_ordering (nested dissection of the pixel grid)."""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from cfcls.matting import grid_ordering


def _stencil_matrix(h, w, reach):
  """SPD matrix coupling every pair of pixels within `reach` in each axis."""
  ys, xs = np.divmod(np.arange(h * w), w)
  rows, cols = [], []
  for dy in range(-reach, reach + 1):
    for dx in range(-reach, reach + 1):
      ok = ((ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w))
      rows.append(np.flatnonzero(ok))
      cols.append(np.flatnonzero(ok) + dy * w + dx)
  rows, cols = np.concatenate(rows), np.concatenate(cols)
  vals = np.where(rows == cols, 4.0 * (2 * reach + 1) ** 2, -1.0)
  return scipy.sparse.csc_matrix((vals, (rows, cols)), shape=(h * w, h * w))


@pytest.mark.parametrize('h,w', [(1, 1), (7, 3), (37, 52), (64, 64)])
def test_is_a_permutation(h, w):
  perm = grid_ordering.nested_dissection(h, w, reach=2)
  assert sorted(perm.tolist()) == list(range(h * w))


def test_halves_are_eliminated_before_their_separator():
  # The first split of a 40 x 60 grid (reach 2) is columns 29-30: every
  # pixel left of them, then every pixel right of them, then the band.
  perm = grid_ordering.nested_dissection(40, 60, reach=2)
  cols = perm % 60
  n_half = 40 * 29
  assert np.all(cols[:n_half] < 29)
  assert np.all(cols[n_half:2 * n_half - 40] > 30)
  assert set(cols[-80:].tolist()) == {29, 30}


def test_less_fill_than_minimum_degree():
  # The reason for the ordering: a smaller factor of the same matrix.
  h, w = 48, 56
  a = _stencil_matrix(h, w, reach=2)
  perm = grid_ordering.nested_dissection(h, w, reach=2)
  nd = scipy.sparse.linalg.splu(a[perm][:, perm].tocsc(), permc_spec='NATURAL',
                                diag_pivot_thresh=0.0,
                                options=dict(SymmetricMode=True))
  mmd = scipy.sparse.linalg.splu(a, permc_spec='MMD_AT_PLUS_A')
  natural = scipy.sparse.linalg.splu(a, permc_spec='NATURAL')
  fill = lambda lu: lu.L.nnz + lu.U.nnz
  assert fill(nd) < fill(mmd) < fill(natural)
  rhs = np.arange(h * w, dtype=np.float64)
  x = np.empty_like(rhs)
  x[perm] = nd.solve(rhs[perm])
  np.testing.assert_allclose(a @ x, rhs, rtol=0, atol=1e-9)


def test_bad_arguments():
  with pytest.raises(ValueError, match='reach >= 1'):
    grid_ordering.nested_dissection(4, 0, reach=2)


def test_leaves_list_their_interior_first():
  # An interior leaf of a 40 x 60 grid (reach 2): no pixel outside it
  # couples to its first interior_pixels pixels (they are more than reach
  # from every side that borders other pixels), and every later pixel is
  # within reach of such a side.
  h, w, reach = 40, 60, 2
  nodes = grid_ordering.dissection_tree(h, w, reach, leaf_pixels=128)
  leaves = [n for n in nodes if not n.children]
  inner = [n for n in leaves
           if n.region[0] > 0 and n.region[2] > 0 and n.region[1] < h
           and n.region[3] < w]
  assert inner
  for node in leaves:
    y0, y1, x0, x1 = node.region
    z = grid_ordering.interior_pixels(node.region, h, w, reach)
    assert sorted(node.pixels.tolist()) == sorted(
        (y * w + x) for y in range(y0, y1) for x in range(x0, x1))
    ys, xs = np.divmod(node.pixels, w)
    # Distance to the nearest side that has pixels beyond it.
    gaps = [ys - y0 if y0 > 0 else np.full(len(ys), h),
            y1 - 1 - ys if y1 < h else np.full(len(ys), h),
            xs - x0 if x0 > 0 else np.full(len(ys), w),
            x1 - 1 - xs if x1 < w else np.full(len(ys), w)]
    near = np.min(gaps, axis=0) < reach
    assert not near[:z].any() and near[z:].all()
  node = inner[0]
  assert 0 < grid_ordering.interior_pixels(node.region, h, w, reach) < len(
      node.pixels)
