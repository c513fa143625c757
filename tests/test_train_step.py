"""The data-parallel train step: 2 devices == 1 device with the same batch."""

import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from cfcls.training import config_utils
from cfcls.matting import laplacian
from cfcls import losses
from cfcls import metrics as metrics_lib
from cfcls import models
from cfcls import objectives
from cfcls.training import optim
from cfcls import parallel
from cfcls.training import train_step as train_step_lib
import faults_tiny_config

NUM_CLASSES = 4
DATA = parallel.DATA_AXIS
SIZE = 32


def tiny_config(loss):
  config = config_utils.default_schema()
  faults_tiny_config.set_tiny_model(config.model)
  config.data.crop_size = SIZE
  config.loss = loss
  # SGD: Adam's first step is lr * sign(g), which turns float noise in
  # near-zero gradients into lr-sized differences.
  config.optimizer = 'sgd'
  config.learning_rate = 0.1
  config.lr_schedule = 'constant'
  config.batch_size = 4
  config.num_train_steps = 10
  config.head_lr_multiplier = 2.0
  return config


def random_batch(seed, batch=4):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8)
  mask = rng.integers(0, NUM_CLASSES, (batch, SIZE, SIZE)).astype(np.int32)
  # Unequal scribble counts per image, so pCE's global mean over scribbled
  # pixels differs from the mean of per-device means.
  keep = rng.random((batch, SIZE, SIZE)) < np.array(
      [0.02, 0.3, 0.1, 0.05])[:batch, None, None]
  scribbles = np.where(keep, mask, 255).astype(np.int32)
  presence = np.stack([(scribbles == c).any(axis=(1, 2))
                       for c in range(1, NUM_CLASSES)], -1).astype(np.float32)
  valid = np.ones((batch, SIZE, SIZE), np.float32)
  valid[0, :, -5:] = 0.0
  return dict(image=images, scribbles=scribbles, mask=mask, valid=valid,
              presence=presence)


def initial_state_and_step(config, devices):
  """(mesh, initial state, compiled train step) of config on devices; the
  state carries the weight average when config.ema_decay > 0."""
  mesh = parallel.create_mesh(devices)
  num_outputs = objectives.get(config.loss).num_outputs(NUM_CLASSES)
  model = models.create_model(config.model, NUM_CLASSES, num_outputs,
                              axis_name=parallel.DATA_AXIS)
  lr_fn = optim.create_learning_rate_fn(config)
  tx = optim.create_optimizer(config, lr_fn)
  state = train_step_lib.make_init_fn(model, tx, (SIZE, SIZE), mesh,
                                      ema=config.ema_decay > 0)(
                                          jax.random.key(0))
  step = train_step_lib.make_train_step(config, model, tx, NUM_CLASSES, mesh,
                                        lr_fn)
  return mesh, state, step


def run_steps(config, devices, batches):
  mesh, state, step = initial_state_and_step(config, devices)
  init = jax.tree_util.tree_map(np.array, jax.device_get(state))  # a copy
  history = []
  for batch in batches:
    state, metrics = step(state, parallel.host_batch_to_global(batch, mesh))
    history.append(jax.device_get(metrics))
  return init, jax.device_get(state), history


def test_two_devices_equal_one():
  assert jax.device_count() >= 2, 'conftest should provide 2 CPU devices'
  config = tiny_config('cfm')
  # The CFM residual carries lambda = 100 (gradient norms ~1e5): SGD needs a
  # small step.
  config.learning_rate = 1e-6
  batches = [random_batch(0), random_batch(1)]
  init, one, h1 = run_steps(config, jax.devices()[:1], batches)
  _, two, h2 = run_steps(config, jax.devices()[:2], batches)
  assert int(one.step) == int(two.step) == 2
  for key in h1[0]:
    np.testing.assert_allclose(h1[0][key], h2[0][key], rtol=1e-4,
                               err_msg=key)
  # Parameters: compare the updates (new - initial), relative to their size.
  moved = 0
  leaves = jax.tree_util.tree_leaves_with_path(init.params)
  for (path, p0), p1, p2 in zip(leaves, jax.tree_util.tree_leaves(one.params),
                                jax.tree_util.tree_leaves(two.params)):
    d1, d2 = np.asarray(p1) - p0, np.asarray(p2) - p0
    scale = np.max(np.abs(d1))
    moved += int(scale > 1e-6)
    np.testing.assert_allclose(d2, d1, rtol=1e-3, atol=1e-3 * scale + 1e-5,
                               err_msg=jax.tree_util.keystr(path))
  assert moved > len(leaves) // 2  # the step did change the parameters
  # Synchronised BatchNorm: the running statistics agree.
  for (path, a), b in zip(
      jax.tree_util.tree_leaves_with_path(one.batch_stats),
      jax.tree_util.tree_leaves(two.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5,
                               err_msg=jax.tree_util.keystr(path))


def _with_share_axis(result):
  share, terms = result
  return share[None], terms


def _sharded_loss_terms(config, outputs, mlc_logits, batch, devices):
  """The objective's loss shares on a mesh of `devices` (the batch split over them)."""
  mesh = parallel.create_mesh(devices)
  fn = jax.jit(jax.shard_map(
      lambda o, m, b: _with_share_axis(
          objectives.get(config.loss).loss_shares(config, NUM_CLASSES,
                                                  o, m, b)),
      mesh=mesh, in_specs=(P(DATA), P(DATA), P(DATA)), out_specs=(P(DATA), P()),
      check_vma=False))
  batch = dict(batch)
  batch['images'] = batch.pop('image').astype(np.float32) / 255.0
  share, terms = fn(outputs, mlc_logits, batch)
  return jax.device_get(share), jax.device_get(terms)


@pytest.mark.parametrize('loss, cfm_classes', [
    ('pce', None), ('ce', None), ('cfm', 'scribbles'), ('cfm', 'all')])
def test_loss_is_the_global_mean_on_two_devices(loss, cfm_classes):
  """The psum of the devices' shares is the loss of the whole batch.

  pCE / CE: the mean NLL over ALL labelled pixels (the images have very
  different scribble counts, so the mean of per-device means differs).
  CFM + MLC: the mean over all images.
  """
  config = tiny_config(loss)
  config.beta = 0.5
  config.cfm_classes = cfm_classes or 'scribbles'
  batch = random_batch(3)
  # Image 0 has no scribble of class 3: gated out unless cfm_classes='all'.
  batch['scribbles'][0][batch['scribbles'][0] == 3] = 255
  rng = np.random.default_rng(4)
  channels = NUM_CLASSES - 1 if loss == 'cfm' else NUM_CLASSES
  outputs = rng.normal(size=(4, SIZE, SIZE, channels)).astype(np.float32)
  mlc_logits = rng.normal(size=(4, NUM_CLASSES - 1)).astype(np.float32)
  shares, terms = _sharded_loss_terms(config, outputs, mlc_logits, batch,
                                      jax.devices()[:2])
  if loss == 'cfm':
    presence = np.ones((4, NUM_CLASSES - 1), np.float32)
    if cfm_classes == 'scribbles':
      presence = np.stack([(batch['scribbles'] == c).any(axis=(1, 2))
                           for c in range(1, NUM_CLASSES)], -1)
      assert not presence[0, 2] and presence.sum() > 4
    cfm, _ = losses.cfm_loss(
        laplacian.window_stats(batch['image'] / 255.0, valid=batch['valid']),
        outputs, batch['scribbles'], NUM_CLASSES,
        presence=presence.astype(np.float32))
    mlc = losses.mlc_bce(mlc_logits, batch['presence'])
    np.testing.assert_allclose(terms['cfm'], cfm, rtol=1e-5)
    np.testing.assert_allclose(terms['mlc'], mlc, rtol=1e-5)
    np.testing.assert_allclose(np.sum(shares), cfm + 0.5 * mlc, rtol=1e-5)
    return
  labels = batch['scribbles'] if loss == 'pce' else batch['mask']
  logits = outputs.astype(np.float64)
  logp = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
  labelled = labels != 255
  nll = -np.take_along_axis(logp, np.where(labelled, labels, 0)[..., None],
                            -1)[..., 0]
  want = nll[labelled].mean()
  half = [nll[:2][labelled[:2]].mean(), nll[2:][labelled[2:]].mean()]
  if loss == 'pce':
    assert abs(np.mean(half) - want) > 1e-3  # the two definitions differ
  np.testing.assert_allclose(terms[loss], want, rtol=1e-5)
  np.testing.assert_allclose(np.sum(shares), want, rtol=1e-5)
  assert 'mlc' not in terms  # baseline_mlc is off by default


def test_nonfinite_loss_is_named_by_step():
  history = [{'loss': 1.0, 'grad_norm': 2.0}, {'loss': 0.5, 'grad_norm': 1.0},
             {'loss': np.nan, 'grad_norm': 1.0}]
  assert train_step_lib.first_nonfinite(history, 11) == (13, 'loss')
  history[1]['grad_norm'] = np.inf
  assert train_step_lib.first_nonfinite(history, 11) == (12, 'grad_norm')
  assert train_step_lib.first_nonfinite(history[:1], 11) is None


def test_train_step_does_not_import_tensorflow():
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  code = ('import sys; import cfcls.training.train_step, cfcls.training.train_lib, '
          'cfcls.metrics, cfcls.inference; '
          'assert "tensorflow" not in sys.modules, "tensorflow imported"')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=False, cwd=root)
  assert out.returncode == 0, out.stderr[-2000:]


def test_metrics_buffer_stops_on_nan_naming_the_step():
  from cfcls.training import train_lib  # pylint: disable=g-import-not-at-top
  buffer = train_lib.MetricsBuffer()
  for step, loss in ((7, 1.0), (8, 3.0)):
    buffer.add(step, {'loss': np.float32(loss), 'grad_norm': np.float32(1.0)})
  assert buffer.flush() == {'train/loss': 2.0, 'train/grad_norm': 1.0}
  for step, loss in ((9, 1.0), (10, np.inf), (11, np.nan)):
    buffer.add(step, {'loss': np.float32(loss), 'grad_norm': np.float32(1.0)})
  with pytest.raises(FloatingPointError, match='loss is inf at step 10'):
    buffer.flush()


@pytest.mark.parametrize('loss', ['cfm', 'ce'])
def test_eval_step_applies_the_guided_filter(loss):
  # The sharded eval step (2 devices) with guided_filter_radius > 0 counts
  # the labels of: network -> guided filter with the image -> scores ->
  # labels, computed here on one device step by step.
  config = tiny_config(loss)
  config.mlc_gate = False
  config.guided_filter_radius = 3
  config.guided_filter_eps = 1e-2
  mesh = parallel.create_mesh(jax.devices()[:2])
  num_outputs = objectives.get(loss).num_outputs(NUM_CLASSES)
  model = models.create_model(config.model, NUM_CLASSES, num_outputs)
  variables = model.init(jax.random.key(0), np.zeros((1, SIZE, SIZE, 3),
                                                     np.float32), train=False)
  batch = random_batch(3)
  batch['example_mask'] = np.ones(4, np.float32)
  eval_step = train_step_lib.make_eval_step(config, model, NUM_CLASSES, mesh)
  confusion = np.asarray(eval_step(
      variables, parallel.host_batch_to_global(
          {k: batch[k] for k in ('image', 'mask', 'valid', 'example_mask')},
          mesh)))

  images = batch['image'].astype(np.float32) / 255.0
  outputs, mlc_logits = model.apply(variables, images, train=False)
  refined = objectives.get(loss).refine(outputs, images, radius=3,
                                     eps=1e-2)
  scores, _ = objectives.get(loss).class_scores(refined, mlc_logits,
                                     mlc_gate=False)
  labels = objectives.get(loss).labels(refined, scores,
                                    thresholds=tuple(config.thresholds))
  unfiltered = objectives.get(loss).labels(
      outputs, objectives.get(loss).class_scores(outputs, mlc_logits,
                                                 mlc_gate=False)[0],
      thresholds=tuple(config.thresholds))
  assert not np.array_equal(np.asarray(labels), np.asarray(unfiltered))
  for t in range(len(config.thresholds)):
    expected = metrics_lib.confusion_matrix(batch['mask'], labels[t],
                                            NUM_CLASSES, weights=batch['valid'])
    np.testing.assert_array_equal(confusion[t], np.asarray(expected))


def test_ema_follows_the_trained_weights():
  """With ema_decay the state averages its weights after every update:
  ema_t = d_t ema_{t-1} + (1 - d_t) w_t, d_t = min(decay, (1+t)/(10+t)),
  checked against that recursion on the states the plain run produces."""
  config = tiny_config('ce')
  config.ema_decay = 0.5
  batches = [random_batch(0), random_batch(1), random_batch(2)]
  mesh, state, step = initial_state_and_step(config, jax.devices()[:1])
  expected = jax.tree_util.tree_map(
      lambda x: np.array(x, np.float64),
      jax.device_get(state.trained_variables()))
  for t, batch in enumerate(batches):
    state, _ = step(state, parallel.host_batch_to_global(batch, mesh))
    d = min(0.5, (1 + t) / (10 + t))  # 0.1, 0.1818..., 0.25
    expected = jax.tree_util.tree_map(
        lambda e, w, d=d: d * e + (1 - d) * np.asarray(w, np.float64),
        expected, jax.device_get(state.trained_variables()))
  got = jax.device_get(state.variables())
  assert set(got) == {'params', 'batch_stats'}
  for (path, e), g in zip(jax.tree_util.tree_leaves_with_path(expected),
                          jax.tree_util.tree_leaves(got)):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))
  # The average lags the trained weights: it is not a copy of them.
  trained = jax.device_get(state.trained_variables())
  assert any(not np.allclose(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(got)))


def test_no_ema_by_default():
  config = tiny_config('ce')
  assert config.ema_decay == 0
  # The initial state only: jax compiles the train step on its first call.
  _, state, _ = initial_state_and_step(config, jax.devices()[:1])
  assert state.ema is None
  for a, b in zip(jax.tree_util.tree_leaves(state.variables()),
                  jax.tree_util.tree_leaves(state.trained_variables())):
    np.testing.assert_array_equal(a, b)
