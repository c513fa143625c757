"""Your own data: a folder of images and scribble PNGs (cfcls.data).

  python train.py --config=configs/folder.py --workdir=runs/mine \
      --config.data.manual_dir=/data/my_folder

Defaults follow the paper's inspection sets (513x513 crops). For small data
sets lower num_train_steps; start from ImageNet weights with
--config.init_from=resnet101.pth.

Loss: 'two_stage' with the demo's closed-form labels
(config_schema.use_closed_form_labels; docs/results.md, "Demo results"): the
closed-form matte of every training image is solved once after the folder is
prepared (cfcls.data.targets; exact, by the multifrontal direct solver:
~0.1-0.3 s for a 320-pixel photo on 2 cores, growing like N^1.5; ~4x that in
all with the check mattes of data.targets.check_radius=2, which veto the
object labels 5x5 windows do not confirm) and the network is trained with
cross-entropy on its sure labels, from half of training on without the
labels it gives under 0.1 itself (label_drop_prob). Measured, network
outputs only, 1500-step sweeps: demo scenes 0.870 (CE on full masks 0.861,
end-to-end CFM 0.662), textured instances 0.638 (CE 0.706); on an earlier
held-out photo-texture folder plain two-stage labels reached 0.685 (0.97x
CE, pCE + 0.23; measured in issue 15, not here) where end-to-end CFM reached
0.402. --config.loss=cfm trains the end-to-end loss (paper: configs/voc.py).

Evaluation and prediction average the network's outputs on each image and
its mirror (tta_flip, as configs/demo.py; measured on the two synthetic
families, not on photos: --config.tta_flip=False turns it off).
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
  config_schema.use_closed_form_labels(config)
  config.tta_flip = True
  return config
