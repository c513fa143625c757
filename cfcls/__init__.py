"""cfcls: scribble-supervised semantic segmentation with the closed-form matting loss.

Module map (one idea per module):
  cfcls.laplacian      window statistics, the matrix-free Laplacian L @ x
  cfcls.losses         CFM loss, partial / full cross-entropy, multi-label BCE
  cfcls.objectives     one objective per loss: outputs, loss, scores, labels
  cfcls.matting        closed-form matting solver (matrix-free and scipy)
  cfcls.models         ResNet, DeepLabV3+ with the MLC head, weight import
  cfcls.data           scribble tools, tfds builders, the tf.data pipeline
  cfcls.metrics        confusion-matrix mIoU, P/R/F1, matting errors
  cfcls.config_schema  every config field and its default
  cfcls.run_lib        a run's model, optimiser and compiled steps
  cfcls.train_lib      train_and_evaluate / evaluate
  cfcls.evaluators     confusion/mIoU, matting errors, summary images
  cfcls.predict_lib    predict: label maps, overlays and mattes for images

The model, the losses and the train step never import tensorflow: only
cfcls.data does.
"""

__version__ = "0.1.0"
