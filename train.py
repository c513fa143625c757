"""Command-line entry point: train, evaluate or predict with a config file.

  python train.py                                   # the demo (configs/demo.py)
  python train.py --config=configs/voc.py --workdir=runs/voc \
      --config.data.manual_dir=/data/voc --config.batch_size=8
  python train.py --config=configs/voc.py --workdir=runs/voc --mode=eval
  python train.py --config=configs/voc.py --workdir=runs/voc --mode=predict \
      --input=photos/ --output=runs/voc/predictions

Everything but flag parsing lives in cfcls (train_lib, predict_lib). The
console shows cfcls's own lines and every warning a user can act on;
--verbose adds what the libraries log besides (cfcls.training.console).
"""

import os
import signal
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'configs', 'demo.py'),
    'Config file (ml_collections); override fields with --config.FIELD=VALUE.',
    lock_config=True)
flags.DEFINE_string('workdir', 'runs/demo',
                    'Run directory: checkpoints, TensorBoard logs, metrics.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'predict'],
                  'train: train (resuming from WORKDIR) and evaluate; eval: '
                  'evaluate the best checkpoint; predict: label --input.')
flags.DEFINE_integer('step', None, 'eval/predict: checkpoint step to restore '
                     '(default: the best).')
flags.DEFINE_string('input', None, 'predict: folder of images (or one image).')
flags.DEFINE_string('output', None,
                    'predict: output folder (default WORKDIR/predictions).')
# Several processes / hosts (cfcls.training.distributed); a flag wins over the
# environment variable named in its help.
flags.DEFINE_string('coordinator_address', None,
                    'HOST:PORT of process 0 for a multi-process run '
                    '(env JAX_COORDINATOR_ADDRESS).')
flags.DEFINE_integer('num_processes', None,
                     'Number of processes (hosts) of the run '
                     '(env JAX_NUM_PROCESSES); unset = 1.')
flags.DEFINE_integer('process_id', None,
                     'This process, 0..num_processes-1 (env JAX_PROCESS_ID).')
flags.DEFINE_integer('heartbeat_timeout', 100,
                     'Seconds without a heartbeat after which the distributed '
                     'runtime declares a process dead and stops the others.')
flags.DEFINE_bool('distributed_auto', False,
                  'Let JAX detect the cluster (Slurm, Open MPI, Cloud TPU) '
                  'for the unset multi-process settings.')
flags.DEFINE_bool('verbose', False,
                  "Also show the libraries' INFO logs (orbax, clu, tfds), "
                  "TensorFlow's C++ banners and the libraries' notices a "
                  'user cannot act on (tfds custom configs, orbax read-only '
                  'directories).')
flags.DEFINE_integer('cpu_devices', None,
                     'CPU devices per process (jax_num_cpu_devices), e.g. to '
                     'try data parallelism on one machine.')
flags.DEFINE_bool('keep_freed_memory', True,
                  'On the CPU backend, let malloc keep the memory a training '
                  'step frees for the next step instead of unmapping it '
                  '(fewer page faults; cfcls.training.host_memory).')


def _stop_on_signals():
  """SIGTERM / Ctrl-C: see cfcls.training.stopping (checkpoint after the current
  training step, or stop at once elsewhere, saying what was written)."""
  from cfcls.training import stopping  # pylint: disable=g-import-not-at-top

  def handler(signum, frame):
    del frame
    stopping.on_signal(signum)

  signal.signal(signal.SIGTERM, handler)
  signal.signal(signal.SIGINT, handler)


def _parse_flags(argv):
  """absl's flag parsing, with one line for a config field that does not exist.

  (ml_collections raises AttributeError for --config.learning_rat=...)
  """
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    text = str(e).replace('\\n', ' ').replace('\n', ' ').replace('\\', '')
    field, _, hint = ' '.join(text.replace("'", ' ').split()).partition(' ')
    text = f'{field} ({hint.strip()})' if hint.strip() else field
    sys.exit(f'train.py: unknown config field on the command line: {text}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from cfcls.training import console  # pylint: disable=g-import-not-at-top
  if not FLAGS.verbose:  # before anything imports tensorflow
    console.quiet_library_warnings()
  # Fields and values first, before anything is imported or prepared (the
  # batch's divisibility by the devices is checked once JAX has them).
  from cfcls.training import config_utils  # pylint: disable=g-import-not-at-top
  try:
    config_utils.validate_config(FLAGS.config)
  except config_utils.ConfigError as e:
    sys.exit(f'train.py: {e}')
  from cfcls.training import stopping  # pylint: disable=g-import-not-at-top
  if not FLAGS.verbose:
    console.quiet_libraries()
  _stop_on_signals()
  try:
    _start_and_run()
  except stopping.Interrupted as e:
    sys.exit(f'train.py: {e}')
  except Exception as e:  # pylint: disable=broad-except
    import jax  # pylint: disable=g-import-not-at-top
    if not (isinstance(e, jax.errors.JaxRuntimeError)
            and jax.process_count() > 1):
      raise
    # A collective failed: another process of the run died or lost contact.
    # Exit now: a normal exit would wait for the distributed runtime's
    # shutdown barrier, which the dead process never reaches.
    text = ' '.join(str(e).split())[:300]
    print(f'train.py: process {jax.process_index()} lost contact with the '
          f'other processes ({text}); another process has probably died '
          '(see its log). Restart all processes with the same workdir to '
          'resume from the last checkpoint.', file=sys.stderr, flush=True)
    os._exit(1)  # pylint: disable=protected-access


def _start_and_run():
  from cfcls.training import config_utils  # pylint: disable=g-import-not-at-top
  # Keep TensorFlow (the input pipeline) off the accelerators JAX uses.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  from cfcls.training import distributed  # pylint: disable=g-import-not-at-top
  try:
    settings = distributed.resolve(FLAGS.coordinator_address,
                                   FLAGS.num_processes, FLAGS.process_id,
                                   auto=FLAGS.distributed_auto)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  # Before any JAX computation: join the other processes, if any.
  distributed.initialize(settings, cpu_devices=FLAGS.cpu_devices,
                         heartbeat_timeout=FLAGS.heartbeat_timeout)
  # jax.distributed installs its own SIGTERM handler (preemption notices);
  # ours must win so that a signal to one process stops all of them at the
  # same step with a checkpoint (cfcls.training.stopping).
  _stop_on_signals()
  # pylint: disable=g-import-not-at-top
  import jax
  from cfcls.training import checkpointing
  from cfcls.training import predict_lib
  from cfcls.training import train_lib
  from cfcls.data.builders import common
  # pylint: enable=g-import-not-at-top
  keep_freed_memory = (FLAGS.keep_freed_memory
                       and jax.default_backend() == 'cpu')
  try:
    _run(train_lib, predict_lib, keep_freed_memory)
  except (config_utils.ConfigError, common.BadInputError,
          checkpointing.CheckpointError, predict_lib.InputError) as e:
    # A bad config, data folder or workdir: the message says what and where.
    sys.exit(f'train.py: {e}')


def _run(train_lib, predict_lib, keep_freed_memory):
  config = FLAGS.config
  workdir = FLAGS.workdir
  output = FLAGS.output or os.path.join(workdir, 'predictions')
  if FLAGS.mode == 'train':
    train_lib.train_and_evaluate(config, workdir,
                                 keep_freed_memory=keep_freed_memory)
  elif FLAGS.mode == 'eval':
    train_lib.evaluate(config, workdir, step=FLAGS.step)
  else:
    if not FLAGS.input:
      raise app.UsageError('--mode=predict needs --input (a folder of images)')
    report = predict_lib.predict(config, workdir, FLAGS.input, output,
                                 step=FLAGS.step)
    if report['failed']:
      logging.warning('could not read: %s', ', '.join(sorted(report['failed'])))


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
