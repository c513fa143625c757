"""Command-line entry point: train, evaluate or predict with a config file.

  python train.py                                   # the demo (configs/demo.py)
  python train.py --config=configs/voc.py --workdir=runs/voc \
      --config.data.manual_dir=/data/voc --config.batch_size=8
  python train.py --config=configs/voc.py --workdir=runs/voc --mode=eval
  python train.py --config=configs/voc.py --workdir=runs/voc --mode=predict \
      --input=photos/ --output=runs/voc/predictions

Everything but flag parsing lives in cfcls.train_lib.
"""

import os

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  # Keep TensorFlow (the input pipeline) off the accelerators JAX uses.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  from cfcls import train_lib  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  workdir = FLAGS.workdir
  output = FLAGS.output or os.path.join(workdir, 'predictions')
  if FLAGS.mode == 'train':
    train_lib.train_and_evaluate(config, workdir)
    if config.predict_after_training:
      inputs = os.path.join(workdir, 'predict_inputs')
      train_lib.write_eval_images(config, inputs,
                                  config.predict_after_training)
      train_lib.predict(config, workdir, inputs, output)
  elif FLAGS.mode == 'eval':
    train_lib.evaluate(config, workdir, step=FLAGS.step)
  else:
    if not FLAGS.input:
      raise app.UsageError('--mode=predict needs --input (a folder of images)')
    report = train_lib.predict(config, workdir, FLAGS.input, output,
                               step=FLAGS.step)
    if report['failed']:
      logging.warning('could not read: %s', ', '.join(sorted(report['failed'])))


if __name__ == '__main__':
  app.run(main)
