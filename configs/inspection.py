"""The paper's inspection sets (corrosion, biofouling): U-Net or ERFNet.

  python train.py --config=configs/inspection.py --workdir=runs/corrosion \
      --config.data.manual_dir=/data/corrosion
  python train.py --config=configs/inspection.py:erfnet --workdir=runs/fouling \
      --config.data.manual_dir=/data/biofouling

The CFM paper trains U-Net and ERFNet (besides DeepLabV3+ on VOC and
Cityscapes) on two private industrial inspection sets: corrosion (241
images) and biofouling (195), scribble-annotated (docs/method.md, section
5). They come in as a ``scribble_folder`` (data_prep/README.md). The
argument after the colon picks the network: ``unet`` (default) or
``erfnet``.

From the paper (docs/method.md, section 6): 513 x 513 crops; Adam,
learning rate 1e-3, polynomial decay; batch 10; lambda 100, beta 1, eps of
the Laplacian 1e-7; the CFM loss with the squared residual over the
scribbled classes and the MLC gate (the base config's defaults); U-Net at
base width 64 and ERFNet as published (model.unet_base, model.erfnet_dropout
(0.03, 0.3)).

Assumptions (not given by the paper, or not known to this project):
- U-Net with BatchNorm and same-padding, transposed-conv upsampling (the
  common PyTorch layout; cfcls/models/unet.py), trained from scratch (no
  ImageNet weights: init_from only loads ResNets).
- The training length (num_train_steps=4000, as configs/folder.py) and the
  evaluation / checkpoint interval (500).
- The 80/20 train/validation split (scribble_folder's own splitting, as
  configs/folder.py), scale augmentation 0.5-2.0 and flips (the base
  config), the poly power 0.9.
- loss='cfm' (the paper's end-to-end loss, as configs/voc.py). On the
  demo scenes the two-stage recipe of configs/folder.py trains better
  (docs/results.md, "Demo results"): --config.loss=two_stage
  --config.data.targets.enabled=True.
"""

from cfcls import config_schema

NETWORKS = ('unet', 'erfnet')


def get_config(network='unet'):
  if network not in NETWORKS:
    raise ValueError(f'configs/inspection.py:{network} is not one of '
                     f'{NETWORKS}')
  config = config_schema.get_config()
  config.model.name = network
  config.data.name = 'scribble_folder'
  config.data.builder_config = ''
  config.data.crop_size = 513
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.batch_size = 10
  config.eval_batch_size = 2
  config.num_train_steps = 4000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
