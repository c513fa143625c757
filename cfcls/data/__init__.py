"""Scribble data: the only part of cfcls that imports tensorflow.

  cfcls.data.scribbles   ScribbleSup XML, scribble/dot synthesis (numpy only)
  cfcls.data.synthetic   the synthetic-scenes generator (numpy only)
  cfcls.data.builders    tfds builders (tensorflow)
  cfcls.data.pipeline    dataset_info, create_train_iterator,
                         create_eval_iterator (tensorflow)
  cfcls.data.teacher     an image's closed-form labels as training uses them
  cfcls.data.annotation_server  the annotation page (data_prep/annotate.py)

Importing this package imports nothing heavy; import the submodules.
"""
