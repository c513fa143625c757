"""From network outputs to class scores and label maps (SPEC section 3).

One forward path is shared by evaluation, TensorBoard summaries and predict:
`class_scores` turns the raw outputs into per-foreground-class scores in [0, 1]
and `labels_from_scores` turns scores into a label map.

Two kinds of networks:
- matte networks (loss 'cfm'): outputs `[B, H, W, K-1]` are linear alpha mattes.
  alpha_c = clip(output_c, 0, 1) for each class whose MLC probability is >= 0.5
  (others 0, when `mlc_gate`). A pixel takes the class with the largest alpha
  if that alpha >= threshold, else background (argmax over soft mattes; ties go
  to the lower class id).
- softmax networks (losses 'pce', 'ce'): outputs `[B, H, W, K]` are logits over
  all classes incl. background. Scores are the softmax probabilities of the
  foreground classes, and the label is the plain argmax over the K classes (the
  threshold does not apply).
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from cfcls import guided_filter

MATTE_LOSSES = ('cfm',)
SOFTMAX_LOSSES = ('pce', 'ce')


def is_matte_loss(loss: str) -> bool:
  if loss in MATTE_LOSSES:
    return True
  if loss in SOFTMAX_LOSSES:
    return False
  raise ValueError(f'unknown loss {loss!r}: expected one of '
                   f'{MATTE_LOSSES + SOFTMAX_LOSSES}')


def num_outputs_for_loss(loss: str, num_classes: int) -> int:
  """K-1 mattes for 'cfm', K logits for 'pce' and 'ce'."""
  return num_classes - 1 if is_matte_loss(loss) else num_classes


def refine_outputs(outputs, images, *, loss: str, radius: int,
                   eps: float = 1e-3):
  """Guided filter of the raw outputs with the image (radius 0: unchanged).

  Matte networks: each matte is filtered. Softmax networks: the class
  probabilities are filtered (they still sum to 1: the filter is linear and
  keeps constants) and returned as their logarithms, so `class_scores` and
  the argmax see the filtered probabilities (where the filter overshoots
  below 0, floored at 1e-6 and renormalised).

  Args:
    outputs: raw network outputs (see `class_scores`).
    images: float `[B, H, W, 3]` in [0, 1], the guide.
    loss: 'cfm', 'pce' or 'ce'.
    radius, eps: see `cfcls.guided_filter.guided_filter`.
  """
  if not radius:
    return outputs
  if is_matte_loss(loss):
    return guided_filter.guided_filter(images, outputs, radius, eps)
  probs = guided_filter.guided_filter(
      images, jax.nn.softmax(outputs.astype(jnp.float32), axis=-1), radius,
      eps)
  return jnp.log(jnp.maximum(probs, 1e-6))


def class_scores(outputs, mlc_logits, *, loss: str, mlc_gate: bool = True,
                 mlc_threshold: float = 0.5):
  """Per-foreground-class scores in [0, 1].

  Args:
    outputs: float `[B, H, W, K-1]` (matte networks) or `[B, H, W, K]`
      (softmax networks).
    mlc_logits: float `[B, K-1]` multi-label classification logits.
    loss: 'cfm', 'pce' or 'ce' (selects the kind of network).
    mlc_gate: matte networks only: zero the mattes of classes whose MLC
      probability is below `mlc_threshold`.
    mlc_threshold: see `mlc_gate`.

  Returns:
    (scores float32 `[B, H, W, K-1]`, class probabilities float32 `[B, K-1]`).
    Class probabilities: the MLC sigmoid for matte networks; for softmax
    networks, the largest softmax probability of the class over the image.
  """
  outputs = outputs.astype(jnp.float32)
  if is_matte_loss(loss):
    probs = jax.nn.sigmoid(mlc_logits.astype(jnp.float32))
    scores = jnp.clip(outputs, 0.0, 1.0)
    if mlc_gate:
      keep = (probs >= mlc_threshold).astype(scores.dtype)
      scores = scores * keep[:, None, None, :]
    return scores, probs
  scores = jax.nn.softmax(outputs, axis=-1)[..., 1:]
  return scores, jnp.max(scores, axis=(1, 2))


def labels_from_scores(scores, threshold: float):
  """Label map from matte scores.

  Args:
    scores: float `[B, H, W, K-1]` foreground scores.
    threshold: minimum winning score for a foreground label.

  Returns:
    int32 `[B, H, W]`: 1 + argmax_c scores_c where max_c scores_c >= threshold,
    else 0 (background).
  """
  best = jnp.argmax(scores, axis=-1).astype(jnp.int32) + 1
  return jnp.where(jnp.max(scores, axis=-1) >= threshold, best, 0)


def predict_labels(outputs, scores, *, loss: str, thresholds: Sequence[float]):
  """Label maps for each threshold.

  Args:
    outputs: raw network outputs (see `class_scores`).
    scores: `class_scores(outputs, ...)[0]`.
    loss: 'cfm', 'pce' or 'ce'.
    thresholds: T thresholds (used by matte networks only).

  Returns:
    int32 `[T, B, H, W]`. For softmax networks all T maps are the argmax map.
  """
  if is_matte_loss(loss):
    return jnp.stack([labels_from_scores(scores, t) for t in thresholds])
  labels = jnp.argmax(outputs, axis=-1).astype(jnp.int32)
  return jnp.broadcast_to(labels[None], (len(thresholds),) + labels.shape)
