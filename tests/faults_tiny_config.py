"""A tiny run for tests/test_faults.py and tests/test_multihost.py.

A network and data small enough that a few steps run in seconds on 2 CPU
cores; command-line overrides set data.data_dir and the step counts.
"""

from cfcls import config_schema


def set_tiny_model(model):
  """The tests' tiny ResNet-18 DeepLabV3+ (width 1/8, 16-channel heads)."""
  model.backbone = 'resnet18'
  model.width = 0.125
  model.aspp_channels = 16
  model.decoder_channels = 16
  model.low_level_channels = 8
  model.mlc_hidden = 16


def get_config():
  config = config_schema.get_config()
  set_tiny_model(config.model)
  config.data.name = 'synthetic_scenes'
  config.data.builder_config = ''
  config.data.synthetic.num_train = 16
  config.data.synthetic.num_val = 4
  config.data.synthetic.image_size = 40
  config.data.crop_size = 32
  config.data.eval_pad_size = 40
  config.data.shuffle_buffer = 16
  config.batch_size = 4
  config.eval_batch_size = 4
  # SGD: Adam's first updates are lr * sign(gradient), so float rounding in
  # near-zero gradients (another device count sums in another order) flips
  # whole updates; SGD keeps such differences at rounding size. The energy
  # norm (the demo's) keeps the CFM gradients O(1); with the squared residual
  # (norm ~1e5 on the patterned scenes) a BatchNorm scale's gradient is a sum
  # of terms ~1e4 times larger than itself, and the order of summation alone
  # moves its momentum trace by ~4e-3 relative.
  config.cfm_norm = 'energy'
  config.optimizer = 'sgd'
  config.learning_rate = 3e-5
  config.lr_schedule = 'constant'
  config.num_train_steps = 6
  config.log_every_steps = 1
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 1
  config.keep_checkpoints = 3
  config.num_summary_images = 0
  config.matting_metrics = False
  config.predict_after_training = 0
  return config
