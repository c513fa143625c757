"""Your own data: a folder of images and scribble PNGs (cfcls.data).

  python train.py --config=configs/folder.py --workdir=runs/mine \
      --config.data.manual_dir=/data/my_folder

Defaults follow the paper's inspection sets (513x513 crops). For small data
sets lower num_train_steps; start from ImageNet weights with
--config.init_from=resnet101.pth.
"""

from cfcls import config_schema


def get_config():
  config = config_schema.get_config()
  config.data.name = 'scribble_folder'
  config.data.builder_config = ''
  config.data.crop_size = 513
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.batch_size = 8
  config.eval_batch_size = 2
  config.num_train_steps = 4000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
