"""cfcls: scribble-supervised semantic segmentation with the closed-form matting loss.

Module map (one idea per module):
  cfcls.laplacian   window statistics and the matrix-free matting Laplacian L @ x
  cfcls.losses      CFM loss, partial / full cross-entropy, multi-label BCE
  cfcls.matting     closed-form matting solver (matrix-free PCG and direct scipy)
  cfcls.models      ResNet, DeepLabV3+ with the MLC head, pretrained-weight import
  cfcls.data        scribble tools, tfds builders, the tf.data input pipeline
  cfcls.metrics     confusion-matrix mIoU, P/R/F1, matting errors
  cfcls.train_lib   train_and_evaluate / evaluate / predict

The model, the losses and the train step never import tensorflow: only
cfcls.data does.
"""

__version__ = "0.1.0"
