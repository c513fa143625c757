"""The one inference path, shared by evaluation, summaries and prediction.

  forward(config, model, variables, images) -> scores, class probs, labels

The network's raw outputs go through the config's objective
(`cfcls.objectives`): optional guided filtering with the image, per-class
scores in [0, 1] and label maps (docs/method.md, section 3).
"""

import jax
import jax.numpy as jnp
import numpy as np

from cfcls import objectives
from cfcls.matting import refine as refine_lib

# config.refine: how evaluation and prediction refine the network outputs.
REFINES = ('none', 'guided', 'matting', 'soft_matting')
# Those solved per image on the host after `forward` (`refine_on_host`).
HOST_REFINES = ('matting', 'soft_matting')
# Those whose `forward` applies the guided filter.
GUIDED_REFINES = ('guided', 'soft_matting')


def images_to_float(images):
  """uint8 `[B, H, W, 3]` -> float32 in [0, 1] (float input passes through)."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def network_outputs(config, model, variables, images):
  """The network's (outputs, mlc_logits), averaged over config's test-time
  augmentation: each of `tta_scales` (bilinear resize of the images, the
  outputs resized back) and, with `tta_flip`, its left-right mirror
  (flipped back). Raw outputs are averaged: for softmax networks the mean
  of the logits is the normalised geometric mean of the probabilities."""
  scales = tuple(float(s) for s in config.tta_scales)
  flips = (False, True) if config.tta_flip else (False,)
  if scales == (1.0,) and flips == (False,):
    return model.apply(variables, images, train=False)
  b, h, w, c = images.shape
  outputs, mlc_logits = [], []
  for scale in scales:
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    scaled = images if size == (h, w) else jax.image.resize(
        images, (b,) + size + (c,), 'bilinear')
    for flip in flips:
      out, mlc = model.apply(variables, scaled[:, :, ::-1] if flip else scaled,
                             train=False)
      if flip:
        out = out[:, :, ::-1]
      if size != (h, w):
        out = jax.image.resize(out, (b, h, w, out.shape[-1]), 'bilinear')
      outputs.append(out.astype(jnp.float32))
      mlc_logits.append(mlc.astype(jnp.float32))
  return (sum(outputs) / len(outputs), sum(mlc_logits) / len(mlc_logits))


def forward(config, model, variables, images):
  """Images -> scores, class probabilities and label maps.

  Args:
    config: uses loss, mlc_gate, thresholds, refine, guided_filter_radius,
      guided_filter_eps, tta_scales and tta_flip (`network_outputs`). The
      guided filter is applied for 'guided' and 'soft_matting'; the
      matting systems of HOST_REFINES are not applied here (they run on
      the host: `refine_on_host`).
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
  outputs, mlc_logits = network_outputs(config, model, variables, images)
  if config.refine in GUIDED_REFINES:
    outputs = objective.refine(outputs, images, config.guided_filter_radius,
                               config.guided_filter_eps)
  scores, probs = objective.class_scores(outputs, mlc_logits,
                                         mlc_gate=config.mlc_gate)
  labels = objective.labels(outputs, scores, tuple(config.thresholds))
  return {'scores': scores, 'probs': probs, 'labels': labels}


def class_confidences(config, scores) -> np.ndarray:
  """`[..., K-1]` foreground scores -> `[..., K]` confidences, background 0.

  Softmax networks: the K probabilities (background 1 - the rest); matte
  networks: background 1 - the largest matte.
  """
  scores = np.asarray(scores, np.float32)
  rest = (scores.max(-1, keepdims=True) if objectives.get(config.loss).matte
          else scores.sum(-1, keepdims=True))
  return np.concatenate([np.clip(1.0 - rest, 0.0, 1.0), scores], axis=-1)


def refine_on_host(config, image, scores, valid=None):
  """config.refine ('matting' or 'soft_matting') on one image, on the host.

  'matting': the matting system seeded by the confident pixels
  (`refine.refine_image`); 'soft_matting': the soft matting system on all
  of `forward`'s (guided-filtered) probabilities (`refine.soft_refine_image`).

  Args:
    config: uses loss, refine, lam, refine_threshold, refine_erode,
      refine_eps, refine_lam, refine_weight and laplacian_radius.
    image: uint8 or float `[H, W, 3]`.
    scores: `forward(...)['scores']` of the image, `[H, W, K-1]`.
    valid: optional `[H, W]` mask of real pixels.

  Returns:
    (labels int32 `[H, W]`, mattes float32 `[H, W, K]`, info with 'seconds',
    the solve time).
  """
  if config.refine == 'soft_matting':
    return refine_lib.soft_refine_image(
        image, class_confidences(config, scores), lam=config.refine_lam,
        eps=config.refine_eps, weight=config.refine_weight,
        radius=config.laplacian_radius, valid=valid)
  if config.refine != 'matting':
    raise ValueError(f'refine_on_host: refine={config.refine!r} is not one '
                     f'of {HOST_REFINES}')
  return refine_lib.refine_image(
      image, class_confidences(config, scores),
      threshold=config.refine_threshold, erode=config.refine_erode,
      lam=config.lam, eps=config.refine_eps, radius=config.laplacian_radius,
      valid=valid)
