"""Several processes on a fresh machine, a signal to one of them, one dying.

2 processes x 1 CPU device, joined by jax.distributed, on the tiny config.
"""

import json
import os
import re
import signal

import pytest

import faults_helpers as helpers

STEPS = 16
LOG_EVERY = 2  # with several processes, stop checks happen at log steps


def _start_pair(workdir, data_dir, env, logs, *args):
  port = helpers.free_port()
  return [helpers.start(helpers.train_command(
      workdir, data_dir, '--cpu_devices=1', '--num_processes=2',
      f'--process_id={i}', f'--coordinator_address=127.0.0.1:{port}', *args),
                        logs[i], env) for i in range(2)]


@pytest.fixture(scope='module')
def fresh_then_resumed(tmp_path_factory):
  """An empty data_dir; SIGTERM to process 1 only; then a run to the end
  with the demo's end-of-run work on (matting errors, summary pictures,
  predictions)."""
  shared = helpers.shared_dir(tmp_path_factory)
  env = helpers.subprocess_env(os.path.join(shared, 'jax_cache'))
  base = tmp_path_factory.mktemp('fresh_multihost')
  data_dir, workdir = str(base / 'tfds'), str(base / 'run')
  common = (f'--config.num_train_steps={STEPS}',
            f'--config.log_every_steps={LOG_EVERY}',
            '--config.checkpoint_every_steps=100',
            '--config.matting_metrics=True', '--config.num_summary_images=2',
            '--config.predict_after_training=2', '--config.eval_every_steps=8')
  logs = [str(base / f'a{i}.log') for i in range(2)]
  procs = _start_pair(workdir, data_dir, env, logs, *common)
  helpers.wait_until(lambda: helpers.logged_steps(logs[1]), procs[1],
                     logs[1])
  procs[1].send_signal(signal.SIGTERM)
  first = [helpers.finish(p, log) for p, log in zip(procs, logs)]
  stopped_checkpoints = helpers.checkpoint_steps(workdir)
  logs_b = [str(base / f'b{i}.log') for i in range(2)]
  procs = _start_pair(workdir, data_dir, env, logs_b, *common)
  second = [helpers.finish(p, log) for p, log in zip(procs, logs_b)]
  return dict(first=first, second=second, workdir=workdir,
              stopped_checkpoints=stopped_checkpoints)


def test_first_run_on_an_empty_data_dir_prepares_once(fresh_then_resumed):
  (rc0, log0), (rc1, log1) = fresh_then_resumed['first']
  assert rc0 == 0 and rc1 == 0, (log0[-3000:], log1[-3000:])
  assert 'Preparing synthetic_scenes' in log0
  assert 'Waiting for process 0 to prepare the dataset' in log1
  assert 'Preparing synthetic_scenes' not in log1


def test_a_signal_to_one_process_stops_both_at_the_same_step(
    fresh_then_resumed):
  steps = []
  for _, log in fresh_then_resumed['first']:
    found = re.findall(r'Stop requested: saved step (\d+) in', log)
    assert len(found) == 1, log[-3000:]
    steps.append(int(found[0]))
  assert steps[0] == steps[1] and steps[0] % LOG_EVERY == 0
  assert steps[0] < STEPS
  assert fresh_then_resumed['stopped_checkpoints'] == [steps[0]]


def test_resumed_run_finishes_with_matting_errors_and_predictions(
    fresh_then_resumed):
  for rc, log in fresh_then_resumed['second']:
    assert rc == 0, log[-3000:]
    assert 'Resuming from' in log
  workdir = fresh_then_resumed['workdir']
  with open(os.path.join(workdir, 'metrics.json')) as f:
    metrics = json.load(f)
  assert metrics['step'] == STEPS
  assert metrics['splits']['validation']['matting']['num_images'] == 2
  written = os.listdir(os.path.join(workdir, 'predictions'))
  assert len([f for f in written if f.endswith('_labels.png')]) == 2


def test_when_one_process_dies_the_other_exits_with_a_message(
    tmp_path_factory):
  shared = helpers.shared_dir(tmp_path_factory)
  env = helpers.subprocess_env(os.path.join(shared, 'jax_cache'))
  data_dir = os.path.join(shared, 'tfds')
  helpers.prepare_data(data_dir)
  base = tmp_path_factory.mktemp('dying')
  logs = [str(base / f'{i}.log') for i in range(2)]
  heartbeat = 10
  procs = _start_pair(str(base / 'run'), data_dir, env, logs,
                      '--config.num_train_steps=500',
                      '--config.checkpoint_every_steps=1000',
                      f'--heartbeat_timeout={heartbeat}')
  helpers.wait_until(lambda: 'step 2/500' in helpers.read(logs[1]), procs[1],
                     logs[1])
  procs[1].kill()
  # (finish raises if the survivor is still running after the timeout)
  rc, log = helpers.finish(procs[0], logs[0], timeout=heartbeat + 120)
  assert rc != 0, log[-3000:]
  assert ('train.py: process 0 lost contact with the other processes' in log
          or 'Terminating process because the JAX distributed service '
          'detected fatal errors' in log), log[-3000:]
