"""Tests for cfcls.matting.multifrontal against scipy's sparse LU."""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from cfcls.matting import direct_kernels
from cfcls.matting import solver
from cfcls.matting import multifrontal

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


BACKENDS = ['numpy'] + (['compiled'] if direct_kernels.available() else [])


@pytest.fixture(params=[1, 2])
def threads(request, monkeypatch):
  monkeypatch.setattr(direct_kernels, 'THREADS', request.param)
  return request.param


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('h,w,reach,leaf', [
    (1, 1, 1, 4), (5, 3, 2, 4), (23, 31, 1, 16), (40, 37, 2, 64),
    (33, 70, 3, 128)])
def test_solves_like_scipy(h, w, reach, leaf, backend, threads):
  a = _random_stencil_spd(h, w, reach)
  rhs = np.random.default_rng(1).standard_normal((h * w, 3))
  factor = multifrontal.factorise(a, h, w, reach, leaf_pixels=leaf,
                                  backend=backend)
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
  a, rhs = solver._direct_system(image, scribbles, 5, 100.0, 1e-7, 1, None)
  factor = multifrontal.factorise(a, 37, 45, reach=2)
  want = solver.solve_alpha_direct(image, scribbles, 5, ordering='COLAMD')
  np.testing.assert_allclose(multifrontal.solve(factor, rhs),
                             want.reshape(-1, 4), rtol=0, atol=1e-8)
  with pytest.raises(ValueError, match='expected'):
    multifrontal.factorise(a, 37, 44, reach=2)
  with pytest.raises(ValueError, match='rows'):
    multifrontal.solve(factor, rhs[1:])


@pytest.mark.parametrize('backend', BACKENDS)
def test_float32_factor_and_taps(backend, threads):
  h, w, reach = 29, 34, 2
  a = _random_stencil_spd(h, w, reach, seed=3)
  rhs = np.random.default_rng(2).standard_normal((h * w, 2))
  want = scipy.sparse.linalg.splu(a.tocsc()).solve(rhs)
  taps = multifrontal.taps_from_sparse(a, h, w, reach)
  # The taps reproduce A (matvec), and a float32 factor solves to ~1e-5.
  np.testing.assert_allclose(multifrontal.matvec(taps, want), rhs,
                             rtol=0, atol=1e-10)
  factor = multifrontal.factorise_taps(taps, reach, storage=np.float32,
                                       backend=backend)
  if backend == 'numpy':
    assert factor.fronts[0].l_own.dtype == np.float32
  else:  # float32, own blocks packed: as many bytes as the NumPy one
    assert factor.compiled[1].dtype == np.float32 and not factor.fronts
    assert factor.nbytes == multifrontal.factorise_taps(
        taps, reach, storage=np.float32, backend='numpy').nbytes
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
  if factor.compiled is None:
    assert factor.nbytes == got
  else:  # float64: the compiled backend's buffer
    assert not factor.fronts
    got = factor.nbytes
  assert multifrontal.factor_nbytes(h, w, reach, storage) == got
  # The NumPy backend's fronts hold the same number of entries.
  numpy_factor = multifrontal.factorise_taps(taps, reach, storage=storage,
                                             backend='numpy')
  assert numpy_factor.nbytes == got


def _lower_blocks(factor):
  """Every front's (lower triangle of L_oo, L_ro), whichever backend."""
  if factor.compiled is None:
    return [(np.tril(f.l_own), f.l_ring) for f in factor.fronts]
  flat, buf = factor.compiled
  blocks = []
  for k in range(len(flat.own)):
    s, r, z = flat.own[k], flat.ring[k], flat.zero[k]
    l_own = buf[flat.l_off[k]:flat.l_off[k] + s * s].reshape(s, s).T
    l_ring = buf[flat.lr_off[k]:flat.lr_off[k] + r * (s - z)]
    blocks.append((np.tril(l_own), l_ring.reshape(s - z, r).T))
  return blocks


@pytest.mark.skipif(not direct_kernels.available(), reason='needs numba')
@pytest.mark.parametrize('h,w,reach,leaf', [
    (5, 3, 2, 4), (41, 37, 2, 128), (23, 70, 1, 16), (64, 64, 3, 64)])
def test_compiled_backend_makes_the_numpy_factor(h, w, reach, leaf):
  # The same BLAS calls on the same fronts in the same order: the factors
  # agree bit for bit, on one thread or two (the root's subtrees at once).
  taps = multifrontal.taps_from_sparse(
      _random_stencil_spd(h, w, reach, seed=5), h, w, reach)
  want = _lower_blocks(multifrontal.factorise_taps(taps, reach, leaf,
                                                   backend='numpy'))
  for threads in (1, 2):
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr(direct_kernels, 'THREADS', threads)
      got = _lower_blocks(multifrontal.factorise_taps(taps, reach, leaf,
                                                      backend='compiled'))
    assert len(got) == len(want)
    for (g_own, g_ring), (w_own, w_ring) in zip(got, want):
      np.testing.assert_array_equal(g_own, w_own)
      np.testing.assert_array_equal(g_ring, w_ring)


@pytest.mark.skipif(not direct_kernels.available(), reason='needs numba')
def test_compiled_backend_errors(threads):
  h, w, reach = 30, 24, 2
  a = _random_stencil_spd(h, w, reach, seed=6)
  taps = multifrontal.taps_from_sparse(a, h, w, reach)
  with pytest.raises(ValueError, match='backend must be one of'):
    multifrontal.factorise_taps(taps, reach, backend='fortran')
  # Not positive definite: a negative pixel in the second subtree, and one
  # in the first.
  for pixel in (h * w - 1, 0):
    bad = taps.copy()
    bad[len(bad) // 2].reshape(-1)[pixel] = -1e3
    with pytest.raises(np.linalg.LinAlgError, match='not positive definite'):
      multifrontal.factorise_taps(bad, reach, backend='compiled')
  # matvec (compiled here) is A x.
  x = np.random.default_rng(7).standard_normal((h * w, 3))
  np.testing.assert_allclose(multifrontal.matvec(taps, x), a @ x, rtol=0,
                             atol=1e-12)
  np.testing.assert_allclose(multifrontal.matvec(taps, x[:, 1]), a @ x[:, 1],
                             rtol=0, atol=1e-12)


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


@pytest.mark.skipif(not direct_kernels.available(), reason='needs numba')
@pytest.mark.parametrize('h,w,reach,leaf', [
    (1, 1, 1, 4), (5, 3, 2, 4), (23, 31, 1, 16), (40, 37, 2, 64),
    (33, 70, 3, 128), (160, 240, 2, 128)])
def test_compiled_plan_is_the_python_plan(h, w, reach, leaf):
  # Every array of the flat plan (fronts, taps' places, children's blocks,
  # zero columns, factor and stack layout), entry for entry.
  want = multifrontal._plan(h, w, reach, leaf, compiled=False).flat
  got = multifrontal._plan(h, w, reach, leaf, compiled=True).flat
  for name, a, b in zip(want._fields, want, got):
    if isinstance(a, np.ndarray):
      assert a.dtype == b.dtype, name
      np.testing.assert_array_equal(a, b, err_msg=name)
    else:
      assert a == b, name


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


def test_beyond_the_plan_cache_and_without_numba(monkeypatch):
  h, w, reach = 26, 31, 2
  a = _random_stencil_spd(h, w, reach, seed=8)
  taps = multifrontal.taps_from_sparse(a, h, w, reach)
  rhs = np.random.default_rng(9).standard_normal((h * w, 2))
  want = scipy.sparse.linalg.splu(a.tocsc()).solve(rhs)
  multifrontal.clear_plan_cache()
  monkeypatch.setattr(multifrontal, 'PLAN_CACHE_PIXELS', 500)
  # Beyond the plan cache: the NumPy backend plans front by front, the
  # compiled one plans the grid whole for this call; neither caches it.
  for backend in BACKENDS:
    factor = multifrontal.factorise_taps(taps, reach, backend=backend)
    assert (factor.compiled is None) == (backend == 'numpy')
    np.testing.assert_allclose(multifrontal.solve(factor, rhs), want,
                               rtol=0, atol=1e-10 * np.abs(want).max())
  assert not multifrontal._plans
  monkeypatch.undo()
  multifrontal.clear_plan_cache()
  monkeypatch.setattr(direct_kernels, 'available', lambda: False)
  with pytest.raises(ValueError, match='numba does not import'):
    multifrontal.factorise_taps(taps, reach, backend='compiled')
  factor = multifrontal.factorise_taps(taps, reach)
  assert factor.compiled is None
  np.testing.assert_allclose(multifrontal.solve(factor, rhs), want, rtol=0,
                             atol=1e-10 * np.abs(want).max())
  np.testing.assert_allclose(multifrontal.matvec(taps, want), rhs, rtol=0,
                             atol=1e-10)


def test_factor_buffers_are_reused_within_a_budget(monkeypatch):
  # A freed factor's memory serves the next factorisation; what is kept is
  # bounded by SPARE_BYTES, and release_buffers / clear_plan_cache free it.
  direct_kernels.release_buffers()
  size = 2 ** 20  # 8 MiB: above the smallest pooled size
  a = direct_kernels.buffer(size)
  address = a.__array_interface__['data'][0]
  del a
  b = direct_kernels.buffer(size - 10)  # fits: the same memory
  assert b.__array_interface__['data'][0] == address
  assert b.size == size - 10
  c = direct_kernels.buffer(size)  # b is alive: new memory
  assert c.__array_interface__['data'][0] != address
  del b, c
  assert len(direct_kernels._spare) == 2
  assert direct_kernels.buffer(size // 4).size == size // 4  # too small a
  assert len(direct_kernels._spare) == 2  # use for those: new memory
  monkeypatch.setattr(direct_kernels, 'SPARE_BYTES', 3 * size * 8 + 1)
  d = direct_kernels.buffer(3 * size)  # new, then kept alone on release
  del d
  assert [len(m) for m in direct_kernels._spare] == [3 * size * 8]
  multifrontal.clear_plan_cache()
  assert not direct_kernels._spare


def test_blas_runs_on_one_thread_inside_the_solver():
  threadpoolctl = pytest.importorskip('threadpoolctl')
  blas = lambda: [i['num_threads'] for i in threadpoolctl.threadpool_info()
                  if i['user_api'] == 'blas']
  before = blas()
  for _ in range(2):  # the controller is made once, then reused
    with multifrontal._one_blas_thread():
      assert blas() and set(blas()) == {1}
    assert blas() == before
