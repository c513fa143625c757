"""The matting-Laplacian regulariser of the softmax losses (laplacian_weight).

losses.laplacian_energy = sum_c p_c^T L p_c against scipy's sparse L of the
same crop (value, gradient through the softmax), a float64 finite
difference, padding that never enters, and the objectives' share.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfcls import config_schema
from cfcls import losses
from cfcls import objectives
from cfcls.matting import laplacian

K = 4


def _scene(seed=0, h=13, w=16):
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
  image = np.stack([0.2 + 0.6 * xs, 0.5 + 0.3 * np.sin(4 * ys),
                    0.3 + 0.4 * xs * ys], -1)
  image[:, w // 2:] = 1.0 - image[:, w // 2:]  # a colour edge
  image = np.clip(image + 0.03 * rng.standard_normal(image.shape), 0, 1)
  logits = 2.0 * rng.standard_normal((h, w, K))
  return image.astype(np.float32), logits.astype(np.float32)


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _sparse_energy_and_grad(image, logits, eps):
  """sum_c p_c^T L p_c and its gradient w.r.t. the logits, with scipy."""
  lmat = laplacian.sparse_laplacian(image.astype(np.float64), eps=eps)
  p = _softmax(logits.astype(np.float64))
  h, w, k = p.shape
  flat = p.reshape(-1, k)
  lp = lmat @ flat
  energy = float(np.sum(flat * lp))
  g = 2 * lp  # d energy / d p
  dz = flat * (g - np.sum(flat * g, axis=1, keepdims=True))
  return energy, dz.reshape(h, w, k)


@pytest.mark.parametrize('precision', ['float64', 'float32'])
def test_energy_and_gradient_match_scipy(precision):
  image, logits = _scene()
  eps = 1e-5
  stats = laplacian.window_stats(jnp.asarray(image[None]), eps=eps,
                                 precision=precision)
  fn = jax.jit(jax.value_and_grad(lambda z: losses.laplacian_energy(
      stats, jax.nn.softmax(z, axis=-1))[0]))
  value, grad = fn(jnp.asarray(logits[None]))
  want, want_grad = _sparse_energy_and_grad(image, logits, eps)
  assert want > 1.0  # random labels across flat colour cost something
  np.testing.assert_allclose(float(value), want, rtol=2e-4)
  scale = np.abs(want_grad).max()
  assert np.abs(np.asarray(grad[0]) - want_grad).max() < 2e-4 * scale
  _, count = losses.laplacian_energy(stats, jax.nn.softmax(logits[None]))
  assert float(count) == image.shape[0] * image.shape[1]


def test_energy_is_zero_for_labels_that_follow_the_colour_model():
  # Two flat colours; labels constant on each side: no window pays.
  image = np.zeros((10, 12, 3), np.float32)
  image[:, :6] = (0.8, 0.2, 0.1)
  image[:, 6:] = (0.1, 0.3, 0.9)
  p = np.zeros((1, 10, 12, 2), np.float32)
  p[0, :, :6, 0] = 1
  p[0, :, 6:, 1] = 1
  stats = laplacian.window_stats(jnp.asarray(image[None]), eps=1e-5)
  energy, _ = losses.laplacian_energy(stats, jnp.asarray(p))
  assert abs(float(energy)) < 1e-3
  # The same labels moved off the edge (inside flat colour) do pay.
  shifted = np.roll(p, 3, axis=2)
  moved, _ = losses.laplacian_energy(stats, jnp.asarray(shifted))
  assert float(moved) > 1.0


def test_gradient_matches_finite_differences_float64():
  image, logits = _scene(seed=3)
  stats = laplacian.window_stats(jnp.asarray(image[None]), eps=1e-5)
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    z = jnp.asarray(logits[None], jnp.float64)
    f = lambda z: jnp.sum(jax.nn.softmax(z, -1) * laplacian.laplacian_matvec(
        stats, jax.nn.softmax(z, -1)))
    value, grad = jax.value_and_grad(f)(z)
    for _ in range(3):
      v = jnp.asarray(rng.standard_normal(z.shape))
      step = 1e-4
      fd = (f(z + step * v) - f(z - step * v)) / (2 * step)
      np.testing.assert_allclose(float(fd), float(jnp.vdot(grad, v)),
                                 rtol=1e-6)
    # laplacian_energy in float64 is this same function.
    e64 = losses.laplacian_energy(stats, jax.nn.softmax(z, -1))[0]
  np.testing.assert_allclose(float(e64), float(value), rtol=1e-6)


def test_padding_never_enters():
  image, logits = _scene(seed=2, h=11, w=14)
  h, w = image.shape[:2]
  hp, wp = h + 5, w + 7
  padded = np.zeros((hp, wp, 3), np.float32)
  padded[:h, :w] = image
  padded[h:, :] = 0.5
  valid = np.zeros((1, hp, wp), np.float32)
  valid[0, :h, :w] = 1
  rng = np.random.default_rng(4)
  z = 3 * rng.standard_normal((1, hp, wp, K)).astype(np.float32)
  z[0, :h, :w] = logits
  stats = laplacian.window_stats(jnp.asarray(padded[None]), eps=1e-5,
                                 valid=jnp.asarray(valid))
  fn = jax.value_and_grad(lambda z: losses.laplacian_energy(
      stats, jax.nn.softmax(z, -1), jnp.asarray(valid))[0])
  value, grad = fn(jnp.asarray(z))
  want, want_grad = _sparse_energy_and_grad(image, logits, 1e-5)
  np.testing.assert_allclose(float(value), want, rtol=2e-4)
  grad = np.asarray(grad[0])
  assert np.all(grad[h:] == 0) and np.all(grad[:, w:] == 0)
  assert np.abs(grad[:h, :w] - want_grad).max() < 2e-4 * np.abs(
      want_grad).max()
  # Other logits in the padding: the same value.
  z2 = z.copy()
  z2[0, h:] = -z2[0, h:]
  z2[0, :, w:] = 5.0
  np.testing.assert_allclose(float(fn(jnp.asarray(z2))[0]), float(value),
                             rtol=1e-6)
  _, count = losses.laplacian_energy(stats, jax.nn.softmax(z, -1),
                                     jnp.asarray(valid))
  assert float(count) == h * w


@pytest.mark.parametrize('loss', ['pce', 'two_stage'])
def test_softmax_objective_adds_the_weighted_energy(loss):
  image, logits = _scene(seed=5)
  h, w = image.shape[:2]
  scribbles = np.full((1, h, w), 255, np.int32)
  scribbles[0, 2, 1:6] = 0
  scribbles[0, 8, 9:14] = 2
  targets = np.zeros((1, h, w, K - 1), np.float32)
  targets[0, :, 8:, 1] = 1
  batch = dict(images=jnp.asarray(image[None]),
               scribbles=jnp.asarray(scribbles),
               valid=jnp.ones((1, h, w), jnp.float32),
               presence=jnp.ones((1, K - 1), jnp.float32),
               targets=jnp.asarray(targets))
  config = config_schema.get_config()
  config.loss = loss
  objective = objectives.get(loss)

  def shares(weight):
    config.laplacian_weight = weight
    fn = lambda o, m, b: objective.loss_shares(config, K, o, m, b,
                                               axis_name='d')
    share, terms = jax.vmap(fn, axis_name='d')(
        jnp.asarray(logits[None, None]), jnp.zeros((1, 1, K - 1)),
        jax.tree.map(lambda x: x[None], batch))
    return float(share[0]), {k: float(v[0]) for k, v in terms.items()}

  base, base_terms = shares(0.0)
  assert 'laplacian' not in base_terms
  with_reg, terms = shares(0.3)
  want, _ = _sparse_energy_and_grad(image, logits, config.laplacian_reg_eps)
  np.testing.assert_allclose(terms['laplacian'], 0.3 * want / (h * w),
                             rtol=2e-4)
  np.testing.assert_allclose(with_reg, base + terms['laplacian'], rtol=1e-5)


def test_config_checks():
  from cfcls.training import config_utils  # pylint: disable=g-import-not-at-top
  config = config_schema.get_config()
  config.num_train_steps = 10
  config.loss = 'cfm'
  config.laplacian_weight = 1.0
  with pytest.raises(config_utils.ConfigError, match='laplacian_weight'):
    config_utils.validate_config(config)
  config.loss = 'pce'
  config.laplacian_weight = -1.0
  with pytest.raises(config_utils.ConfigError, match='laplacian_weight'):
    config_utils.validate_config(config)
  config.laplacian_weight = 1.0
  config_utils.validate_config(config)
