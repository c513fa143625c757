"""Optimiser and learning-rate schedule from the config (optax).

  create_learning_rate_fn(config) -> step -> lr
  create_optimizer(config, params) -> optax.GradientTransformation

The chain is: [global-norm clipping] -> Adam or SGD-momentum moments ->
[decoupled weight decay on kernels] -> -lr(step) (x head_lr_multiplier for the
parameters outside the backbone).
"""

from typing import Callable

import jax
import optax

BACKBONE_KEY = 'backbone'  # top-level params entry of the ResNet (cfcls.models)
OPTIMIZERS = ('adam', 'sgd')
LR_SCHEDULES = ('poly', 'constant')


def create_learning_rate_fn(config) -> Callable:
  """Linear warmup to `learning_rate`, then poly decay (or constant).

  Poly: lr(t) = end + (peak - end) * (1 - (t - warmup) / (T - warmup))^power
  for t in [warmup, T], T = num_train_steps (the paper's polynomial decay).
  """
  peak = config.learning_rate
  warmup = int(config.warmup_steps)
  if config.lr_schedule == 'poly':
    decay = optax.polynomial_schedule(
        init_value=peak, end_value=config.end_learning_rate,
        power=config.lr_power,
        transition_steps=max(config.num_train_steps - warmup, 1))
  elif config.lr_schedule == 'constant':
    decay = optax.constant_schedule(peak)
  else:
    raise ValueError(f'unknown lr_schedule {config.lr_schedule!r}')
  if warmup <= 0:
    return decay
  ramp = optax.linear_schedule(0.0, peak, warmup)
  return optax.join_schedules([ramp, decay], [warmup])


def param_groups(params):
  """'backbone' for the parameters under params['backbone'], else 'head'."""
  return {k: jax.tree_util.tree_map(
      lambda _, g=('backbone' if k == BACKBONE_KEY else 'head'): g, v)
          for k, v in params.items()}


def _kernel_mask(params):
  """True for weight matrices / conv kernels (ndim > 1): the decayed ones."""
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def create_optimizer(config, learning_rate_fn=None) -> optax.GradientTransformation:
  """The optax optimiser that the config describes."""
  learning_rate_fn = learning_rate_fn or create_learning_rate_fn(config)

  def group(multiplier):
    chain = []
    if config.optimizer == 'adam':
      chain.append(optax.scale_by_adam())
    elif config.optimizer == 'sgd':
      chain.append(optax.trace(decay=config.momentum))
    else:
      raise ValueError(f'unknown optimizer {config.optimizer!r}')
    if config.weight_decay > 0:
      chain.append(optax.add_decayed_weights(config.weight_decay,
                                             mask=_kernel_mask))
    chain.append(optax.scale_by_learning_rate(
        lambda step: learning_rate_fn(step) * multiplier))
    return optax.chain(*chain)

  if config.head_lr_multiplier == 1.0:
    tx = group(1.0)
  else:
    tx = optax.multi_transform(
        {'backbone': group(1.0), 'head': group(config.head_lr_multiplier)},
        param_groups)
  if config.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)
  return tx
