"""What one run is built from: the model, optimiser, mesh and compiled steps.

  run = build(config, num_classes, class_names)   # compiled steps inside
  state = initial_state(run, pretrained=None)
  run, state, step, source = restore_for_eval(config, workdir, step)

A `Run` is built once from a validated config and passed to the training
loop, the evaluators and prediction; its jitted functions compile on first
use (JAX's persistent compilation cache, when set, shares the executables
between processes and repeated runs).
"""

import dataclasses
import os
from typing import Any, Callable, List, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp

from cfcls.training import checkpointing
from cfcls import config_schema
from cfcls.training import config_utils
from cfcls import jsonio
from cfcls import models
from cfcls import objectives
from cfcls.training import optim
from cfcls import parallel
from cfcls.training import train_step as train_step_lib


@dataclasses.dataclass
class Run:
  """Everything built from a config for one run."""
  config: Any
  num_classes: int
  class_names: List[str]
  mesh: Any
  objective: objectives.Objective
  model: Any  # training model (synchronised BN over 'data')
  eval_model: Any  # same variables, BN in inference mode only
  tx: Any
  learning_rate_fn: Callable
  init_fn: Callable  # (rng[, variables]) -> TrainState
  train_step: Callable  # (state, global batch) -> (state, metrics)
  eval_step: Callable  # (variables, global batch) -> confusion [T, K, K]
  predict_fn: Callable  # (variables, images) -> inference.forward(...)

  @property
  def crop_shape(self) -> Tuple[int, int]:
    return config_schema.pair(self.config.data.crop_size)


def build(config, num_classes: int, class_names: Sequence[str],
          mesh=None) -> Run:
  """Model, optimiser, mesh and the compiled steps from a validated config."""
  config_utils.check_class_weights(config, num_classes)
  mesh = parallel.create_mesh() if mesh is None else mesh
  objective = objectives.get(config.loss)
  num_outputs = objective.num_outputs(num_classes)
  model = models.create_model(config.model, num_classes, num_outputs,
                              axis_name=parallel.DATA_AXIS)
  eval_model = models.create_model(config.model, num_classes, num_outputs)
  lr_fn = optim.create_learning_rate_fn(config)
  tx = optim.create_optimizer(config, lr_fn)
  crop = config_schema.pair(config.data.crop_size)
  return Run(
      config=config, num_classes=num_classes, class_names=list(class_names),
      mesh=mesh, objective=objective, model=model, eval_model=eval_model,
      tx=tx, learning_rate_fn=lr_fn,
      init_fn=train_step_lib.make_init_fn(model, tx, crop, mesh,
                                           ema=config.ema_decay > 0),
      train_step=train_step_lib.make_train_step(config, model, tx,
                                                num_classes, mesh, lr_fn),
      eval_step=train_step_lib.make_eval_step(config, eval_model, num_classes,
                                              mesh),
      predict_fn=train_step_lib.make_predict_fn(config, eval_model))


def initial_state(run: Run, pretrained: Optional[str] = None):
  """Freshly initialised train state (replicated), optionally with weights."""
  variables = None
  if pretrained:
    from cfcls.models import pretrained as pretrained_lib  # pylint: disable=g-import-not-at-top,line-too-long
    dummy = jnp.zeros((1,) + run.crop_shape + (3,), jnp.float32)
    variables = jax.jit(lambda r: run.eval_model.init(r, dummy, train=False))(
        jax.random.key(run.config.seed))
    variables, _ = pretrained_lib.init_from(pretrained, variables)
  return run.init_fn(jax.random.key(run.config.seed), variables)


def abstract_state(run: Run):
  """The state's structure without computing it (for restoring)."""
  return jax.eval_shape(lambda: initial_state(run))


def dataset_meta(config, workdir: Optional[str]) -> Tuple[int, List[str]]:
  """(num_classes, class_names): from WORKDIR/dataset.json, else the data."""
  path = os.path.join(workdir, 'dataset.json') if workdir else None
  if path and os.path.exists(path):
    meta = jsonio.read_json(path, 'restore it, or remove it to read the '
                            'classes from the data again')
    return int(meta['num_classes']), list(meta['class_names'])
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  info = pipeline.dataset_info(config.data)
  return int(info.num_classes), list(info.class_names)


# Model fields that evaluation may set apart from training (the compute
# dtype, and what only training reads); every other one shapes the
# parameters, and so does the loss (K-1 mattes or K logits).
EVAL_MODEL_FIELDS = ('dtype', 'bn_momentum', 'erfnet_dropout')


def use_trained_network(config, workdir: str) -> List[str]:
  """Sets config.loss, config.ema_decay and config.model (but
  EVAL_MODEL_FIELDS) to the values WORKDIR/config.json was trained with,
  and returns what changed ('model.name: deeplabv3plus -> erfnet', ...):
  a checkpoint restores only
  into the network that wrote it, so `--mode=eval` needs no
  `--config.model.name` again. Nothing changes without a config.json.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return []
  trained = jsonio.read_json(path, 'restore it, or remove it and pass the '
                             'trained --config.model.* and --config.loss')
  changed = []

  def take(node, key, value, name):
    value = tuple(value) if isinstance(value, list) else value
    if node[key] != value:
      changed.append(f'{name}: {node[key]!r} -> {value!r}')
      node[key] = value

  if 'loss' in trained:
    take(config, 'loss', trained['loss'], 'loss')
  # A run with a weight average checkpoints it: restoring needs the field.
  # (Checkpoints from before ema_decay existed have none.)
  take(config, 'ema_decay', trained.get('ema_decay', 0.0), 'ema_decay')
  for key, value in trained.get('model', {}).items():
    if key in config.model and key not in EVAL_MODEL_FIELDS:
      take(config.model, key, value, f'model.{key}')
  if changed:
    logging.warning('%s was trained with another network or loss than this '
                    'config: using the trained one (%s)', path,
                    '; '.join(changed))
  return changed


def restore_for_eval(config, workdir: str, step: Optional[int],
                     run: Optional[Run] = None):
  """(run, state, step, source) of the best checkpoint, or of `step`.

  Without `run`, the network and loss are those WORKDIR was trained with
  (`use_trained_network`). `run`: the run of `config` if one is built
  already (its compiled steps are reused).
  """
  ckpts = checkpointing.Checkpoints(workdir, read_only=True)
  try:
    ckpts.require_any()  # before the data is read or prepared
    if run is None:
      use_trained_network(config, workdir)
      config_utils.validate_config(config, device_count=jax.device_count())
      num_classes, class_names = dataset_meta(config, workdir)
      run = build(config, num_classes, class_names)
    state, step, source = ckpts.restore_for_eval(abstract_state(run), step)
  finally:
    ckpts.close()
  logging.info('Restored %s checkpoint of step %d from %s', source, step,
               workdir)
  return run, state, step, source
