"""The paper's Cityscapes subset: 9 classes (see docs/method.md, section 5)."""

from cfcls import config_schema


def get_config():
  config = config_schema.get_config()
  config.data.name = 'scribble_cityscapes'
  config.data.builder_config = ''
  config.data.crop_size = 321
  config.batch_size = 10
  config.eval_batch_size = 2
  config.num_train_steps = 6000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
