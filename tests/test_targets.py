"""Closed-form targets: the target terms, the cache and its augmentation."""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from cfcls import config_schema
from cfcls.training import config_utils
from cfcls.matting import laplacian
from cfcls import losses
from cfcls.matting import solver
from cfcls import objectives
from cfcls.data import pipeline
from cfcls.data import targets
from tests import data_fixtures

K = 3


def _scene(seed=0, h=10, w=12):
  rng = np.random.default_rng(seed)
  image = rng.random((h, w, 3))
  scribbles = np.full((h, w), 255, np.int32)
  scribbles[1:3, 1:4], scribbles[6:8, 7:10], scribbles[8, 1:3] = 1, 2, 0
  return image, scribbles


def test_solve_image_matches_the_scipy_reference():
  image, scribbles = _scene()
  ref = solver.solve_alpha_direct(image, scribbles, K, lam=100.0)
  got = targets.solve_image(image, scribbles, K, 100.0, 1e-7, 1)
  np.testing.assert_allclose(got, ref, atol=1e-5)


def test_target_term_value_and_gradient_against_scipy():
  image, scribbles = _scene(1)
  star = np.clip(solver.solve_alpha_direct(image, scribbles, K), 0, 1)
  rng = np.random.default_rng(3)
  alpha = rng.normal(0.5, 0.5, (2,) + star.shape)
  tgt = np.stack([star, star[::-1]])
  valid = np.ones(alpha.shape[:3])
  valid[1, :, :3] = 0
  n = star.shape[0] * star.shape[1]
  ref = np.sum(valid[..., None] * (alpha - tgt) ** 2) / n / 2
  fn = lambda a: losses.target_loss(a, tgt, valid)[0]
  np.testing.assert_allclose(fn(alpha), ref, rtol=1e-5)
  np.testing.assert_allclose(jax.grad(fn)(alpha),
                             valid[..., None] * (alpha - tgt) / n, atol=1e-6)
  # Its minimiser is the closed-form matte (where that lies in [0, 1]).
  assert float(fn(tgt)) < 1e-12


def _objective_loss(config, batch, outputs, mlc):
  fn = lambda o, m, b: objectives.get(config.loss).loss_shares(
      config, K, o, m, b, axis_name='d')
  share, terms = jax.vmap(fn, axis_name='d')(outputs[None], mlc[None],
                                             jax.tree.map(lambda x: x[None],
                                                          batch))
  return float(share[0]), {k: float(v[0]) for k, v in terms.items()}


def _batch(seed=2):
  image, scribbles = _scene(seed)
  star = np.clip(solver.solve_alpha_direct(image, scribbles, K), 0, 1)
  batch = dict(images=jnp.asarray(image[None], jnp.float32),
               scribbles=jnp.asarray(scribbles[None]),
               valid=jnp.ones((1,) + scribbles.shape, jnp.float32),
               presence=jnp.ones((1, K - 1), jnp.float32),
               targets=jnp.asarray(star[None], jnp.float32))
  rng = np.random.default_rng(seed)
  return (batch, jnp.asarray(rng.normal(size=star.shape)[None], jnp.float32),
          jnp.asarray(rng.normal(size=(1, K - 1)), jnp.float32))


def test_paper_recipe_loss_is_unchanged():
  config = config_schema.load_config_file(
      os.path.join(os.path.dirname(__file__), '..', 'configs', 'voc.py'))
  assert (config.loss, config.cfm_norm, config.cfm_classes) == (
      'cfm', 'residual', 'scribbles')
  assert not config.data.targets.enabled
  assert not objectives.needs_targets(config)
  batch, outputs, mlc = _batch()
  share, terms = _objective_loss(config, batch, outputs, mlc)
  stats = laplacian.window_stats(batch['images'], eps=1e-7, radius=1,
                                 valid=batch['valid'])
  cfm = losses.cfm_loss(stats, outputs, batch['scribbles'], K, lam=100.0,
                        norm='residual')[0]
  mlc_ref = losses.mlc_bce(mlc, batch['presence'])
  assert set(terms) == {'cfm', 'mlc'}
  np.testing.assert_allclose(share, float(cfm + mlc_ref), rtol=1e-5)


def test_target_norm_blends_the_energy_and_needs_targets():
  config = config_schema.get_config()
  config.cfm_norm, config.cfm_energy_weight = 'target', 0.5
  assert any('data.targets.enabled' in p
             for p in config_utils._value_problems(config, None))
  config.data.targets.enabled = True
  assert not config_utils._value_problems(config, None)
  batch, outputs, mlc = _batch()
  share, terms = _objective_loss(config, batch, outputs, mlc)
  stats = laplacian.window_stats(batch['images'], eps=1e-7, radius=1,
                                 valid=batch['valid'])
  energy = losses.cfm_loss(stats, outputs, batch['scribbles'], K,
                           presence=batch['presence'], norm='energy')[0]
  tgt = losses.target_loss(outputs, batch['targets'], batch['valid'])[0]
  np.testing.assert_allclose(terms['target'], float(tgt), rtol=1e-5)
  np.testing.assert_allclose(terms['cfm'], 0.5 * float(energy), rtol=1e-5)
  np.testing.assert_allclose(
      share, float(tgt + 0.5 * energy + losses.mlc_bce(mlc,
                                                       batch['presence'])),
      rtol=1e-5)


def test_two_stage_labels_and_soft_targets():
  t = jnp.array([[[[0.7, 0.2], [0.4, 0.45], [0.1, 0.9], [0.9, 0.0]]]])
  scr = jnp.array([[[255, 255, 255, 0]]])
  valid = jnp.array([[[1.0, 1.0, 0.0, 1.0]]])
  np.testing.assert_array_equal(losses.closed_form_labels(t, scr, valid, 0.5),
                                [[[1, 0, 255, 0]]])
  # margin 0.1: 0.45 is within 0.1 of the threshold and 0.7 / 0.2 and
  # 0.9 / 0.0 are sure; a scribbled pixel is kept whatever its alpha*.
  np.testing.assert_array_equal(
      losses.closed_form_labels(t, scr, valid, 0.5, margin=0.1),
      [[[1, 255, 255, 0]]])
  # Two classes both above the threshold and close: unsure, left out.
  close = jnp.array([[[[0.8, 0.75], [0.8, 0.3], [0.2, 0.1]]]])
  np.testing.assert_array_equal(
      losses.closed_form_labels(close, jnp.full((1, 1, 3), 255),
                                jnp.ones((1, 1, 3)), 0.5, margin=0.1),
      [[[255, 1, 0]]])
  logits = jnp.log(jnp.array([[[[0.3, 0.7, 1e-9]] * 4]]))
  value, count = losses.soft_target_ce(logits, t, scr, valid)
  assert count == 3 and np.isfinite(value)


@pytest.fixture(scope='module')
def folder_config(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('folder'))
  data_fixtures.make_folder(root, names=('a', 'b', 'c', 'd'), size=(24, 20))
  config = config_schema.get_data_config()
  config.name, config.builder_config = 'scribble_folder', ''
  config.manual_dir = root
  config.data_dir = str(tmp_path_factory.mktemp('tfds'))
  config.crop_size, config.scale_range = 16, (0.7, 1.4)
  config.targets.enabled = True
  return config


def test_cached_targets_equal_a_fresh_solve_after_augmentation(
    folder_config):
  """Tolerance: the uint8 quantisation, 1/510 (bilinear keeps the bound)."""
  config = folder_config
  builder = pipeline.get_builder(config)
  path = targets.prepare(builder, config, 'train', K)
  assert targets.prepare(builder, config, 'train', K) == path  # reused
  lookup = targets.Lookup(path)
  decode = pipeline._decoder(builder)
  for i, ex in enumerate(pipeline._read(builder, 'train')):
    image = decode(ex, 'image').numpy()
    fresh = targets.solve_image(image, decode(ex, 'scribbles').numpy(), K,
                                100.0, 1e-7, 1)
    fresh = tf.constant(np.clip(fresh, 0, 1) * targets.QUANT, tf.float32)
    seed = tf.constant([7, i], tf.int64)
    args = (ex, decode, seed, (16, 16), (0.7, 1.4), True, 'scribbles', K)
    cached = pipeline._augment(*args, lookup.tf_lookup(ex['file_name']))
    ref = pipeline._augment(*args, fresh)
    np.testing.assert_allclose(cached['targets'], ref['targets'],
                               atol=0.5 / 255 + 1e-6)
    # Aligned with the label maps: on (valid) scribbled pixels the target
    # of the scribble's class is high.
    scr, t = cached['scribbles'].numpy(), cached['targets'].numpy()
    fg = (scr > 0) & (scr < K)
    if fg.any():
      assert np.median(t[fg, scr[fg] - 1]) > 0.8
  batch = next(pipeline.create_train_iterator(config, 2, seed=0))
  assert batch['targets'].shape == (2, 16, 16, K - 1)
  assert batch['targets'].min() >= 0 and batch['targets'].max() <= 1
  assert np.all(batch['targets'][batch['valid'] == 0] == 0)


def _vetted_reference(targets_, check, scribbles, threshold, margin):
  """numpy, one pixel at a time: the labels of targets_ and of check (argmax
  above the threshold, unsure within the margin, scribbles kept); an object
  label of targets_ that check does not give is left out (255)."""

  def label(a, s):
    if s != 255:
      return s
    order = np.sort(a)
    top, second = order[-1], (order[-2] if a.size > 1 else -np.inf)
    if abs(top - threshold) < margin or (top >= threshold
                                         and top - second < margin):
      return 255
    return int(np.argmax(a)) + 1 if top >= threshold else 0

  out = np.zeros(scribbles.shape, np.int32)
  for idx in np.ndindex(*scribbles.shape):
    got = label(targets_[idx], scribbles[idx])
    if 0 < got < 255 and label(check[idx], scribbles[idx]) != got:
      got = 255
    out[idx] = got
  return out


def test_check_mattes_veto_the_object_labels_they_do_not_confirm():
  rng = np.random.default_rng(3)
  shape = (2, 9, 11, K - 1)
  t = rng.random(shape).astype(np.float32)
  # check mattes: below the mattes (a min), often far below
  check = (t * rng.choice([1.0, 0.9, 0.3], size=shape)).astype(np.float32)
  scr = np.where(rng.random(shape[:3]) < 0.1, rng.integers(0, K, shape[:3]),
                 255).astype(np.int32)
  valid = np.ones(shape[:3], np.float32)
  for threshold, margin in ((0.6, 0.2), (0.5, 0.0), (0.5, 0.1)):
    got = np.asarray(losses.closed_form_labels(t, scr, valid, threshold,
                                               margin, check=check))
    want = _vetted_reference(t, check, scr, threshold, margin)
    np.testing.assert_array_equal(got, want)
    plain = np.asarray(losses.closed_form_labels(t, scr, valid, threshold,
                                                 margin))
    vetoed = (got == 255) & (plain != 255)
    # Only object labels go, never background or a scribble; and some do.
    assert vetoed.any() and np.all(plain[vetoed] > 0)
    assert not np.any(vetoed & (scr != 255))
  # The check equal to the mattes vetoes nothing.
  np.testing.assert_array_equal(
      losses.closed_form_labels(t, scr, valid, 0.6, 0.2, check=t),
      losses.closed_form_labels(t, scr, valid, 0.6, 0.2))


def test_two_stage_reads_the_check_targets():
  config = config_schema.get_config()
  config.loss = 'two_stage'
  config.target_threshold, config.target_margin = 0.5, 0.0
  t = jnp.array([[[[0.9, 0.0], [0.0, 0.8], [0.1, 0.1]]]])
  check = jnp.array([[[[0.9, 0.0], [0.0, 0.2], [0.1, 0.1]]]])
  batch = {'targets': t, 'scribbles': jnp.full((1, 1, 3), 255),
           'valid': jnp.ones((1, 1, 3))}
  logits = jnp.log(jnp.array([[[[0.2, 0.7, 0.1], [0.2, 0.1, 0.7],
                                [0.6, 0.2, 0.2]]]]))
  objective = objectives.get('two_stage')
  plain, n_plain = objective._cross_entropy(config, logits, batch, K)
  vetted, n_vetted = objective._cross_entropy(
      config, logits, dict(batch, check_targets=check), K)
  assert (int(n_plain), int(n_vetted)) == (3, 2)
  # the middle pixel (label 2, not confirmed) is left out of the mean
  want = -(np.log(0.7) + np.log(0.6)) / 2
  np.testing.assert_allclose(vetted, want, rtol=1e-5)
  assert not np.isclose(plain, want)


def test_split_checks_names_a_wrong_channel_count():
  x = np.zeros((4, 4, 2 * (K - 1)))
  mattes, check = targets.split_checks(x, K)
  assert mattes.shape == check.shape == (4, 4, K - 1)
  assert targets.split_checks(x[..., :K - 1], K)[1] is None
  with pytest.raises(ValueError, match='3 channels.*need 2'):
    targets.split_checks(np.zeros((4, 4, 3)), K)


def test_check_radius_caches_the_check_mattes_apart(folder_config):
  """check_radius > 0: its own cache (the fingerprint without it is the old
  one), 2 (K-1) channels, the check mattes min(r1, r2) of the exact solves,
  augmented with the mattes into batch['check_targets']."""
  plain = folder_config
  config = ml_collections.ConfigDict(plain.to_dict())
  config.targets.check_radius = 2
  builder = pipeline.get_builder(config)
  without = ml_collections.ConfigDict(plain.to_dict())
  del without.targets['check_radius']  # a config from before the field
  assert (targets.fingerprint(builder, without, 'train', K)
          == targets.fingerprint(builder, plain, 'train', K))
  path = targets.prepare(builder, config, 'train', K)
  assert path != targets.cache_dir(builder, plain, 'train', K)
  lookup = targets.Lookup(path)
  assert lookup.channels == 2 * (K - 1)
  decode = pipeline._decoder(builder)
  for ex in pipeline._read(builder, 'train'):
    image = decode(ex, 'image').numpy()
    scr = decode(ex, 'scribbles').numpy()
    r1, r2 = (np.clip(targets.solve_image(image, scr, K, 100.0, 1e-7, r),
                      0, 1) for r in (1, 2))
    stored = lookup(ex['file_name'].numpy()) / targets.QUANT
    np.testing.assert_allclose(stored[..., :K - 1], r1, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(stored[..., K - 1:], np.minimum(r1, r2),
                               atol=0.5 / 255 + 1e-6)
  batch = next(pipeline.create_train_iterator(config, 2, seed=0))
  assert batch['targets'].shape == batch['check_targets'].shape == (
      2, 16, 16, K - 1)
  # min(r1, r2) <= r1 up to the quantisation and the bilinear resampling
  assert np.all(batch['check_targets'] <= batch['targets'] + 1 / 255 + 1e-6)
  plain_batch = next(pipeline.create_train_iterator(plain, 2, seed=0))
  assert 'check_targets' not in plain_batch
  np.testing.assert_allclose(plain_batch['targets'], batch['targets'],
                             atol=1e-6)


def test_confident_disagreements_are_dropped_late_in_training():
  """label_drop_prob: a label the network gives below that probability is
  left out (not a scribble), only from step label_drop_after * steps on."""
  probs = np.array([[[[0.05, 0.90, 0.05], [0.50, 0.45, 0.05],
                      [0.02, 0.03, 0.95], [0.90, 0.05, 0.05]]]])
  logits = jnp.log(jnp.asarray(probs, jnp.float32))
  labels = jnp.array([[[0, 1, 1, 2]]])
  scr = jnp.array([[[255, 255, 255, 2]]])
  got = losses.drop_confident_disagreements(logits, labels, scr, 0.1)
  # 0 at p 0.05 and 1 at p 0.03 go; 1 at p 0.45 stays; the scribble stays.
  np.testing.assert_array_equal(got, [[[255, 1, 255, 2]]])
  config = config_schema.get_config()
  config.loss, config.num_train_steps = 'two_stage', 10
  config.target_threshold, config.target_margin = 0.5, 0.0
  config.label_drop_prob, config.label_drop_after = 0.1, 0.5
  t = jnp.array([[[[0.0, 0.0], [0.9, 0.0], [0.9, 0.0], [0.0, 0.9]]]])
  batch = {'targets': t, 'scribbles': scr, 'valid': jnp.ones((1, 1, 4))}
  objective = objectives.get('two_stage')
  counts = [int(objective._cross_entropy(config, logits, dict(
      batch, step=jnp.asarray(step)), K)[1]) for step in (4, 5)]
  assert counts == [4, 2]
