"""Scribble data: the only part of cfcls that imports tensorflow.

  cfcls.data.scribbles   ScribbleSup XML, scribble/dot synthesis (numpy only)
  cfcls.data.synthetic   the synthetic-scenes generator (numpy only)
  cfcls.data.builders    tfds builders (tensorflow)
  cfcls.data.pipeline    dataset_info, create_train_iterator,
                         create_eval_iterator (tensorflow)

Importing this package imports nothing heavy; import the submodules.
"""
