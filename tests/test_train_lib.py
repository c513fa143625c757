"""train_and_evaluate / evaluate / predict end to end on tiny synthetic data.

One module fixture trains a tiny network for 2 steps, then starts again in the
same workdir with num_train_steps=3 (a restarted run); the tests check the
resume, the workdir contents, evaluation of the best checkpoint and predict.
"""

import copy
import dataclasses
import json
import os

import cv2
import jax
import numpy as np
import pytest

from cfcls.training import checkpointing
from cfcls.training import config_utils
from cfcls.training import predict_lib
from cfcls.training import run_lib
from cfcls.training import stopping
from cfcls.training import train_lib
import faults_tiny_config
from cfcls.data import pipeline

IMAGE = 40


def tiny_config(data_dir):
  config = config_utils.default_schema()
  faults_tiny_config.set_tiny_model(config.model)
  config.data.name = 'synthetic_scenes'
  config.data.builder_config = ''
  config.data.data_dir = str(data_dir)
  config.data.synthetic.num_train = 8
  config.data.synthetic.num_val = 3  # eval batches of 2: one padded example
  config.data.synthetic.image_size = IMAGE
  config.data.crop_size = 32
  config.data.eval_pad_size = IMAGE
  config.batch_size = 2
  config.eval_batch_size = 2
  config.learning_rate = 1e-3
  config.lr_schedule = 'constant'
  config.num_train_steps = 3
  config.log_every_steps = 1
  config.eval_every_steps = 1
  config.checkpoint_every_steps = 1
  config.keep_checkpoints = 2
  config.num_summary_images = 1
  config.matting_metrics = False
  return config


class _Spy:
  """Wraps the run's train step: records its first input, may stop the run.

  Args:
    stop_after: call stopping.request_stop() (what SIGTERM does in train.py)
      after this many steps.
  """

  def __init__(self, monkeypatch, stop_after=None):
    self.start_steps = []
    self.first_state = None
    self.first_batch = None
    self.calls = 0
    build = run_lib.build
    create_train_iterator = pipeline.create_train_iterator

    def spy_build(*args, **kwargs):
      run = build(*args, **kwargs)
      fn = run.train_step

      def wrapped(state, batch):
        if self.first_state is None:  # copy before the state is donated
          self.first_state = jax.tree_util.tree_map(np.array,
                                                    jax.device_get(state))
          self.first_batch = jax.tree_util.tree_map(np.array,
                                                    jax.device_get(batch))
        self.calls += 1
        if self.calls == stop_after:
          stopping.request_stop()
        return fn(state, batch)
      return dataclasses.replace(run, train_step=wrapped)

    def spy_iterator(*args, **kwargs):
      self.start_steps.append(kwargs.get('start_step'))
      return create_train_iterator(*args, **kwargs)

    monkeypatch.setattr(run_lib, 'build', spy_build)
    monkeypatch.setattr(pipeline, 'create_train_iterator', spy_iterator)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A 3-step run stopped after step 2 (as by SIGTERM), then restarted."""
  root = tmp_path_factory.mktemp('train_lib')
  workdir = str(root / 'run')
  config = tiny_config(root / 'tfds')
  with pytest.MonkeyPatch.context() as mp:
    _Spy(mp, stop_after=2)
    first = train_lib.train_and_evaluate(config, workdir)
  steps_after_first = checkpointing.Checkpoints(
      workdir, read_only=True).latest.all_steps()
  with pytest.MonkeyPatch.context() as mp:
    spy = _Spy(mp)
    second = train_lib.train_and_evaluate(config, workdir)
  return dict(workdir=workdir, config=config, first=first, second=second,
              steps_after_first=steps_after_first, spy=spy, root=root)


def test_restart_continues_from_the_last_step(trained):
  assert trained['first'] == {'step': 2, 'stopped': True}
  assert not stopping.stop_requested()
  assert sorted(trained['steps_after_first']) == [1, 2]
  spy = trained['spy']
  # The input continues at batch 2 and the state is checkpoint 2's.
  assert spy.start_steps == [2]
  assert int(spy.first_state.step) == 2
  config = trained['config']
  run = run_lib.build(config, 6, ['c%d' % i for i in range(6)])
  ckpts = checkpointing.Checkpoints(trained['workdir'], read_only=True)
  saved = ckpts.latest.restore(2, args=checkpointing.ocp.args.StandardRestore(
      checkpointing.abstract_like(run_lib.abstract_state(run))))
  for a, b in zip(jax.tree_util.tree_leaves(saved),
                  jax.tree_util.tree_leaves(spy.first_state)):
    np.testing.assert_array_equal(np.asarray(a), b)
  expected = next(pipeline.create_train_iterator(
      config.data, config.batch_size, seed=config.seed, start_step=2))
  for key in ('image', 'scribbles', 'mask', 'valid', 'presence'):
    np.testing.assert_array_equal(spy.first_batch[key], expected[key], key)
  # The restarted run ends at step 3 and keeps the 2 latest checkpoints.
  assert trained['second']['step'] == 3
  assert sorted(ckpts.latest.all_steps()) == [2, 3]
  ckpts.close()


def test_workdir_contents(trained):
  workdir = trained['workdir']
  with open(os.path.join(workdir, 'metrics.json')) as f:
    metrics = json.load(f)
  val = metrics['splits']['validation']
  assert metrics['step'] == 3 and metrics['loss'] == 'cfm'
  assert sorted(val['thresholds']) == ['0.4', '0.5', '0.6', '0.7']
  for t in val['thresholds'].values():
    confusion = np.array(t['confusion'])
    # Every validation pixel counted once: 3 images of IMAGE^2 (no void).
    assert confusion.sum() == 3 * IMAGE * IMAGE
    assert len(t['iou']) == 6
  assert val['miou'] == val['thresholds']['0.5']['miou']
  with open(os.path.join(workdir, 'dataset.json')) as f:
    assert json.load(f)['class_names'][0] == 'background'
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))


def test_eval_restores_the_best_checkpoint(trained):
  config = trained['config']
  workdir = trained['workdir']
  ckpts = checkpointing.Checkpoints(workdir, read_only=True)
  best_step = ckpts.best.best_step()
  best_miou = ckpts.best_metric()
  ckpts.close()
  assert best_step in (1, 2, 3)
  config.matting_metrics = True
  config.matting_max_images = 1
  result = train_lib.evaluate(config, workdir)
  assert result['step'] == best_step and result['checkpoint'] == 'best'
  val = result['splits']['validation']
  # The same state on the same data: the very same confusion counts.
  assert val['miou'] == pytest.approx(best_miou, abs=1e-12)
  assert val['matting']['num_images'] == 1
  assert val['matting']['mse'] >= 0 and val['matting']['gradient_error'] >= 0
  with open(os.path.join(workdir, 'metrics.json')) as f:
    assert json.load(f)['step'] == best_step
  with pytest.raises(FileNotFoundError, match='no checkpoint for step 77'):
    train_lib.evaluate(config, workdir, step=77)


def test_eval_uses_the_network_and_loss_the_run_was_trained_with(trained):
  # As `python train.py --mode=eval --workdir=W` without the training run's
  # --config.model.* and --config.loss: the checkpoint still restores into
  # its own network, and the evaluation is the same.
  config = copy.deepcopy(trained['config'])
  ckpts = checkpointing.Checkpoints(trained['workdir'], read_only=True)
  best_miou = ckpts.best_metric()
  ckpts.close()
  config.loss = 'pce' if config.loss != 'pce' else 'cfm'
  config.model.width = 2 * config.model.width
  other = copy.deepcopy(config)
  other.model.dtype = 'bfloat16'  # an evaluation setting: kept
  changed = run_lib.use_trained_network(other, trained['workdir'])
  assert sorted(c.split(':')[0] for c in changed) == ['loss', 'model.width']
  assert other.model.dtype == 'bfloat16'
  result = train_lib.evaluate(config, trained['workdir'])
  assert config.loss == trained['config'].loss
  assert config.model.width == trained['config'].model.width
  assert result['splits']['validation']['miou'] == pytest.approx(best_miou,
                                                                abs=1e-12)
  broken = trained['root'] / 'broken'
  broken.mkdir()
  (broken / 'config.json').write_text('{"loss": ')
  with pytest.raises(ValueError, match='broken/config.json is not valid JSON'):
    run_lib.use_trained_network(copy.deepcopy(config), str(broken))


def test_weight_average_is_checkpointed_and_evaluated(trained):
  """A run with ema_decay saves the average with the weights, and
  --mode=eval (here without the training run's ema_decay) restores it and
  evaluates the average: the final evaluation's mIoU again."""
  config = copy.deepcopy(trained['config'])  # its prepared data, 3 steps
  config.ema_decay = 0.9
  config.eval_every_steps = 0
  workdir = str(trained['root'] / 'ema')
  final = train_lib.train_and_evaluate(config, workdir)
  plain = copy.deepcopy(config)
  plain.ema_decay = 0.0
  _, state, step, _ = run_lib.restore_for_eval(plain, workdir, 3)
  assert plain.ema_decay == 0.9 and step == 3
  assert state.ema is not None
  assert any(not np.allclose(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(state.ema['params']),
      jax.tree_util.tree_leaves(state.params)))
  again = train_lib.evaluate(plain, workdir, step=3)
  assert again['splits']['validation']['miou'] == pytest.approx(
      final['splits']['validation']['miou'], abs=1e-12)


def test_best_checkpoint_is_the_highest_miou(tmp_path):
  """Checkpoints keeps the best by mIoU apart from the latest ones."""
  ckpts = checkpointing.Checkpoints(str(tmp_path), keep=1)
  for step, miou in ((1, 0.5), (2, 0.9), (3, 0.7)):
    state = {'w': np.full((2,), float(step), np.float32)}
    ckpts.save(step, state)
    ckpts.save_if_best(step, state, miou)
  ckpts.wait()
  template = {'w': np.zeros((2,), np.float32)}
  state, step, source = ckpts.restore_for_eval(template)
  assert (step, source) == (2, 'best')
  np.testing.assert_array_equal(state['w'], [2.0, 2.0])
  assert ckpts.latest.all_steps() == [3]
  restored, step = ckpts.restore_latest(template)
  assert step == 3
  np.testing.assert_array_equal(restored['w'], [3.0, 3.0])
  ckpts.close()


def test_predict_writes_the_expected_files(trained):
  config = trained['config']
  inputs = trained['root'] / 'inputs'
  outputs = trained['root'] / 'outputs'
  inputs.mkdir()
  rng = np.random.default_rng(0)
  cv2.imwrite(str(inputs / 'square.png'),
              rng.integers(0, 256, (IMAGE, IMAGE, 3), dtype=np.uint8))
  cv2.imwrite(str(inputs / 'odd.jpg'),
              rng.integers(0, 256, (37, 45, 3), dtype=np.uint8))
  (inputs / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
  (inputs / 'notes.txt').write_text('not an image')
  report = predict_lib.predict(config, trained['workdir'], str(inputs),
                               str(outputs))
  assert sorted(report['written']) == ['odd.jpg', 'square.png']
  assert list(report['failed']) == ['broken.png']
  with open(outputs / 'errors.json') as f:
    assert list(json.load(f)) == ['broken.png']
  names = json.load(open(os.path.join(trained['workdir'], 'dataset.json')))[
      'class_names']
  for stem, (h, w) in (('square', (IMAGE, IMAGE)), ('odd', (37, 45))):
    labels = cv2.imread(str(outputs / f'{stem}_labels.png'),
                        cv2.IMREAD_UNCHANGED)
    assert labels.shape == (h, w) and labels.max() < len(names)
    overlay = cv2.imread(str(outputs / f'{stem}_overlay.png'))
    assert overlay.shape == (h, w, 3)
    with open(outputs / f'{stem}.json') as f:
      info = json.load(f)
    assert sorted(info['class_probabilities']) == sorted(names[1:])
    assert all(0 <= p <= 1 for p in info['class_probabilities'].values())
    np.testing.assert_allclose(sum(info['pixel_fractions'].values()), 1.0)
    # One alpha PNG per present class, and a class in the label map is present.
    alphas = sorted(f.name for f in outputs.glob(f'{stem}_alpha_*.png'))
    want = sorted(f'{stem}_alpha_{names.index(c)}_{c}.png'
                  for c in info['present_classes'])
    assert alphas == want
    for c in np.unique(labels):
      if c:
        assert names[c] in info['present_classes']
    for c, frac in info['pixel_fractions'].items():
      np.testing.assert_allclose(frac, np.mean(labels == names.index(c)))


def test_colours_and_overlay():
  from cfcls import visualize  # pylint: disable=g-import-not-at-top
  labels = np.array([[0, 1], [2, 255]])
  colours = visualize.colorize(labels)
  # VOC colour map: 0 black, 1 (128, 0, 0), 2 (0, 128, 0); 255 shown white.
  np.testing.assert_array_equal(colours.reshape(4, 3),
                                [[0, 0, 0], [128, 0, 0], [0, 128, 0],
                                 [255, 255, 255]])
  image = np.full((2, 2, 3), 100, np.uint8)
  out = visualize.overlay(image, labels, opacity=0.5)
  np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # background
  np.testing.assert_array_equal(out[1, 1], [100, 100, 100])  # unlabelled
  np.testing.assert_array_equal(out[0, 1], [114, 50, 50])
  np.testing.assert_array_equal(
      visualize.matte_to_uint8(np.array([-0.2, 0.5, 1.3])), [0, 128, 255])


@pytest.mark.parametrize('refine', ['matting', 'soft_matting'])
def test_eval_and_predict_with_the_matting_refinement(trained, tmp_path,
                                                      refine):
  """refine='matting' / 'soft_matting': evaluation counts the refined labels
  of every image, prediction writes them and the system's mattes."""
  from cfcls import inference  # pylint: disable=g-import-not-at-top
  from cfcls import parallel  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(trained['config'])
  config.refine = refine
  config.refine_threshold = 0.2  # many seeds, so that the tiny net solves
  result = train_lib.evaluate(config, trained['workdir'])
  val = result['splits']['validation']
  assert val['refine'] == refine and val['refine_seconds_per_image'] >= 0
  # The same labels by hand: the restored network, then refine_on_host.
  run, state, _, _ = run_lib.restore_for_eval(config, trained['workdir'],
                                             None)
  variables = parallel.local_copy(state.variables())
  want = np.zeros((6, 6), np.int64)
  solved = 0
  for batch in pipeline.create_eval_iterator(config.data, 2,
                                             split='validation'):
    scores = np.asarray(run.predict_fn(variables, batch['image'])['scores'])
    for i in np.flatnonzero(batch['example_mask']):
      labels, _, info = inference.refine_on_host(
          config, batch['image'][i], scores[i], batch['valid'][i])
      solved += info['solved']
      keep = (batch['valid'][i] > 0) & (batch['mask'][i] < 6)
      want += np.bincount(6 * batch['mask'][i][keep] + labels[keep],
                          minlength=36).reshape(6, 6)
  for t in val['thresholds'].values():
    np.testing.assert_array_equal(np.array(t['confusion']), want)
  assert want.sum() == 3 * IMAGE * IMAGE
  # Prediction: labels and alpha pictures of the refined system.
  inputs, outputs = tmp_path / 'in', tmp_path / 'out'
  inputs.mkdir()
  image = np.random.default_rng(1).integers(0, 256, (IMAGE, 36, 3),
                                            dtype=np.uint8)
  cv2.imwrite(str(inputs / 'one.png'), image[..., ::-1])
  predict_lib.predict(config, trained['workdir'], str(inputs), str(outputs))
  info = json.load(open(outputs / 'one.json'))
  assert info['refine'] == refine and info['refine_seconds'] >= 0
  padded = predict_lib._pad_to_multiple(image, config.predict_pad_multiple)
  scores = np.asarray(run.predict_fn(variables, padded[None])['scores'])[0]
  labels, mattes, _ = inference.refine_on_host(config, image,
                                               scores[:IMAGE, :36])
  got = cv2.imread(str(outputs / 'one_labels.png'), cv2.IMREAD_UNCHANGED)
  np.testing.assert_array_equal(got, labels)
  names = json.load(open(os.path.join(trained['workdir'], 'dataset.json')))[
      'class_names']
  for c in set(np.unique(labels)) - {0}:
    alpha = cv2.imread(str(outputs / f'one_alpha_{c}_{names[c]}.png'),
                       cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(
        alpha, np.round(np.clip(mattes[..., c], 0, 1) * 255).astype(np.uint8))
