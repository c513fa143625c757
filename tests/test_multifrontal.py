"""Tests for cfcls.multifrontal against scipy's sparse LU."""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from cfcls import matting
from cfcls import multifrontal

import matting_scenes


def _random_stencil_spd(h, w, reach, seed=0):
  """A random SPD matrix coupling pixels within `reach` in each axis."""
  rng = np.random.default_rng(seed)
  ys, xs = np.divmod(np.arange(h * w), w)
  rows, cols, vals = [], [], []
  for dy in range(0, reach + 1):
    for dx in range(-reach, reach + 1):
      if dy == 0 and dx <= 0:
        continue
      ok = (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
      i = np.flatnonzero(ok)
      rows.append(i)
      cols.append(i + dy * w + dx)
      vals.append(-rng.uniform(0.1, 1.0, len(i)))
  rows, cols, vals = map(np.concatenate, (rows, cols, vals))
  off = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(h * w, h * w))
  off = off + off.T
  # Diagonally dominant: positive definite.
  diag = -np.asarray(off.sum(axis=1)).ravel() + rng.uniform(0.01, 0.1, h * w)
  return (off + scipy.sparse.diags(diag)).tocsr()


@pytest.mark.parametrize('h,w,reach,leaf', [
    (1, 1, 1, 4), (5, 3, 2, 4), (23, 31, 1, 16), (40, 37, 2, 64),
    (33, 70, 3, 128)])
def test_solves_like_scipy(h, w, reach, leaf):
  a = _random_stencil_spd(h, w, reach)
  rhs = np.random.default_rng(1).standard_normal((h * w, 3))
  factor = multifrontal.factorise(a, h, w, reach, leaf_pixels=leaf)
  got = multifrontal.solve(factor, rhs)
  want = scipy.sparse.linalg.splu(a.tocsc()).solve(rhs)
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=1e-10 * np.abs(want).max())
  # A vector right-hand side too.
  np.testing.assert_allclose(multifrontal.solve(factor, rhs[:, 0]),
                             want[:, 0], rtol=0,
                             atol=1e-10 * np.abs(want).max())


def test_matting_system_and_errors():
  image, scribbles = matting_scenes.photo_like_scene(37, 45, num_classes=5)
  a, rhs = matting._direct_system(image, scribbles, 5, 100.0, 1e-7, 1, None)
  factor = multifrontal.factorise(a, 37, 45, reach=2)
  want = matting.solve_alpha_direct(image, scribbles, 5, ordering='COLAMD')
  np.testing.assert_allclose(multifrontal.solve(factor, rhs),
                             want.reshape(-1, 4), rtol=0, atol=1e-8)
  with pytest.raises(ValueError, match='expected'):
    multifrontal.factorise(a, 37, 44, reach=2)
  with pytest.raises(ValueError, match='rows'):
    multifrontal.solve(factor, rhs[1:])


def test_float32_factor_and_taps():
  h, w, reach = 29, 34, 2
  a = _random_stencil_spd(h, w, reach, seed=3)
  rhs = np.random.default_rng(2).standard_normal((h * w, 2))
  want = scipy.sparse.linalg.splu(a.tocsc()).solve(rhs)
  taps = multifrontal.taps_from_sparse(a, h, w, reach)
  # The taps reproduce A (matvec), and a float32 factor solves to ~1e-5.
  np.testing.assert_allclose(multifrontal.matvec(taps, want), rhs,
                             rtol=0, atol=1e-10)
  factor = multifrontal.factorise_taps(taps, reach, storage=np.float32)
  assert factor.fronts[0].l_own.dtype == np.float32
  got = multifrontal.solve(factor, rhs)
  assert got.dtype == np.float64
  err = np.abs(got - want).max() / np.abs(want).max()
  assert 1e-9 < err < 1e-4  # float32 rounding, not float64
  with pytest.raises(ValueError, match='float64 or float32'):
    multifrontal.factorise_taps(taps, reach, storage=np.float16)
  with pytest.raises(ValueError, match='taps'):
    multifrontal.factorise_taps(taps[:-1], reach)
  with pytest.raises(ValueError, match='reach'):
    multifrontal.taps_from_sparse(a, h, w, 1)


@pytest.mark.parametrize('storage', [np.float64, np.float32])
def test_factor_nbytes_is_the_factors_size(storage):
  h, w, reach = 41, 37, 2
  taps = multifrontal.taps_from_sparse(_random_stencil_spd(h, w, reach),
                                       h, w, reach)
  factor = multifrontal.factorise_taps(taps, reach, storage=storage)
  got = sum(f.l_own.nbytes + f.l_ring.nbytes for f in factor.fronts)
  assert multifrontal.factor_nbytes(h, w, reach, storage) == got


@pytest.mark.parametrize('h,w,reach,leaf', [
    (41, 37, 2, 128), (160, 240, 2, 128), (23, 70, 1, 16), (9, 50, 3, 64)])
def test_factor_flops_counts_the_fronts_of_the_plan(h, w, reach, leaf):
  # From the rectangles (factor_flops) and from the planned fronts (own
  # pixels, ring and the zero columns of F_ro found from the assembled
  # structure; the root forms no update) alike.
  fronts = list(multifrontal.plan(h, w, reach, leaf).fronts)
  want = 0
  for k, fp in enumerate(fronts):
    s, r, c = fp.stop - fp.start, len(fp.ring_rank), fp.stop - fp.start - fp.z
    want += s ** 3 // 3 + r * c * c + (r * r * c if k < len(fronts) - 1
                                       else 0)
  assert multifrontal.factor_flops(h, w, reach, leaf) == want
  assert fronts[-1].ring_rank.size == 0  # the root: nothing left to update
  # Leaves have interior columns that nothing outside couples to.
  assert sum(fp.z for fp in fronts if fp.ring_rank.size) > 0


def test_plans_are_cached_within_a_pixel_budget(monkeypatch):
  # Repeated sizes reuse their plan; the least recently used plans go
  # once the cached grids hold more than PLAN_CACHE_PIXELS; larger grids
  # are planned front by front on each call (a one-pass iterator).
  multifrontal.clear_plan_cache()
  monkeypatch.setattr(multifrontal, 'PLAN_CACHE_PIXELS', 1000)
  a = multifrontal.plan(20, 20, 2)  # 400 pixels
  assert multifrontal.plan(20, 20, 2) is a
  b = multifrontal.plan(20, 25, 2)  # 900 cached: both fit
  assert multifrontal.plan(20, 20, 2) is a  # now the most recent
  c = multifrontal.plan(10, 30, 2)  # 1200 > 1000: (20, 25) goes
  assert multifrontal.plan(20, 20, 2) is a
  assert multifrontal.plan(10, 30, 2) is c
  assert multifrontal.plan(20, 25, 2) is not b
  big = multifrontal.plan(40, 30, 2)  # over the budget alone
  assert not isinstance(big.fronts, list)
  assert multifrontal.plan(40, 30, 2) is not big
  multifrontal.clear_plan_cache()
