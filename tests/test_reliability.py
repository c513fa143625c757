"""Reliability: counts past int32, checkpoints never set aside by mistake,
signals outside training, one-line errors, changed and damaged data."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cfcls.training import checkpointing
from cfcls.training import evaluators
from cfcls import objectives
from cfcls import parallel
from cfcls.training import stopping
from cfcls.data.builders import common
import compile_flags
import data_fixtures as fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = os.path.join(ROOT, 'tests', 'faults_tiny_config.py')


def test_confusion_counts_add_up_past_int32():
  # Each eval batch counts 2^30 pixels of class 0 (fits int32); three batches
  # pass 2^31, which an int32 sum on the device wraps to a negative count.
  per_batch = 2**30
  config = ml_collections.ConfigDict(dict(thresholds=(0.5,), threshold=0.5))
  run = types.SimpleNamespace(
      config=config, objective=objectives.get('cfm'),
      class_names=['background', 'thing'],
      mesh=parallel.create_mesh(jax.devices()[:1]),
      eval_step=lambda variables, batch: jnp.asarray(
          [[[per_batch, 0], [0, 1]]], jnp.int32))
  confusion = evaluators.Confusion(run)
  batch = {'image': np.zeros((1, 2, 2, 3), np.uint8),
           'mask': np.zeros((1, 2, 2), np.int32),
           'valid': np.ones((1, 2, 2), np.float32),
           'example_mask': np.ones((1,), np.float32)}
  for _ in range(3):
    confusion.update({}, batch)
  result = confusion.result()
  assert result['thresholds']['0.5']['confusion'] == [[3 * per_batch, 0],
                                                      [0, 3]]
  assert result['thresholds']['0.5']['num_pixels'] == 3 * per_batch + 3


def _two_checkpoints(workdir):
  ckpts = checkpointing.Checkpoints(str(workdir), keep=3)
  for step in (1, 2):
    ckpts.save(step, {'w': jnp.full((3,), float(step))}, force=True)
  ckpts.wait()
  return ckpts


@pytest.mark.parametrize('error', [
    MemoryError('host out of memory'),
    OSError(errno.ESTALE, 'Stale file handle'),
    ValueError('RESOURCE_EXHAUSTED: while reading array'),
])
def test_transient_restore_errors_move_nothing(tmp_path, monkeypatch, error):
  monkeypatch.setattr(checkpointing, 'RETRY_PAUSE_S', 0.0)
  ckpts = _two_checkpoints(tmp_path)
  calls = []

  def failing(step, *args, **kwargs):
    calls.append(step)
    raise error
  monkeypatch.setattr(ckpts.latest, 'restore', failing)
  with pytest.raises(checkpointing.TransientRestoreError,
                     match='nothing was moved'):
    ckpts.restore_latest({'w': jnp.zeros((3,))})
  assert calls == [2] * checkpointing.RESTORE_ATTEMPTS  # retried, no fallback
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']
  assert not (tmp_path / 'corrupt_checkpoints').exists()
  ckpts.close()


def test_a_flaky_read_is_retried_and_the_newest_checkpoint_used(
    tmp_path, monkeypatch):
  monkeypatch.setattr(checkpointing, 'RETRY_PAUSE_S', 0.0)
  ckpts = _two_checkpoints(tmp_path)
  real = ckpts.latest.restore
  failures = [OSError(errno.ETIMEDOUT, 'Connection timed out')]

  def flaky(step, *args, **kwargs):
    if failures:
      raise failures.pop()
    return real(step, *args, **kwargs)
  monkeypatch.setattr(ckpts.latest, 'restore', flaky)
  state, step = ckpts.restore_latest({'w': jnp.zeros((3,))})
  assert step == 2
  np.testing.assert_array_equal(np.asarray(state['w']), [2.0, 2.0, 2.0])
  assert not (tmp_path / 'corrupt_checkpoints').exists()
  ckpts.close()


def test_a_missing_checkpoint_folder_is_not_damage(tmp_path):
  assert checkpointing.is_transient(ValueError('no such file'),
                                    str(tmp_path / 'gone'))
  assert not checkpointing.is_transient(
      ValueError('Encountered error while reading array index'),
      str(tmp_path))


def test_signals_outside_training_stop_at_once_saying_what_was_written():
  with stopping.phase('evaluation', 'metrics.json was not written'):
    with pytest.raises(stopping.Interrupted, match=(
        'stopped by SIGTERM during evaluation: metrics.json was not '
        'written')):
      stopping.on_signal(signal.SIGTERM)
  assert not stopping.stop_requested()


def test_signals_in_training_ask_for_a_checkpoint_and_are_cleared():
  stopping.request_stop()  # left over, e.g. from the end of an earlier run
  with stopping.training_loop():
    assert not stopping.stop_requested()  # a new run starts cleared
    stopping.on_signal(signal.SIGTERM)  # first: checkpoint after this step
    assert stopping.stop_requested()
    stopping.on_signal(signal.SIGTERM)  # repeated SIGTERM: still on its way
    with pytest.raises(stopping.Interrupted, match='second SIGINT'):
      stopping.on_signal(signal.SIGINT)  # a second Ctrl-C: at once
  assert not stopping.stop_requested()


def _train_py(tmp_path, *args):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
             XLA_FLAGS=compile_flags.FAST_COMPILE)
  return subprocess.run(
      [sys.executable, 'train.py', f'--config={TINY_CONFIG}',
       f'--config.data.data_dir={tmp_path / "tfds"}',
       f'--workdir={tmp_path / "run"}', *args],
      cwd=ROOT, env=env, capture_output=True, text=True, check=False,
      timeout=300)


@pytest.mark.parametrize('args, message', [
    (('--mode=predict', '--input=/no/such/photos'),
     'train.py: --input /no/such/photos is neither an image nor a folder'),
    (('--mode=eval',), 'train.py: no checkpoint in {run}/checkpoints or '
     '{run}/best: train first'),
])
def test_bad_modes_end_in_one_line(tmp_path, args, message):
  out = _train_py(tmp_path, *args)
  assert out.returncode == 1, out.stderr[-3000:]
  lines = [l for l in out.stderr.splitlines() if l.startswith('train.py:')]
  assert lines == [message.format(run=tmp_path / 'run')], out.stderr[-3000:]
  assert 'Traceback' not in out.stderr
  assert not (tmp_path / 'tfds').exists()  # nothing was prepared


def test_predict_from_a_folder_without_images_is_one_line(tmp_path):
  (tmp_path / 'photos').mkdir()
  (tmp_path / 'photos' / 'notes.txt').write_text('no image here')
  out = _train_py(tmp_path, '--mode=predict', f'--input={tmp_path / "photos"}')
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1].startswith(
      f'train.py: --input {tmp_path / "photos"} holds no images')
  assert 'Traceback' not in out.stderr


def _folder_config(manual, data_dir, **kw):
  return ml_collections.ConfigDict(dict(
      name='scribble_folder', manual_dir=str(manual), data_dir=str(data_dir),
      skip_corrupt=False, **kw))


def test_a_changed_folder_is_prepared_again_or_named(tmp_path):
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  manual = tmp_path / 'site'
  fixtures.make_folder(str(manual), names=('a', 'b', 'c'), splits=False)
  data = tmp_path / 'tfds'
  assert pipeline.dataset_info(_folder_config(manual, data)).splits == {
      'train': 3}
  # The user adds an image and its scribbles after preparation.
  for sub, ext in (('images', '.jpg'), ('scribbles', '.png'),
                   ('masks', '.png')):
    shutil.copy(manual / sub / f'a{ext}', manual / sub / f'd{ext}')
  assert pipeline.dataset_info(_folder_config(manual, data)).splits == {
      'train': 4}
  for sub in ('images', 'scribbles', 'masks'):
    os.remove(manual / sub / 'b.png')
  with pytest.raises(common.BadInputError, match=(
      r'changed since it was prepared .*: 3 removed \(images/b.png, '
      r'masks/b.png, scribbles/b.png\)')):
    pipeline.dataset_info(_folder_config(manual, data,
                                         on_folder_change='error'))


def test_a_damaged_prepared_file_names_the_folder(tmp_path):
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(dict(
      name='synthetic_scenes', data_dir=str(tmp_path / 'tfds'),
      skip_corrupt=False, crop_size=32,
      synthetic=dict(num_train=8, num_val=2, image_size=40, seed=0)))
  info = pipeline.dataset_info(config)
  records = [os.path.join(d, f) for d, _, names in os.walk(info.data_path)
             for f in names if 'train.tfrecord' in f]
  assert records
  for path in records:
    with open(path, 'r+b') as f:
      f.seek(os.path.getsize(path) // 2)
      f.write(b'\x00' * 64)
  with pytest.raises(common.BadInputError, match=(
      f'the prepared data in {info.data_path} is damaged .*delete that '
      'folder')):
    next(pipeline.create_train_iterator(config, 2, seed=0, process_index=0,
                                        process_count=1))


def test_damaged_json_files_are_named_with_what_to_do(tmp_path):
  # A JSON file cut short (a full disk, a killed copy) is named, with the
  # way out, by every reader of the files cfcls writes.
  from cfcls import jsonio  # pylint: disable=g-import-not-at-top
  from cfcls.training import run_lib  # pylint: disable=g-import-not-at-top
  from cfcls.data import fingerprint  # pylint: disable=g-import-not-at-top
  from cfcls.data import targets  # pylint: disable=g-import-not-at-top
  good = tmp_path / 'good.json'
  good.write_text('{"a": [1, 2]}')
  assert jsonio.read_json(str(good), 'unused') == {'a': [1, 2]}
  (tmp_path / 'dataset.json').write_text('{"num_classes": 3, "class_na')
  with pytest.raises(ValueError, match='dataset.json is not valid JSON.*'
                     'remove it to read the classes from the data'):
    run_lib.dataset_meta(ml_collections.ConfigDict(), str(tmp_path))
  (tmp_path / fingerprint.FILE_NAME).write_text('[')
  with pytest.raises(ValueError, match=f'{fingerprint.FILE_NAME} is not '
                     'valid JSON.*prepare the data again'):
    fingerprint.read(str(tmp_path))
  (tmp_path / 'index.json').write_text('')
  with pytest.raises(ValueError, match='index.json is not valid JSON.*'
                     'remove the target cache'):
    targets.Lookup(str(tmp_path))
