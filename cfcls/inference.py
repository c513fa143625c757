"""The one inference path, shared by evaluation, summaries and prediction.

  forward(config, model, variables, images) -> scores, class probs, labels

The network's raw outputs go through the config's objective
(`cfcls.objectives`): optional guided filtering with the image, per-class
scores in [0, 1] and label maps (docs/method.md, section 3).
"""

import jax.numpy as jnp

from cfcls import objectives


def images_to_float(images):
  """uint8 `[B, H, W, 3]` -> float32 in [0, 1] (float input passes through)."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def forward(config, model, variables, images):
  """Images -> scores, class probabilities and label maps.

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
  objective = objectives.get(config.loss)
  images = images_to_float(images)
  outputs, mlc_logits = model.apply(variables, images, train=False)
  outputs = objective.refine(outputs, images, config.guided_filter_radius,
                             config.guided_filter_eps)
  scores, probs = objective.class_scores(outputs, mlc_logits,
                                         mlc_gate=config.mlc_gate)
  labels = objective.labels(outputs, scores, tuple(config.thresholds))
  return {'scores': scores, 'probs': probs, 'labels': labels}
