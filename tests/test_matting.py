"""Tests for cfcls.matting.solver against scipy's sparse direct solver."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from cfcls.matting import laplacian
from cfcls import losses
from cfcls.matting import solver
from cfcls.matting import multifrontal

import matting_scenes

NUM_CLASSES = 4
LAM = 100.0


def _scene(seed=0, b=2, h=12, w=15):
  """Two 8-bit images with coloured objects; scribbles for some classes."""
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
  images = np.empty((b, h, w, 3))
  for i in range(b):
    img = np.stack([0.2 + 0.5 * xs, 0.6 - 0.3 * ys, 0.4 + 0.1 * i + 0 * xs],
                   axis=-1)
    img[2:6, 3:8] = [0.9, 0.2, 0.1]
    img[7:11, 8:14] = [0.1, 0.3, 0.8]
    img += 0.02 * rng.standard_normal(img.shape)
    images[i] = np.round(np.clip(img, 0, 1) * 255) / 255
  scribbles = np.full((b, h, w), 255, np.int32)
  scribbles[:, 3:5, 4:7] = 1
  scribbles[:, 8:10, 9:13] = 2
  scribbles[:, 0, :] = 0
  scribbles[:, :, 0] = 0
  scribbles[1, 8:10, 9:13] = 3  # image 1: class 3 instead of 2
  return images.astype(np.float32), scribbles


def _spsolve_reference(image, scribbles, valid=None):
  """Solves every class with scipy.sparse.linalg.spsolve, in float64."""
  h, w = scribbles.shape
  lmat = laplacian.sparse_laplacian(image, valid=valid)
  labelled = (scribbles != 255).ravel().astype(np.float64)
  diag = lmat.diagonal() + LAM * labelled
  a_mat = (lmat + scipy.sparse.diags(LAM * labelled + (diag <= 0))).tocsc()
  out = np.zeros((h, w, NUM_CLASSES - 1))
  for c in range(1, NUM_CLASSES):
    rhs = LAM * labelled * (scribbles == c).ravel()
    out[..., c - 1] = scipy.sparse.linalg.spsolve(a_mat, rhs).reshape(h, w)
  return out


@pytest.fixture(scope='module')
def solved():
  images, scribbles = _scene()
  # tol: the largest change of the last float64 refinement step.
  alpha, info = solver.solve_alpha(images, scribbles, NUM_CLASSES, lam=LAM,
                                    tol=1e-8, method='iterative')
  return images, scribbles, alpha, info


def test_solve_alpha_matches_spsolve(solved):
  images, scribbles, alpha, info = solved
  alpha = np.asarray(alpha)
  assert alpha.shape == (2, 12, 15, NUM_CLASSES - 1)
  for i in range(2):
    want = _spsolve_reference(images[i], scribbles[i])
    np.testing.assert_allclose(alpha[i], want, rtol=0, atol=1e-4)
    direct = solver.solve_alpha_direct(images[i], scribbles[i], NUM_CLASSES,
                                        lam=LAM)
    np.testing.assert_allclose(direct, want, rtol=0, atol=1e-9)
  # The mattes are non-trivial: objects near 1 inside, background near 0.
  assert alpha[0, 4, 5, 0] > 0.9 and alpha[0, 0, 0, 0] < 0.1


def test_residual_info_and_cfm_loss_vanish_at_the_solution(solved):
  images, scribbles, alpha, info = solved
  rel = np.asarray(info['relative_residual'])
  assert rel.shape == (2, NUM_CLASSES - 1)
  assert np.all(rel < 1e-6)
  # Absent classes (class 3 in image 0, class 2 in image 1) solve to 0.
  assert rel[0, 2] == 0 and rel[1, 1] == 0
  assert np.all(np.asarray(alpha)[0, ..., 2] == 0)
  iters = int(info['iterations'])
  assert 0 < iters < 5000
  stats = laplacian.window_stats(jnp.asarray(images))
  loss, _ = losses.cfm_loss(stats, alpha, scribbles, NUM_CLASSES, lam=LAM)
  loss_off, _ = losses.cfm_loss(stats, alpha + 0.01, scribbles, NUM_CLASSES,
                                lam=LAM)
  assert float(loss) < 1e-6 * float(loss_off)
  # Stopping early leaves a larger residual and reports the cap.
  _, early = solver.solve_alpha(images, scribbles, NUM_CLASSES, lam=LAM,
                                 max_iters=3, method='iterative')
  assert int(early['iterations']) == 3
  assert np.asarray(early['relative_residual']).max() > 1e-3


def test_tight_tolerance_reaches_float64_accuracy():
  # Iterative refinement with float64 residuals goes past float32's floor.
  images, scribbles = _scene()
  alpha, info = solver.solve_alpha(images[:1], scribbles[:1], NUM_CLASSES,
                                    lam=LAM, tol=1e-9, method='iterative')
  assert np.asarray(info['relative_residual']).max() < 1e-9
  assert info['refinements'] >= 2
  want = _spsolve_reference(images[0], scribbles[0])
  np.testing.assert_allclose(np.asarray(alpha[0]), want, rtol=0, atol=1e-7)


@pytest.mark.parametrize("preconditioner,coarse_block", [
    ('multigrid', 16), ('jacobi', 0), ('tiles', 4), ('tiles', 16)])
def test_valid_mask_padding_gets_zero(solved, preconditioner, coarse_block):
  # tiles 4: 3 x 4 coarse tiles, one of them part padding; 16: one tile.
  images, scribbles, _, _ = solved
  valid = np.ones(scribbles.shape, np.float32)
  valid[:, :, -5:] = 0
  scribbles = np.where(valid > 0, scribbles, 255)
  images = np.where(valid[..., None] > 0, images, 0).astype(np.float32)
  alpha, info = solver.solve_alpha(images, scribbles, NUM_CLASSES, lam=LAM,
                                    tol=1e-8, valid=valid, method='iterative',
                                    preconditioner=preconditioner,
                                    coarse_block=coarse_block)
  alpha = np.asarray(alpha)
  assert np.all(alpha[valid == 0] == 0)
  assert np.asarray(info['relative_residual']).max() < 1e-6
  want = _spsolve_reference(images[0], scribbles[0], valid=valid[0])
  np.testing.assert_allclose(alpha[0], want, rtol=0, atol=1e-4)
  if preconditioner != 'multigrid':
    return
  direct = solver.solve_alpha_direct(images[0], scribbles[0], NUM_CLASSES,
                                      lam=LAM, valid=valid[0])
  np.testing.assert_allclose(direct, want, rtol=0, atol=1e-9)


@pytest.mark.parametrize('method', ['direct', 'iterative'])
def test_no_scribbles_gives_zero(method):
  images, scribbles = _scene()
  none = np.full_like(scribbles[0], 255)
  out = solver.solve_alpha_direct(images[0], none, NUM_CLASSES)
  assert out.shape == (12, 15, NUM_CLASSES - 1) and np.all(out == 0)
  # solve_alpha: the same defined result, whatever x0, and a flag; the other
  # image of the batch is solved as usual.
  scribbles = scribbles.copy()
  scribbles[1] = 255
  x0 = np.full(scribbles.shape + (NUM_CLASSES - 1,), 0.3, np.float32)
  alpha, info = solver.solve_alpha(images, scribbles, NUM_CLASSES, lam=LAM,
                                    x0=x0, method=method)
  assert info['method'] == method
  assert list(info['scribbled']) == [True, False]
  assert np.all(np.asarray(alpha)[1] == 0)
  want = _spsolve_reference(images[0], scribbles[0])
  np.testing.assert_allclose(np.asarray(alpha)[0], want, rtol=0, atol=1e-4)


def test_warm_start():
  images, scribbles = _scene()
  iterative = dict(lam=LAM, tol=1e-6, method='iterative')
  cold, info_cold = solver.solve_alpha(images, scribbles, NUM_CLASSES,
                                        **iterative)
  # From the answer itself: nothing to do.
  _, info = solver.solve_alpha(images, scribbles, NUM_CLASSES, x0=cold,
                                **iterative)
  assert info['iterations'] < info_cold['iterations'] // 2
  # From a nearby guess: fewer iterations, the same answer.
  guess = 0.999 * np.asarray(cold)
  warm, info = solver.solve_alpha(images, scribbles, NUM_CLASSES,
                                   x0=guess.astype(np.float32), **iterative)
  assert info['iterations'] < info_cold['iterations']
  np.testing.assert_allclose(np.asarray(warm), np.asarray(cold), rtol=0,
                             atol=1e-5)
  with pytest.raises(ValueError, match='x0 must have'):
    solver.solve_alpha(images, scribbles, NUM_CLASSES, x0=guess[..., :1])


def test_bad_inputs():
  images, scribbles = _scene()
  with pytest.raises(ValueError, match='scribbles must have'):
    solver.solve_alpha(images, scribbles[:, :, :-1], NUM_CLASSES)
  bad = scribbles.copy()
  bad[0, 0, 0] = 9
  with pytest.raises(ValueError, match=r'class ids \[9\]'):
    solver.solve_alpha(images, bad, NUM_CLASSES)
  with pytest.raises(ValueError, match=r'class ids \[9\]'):
    solver.solve_alpha_direct(images[0], bad[0], NUM_CLASSES)
  nan = images.copy()
  nan[1, 3, 3, 0] = np.nan
  with pytest.raises(ValueError, match='non-finite'):
    solver.solve_alpha(nan, scribbles, NUM_CLASSES)
  with pytest.raises(ValueError, match='image must have'):
    solver.solve_alpha_direct(images, scribbles[0], NUM_CLASSES)


@pytest.mark.parametrize('method', ['auto', 'iterative'])
@pytest.mark.parametrize('kind', ['photo', 'grey', 'padded'])
def test_default_call_is_within_1e3_of_the_direct_solve(kind, method):
  # Sparse strokes, a flat saturated sky, a thin wire and pole, a flat grey
  # block: regions weakly coupled to the scribbles, where a small residual
  # hides a large error (the old default was off by up to 0.4 on photos).
  image, scribbles = matting_scenes.photo_like_scene(
      48, 64, num_classes=7, grey=(kind == 'grey'))
  valid = None
  if kind == 'padded':
    valid = np.ones(scribbles.shape, np.float32)
    valid[-6:] = 0
    valid[:, -9:] = 0
    scribbles = np.where(valid > 0, scribbles, 255)
    image = np.where(valid[..., None] > 0, image, 0).astype(np.float32)
  alpha, info = solver.solve_alpha(
      image[None], scribbles[None], 7,
      valid=None if valid is None else valid[None], method=method)
  # 'auto' picks the direct method at this size.
  assert info['method'] == ('direct' if method == 'auto' else method)
  # The reference: scipy's default ordering with partial pivoting, not the
  # nested-dissection factorisation that the direct method uses.
  want = solver.solve_alpha_direct(image, scribbles, 7, valid=valid,
                                    ordering='COLAMD')
  err = np.abs(np.asarray(alpha[0], np.float64) - want)
  assert err.max() <= 1e-3
  # The reported estimate is an upper estimate here (the last change).
  assert info['error_estimate'].max() <= 1e-4
  assert err.max() <= 10 * info['error_estimate'].max() + 1e-6
  if valid is not None:
    assert np.all(np.asarray(alpha[0])[valid == 0] == 0)
  # The scene is non-trivial: some unscribbled pixel has alpha far from 0/1.
  assert np.any((want > 0.1) & (want < 0.9))


def test_direct_method_is_exact_and_auto_switches_by_memory(monkeypatch):
  images, scribbles = _scene()
  alpha, info = solver.solve_alpha(images, scribbles, NUM_CLASSES, lam=LAM)
  assert info['method'] == 'direct' and info['iterations'] == 0
  assert np.asarray(info['relative_residual']).max() < 1e-12
  assert info['error_estimate'].shape == (2, NUM_CLASSES - 1)
  assert info['error_estimate'].max() < 1e-9
  for i in range(2):
    want = _spsolve_reference(images[i], scribbles[i])
    np.testing.assert_allclose(np.asarray(alpha[i]), want, rtol=0, atol=1e-6)
  # Above direct_max_pixels, 'auto' solves directly while the factor
  # fits in DIRECT_MEMORY_SHARE of the memory, and warns and takes the
  # iterative method when it does not.
  _, info = solver.solve_alpha(images, scribbles, NUM_CLASSES, lam=LAM,
                                direct_max_pixels=12 * 15 - 1)
  assert info['method'] == 'direct'
  factor = multifrontal.factor_nbytes(12, 15, 2, np.float32)
  monkeypatch.setattr(solver, '_physical_memory', lambda: 2 * factor)
  with pytest.warns(UserWarning, match='12x15 image would need'):
    _, info = solver.solve_alpha(images, scribbles, NUM_CLASSES, lam=LAM,
                                  direct_max_pixels=12 * 15 - 1)
  assert info['method'] == 'iterative' and info['iterations'] > 0
  with pytest.raises(ValueError, match='method='):
    solver.solve_alpha(images, scribbles, NUM_CLASSES, method='exact')


def test_orderings_agree_and_bad_ordering_is_refused():
  image, scribbles = matting_scenes.photo_like_scene(30, 41, num_classes=5)
  ref = solver.solve_alpha_direct(image, scribbles, 5, ordering='COLAMD')
  for ordering in solver.ORDERINGS:
    out = solver.solve_alpha_direct(image, scribbles, 5, ordering=ordering)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)
  with pytest.raises(ValueError, match='ordering='):
    solver.solve_alpha_direct(image, scribbles, 5, ordering='METIS')


@pytest.mark.parametrize('precision', ['float64', 'mixed'])
def test_direct_precisions_agree_with_the_reference(precision):
  image, scribbles = matting_scenes.photo_like_scene(48, 61, num_classes=5)
  want = solver.solve_alpha_direct(image, scribbles, 5)
  alpha, info = solver.solve_alpha(image[None], scribbles[None], 5,
                                    method='direct',
                                    direct_precision=precision)
  np.testing.assert_allclose(np.asarray(alpha)[0], want, rtol=0, atol=1e-5)
  if precision == 'mixed':  # refined until a step changes < MIXED_TOL
    assert 1 < info['refinements'] <= solver.MIXED_MAX_STEPS
    assert info['error_estimate'].max() <= solver.MIXED_TOL
  else:
    assert info['refinements'] == 1
  with pytest.raises(ValueError, match='direct_precision'):
    solver.solve_alpha(image[None], scribbles[None], 5, method='direct',
                        direct_precision='half')


def test_mixed_precision_falls_back_to_float64(monkeypatch):
  # A float32 factor that cannot meet the tolerance: the image is solved
  # again with the float64 factor (one refinement step), exactly.
  monkeypatch.setattr(solver, 'MIXED_TOL', 0.0)
  monkeypatch.setattr(solver, 'MIXED_MAX_STEPS', 1)
  image, scribbles = matting_scenes.photo_like_scene(30, 41, num_classes=4)
  want = solver.solve_alpha_direct(image, scribbles, 4)
  alpha, info = solver.solve_alpha(image[None], scribbles[None], 4,
                                    direct_precision='mixed')
  np.testing.assert_allclose(np.asarray(alpha)[0], want, rtol=0, atol=1e-6)
  assert info['refinements'] == 1 and info['error_estimate'].max() < 1e-8


def test_uint8_images_are_scaled():
  image, scribbles = matting_scenes.photo_like_scene(20, 27, num_classes=4)
  image8 = np.round(image * 255).astype(np.uint8)
  want, _ = solver.solve_alpha(image8[None].astype(np.float32) / 255.0,
                                scribbles[None], 4)
  got, _ = solver.solve_alpha(image8[None], scribbles[None], 4)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# How a process is kept from the compiled kernels: no numba at all (the GPU
# machines), or numba that cannot cache them on disk (a read-only install
# without a writable NUMBA_CACHE_DIR: numba finds no cache locator).
_NO_KERNELS = {
    'no_numba': "sys.modules['numba'] = None  # import numba raises\n"
                "sys.modules['llvmlite'] = None\n",
    'no_numba_cache': "import numba.core.caching\n"
                      "numba.core.caching.CacheImpl._locator_classes = []\n",
}


@pytest.mark.parametrize('case', sorted(_NO_KERNELS))
def test_solver_runs_without_the_compiled_kernels(tmp_path, case):
  # cfcls must import and solve without them (NumPy loops), to the same
  # answer; where numba is there but cannot cache, it says so and why.
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  script = tmp_path / 'no_kernels.py'
  script.write_text(
      "import sys\n" + _NO_KERNELS[case] +
      "import numpy as np\n"
      "from cfcls.matting import direct_kernels, multifrontal, solver\n"
      "import matting_scenes\n"
      "assert not direct_kernels.available()\n"
      "image, scribbles = matting_scenes.photo_like_scene(30, 41, 4)\n"
      "alpha, info = solver.solve_alpha(image[None], scribbles[None], 4)\n"
      "want = solver.solve_alpha_direct(image, scribbles, 4)\n"
      "assert info['method'] == 'direct'\n"
      "print('max error', float(np.abs(np.asarray(alpha)[0] - want).max()))\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [root, os.path.join(root, 'tests'), os.environ.get('PYTHONPATH', '')]))
  out = subprocess.run([sys.executable, str(script)], env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  error = float(out.stdout.split('max error')[1])
  assert error < 1e-6
  warned = 'numba cannot cache compiled kernels' in out.stderr
  assert warned == (case == 'no_numba_cache'), out.stderr[-2000:]
  if warned:
    assert 'NUMBA_CACHE_DIR' in out.stderr


def test_concurrent_direct_solves_agree_with_sequential_ones():
  # tf.data may call the solver from several threads at once (closed-form
  # targets): plans, buffers and the compiled kernels' threads are shared.
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  scenes = [matting_scenes.photo_like_scene(41, 53, 4, seed=s)
            for s in range(4)]
  solve = lambda scene: np.asarray(solver.solve_alpha(
      scene[0][None], scene[1][None], 4)[0])
  want = [solve(scene) for scene in scenes]
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    got = list(pool.map(solve, scenes * 2))
  for k, alpha in enumerate(got):
    np.testing.assert_allclose(alpha, want[k % 4], rtol=0, atol=1e-6)
