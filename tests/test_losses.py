"""Tests for cfcls.losses against explicit sparse and numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from cfcls.matting import laplacian
from cfcls import losses

NUM_CLASSES = 4
LAM = 100.0


def _natural_images(rng, b, h, w):
  ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
  out = []
  for i in range(b):
    base = np.stack([0.2 + 0.6 * xs, 0.5 + 0.3 * np.sin(3 * ys + i),
                     0.3 + 0.4 * xs * ys], axis=-1)
    img = base + 0.05 * rng.standard_normal((h, w, 3))
    out.append(np.round(np.clip(img, 0, 1) * 255) / 255)
  out = np.asarray(out, np.float32)
  out[1, :4, :5] = 0.4  # a flat grey block
  return out


def _scribbles(rng, b, h, w):
  scr = np.full((b, h, w), 255, np.int32)
  scr[0, 2, 1:9] = 0
  scr[0, 6, 3:12] = 1
  scr[0, 9:11, 10] = 3
  scr[1, 1:8, 2] = 2
  scr[1, 10, 4:13] = 0
  # Class 2 is absent from image 0, classes 1 and 3 from image 1.
  return scr


@pytest.fixture(scope='module')
def setup():
  rng = np.random.default_rng(0)
  b, h, w = 2, 12, 15
  images = _natural_images(rng, b, h, w)
  scribbles = _scribbles(rng, b, h, w)
  alpha = rng.standard_normal((b, h, w, NUM_CLASSES - 1)).astype(np.float32)
  stats = laplacian.window_stats(jnp.asarray(images))
  lmats = [laplacian.sparse_laplacian(img) for img in images]
  return images, scribbles, alpha, stats, lmats


def _sparse_terms(lmats, alpha, scribbles, weights=None, presence=None,
                  norm='residual'):
  """Per-image, per-class loss terms and dloss/dalpha with scipy.

  norm='residual': ||r||^2 / N with gradient 2 A^T r / N / B; 'energy':
  (alpha^T L alpha + lam ||D (alpha - S)||^2) / N with gradient 2 r / N / B.
  """
  b, h, w, k1 = alpha.shape
  n = h * w
  weights = np.ones(k1) if weights is None else np.asarray(weights)
  terms = np.zeros((b, k1))
  grad = np.zeros(alpha.shape)
  for i in range(b):
    labelled = (scribbles[i] != 255).ravel().astype(np.float64)
    a_mat = lmats[i] + LAM * scipy.sparse.diags(labelled)
    for c in range(k1):
      s = (scribbles[i] == c + 1).ravel().astype(np.float64)
      gate = s.any() if presence is None else presence[i, c]
      a = alpha[i, ..., c].ravel().astype(np.float64)
      r = a_mat @ a - LAM * labelled * s
      if norm == 'residual':
        term, g = r @ r, a_mat.T @ r
      else:
        term, g = a @ (lmats[i] @ a) + LAM * np.sum(labelled * (a - s)**2), r
      terms[i, c] = weights[c] * gate * term / n
      grad[i, ..., c] = (weights[c] * gate * 2 * g / n / b).reshape(h, w)
  return terms, grad


def test_cfm_loss_value_and_gradient_match_sparse(setup):
  _, scribbles, alpha, stats, lmats = setup
  weights = np.array([1.0, 0.5, 2.0], np.float32)
  fn = jax.jit(jax.value_and_grad(
      lambda a: losses.cfm_loss(stats, a, scribbles, NUM_CLASSES, lam=LAM,
                                class_weights=weights), has_aux=True))
  (loss, per_class), grad = fn(jnp.asarray(alpha))
  terms, want_grad = _sparse_terms(lmats, alpha, scribbles, weights)
  np.testing.assert_allclose(np.asarray(per_class), terms.mean(0), rtol=1e-4)
  np.testing.assert_allclose(float(loss), terms.mean(0).sum(), rtol=1e-4)
  # Gating: class 2 only in image 1, classes 1 and 3 only in image 0.
  assert terms[0, 1] == 0 and terms[1, 0] == 0 and terms[1, 2] == 0
  assert np.all(terms[0, [0, 2]] > 0) and terms[1, 1] > 0
  scale = np.abs(want_grad).max()
  assert np.abs(np.asarray(grad) - want_grad).max() < 1e-4 * scale


def test_cfm_loss_presence_override(setup):
  _, scribbles, alpha, stats, lmats = setup
  presence = np.array([[1, 1, 0], [0, 1, 1]], np.float32)
  _, per_class = losses.cfm_loss(stats, jnp.asarray(alpha), scribbles,
                                 NUM_CLASSES, presence=presence)
  terms, _ = _sparse_terms(lmats, alpha, scribbles, presence=presence)
  np.testing.assert_allclose(np.asarray(per_class), terms.mean(0), rtol=1e-4)
  # A gated-out absent class (class 2 in image 0) is now counted.
  assert terms[0, 1] > 0


def test_cfm_gradient_matches_finite_differences_float64(setup):
  _, scribbles, alpha, stats, _ = setup
  rng = np.random.default_rng(5)
  with jax.enable_x64(True):
    a64 = jnp.asarray(alpha, jnp.float64)
    f = lambda a: losses.cfm_loss(stats, a, scribbles, NUM_CLASSES)[0]
    value, grad = jax.value_and_grad(f)(a64)
    assert value.dtype == jnp.float64
    for _ in range(3):
      v = jnp.asarray(rng.standard_normal(alpha.shape))
      step = 1e-3
      fd = (f(a64 + step * v) - f(a64 - step * v)) / (2 * step)
      np.testing.assert_allclose(float(fd), float(jnp.vdot(grad, v)),
                                 rtol=1e-7)


def test_cfm_loss_is_zero_for_exact_solution_and_images_get_no_gradient(
    setup):
  images, scribbles, _, _, lmats = setup
  # Solve the system with scipy for image 0 and check the loss vanishes.
  b, h, w = scribbles.shape
  sol = np.zeros((b, h, w, NUM_CLASSES - 1), np.float32)
  for i in range(b):
    labelled = (scribbles[i] != 255).ravel().astype(np.float64)
    a_mat = (lmats[i] + LAM * scipy.sparse.diags(labelled)).tocsc()
    for c in range(NUM_CLASSES - 1):
      s = (scribbles[i] == c + 1).ravel().astype(np.float64)
      sol[i, ..., c] = scipy.sparse.linalg.spsolve(
          a_mat, LAM * labelled * s).reshape(h, w)
  def f(imgs, a):
    return losses.cfm_loss(laplacian.window_stats(imgs), a, scribbles,
                           NUM_CLASSES)[0]
  loss = f(jnp.asarray(images), jnp.asarray(sol))
  loss_rand = f(jnp.asarray(images), jnp.asarray(sol + 0.1))
  assert float(loss) < 1e-6 * float(loss_rand)
  g_img = jax.grad(f)(jnp.asarray(images), jnp.asarray(sol + 0.1))
  assert np.all(np.asarray(g_img) == 0)


def test_cfm_energy_norm_matches_sparse_and_its_gradient_is_the_residual(
    setup):
  # norm='energy': alpha^T L alpha + lam ||D (alpha - S)||^2 per class and
  # image (scipy's L); its gradient is 2 r / N / B, the residual of the same
  # system, so its minimiser is the closed-form matte.
  _, scribbles, alpha, stats, lmats = setup
  weights = np.array([1.0, 0.5, 2.0], np.float32)
  fn = jax.jit(jax.value_and_grad(
      lambda a: losses.cfm_loss(stats, a, scribbles, NUM_CLASSES, lam=LAM,
                                class_weights=weights, norm='energy'),
      has_aux=True))
  (loss, per_class), grad = fn(jnp.asarray(alpha))
  terms, want_grad = _sparse_terms(lmats, alpha, scribbles, weights,
                                   norm='energy')
  np.testing.assert_allclose(np.asarray(per_class), terms.mean(0), rtol=1e-4)
  np.testing.assert_allclose(float(loss), terms.mean(0).sum(), rtol=1e-4)
  scale = np.abs(want_grad).max()
  assert np.abs(np.asarray(grad) - want_grad).max() < 1e-4 * scale
  with pytest.raises(ValueError, match="norm='l1' is not one of"):
    losses.cfm_loss(stats, jnp.asarray(alpha), scribbles, NUM_CLASSES,
                    norm='l1')


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_partial_and_full_ce_match_numpy():
  rng = np.random.default_rng(1)
  logits = rng.standard_normal((2, 5, 6, NUM_CLASSES)).astype(np.float32) * 3
  labels = rng.integers(0, NUM_CLASSES, (2, 5, 6)).astype(np.int32)
  labels[rng.random((2, 5, 6)) < 0.7] = 255
  logp = _np_log_softmax(logits.astype(np.float64))
  mask = labels != 255
  want = -np.mean(np.take_along_axis(
      logp, np.where(mask, labels, 0)[..., None], -1)[..., 0][mask])
  np.testing.assert_allclose(float(losses.partial_ce(logits, labels)), want,
                             rtol=1e-5)
  np.testing.assert_allclose(float(jax.jit(losses.full_ce)(logits, labels)),
                             want, rtol=1e-5)
  none = np.full_like(labels, 255)
  assert float(losses.partial_ce(logits, none)) == 0.0
  assert float(losses.full_ce(logits, none)) == 0.0
  # Gradients only through labelled pixels.
  g = jax.grad(losses.partial_ce)(jnp.asarray(logits), labels)
  assert np.all(np.asarray(g)[~mask] == 0) and np.abs(g).max() > 0


def test_mlc_bce_matches_numpy_and_is_stable():
  logits = np.array([[-2.0, 0.0, 3.0], [50.0, -60.0, 0.5]], np.float32)
  presence = np.array([[0, 1, 1], [1, 0, 0]], np.float32)
  z = logits.astype(np.float64)
  # log sigmoid(z) = -log(1 + exp(-z)), without overflow.
  want = -np.mean(presence * -np.logaddexp(0, -z)
                  + (1 - presence) * -np.logaddexp(0, z))
  np.testing.assert_allclose(float(losses.mlc_bce(logits, presence)), want,
                             rtol=1e-5)
  wrong = 1.0 - presence
  big = float(losses.mlc_bce(logits * 100, wrong))
  assert np.isfinite(big) and big > 100


def test_bad_inputs(setup):
  _, scribbles, alpha, stats, _ = setup
  with pytest.raises(ValueError, match='alpha'):
    losses.cfm_loss(stats, alpha[..., :2], scribbles, NUM_CLASSES)
  bad = scribbles.copy()
  bad[0, 0, 0] = NUM_CLASSES
  with pytest.raises(ValueError, match=r'class ids \[4\]'):
    losses.cfm_loss(stats, alpha, bad, NUM_CLASSES)
  with pytest.raises(ValueError, match='scribbles must have'):
    losses.cfm_loss(stats, alpha, scribbles[0], NUM_CLASSES)
  with pytest.raises(ValueError, match='integer'):
    losses.cfm_loss(stats, alpha, scribbles.astype(np.float32), NUM_CLASSES)
  with pytest.raises(ValueError, match='class_weights'):
    losses.cfm_loss(stats, alpha, scribbles, NUM_CLASSES,
                    class_weights=np.ones(4))
  with pytest.raises(ValueError, match='masks'):
    losses.full_ce(np.zeros((1, 3, 3, 4)), np.zeros((1, 3, 4), np.int32))
  with pytest.raises(ValueError, match=r'class ids \[7\]'):
    losses.partial_ce(np.zeros((1, 3, 3, 4)), np.full((1, 3, 3), 7))
  with pytest.raises(ValueError, match='presence'):
    losses.mlc_bce(np.zeros((2, 3)), np.zeros((2, 4)))
  # Under jit, label values are not checked (no host sync) but shapes are.
  out = jax.jit(lambda s: losses.cfm_loss(stats, alpha, s, NUM_CLASSES)[0])(
      jnp.asarray(bad))
  assert np.isfinite(float(out))
