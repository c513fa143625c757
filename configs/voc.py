"""The paper's PASCAL VOC subset: 6 classes + background.

docs/method.md, sections 5-7.

DeepLabV3+ on ResNet-101 at output stride 16, 321x321 crops, Adam 1e-3 with
polynomial decay, batch 10, lambda 100, beta 1.

  python train.py --config=configs/voc.py --workdir=runs/voc \
      --config.data.manual_dir=/data/voc_scribbles \
      --config.init_from=/weights/resnet101-63fe2227.pth
Baselines: --config.loss=pce (scribbles only) or --config.loss=ce (full masks).
"""

from cfcls import config_schema


def get_config():
  config = config_schema.get_config()
  config.data.name = 'scribble_voc'
  config.data.builder_config = 'subset6'
  config.data.crop_size = 321
  config.data.eval_pad_size = 512  # VOC images are at most 500x500
  config.batch_size = 10
  config.eval_batch_size = 10
  config.num_train_steps = 6000  # 150 epochs of the 400 training images
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
