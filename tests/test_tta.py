"""cfcls.inference.network_outputs: test-time augmentation (flip, scales).

Checked against the averaging written out by hand with numpy flips and
jax.image.resize, on a small network that is neither flip- nor
scale-invariant, so a wrong flip-back or resize would show.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cfcls import inference


class _Tiny(nn.Module):
  """3x3 conv (not mirror-symmetric) + a pooled MLC head."""

  @nn.compact
  def __call__(self, x, train=False):
    out = nn.Conv(4, (3, 3))(x) + jnp.linspace(0.0, 1.0, x.shape[2])[
        None, None, :, None]  # depends on the column: not flip-invariant
    return out, nn.Dense(3)(jnp.mean(x, axis=(1, 2)))


def _config(scales=(1.0,), flip=False):
  config = ml_collections.ConfigDict()
  config.tta_scales = scales
  config.tta_flip = flip
  return config


@pytest.fixture(scope='module')
def tiny():
  model = _Tiny()
  images = jax.random.uniform(jax.random.key(0), (2, 12, 10, 3))
  variables = model.init(jax.random.key(1), images)
  return model, variables, images


def test_without_augmentation_it_is_the_network(tiny):
  model, variables, images = tiny
  out, mlc = inference.network_outputs(_config(), model, variables, images)
  want, want_mlc = model.apply(variables, images)
  np.testing.assert_array_equal(out, want)
  np.testing.assert_array_equal(mlc, want_mlc)


def test_flip_averages_the_mirrored_outputs_flipped_back(tiny):
  model, variables, images = tiny
  out, mlc = inference.network_outputs(_config(flip=True), model, variables,
                                       images)
  plain, plain_mlc = model.apply(variables, images)
  mirrored, mirrored_mlc = model.apply(variables,
                                       np.asarray(images)[:, :, ::-1])
  want = (np.asarray(plain) + np.asarray(mirrored)[:, :, ::-1]) / 2
  np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(mlc, (plain_mlc + mirrored_mlc) / 2, rtol=1e-6,
                             atol=1e-6)
  assert np.abs(np.asarray(out) - np.asarray(plain)).max() > 1e-3


def test_scales_resize_the_outputs_back_to_the_image(tiny):
  model, variables, images = tiny
  out, _ = jax.jit(lambda v, x: inference.network_outputs(
      _config(scales=(0.5, 1.0, 1.5), flip=True), model, v, x))(variables,
                                                                images)
  assert out.shape == (2, 12, 10, 4)
  parts = []
  for scale, size in ((0.5, (6, 5)), (1.0, (12, 10)), (1.5, (18, 15))):
    x = jax.image.resize(images, (2,) + size + (3,), 'bilinear')
    for flip in (False, True):
      y, _ = model.apply(variables, x[:, :, ::-1] if flip else x)
      y = y[:, :, ::-1] if flip else y
      parts.append(jax.image.resize(y, (2, 12, 10, 4), 'bilinear'))
  np.testing.assert_allclose(out, sum(parts) / 6, rtol=1e-5, atol=1e-5)


def test_bad_scales_are_named():
  from cfcls import config_schema
  from cfcls.training import config_utils
  config = config_schema.get_config()
  config.tta_scales = (1.0, 10.0)
  with pytest.raises(ValueError, match=r'tta_scales=\(1.0, 10.0\) must be'):
    config_utils.validate_config(config, device_count=1)
