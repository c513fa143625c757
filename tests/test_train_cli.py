"""`python train.py --config=configs/voc.py` end to end on a VOC-layout folder.

The real loading path (ScribbleSup XML -> tfds -> tf.data) with the paper's
VOC config, a tiny network given by command-line overrides, 2 CPU devices.
"""

import json
import os
import subprocess
import sys

import compile_flags
import data_fixtures as fixtures
from test_console import library_noise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_voc_config_runs_end_to_end(tmp_path):
  manual = tmp_path / 'voc'
  fixtures.make_voc(str(manual))
  workdir = tmp_path / 'run'
  env = dict(os.environ, XLA_FLAGS=compile_flags.with_fast_compile(
                 '--xla_force_host_platform_device_count=2'),
             CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
             JAX_NUMPY_RANK_PROMOTION='raise')
  command = [
      sys.executable, 'train.py', '--config=configs/voc.py',
      f'--workdir={workdir}', f'--config.data.manual_dir={manual}',
      f'--config.data.data_dir={tmp_path / "tfds"}',
      '--config.model.backbone=resnet18', '--config.model.width=0.125',
      '--config.model.aspp_channels=16', '--config.model.decoder_channels=16',
      '--config.model.low_level_channels=8', '--config.model.mlc_hidden=16',
      '--config.data.crop_size=32', '--config.data.eval_pad_size=48',
      '--config.batch_size=2', '--config.eval_batch_size=2',
      '--config.num_train_steps=2', '--config.log_every_steps=1',
      '--config.checkpoint_every_steps=1', '--config.eval_every_steps=0',
      '--config.matting_metrics=False', '--config.num_summary_images=0']
  out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True,
                       text=True, check=False, timeout=600)
  assert out.returncode == 0, out.stderr[-4000:]
  # A console a person can read: one progress line per logged step, the
  # evaluation and the summary, none of the libraries' INFO chatter.
  console = (out.stdout + out.stderr).splitlines()
  assert len(console) < 100, '\n'.join(console)
  text = '\n'.join(console)
  assert '] step 1/2  loss ' in text and '] step 2/2  loss ' in text, text
  assert 'eval step 2: validation mIoU ' in text, text
  assert 'Done: step 2, best checkpoint step 2' in text, text
  assert 'Downloading' not in text and 'Closing _NonBlocking' not in text
  assert library_noise(text) == [], text  # tfds's, orbax's (test_console)
  with open(workdir / 'metrics.json') as f:
    metrics = json.load(f)
  assert metrics['step'] == 2 and metrics['dataset'] == 'scribble_voc'
  val = metrics['splits']['validation']
  assert val['class_names'] == ['background', 'aeroplane', 'bicycle',
                                'person', 'car', 'dog', 'cat']
  # The two 30x40 validation images, VOC's void outlines left out.
  confusion = val['thresholds']['0.5']['confusion']
  assert 0 < sum(map(sum, confusion)) < 2 * 30 * 40
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['1', '2']


def test_bad_model_value_fails_before_any_data_is_prepared(tmp_path):
  data_dir = tmp_path / 'tfds'
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run(
      [sys.executable, 'train.py', f'--workdir={tmp_path / "run"}',
       f'--config.data.data_dir={data_dir}',
       '--config.model.backbone=resnet13'],
      cwd=ROOT, env=env, capture_output=True, text=True, check=False,
      timeout=300)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines() == [
      "train.py: invalid config: model.backbone='resnet13' is not supported; "
      "allowed: ('resnet18', 'resnet34', 'resnet50', 'resnet101', "
      "'resnet152')"], out.stderr
  assert not data_dir.exists() and not (tmp_path / 'run').exists()
