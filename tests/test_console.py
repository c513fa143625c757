"""A default train.py run prints no library line a user cannot act on.

`python train.py` on the demo (configs/demo.py) and on a scribble folder
(configs/folder.py, prepared by data_prep/prepare_dataset.py), training 2
steps of a tiny network, evaluating and (the demo) predicting, in a user's
environment (no TF_CPP_MIN_LOG_LEVEL): none of tfds's, orbax's and
TensorFlow's warnings and banners of NOISE. With --verbose (an evaluation
of the folder run) they show, so the patterns match what the libraries print.
"""

import os
import re
import subprocess
import sys

import jax
import pytest

import compile_flags
import data_fixtures as fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the libraries print that says nothing a user can act on (issue 27).
NOISE = {
    'tfds custom config': r'Using custom data configuration',
    'tfds deprecated dtype': r'FeatureConnector\.dtype` is deprecated',
    'tfds variant folder': r'Variant folder .* has no dataset_info\.json',
    'orbax read-only': r'read_only=True, setting|Given directory is read only',
    'TensorFlow oneDNN': r'oneDNN',
    'TensorFlow CPU instructions': r'This TensorFlow binary is optimized',
    'absl InitializeLog': r'absl::InitializeLog',
    # absl's C++ log lines (TensorFlow, XLA): I0000 00:00:1796.. 123 x.cc:12]
    'absl C++ INFO/WARNING': r'^[IW]\d{4} [\d:.]+ +\d+ \S+\.(cc|h):\d+\]',
}
_NOISE = re.compile('|'.join(f'(?:{p})' for p in NOISE.values()))

TINY = ['--config.model.backbone=resnet18', '--config.model.width=0.125',
        '--config.model.aspp_channels=16', '--config.model.decoder_channels=16',
        '--config.model.low_level_channels=8', '--config.model.mlc_hidden=16',
        '--config.batch_size=2', '--config.eval_batch_size=2',
        '--config.num_train_steps=2', '--config.warmup_steps=0',
        '--config.log_every_steps=1', '--config.eval_every_steps=2',
        '--config.checkpoint_every_steps=2', '--config.num_summary_images=0',
        '--config.matting_metrics=False', '--config.data.crop_size=32']


def _env():
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='',
             JAX_NUMPY_RANK_PROMOTION='raise')
  # The test session's compilation cache (tests/conftest.py).
  if jax.config.jax_compilation_cache_dir:
    env['JAX_COMPILATION_CACHE_DIR'] = jax.config.jax_compilation_cache_dir
    env.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)  # as a user has it
  # No device count, as a user has it; compiles as in the test process.
  env['XLA_FLAGS'] = compile_flags.FAST_COMPILE
  return env


def _run(script, *args):
  out = subprocess.run([sys.executable, script, *args], cwd=ROOT,
                       env=_env(), capture_output=True, text=True,
                       check=False, timeout=600)
  text = out.stdout + out.stderr
  assert out.returncode == 0, text[-4000:]
  return text


def _train(*args):
  return _run('train.py', *args)


def library_noise(text):
  """The lines of text that match NOISE."""
  return [l for l in text.splitlines() if _NOISE.search(l)]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('console')
  folder = tmp / 'site'
  fixtures.make_folder(str(folder), names=('a', 'b', 'c', 'd'), size=(30, 36))
  out = {}
  out['demo'] = _train(
      '--config=configs/demo.py', f'--workdir={tmp / "demo"}',
      f'--config.data.data_dir={tmp / "tfds_demo"}',
      '--config.data.synthetic.num_train=4',
      '--config.data.synthetic.num_val=2',
      '--config.data.synthetic.image_size=32',
      '--config.data.eval_pad_size=32', '--config.data.shuffle_buffer=4',
      '--config.predict_after_training=2', *TINY)
  # The folder prepared ahead, as for a multi-host run (its tfds progress
  # bars stay: they are no warnings), then trained on.
  out['prepare'] = _run(
      os.path.join('data_prep', 'prepare_dataset.py'), '--name',
      'scribble_folder', '--manual_dir', str(folder), '--data_dir',
      str(tmp / 'tfds_folder'))
  out['folder'] = _train(
      '--config=configs/folder.py', f'--workdir={tmp / "folder"}',
      f'--config.data.manual_dir={folder}',
      f'--config.data.data_dir={tmp / "tfds_folder"}',
      '--config.data.eval_pad_size=48', *TINY)
  out['verbose'] = _train(
      '--config=configs/folder.py', f'--workdir={tmp / "folder"}',
      f'--config.data.manual_dir={folder}',
      f'--config.data.data_dir={tmp / "tfds_folder"}',
      '--config.data.eval_pad_size=48', *TINY, '--mode=eval', '--verbose')
  return out


@pytest.mark.parametrize('run', ['demo', 'folder'])
def test_a_default_run_prints_no_library_noise(runs, run):
  text = runs[run]
  assert 'Done: step 2, best checkpoint step 2' in text, text
  assert library_noise(text) == [], text


def test_prepare_dataset_prints_no_library_noise(runs):
  text = runs['prepare']
  assert 'scribble_folder: 3 classes' in text, text
  assert library_noise(text) == [], text


def test_verbose_shows_the_libraries_notices(runs):
  noise = library_noise(runs['verbose'])
  assert any('Using custom data configuration' in l for l in noise), (
      runs['verbose'])
  assert any('Given directory is read only' in l for l in noise), (
      runs['verbose'])


def test_own_log_records_are_those_of_cfcls_and_the_scripts():
  """INFO lines of every cfcls subpackage and of train.py are ours (the move
  to cfcls/training/ once made only cfcls/training's count)."""
  import logging  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from cfcls.training import console  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def record(*parts):
    return logging.LogRecord('absl', logging.INFO, os.path.join(*parts), 1,
                             'x', None, None)

  for parts in (('cfcls', 'data', 'pipeline.py'), ('cfcls', 'models',
                                                   'resnet.py'),
                ('cfcls', 'training', 'train_lib.py'), ('cfcls', 'losses.py'),
                ('train.py',)):
    assert console._own(record(root, *parts)), parts
  assert not console._own(record('/usr/lib/python3/site-packages/orbax',
                                 'checkpoint_manager.py'))
