"""Train state and the data-parallel train, eval and predict steps.

The per-device code is written in the pmap style (an axis name, psum/pmean)
and mapped over a 1-D device mesh with `jax.shard_map` under `jax.jit`:

  state (replicated), global batch (split over 'data')
      -> per device: forward, loss on its rows, gradients
      -> psum of the loss-weighted gradients (exact global mean, see below)
      -> the same optimiser update on every device.

BatchNorm statistics are averaged over the 'data' axis (synchronised BN: the
model is created with `axis_name='data'`), so 2 devices with 2 images each
compute exactly what 1 device does with the 4 images.

The loss of each device's rows is its share of the global loss, as the
config's objective computes it (`cfcls.objectives`: exact global means).

This module does not import tensorflow (only cfcls.data does).
"""

import functools
from typing import Any, Callable, Dict, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from cfcls import inference
from cfcls import metrics as metrics_lib
from cfcls import objectives
from cfcls import parallel

DATA_AXIS = parallel.DATA_AXIS


class TrainState(flax.struct.PyTreeNode):
  """What a checkpoint holds: step, params, BN statistics, optimiser state.

  The training input position is `step` (the data iterator is a pure function
  of (seed, step)), and there is no other random state: the augmentation
  randomness lives in the input pipeline and the dropout key of a step
  (ERFNet) is `dropout_key(config.seed, step)`, so a resumed run repeats an
  uninterrupted one exactly.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  # With config.ema_decay > 0: {'params', 'batch_stats'} averaged over the
  # steps (optax.incremental_update at 1 - ema_decay_at), the weights that
  # evaluation and prediction use.
  ema: Any = None

  def variables(self):
    """The weights to evaluate: the moving average where there is one."""
    return self.ema if self.ema is not None else self.trained_variables()

  def trained_variables(self):
    """The weights of the last step (what the optimiser updates)."""
    return {'params': self.params, 'batch_stats': self.batch_stats}


def ema_decay_at(decay: float, step):
  """The average's decay at update `step` (0-based): min(decay,
  (1 + step) / (10 + step)), so the first updates are not swamped by the
  initial weights (the warm-up of TensorFlow's ExponentialMovingAverage)."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


# Separates the dropout keys from other uses of jax.random.key(config.seed)
# (the parameter initialisation).
DROPOUT_STREAM = 1


def dropout_key(seed: int, step):
  """The dropout key of train step `step`: a pure function of (seed, step).

  Inside the mapped train step each device folds in its index on the data
  axis as well, so the devices draw different masks for their examples.
  """
  key = jax.random.fold_in(jax.random.key(seed), DROPOUT_STREAM)
  return jax.random.fold_in(key, step)


def make_init_fn(model, tx, image_shape: Sequence[int], mesh,
                 ema: bool = False) -> Callable:
  """Compiled `(rng[, variables]) -> TrainState`, replicated on mesh.

  Without `variables` the model is initialised with `model.init` on a crop of
  `image_shape` `(H, W)`; with `variables` (e.g. pretrained backbone weights)
  only the optimiser state is created. `ema`: the state carries a moving
  average of the weights, starting at the initial ones.
  """

  def init(rng, variables=None):
    if variables is None:
      dummy = jnp.zeros((1,) + tuple(image_shape) + (3,), jnp.float32)
      variables = model.init(rng, dummy, train=False)
    state = TrainState(step=jnp.zeros((), jnp.int32),
                       params=variables['params'],
                       batch_stats=variables.get('batch_stats', {}),
                       opt_state=tx.init(variables['params']))
    if ema:
      state = state.replace(ema=state.trained_variables())
    return state

  return jax.jit(init, out_shardings=parallel.replicated_sharding(mesh))


def _prepare(batch):
  batch = dict(batch)
  batch['images'] = inference.images_to_float(batch.pop('image'))
  return batch


def make_train_step(config, model, tx, num_classes: int, mesh,
                    learning_rate_fn: Callable) -> Callable:
  """Compiled `(state, batch) -> (state, metrics)` over the mesh.

  `state` is donated. `batch` holds global arrays split over 'data' (see
  `parallel.host_batch_to_global`): image uint8 `[B, H, W, 3]`, scribbles,
  mask int32 `[B, H, W]`, valid float32 `[B, H, W]`, presence float32
  `[B, K-1]`. `metrics` are replicated scalars: loss, its terms, grad_norm and
  learning_rate (the rate used for this update).
  """

  objective = objectives.get(config.loss)

  def per_device(state: TrainState, batch):
    batch = _prepare(batch)
    batch['step'] = state.step  # of this update (0-based)
    rngs = {'dropout': jax.random.fold_in(
        dropout_key(config.seed, state.step), jax.lax.axis_index(DATA_AXIS))}

    def loss_fn(params):
      (outputs, mlc_logits), new_vars = model.apply(
          {'params': params, 'batch_stats': state.batch_stats},
          batch['images'], train=True, mutable=['batch_stats'], rngs=rngs)
      share, terms = objective.loss_shares(config, num_classes, outputs,
                                           mlc_logits, batch)
      return share, (terms, new_vars['batch_stats'])

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (share, (terms, batch_stats)), grads = grad_fn(state.params)
    grads = jax.lax.psum(grads, DATA_AXIS)
    loss = jax.lax.psum(share, DATA_AXIS)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=batch_stats, opt_state=opt_state)
    if state.ema is not None:
      new_state = new_state.replace(ema=optax.incremental_update(
          new_state.trained_variables(), state.ema,
          1.0 - ema_decay_at(config.ema_decay, state.step)))
    out = {'loss': loss, 'grad_norm': optax.global_norm(grads),
           'learning_rate': learning_rate_fn(state.step)}
    out.update(terms)
    return new_state, out

  mapped = jax.shard_map(per_device, mesh=mesh,
                         in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()),
                         check_vma=False)
  return jax.jit(mapped, donate_argnums=(0,))


def make_eval_step(config, model, num_classes: int, mesh) -> Callable:
  """Compiled `(variables, batch) -> confusion int32 [T, K, K]` (replicated).

  batch: image `[B, H, W, 3]`, mask int32 `[B, H, W]`, valid float32
  `[B, H, W]`, example_mask float32 `[B]` (0 = padding example), split over
  'data'. Pixels with valid == 0, example_mask == 0 or mask == 255 are not
  counted.
  """

  def per_device(variables, batch):
    labels = inference.forward(config, model, variables,
                               batch['image'])['labels']
    weights = batch['valid'] * batch['example_mask'][:, None, None]
    confusion = jnp.stack([
        metrics_lib.confusion_matrix(batch['mask'], labels[t], num_classes,
                                     weights=weights)
        for t in range(labels.shape[0])])
    return jax.lax.psum(confusion, DATA_AXIS)

  mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(DATA_AXIS)),
                         out_specs=P(), check_vma=False)
  return jax.jit(mapped)


def make_predict_fn(config, model) -> Callable:
  """Compiled `(variables, images) -> inference.forward(...)` (any size)."""
  return jax.jit(functools.partial(inference.forward, config, model))


def first_nonfinite(metrics_history: Sequence[Dict[str, Any]], first_step: int):
  """(step, name) of the first non-finite 'loss' or 'grad_norm', or None.

  Args:
    metrics_history: host metrics of consecutive steps.
    first_step: the step number of metrics_history[0].
  """
  for i, m in enumerate(metrics_history):
    for name in ('loss', 'grad_norm'):
      if name in m and not np.all(np.isfinite(m[name])):
        return first_step + i, name
  return None
