"""The machinery of a run: everything between a config and a checkpoint.

  train_lib      train_and_evaluate / evaluate: the loop
  run_lib        a run's model, optimiser, state and compiled steps
  train_step     the sharded train and eval steps
  evaluators     mIoU, matting errors, summary images
  predict_lib    predict: label maps, overlays and mattes for images
  checkpointing  orbax checkpoints: save, restore, what a run resumes from
  stopping       early stopping and SIGTERM handling
  console        what a run prints
  distributed    several hosts: initialisation and agreement
  optim          the optax optimiser and schedule
  config_utils   config validation and the config's derived values
"""
