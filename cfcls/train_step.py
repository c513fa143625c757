"""Train state, the loss dispatch and the data-parallel train and eval steps.

The per-device code is written in the pmap style (an axis name, psum/pmean)
and mapped over a 1-D device mesh with `jax.shard_map` under `jax.jit`:

  state (replicated), global batch (split over 'data')
      -> per device: forward, loss on its rows, gradients
      -> psum of the loss-weighted gradients (exact global mean, see below)
      -> the same optimiser update on every device.

BatchNorm statistics are averaged over the 'data' axis (synchronised BN: the
model is created with `axis_name='data'`), so 2 devices with 2 images each
compute exactly what 1 device does with the 4 images.

Global means. Each loss term is a mean over something (images for CFM and
MLC, scribbled pixels for pCE, labelled pixels for CE). A device's share of
the global loss is its local mean times its count divided by the global count
(psum of the counts), so the psum of the shares is the global mean whatever
the distribution of labelled pixels over devices.

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
from cfcls import laplacian
from cfcls import losses
from cfcls import metrics as metrics_lib
from cfcls import parallel

DATA_AXIS = parallel.DATA_AXIS


class TrainState(flax.struct.PyTreeNode):
  """What a checkpoint holds: step, params, BN statistics, optimiser state.

  The training input position is `step` (the data iterator is a pure function
  of (seed, step)), and there is no other random state: the model has no
  dropout and the augmentation randomness lives in the input pipeline.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


def images_to_float(images):
  """uint8 `[B, H, W, 3]` -> float32 in [0, 1] (float input passes through)."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def make_init_fn(model, tx, image_shape: Sequence[int], mesh) -> Callable:
  """Compiled `(rng[, variables]) -> TrainState`, replicated on mesh.

  Without `variables` the model is initialised with `model.init` on a crop of
  `image_shape` `(H, W)`; with `variables` (e.g. pretrained backbone weights)
  only the optimiser state is created.
  """

  def init(rng, variables=None):
    if variables is None:
      dummy = jnp.zeros((1,) + tuple(image_shape) + (3,), jnp.float32)
      variables = model.init(rng, dummy, train=False)
    return TrainState(step=jnp.zeros((), jnp.int32),
                      params=variables['params'],
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(variables['params']))

  return jax.jit(init, out_shardings=parallel.replicated_sharding(mesh))


def create_train_state(model, tx, image_shape: Sequence[int], seed: int,
                       mesh, variables=None) -> TrainState:
  """Initialised (or given) variables and optimiser state, replicated on mesh.

  Args:
    model: the flax module.
    tx: optax optimiser.
    image_shape: `(H, W)` of a training crop.
    seed: init seed.
    mesh: the data mesh; the state is replicated over it.
    variables: optional initial `{'params', 'batch_stats'}` (e.g. with
      pretrained backbone weights); default: `model.init`.
  """
  init = make_init_fn(model, tx, image_shape, mesh)
  return init(jax.random.key(seed), variables)


def _class_weights(config):
  if config.class_weights is None:
    return None
  return jnp.asarray(config.class_weights, jnp.float32)


def loss_terms(config, num_classes: int, outputs, mlc_logits, batch,
               axis_name: str = DATA_AXIS):
  """This device's share of the global loss (its psum is the global loss).

  Args:
    config: the config (loss, lam, beta, class_weights, baseline_mlc, ...).
    num_classes: K.
    outputs: `[b, H, W, K-1]` mattes ('cfm') or `[b, H, W, K]` logits.
    mlc_logits: `[b, K-1]`.
    batch: dict with images float32 `[b, H, W, 3]`, scribbles int32
      `[b, H, W]`, mask int32 `[b, H, W]`, valid float32 `[b, H, W]`,
      presence float32 `[b, K-1]`.
    axis_name: the mapped device axis.

  Returns:
    (share, terms): the scalar share and a dict of the global value of each
    term (already summed over devices).
  """
  num_devices = jax.lax.psum(1, axis_name)

  def global_mean(value, count):
    """Share of a mean over items of which this device holds `count`."""
    count = jnp.asarray(count, jnp.float32)
    total = jax.lax.psum(count, axis_name)
    return value * count / jnp.maximum(total, 1.0)

  shares = {}
  if config.loss == 'cfm':
    stats = laplacian.window_stats(batch['images'], eps=config.laplacian_eps,
                                   radius=config.laplacian_radius,
                                   valid=batch.get('valid'))
    presence = None  # 'scribbles': gate by the scribbles of each crop
    if config.cfm_classes == 'all':
      presence = jnp.ones(outputs.shape[:1] + outputs.shape[-1:], jnp.float32)
    cfm, _ = losses.cfm_loss(stats, outputs, batch['scribbles'], num_classes,
                             lam=config.lam,
                             class_weights=_class_weights(config),
                             presence=presence, norm=config.cfm_norm)
    shares['cfm'] = cfm / num_devices
    use_mlc = True
  elif config.loss == 'pce':
    scribbles = batch['scribbles']
    shares['pce'] = global_mean(losses.partial_ce(outputs, scribbles),
                                jnp.sum(scribbles != 255))
    use_mlc = config.baseline_mlc
  elif config.loss == 'ce':
    mask = batch['mask']
    labelled = (mask != 255) & (mask < num_classes)
    shares['ce'] = global_mean(losses.full_ce(outputs, mask),
                               jnp.sum(labelled))
    use_mlc = config.baseline_mlc
  else:
    raise ValueError(f'unknown loss {config.loss!r}')
  if use_mlc:
    shares['mlc'] = losses.mlc_bce(mlc_logits, batch['presence']) / num_devices
  share = sum(shares[k] * (config.beta if k == 'mlc' else 1.0) for k in shares)
  terms = {k: jax.lax.psum(jax.lax.stop_gradient(v), axis_name)
           for k, v in shares.items()}
  return share, terms


def _prepare(batch):
  batch = dict(batch)
  batch['images'] = images_to_float(batch.pop('image'))
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

  def per_device(state: TrainState, batch):
    batch = _prepare(batch)

    def loss_fn(params):
      (outputs, mlc_logits), new_vars = model.apply(
          {'params': params, 'batch_stats': state.batch_stats},
          batch['images'], train=True, mutable=['batch_stats'])
      share, terms = loss_terms(config, num_classes, outputs, mlc_logits,
                                batch)
      return share, (terms, new_vars['batch_stats'])

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (share, (terms, batch_stats)), grads = grad_fn(state.params)
    grads = jax.lax.psum(grads, DATA_AXIS)
    loss = jax.lax.psum(share, DATA_AXIS)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=batch_stats, opt_state=opt_state)
    out = {'loss': loss, 'grad_norm': optax.global_norm(grads),
           'learning_rate': learning_rate_fn(state.step)}
    out.update(terms)
    return new_state, out

  mapped = jax.shard_map(per_device, mesh=mesh,
                         in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()),
                         check_vma=False)
  return jax.jit(mapped, donate_argnums=(0,))


def forward(config, model, variables, images):
  """The one inference path: images -> scores, class probs, labels.

  Args:
    config: uses loss, mlc_gate, thresholds, guided_filter_radius and
      guided_filter_eps.
    model: the flax module (BN in inference mode).
    variables: `{'params', 'batch_stats'}`.
    images: uint8 or float `[B, H, W, 3]`.

  Returns:
    dict: 'scores' float32 `[B, H, W, K-1]` (mattes or softmax probabilities
    of the foreground classes), 'probs' float32 `[B, K-1]`, 'labels' int32
    `[T, B, H, W]` (one map per config.thresholds entry).
  """
  images = images_to_float(images)
  outputs, mlc_logits = model.apply(variables, images, train=False)
  outputs = inference.refine_outputs(
      outputs, images, loss=config.loss,
      radius=config.guided_filter_radius,
      eps=config.guided_filter_eps)
  scores, probs = inference.class_scores(outputs, mlc_logits, loss=config.loss,
                                         mlc_gate=config.mlc_gate)
  labels = inference.predict_labels(outputs, scores, loss=config.loss,
                                    thresholds=tuple(config.thresholds))
  return {'scores': scores, 'probs': probs, 'labels': labels}


def make_eval_step(config, model, num_classes: int, mesh) -> Callable:
  """Compiled `(variables, batch) -> confusion int32 [T, K, K]` (replicated).

  batch: image `[B, H, W, 3]`, mask int32 `[B, H, W]`, valid float32
  `[B, H, W]`, example_mask float32 `[B]` (0 = padding example), split over
  'data'. Pixels with valid == 0, example_mask == 0 or mask == 255 are not
  counted.
  """

  def per_device(variables, batch):
    labels = forward(config, model, variables, batch['image'])['labels']
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
  """Compiled `(variables, images) -> forward(...)` without a mesh (any size)."""
  return jax.jit(functools.partial(forward, config, model))


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
