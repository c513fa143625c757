"""PASCAL VOC 2012 with the ScribbleSup scribbles: 21 classes.

train_aug (10,582 images) for training, val (1,449) for evaluation.
"""

import os

from cfcls import config_schema


def get_config():
  config = config_schema.load_config_file(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'voc.py'))
  config.data.builder_config = 'full21'
  config.num_train_steps = 30000
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 2000
  return config
