"""cfcls: scribble-supervised semantic segmentation with the closed-form matting loss.

Packages (imports point down this list, never up):
  cfcls.training   the run: loop, steps, evaluators, prediction, checkpoints
  cfcls.data       scribble tools, tfds builders, the tf.data pipeline
  cfcls.models     ResNet, DeepLabV3+ with the MLC head, U-Net, ERFNet
  cfcls.matting    the matting Laplacian and the closed-form solver
                   (imports nothing of cfcls outside itself)

Modules at the top tie them together:
  config_schema  every config field and its default
  objectives     one objective per loss: outputs, loss, scores, labels
  losses         CFM loss, partial / full cross-entropy, multi-label BCE
  metrics        confusion-matrix mIoU, P/R/F1, matting errors
  inference      a network's forward pass on uint8 or float images
  labels         label-map conventions (IGNORE = 255)
  parallel       the device mesh and batch sharding
  visualize      palettes, overlays, mattes as pictures
  jsonio         JSON files written atomically, read with clear errors

The model, the losses and the train step never import tensorflow: only
cfcls.data does.
"""

__version__ = "0.1.0"
