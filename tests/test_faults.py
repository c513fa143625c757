"""Runs that get interrupted, and checkpoints that get damaged.

One module fixture runs `python train.py` (tiny config, 2 CPU devices) three
times in the same workdir: run A is stopped with SIGTERM after a random step,
run B resumes and is killed with SIGKILL after a random later checkpoint, run
C resumes and finishes. The reference is an uninterrupted run of the same
length computed here with the library's train step on the same batches.
"""

import logging
import os
import random
import shutil
import signal

import jax
import pytest

import faults_helpers as helpers

NUM_STEPS = 6  # num_train_steps of tests/faults_tiny_config.py


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  shared = helpers.shared_dir(tmp_path_factory)
  data_dir = os.path.join(shared, 'tfds')
  helpers.prepare_data(data_dir)
  config = helpers.load_config(data_dir)
  assert config.num_train_steps == NUM_STEPS
  return {'data_dir': data_dir, 'config': config,
          'env': helpers.subprocess_env()}


def _reference_states(config):
  """States after steps 1..NUM_STEPS of an uninterrupted 1-process run."""
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  batches = pipeline.create_train_iterator(
      config.data, config.batch_size, seed=config.seed, process_index=0,
      process_count=1)
  return helpers.reference_states(config, batches, NUM_STEPS)


@pytest.fixture(scope='module')
def reference(interrupted):
  return interrupted['reference']


@pytest.fixture(scope='module')
def interrupted(setup, tmp_path_factory):
  """Runs A (SIGTERM), B (SIGKILL) and C (to the end) in one workdir."""
  rng = random.Random()
  out = {'seed_info': {}}
  base = tmp_path_factory.mktemp('interrupted')
  workdir = str(base / 'run')
  env, data_dir = setup['env'], setup['data_dir']

  # A: checkpoints only at the end, so the SIGTERM save is the only one.
  log_a = str(base / 'a.log')
  term_after = rng.randint(1, 2)
  proc = helpers.start(helpers.train_command(
      workdir, data_dir, '--config.checkpoint_every_steps=100'), log_a, env)
  helpers.wait_until(lambda: term_after in helpers.logged_steps(log_a), proc,
                     log_a)
  proc.send_signal(signal.SIGTERM)
  out['a'] = helpers.finish(proc, log_a) + (helpers.logged_steps(log_a),
                                            helpers.checkpoint_steps(workdir))
  stopped = max(out['a'][3] or [0])

  # B: resumes; killed once a random later checkpoint is complete.
  log_b = str(base / 'b.log')
  kill_after = rng.randint(stopped + 1, max(stopped + 1, NUM_STEPS - 2))
  out['seed_info'] = {'term_after': term_after, 'kill_after': kill_after}
  proc = helpers.start(helpers.train_command(workdir, data_dir), log_b, env)
  helpers.wait_until(
      lambda: max(helpers.checkpoint_steps(workdir)) >= kill_after, proc,
      log_b)
  proc.send_signal(signal.SIGKILL)
  out['b'] = helpers.finish(proc, log_b) + (helpers.logged_steps(log_b),
                                            helpers.checkpoint_steps(workdir))

  # C: resumes from B's newest complete checkpoint and finishes; meanwhile
  # (the other core) the reference is computed here.
  log_c = str(base / 'c.log')
  proc = helpers.start(helpers.train_command(workdir, data_dir), log_c, env)
  out['reference'] = _reference_states(setup['config'])
  out['c'] = helpers.finish(proc, log_c) + (helpers.logged_steps(log_c),
                                            helpers.checkpoint_steps(workdir))
  out['workdir'] = workdir
  return out


def test_sigterm_saves_the_last_completed_step(interrupted):
  rc, log, steps, checkpoints = interrupted['a']
  info = interrupted['seed_info']
  assert rc == 0, log[-3000:]
  assert steps and steps == list(range(1, max(steps) + 1)), (steps, info)
  last = steps[-1]
  assert last < NUM_STEPS, (steps, info)  # stopped, not finished
  # No step lost: the one checkpoint is the last step that ran.
  assert checkpoints == [last], (checkpoints, steps, info)
  assert f'Stop requested: saved step {last} in' in log


def test_sigkill_then_resume_continues_where_it_was(interrupted):
  stopped = interrupted['a'][2][-1]
  rc_b, log_b, steps_b, checkpoints_b = interrupted['b']
  info = interrupted['seed_info']
  assert rc_b == -signal.SIGKILL, log_b[-3000:]
  assert steps_b[0] == stopped + 1, (steps_b, stopped, info)
  killed_at = max(checkpoints_b)
  assert stopped < killed_at < NUM_STEPS, (checkpoints_b, info)
  rc_c, log_c, steps_c, _ = interrupted['c']
  assert rc_c == 0, log_c[-3000:]
  assert steps_c == list(range(killed_at + 1, NUM_STEPS + 1)), (steps_c, info)
  assert f'step {killed_at}' in log_c and 'Resuming from' in log_c


def test_interrupted_run_ends_like_an_uninterrupted_one(interrupted, setup,
                                                        reference):
  step, state = helpers.restore(setup['config'], interrupted['workdir'])
  assert step == NUM_STEPS
  helpers.assert_states_close(state, reference[-1])
  helpers.assert_params_differ(state, reference[0])


def _truncate_largest_file(folder):
  files = [os.path.join(d, f) for d, _, names in os.walk(folder)
           for f in names]
  path = max(files, key=os.path.getsize)
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    f.truncate(size // 2)
  return path


def test_truncated_checkpoint_falls_back_to_the_previous_one(
    interrupted, setup, reference, tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  shutil.copytree(interrupted['workdir'], workdir)
  newest = os.path.join(workdir, 'checkpoints', str(NUM_STEPS))
  _truncate_largest_file(newest)
  with caplog.at_level(logging.INFO):
    step, state = helpers.restore(setup['config'], workdir)
  assert step == NUM_STEPS - 1
  helpers.assert_states_close(state, reference[NUM_STEPS - 2])
  message = [r.getMessage() for r in caplog.records
             if 'is unreadable' in r.getMessage()]
  assert len(message) == 1 and message[0].startswith(
      f'Checkpoint {newest} is unreadable (')
  assert message[0].endswith('); falling back to the previous checkpoint')
  # Set aside, so that the resumed run can write that step again.
  assert helpers.checkpoint_steps(workdir) == [NUM_STEPS - 2, NUM_STEPS - 1]
  assert os.listdir(os.path.join(workdir, 'corrupt_checkpoints')) == [
      str(NUM_STEPS)]


def test_all_checkpoints_unreadable_is_an_error(interrupted, setup, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(interrupted['workdir'], workdir)
  steps = helpers.checkpoint_steps(workdir)
  for step in steps:
    _truncate_largest_file(os.path.join(workdir, 'checkpoints', str(step)))
  with pytest.raises(RuntimeError, match='none of the checkpoints .* can be '
                     'read'):
    helpers.restore(setup['config'], workdir)
  # Nothing is moved when no checkpoint can be read (maybe a wrong config).
  assert helpers.checkpoint_steps(workdir) == steps


# ----------------------------------------------------------------------------
# Bad input met during training.


def _folder_with_undecodable_image(tmp_path, monkeypatch):
  """A scribble folder whose image 'c' passed preparation but cannot decode.

  (Preparation decodes every image, so this stands for a file that changed
  or a decoder that differs after preparation.)
  """
  import data_fixtures as fixtures  # pylint: disable=g-import-not-at-top
  from cfcls.data.builders import common  # pylint: disable=g-import-not-at-top
  manual = tmp_path / 'site'
  fixtures.make_folder(str(manual), names=('a', 'b', 'c', 'd', 'e'),
                       splits=False)
  bad = manual / 'images' / 'c.jpg'
  bad.write_bytes(b'\xff\xd8\xff\xe0' + b'not a jpeg' * 20)
  real = common.read_image_bytes

  def lenient(path):
    if os.fspath(path) == str(bad):
      return bad.read_bytes(), (24, 20)
    return real(path)

  monkeypatch.setattr(common, 'read_image_bytes', lenient)
  return manual


def _folder_data_config(manual, data_dir, skip):
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(dict(
      name='scribble_folder', manual_dir=str(manual), data_dir=str(data_dir),
      skip_corrupt=skip, crop_size=16, shuffle_buffer=8))


def test_corrupt_training_image_is_named_and_skipped(tmp_path, monkeypatch,
                                                     caplog):
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  manual = _folder_with_undecodable_image(tmp_path, monkeypatch)
  config = _folder_data_config(manual, tmp_path / 'tfds', skip=True)
  it = pipeline.create_train_iterator(config, 2, seed=0, process_index=0,
                                      process_count=1)
  with caplog.at_level(logging.WARNING):
    batches = [next(it) for _ in range(4)]  # 8 examples: all of epoch 0
  for batch in batches:
    assert batch['image'].shape == (2, 16, 16, 3) and 'index' not in batch
  skipped = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith('Skipped corrupt training image')]
  assert skipped and all("image 'c' of scribble_folder train" in m
                         for m in skipped), skipped


def test_corrupt_training_image_without_skip_is_an_error_naming_it(
    tmp_path, monkeypatch):
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  manual = _folder_with_undecodable_image(tmp_path, monkeypatch)
  config = _folder_data_config(manual, tmp_path / 'tfds', skip=False)
  it = pipeline.create_train_iterator(config, 2, seed=0, process_index=0,
                                      process_count=1)
  with pytest.raises(ValueError, match=r"training image 'c' of "
                     r'scribble_folder train could not be decoded \(.+\); '
                     r'set data.skip_corrupt=True'):
    for _ in range(3):  # the 5 examples of epoch 0
      next(it)


# ----------------------------------------------------------------------------
# Bad config or data: one clear error at start (train.py prints it alone).


def _bad_input_cases(data_dir, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  return {
      'unknown field': (('--config.learning_rat=1',), None),
      'batch not divisible by the devices': (
          ('--config.batch_size=3',),
          'invalid config: batch_size=3 is not divisible by the 2 devices'),
      'crop too large': (
          ('--config.data.crop_size=5000',),
          'invalid config: data.crop_size=5000 must be an int'),
      'unknown loss': (
          ('--config.loss=dice',),
          "invalid config: loss='dice' is not one of ('cfm', 'pce', 'ce', "
          "'two_stage', 'cfm_soft')"),
      'missing data folder': (
          ('--config.data.name=scribble_folder',
           f'--config.data.manual_dir={tmp_path / "nowhere"}'),
          f'{tmp_path / "nowhere"}: missing folder'),
      'empty data folder': (
          ('--config.data.name=scribble_folder',
           f'--config.data.manual_dir={empty}'),
          f'{empty}/classes.txt: missing file (class names, one per line, '
          'line 0 = background)'),
  }


@pytest.mark.parametrize('case', [
    'batch not divisible by the devices', 'crop too large', 'unknown loss',
    'missing data folder', 'empty data folder'])
def test_bad_config_or_data_fails_at_start_with_one_message(case, tmp_path):
  from cfcls.training import config_utils  # pylint: disable=g-import-not-at-top
  from cfcls.training import train_lib  # pylint: disable=g-import-not-at-top
  from cfcls.data.builders import common  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path / 'tfds')
  overrides, message = _bad_input_cases(data_dir, tmp_path)[case]
  config = helpers.load_config(data_dir, *overrides)
  with pytest.raises((config_utils.ConfigError, common.BadInputError)) as e:
    train_lib.train_and_evaluate(config, str(tmp_path / 'run'))
  assert str(e.value).startswith(message), str(e.value)
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')


def test_train_py_prints_the_message_alone(setup, tmp_path):
  """What the user sees: `train.py: <message>`, exit code 1, no traceback."""
  import subprocess  # pylint: disable=g-import-not-at-top
  command = helpers.train_command(str(tmp_path / 'run'), setup['data_dir'],
                                  '--config.learning_rat=1')
  out = subprocess.run(command, env=setup['env'], capture_output=True,
                       text=True, check=False, timeout=300)
  # A field that does not exist is refused while the flags are parsed.
  assert out.returncode == 1 and 'Traceback' not in out.stderr
  assert out.stderr.strip().splitlines()[-1] == (
      'train.py: unknown config field on the command line: learning_rat '
      '(Did you mean "learning_rate" instead of "learning_rat"?)')
  command = helpers.train_command(str(tmp_path / 'run'), setup['data_dir'],
                                  '--config.loss=dice')
  out = subprocess.run(command, env=setup['env'], capture_output=True,
                       text=True, check=False, timeout=300)
  assert out.returncode == 1 and 'Traceback' not in out.stderr
  assert out.stderr.strip().splitlines()[-1] == (
      "train.py: invalid config: loss='dice' is not one of ('cfm', 'pce', "
      "'ce', 'two_stage', 'cfm_soft')")


def test_corrupt_eval_image_becomes_a_padding_example(tmp_path, monkeypatch):
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  manual = _folder_with_undecodable_image(tmp_path, monkeypatch)
  config = _folder_data_config(manual, tmp_path / 'tfds', skip=True)
  batches = list(pipeline.create_eval_iterator(
      config, 2, split='train', process_index=0, process_count=1))
  # 5 examples, 'c' unreadable: 3 full batches, 4 real examples.
  assert [len(b['example_mask']) for b in batches] == [2, 2, 2]
  names = [n for b in batches for n, m in zip(b['file_name'],
                                              b['example_mask']) if m]
  assert sorted(names) == [b'a', b'b', b'd', b'e']


def test_unreadable_best_checkpoint_eval_uses_the_newest_readable(
    interrupted, setup, reference, tmp_path, caplog):
  from cfcls.training import checkpointing  # pylint: disable=g-import-not-at-top
  from cfcls.training import run_lib  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  shutil.copytree(interrupted['workdir'], workdir)
  best = os.listdir(os.path.join(workdir, 'best'))
  assert best == [str(NUM_STEPS)]  # the final evaluation's checkpoint
  _truncate_largest_file(os.path.join(workdir, 'best', best[0]))
  run = helpers.build_run(setup['config'])
  ckpts = checkpointing.Checkpoints(workdir, read_only=True)
  with caplog.at_level(logging.ERROR):
    state, step, source = ckpts.restore_for_eval(run_lib.abstract_state(run))
  ckpts.close()
  assert (step, source) == (NUM_STEPS, 'checkpoints')
  helpers.assert_states_close(jax.device_get(state), reference[-1])
  assert any(r.getMessage().startswith(
      f'Checkpoint {workdir}/best/{NUM_STEPS} is unreadable (')
             for r in caplog.records)
