"""Training losses: the closed-form matting (CFM) loss and the baselines.

Label maps hold class ids 0..K-1 (0 = background) and 255 for unlabelled
(scribbles) or void (masks) pixels. Foreground class c (1..K-1) is channel
c - 1 of the alpha mattes and of the multi-label logits.
"""
from typing import Tuple

import jax
import jax.numpy as jnp

from cfcls import labels as labels_lib
from cfcls.matting import laplacian
from cfcls.matting import validation
from cfcls.matting.constraints import scribble_constraints


def matting_residual(stats: laplacian.WindowStats, alpha, labelled, targets,
                     lam: float):
  """(L + lam D) alpha - lam D S, [B, H, W, C] for alpha [B, H, W, C]."""
  return (laplacian.laplacian_matvec(stats, alpha)
          + lam * labelled * (alpha - targets))


def laplacian_energy(stats: laplacian.WindowStats, probs, valid=None
                     ) -> Tuple[jax.Array, jax.Array]:
  """The matting Laplacian energy of soft labels: sum_b,c p_bc^T L_b p_bc.

  The regularised-loss form (Tang et al., "On regularized losses for
  weakly-supervised CNN segmentation") with the matting Laplacian as the
  pairwise kernel: it is 0 where each class probability is locally an
  affine function of the colour (so a label may change only at a colour
  edge) and grows with every label boundary that crosses flat colour.
  L 1 = 0, so the energy of probabilities that sum to 1 is the same for
  any one class written as the rest's complement.

  Args:
    stats: WindowStats of the B images (`laplacian.window_stats`, with the
      images' valid mask: windows touching padding are out of L, so padded
      pixels never enter the energy).
    probs: float [B, H, W, C] (softmax probabilities, all K classes).
    valid: optional float [B, H, W], 1 = real pixel; only counted.

  Returns:
    (energy, count): the energy summed over images and channels (float32,
    >= 0 up to rounding) and the number of real pixels, to divide by.
  """
  probs = probs.astype(jnp.float32)
  energy = jnp.sum(probs * laplacian.laplacian_matvec(stats, probs))
  if valid is None:
    count = jnp.asarray(probs.shape[0] * probs.shape[1] * probs.shape[2],
                        jnp.float32)
  else:
    count = jnp.sum(valid > 0).astype(jnp.float32)
  return energy, count


# config.cfm_norm: how cfm_loss measures the residual, or 'target' (the
# distance to the closed-form matte, `target_loss`).
CFM_NORMS = ('residual', 'energy', 'target')


def cfm_loss(stats: laplacian.WindowStats, alpha, scribbles,
             num_classes: int, lam: float = 100.0, class_weights=None,
             presence=None, norm: str = 'residual'
             ) -> Tuple[jax.Array, jax.Array]:
  """Closed-form matting loss: residual of (L + lam D_c) alpha_c = lam D_c S_c.

  Scale: for image b, sum_c w_c g_bc e_bc / N with N = H * W pixels and
  g_bc the presence gate, then the mean over the batch, where e_bc measures
  the residual r = A alpha - b (A = L + lam D_c, b = lam D_c S_c):

  * norm='residual' (the paper): e = ||r||^2, whose Hessian in alpha is
    2 A^2;
  * norm='energy': e = ||r||^2 in the A^-1 norm, up to a constant: the
    matting energy alpha^T L alpha + lam (alpha - S)^T D (alpha - S). Same
    minimiser (the closed-form matte A^-1 b), Hessian 2 A, so its condition
    number is the square root of the residual form's; its gradient at an
    unscribbled pixel is 2 (L alpha)_i (pull towards the colour-affine model
    of its windows) where the residual form's is 2 (L r)_i.

  Args:
    stats: WindowStats of the B input images (no gradient flows to them).
    alpha: float [B, H, W, K-1], the network's linear alpha mattes (no
      activation).
    scribbles: int [B, H, W], class ids 0..K-1 and 255 = unlabelled.
    num_classes: K, including background.
    lam: lambda, the weight of the scribble constraints.
    class_weights: optional [K-1] weights w_c (default 1).
    presence: optional [B, K-1] gate (1 = class counts in that image). None
      gates by the scribbles: class c counts in image b iff some scribble
      pixel of b is c.
    norm: 'residual' or 'energy' (see above).

  Returns:
    (loss scalar, per_class [K-1]) with loss = sum(per_class); per_class[c] is
    the batch mean of class c's weighted, gated term.
  """
  b, h, w = stats.shape
  k1 = num_classes - 1
  validation.check_shape('alpha', alpha, (b, h, w, k1),
                        f'[B, H, W, K-1] = [{b}, {h}, {w}, {k1}]')
  validation.check_shape('scribbles', scribbles, (b, h, w),
                        f'[B, H, W] = [{b}, {h}, {w}]')
  validation.check_labels('scribbles', scribbles, num_classes)
  if class_weights is not None:
    validation.check_shape('class_weights', class_weights, (k1,), '[K-1]')
  if presence is not None:
    validation.check_shape('presence', presence, (b, k1), '[B, K-1]')
  if norm not in CFM_NORMS[:2]:  # 'target' is `target_loss`
    raise ValueError(f'norm={norm!r} is not one of {CFM_NORMS[:2]}')
  scribbles = jnp.asarray(scribbles)
  labelled, targets = scribble_constraints(scribbles, num_classes)
  if norm == 'residual':
    residual = matting_residual(stats, alpha, labelled, targets, lam)
    error = jnp.square(residual)
  else:
    error = (alpha * laplacian.laplacian_matvec(stats, alpha)
             + lam * labelled * jnp.square(alpha - targets))
  per_image = jnp.sum(error, axis=(1, 2)) / (h * w)  # [B, K-1]
  if presence is None:
    gate = jnp.max(targets, axis=(1, 2))
  else:
    gate = jnp.asarray(presence, per_image.dtype)
  weighted = per_image * gate
  if class_weights is not None:
    weighted = weighted * jnp.asarray(class_weights, per_image.dtype)[None, :]
  per_class = jnp.mean(weighted, axis=0)
  return jnp.sum(per_class), per_class


def target_loss(alpha, targets, valid=None) -> Tuple[jax.Array, jax.Array]:
  """Distance of the mattes to the closed-form mattes: ||alpha - alpha*||^2 / N.

  alpha* = A^-1 lam D S minimises the CFM energy (see `cfm_loss`), so this
  term has the same minimiser as the 'energy' and 'residual' norms, measured
  in the identity metric instead of A or A^2: a colour-affine error costs
  what any other error of its size does.

  Args:
    alpha: float [B, H, W, K-1], the network's linear mattes.
    targets: float [B, H, W, K-1], alpha* (clipped to [0, 1]).
    valid: optional float [B, H, W], 0 on padding (not counted).

  Returns:
    (loss, per_class [K-1]): per image sum_i valid_i (alpha - alpha*)_ic^2 / N
    with N = H * W, the batch mean of that per class, and its sum.
  """
  validation.check_shape('targets', targets, alpha.shape, 'alpha\'s shape')
  error = jnp.square(alpha.astype(jnp.float32) - targets)
  if valid is not None:
    error = error * valid[..., None]
  per_class = jnp.mean(jnp.sum(error, axis=(1, 2)), axis=0) / (
      alpha.shape[1] * alpha.shape[2])
  return jnp.sum(per_class), per_class


def closed_form_labels(targets, scribbles, valid, threshold: float,
                       margin: float = 0.0, check=None):
  """Hard labels of the closed-form mattes (the two-stage baseline).

  Args:
    targets: float [B, H, W, K-1], alpha*.
    scribbles: int [B, H, W]; scribbled pixels keep their class.
    valid: float [B, H, W]; padding gets 255.
    threshold: a pixel is 1 + argmax_c alpha*_c where that is >= threshold,
      else background (0).
    margin: unsure pixels are left out (255): those whose largest alpha* is
      within margin of the threshold, or whose two largest alpha* are within
      margin of each other. 0 keeps every pixel.
    check: optional float [B, H, W, K-1], the check mattes
      (cfcls.data.targets, data.targets.check_radius): an object label of
      targets is left out where check's own labels (same threshold and
      margin) differ from it. Background labels and scribbles stay.

  Returns:
    int32 [B, H, W], class ids and 255.
  """
  if check is not None:
    labels = closed_form_labels(targets, scribbles, valid, threshold, margin)
    confirmed = closed_form_labels(check, scribbles, valid, threshold, margin)
    vetoed = (labels > 0) & (labels != labels_lib.IGNORE) & (
        confirmed != labels)
    return jnp.where(vetoed, labels_lib.IGNORE, labels).astype(jnp.int32)
  best = jnp.argmax(targets, axis=-1).astype(jnp.int32) + 1
  top = jnp.max(targets, axis=-1)
  labels = jnp.where(top >= threshold, best, 0)
  if margin > 0:
    unsure = jnp.abs(top - threshold) < margin
    if targets.shape[-1] > 1:
      second = jnp.sort(targets, axis=-1)[..., -2]
      unsure = unsure | ((top >= threshold) & (top - second < margin))
    labels = jnp.where(unsure, labels_lib.IGNORE, labels)
  labels = jnp.where(scribbles != labels_lib.IGNORE, scribbles, labels)
  return jnp.where(valid > 0, labels, labels_lib.IGNORE).astype(jnp.int32)


def drop_confident_disagreements(logits, labels, scribbles, prob: float):
  """labels with 255 where the network gives its label a probability below
  prob (no gradient through the choice); scribbled pixels are kept.

  Args:
    logits: float [B, H, W, K]; labels: int [B, H, W], 255 = none;
    scribbles: int [B, H, W]; prob: in (0, 1).
  """
  probs = jax.nn.softmax(jax.lax.stop_gradient(logits).astype(jnp.float32))
  k = logits.shape[-1]
  safe = jnp.clip(labels, 0, k - 1)
  p = jnp.take_along_axis(probs, safe[..., None], axis=-1)[..., 0]
  drop = (labels != labels_lib.IGNORE) & (scribbles == labels_lib.IGNORE) & (
      p < prob)
  return jnp.where(drop, labels_lib.IGNORE, labels).astype(jnp.int32)


def soft_target_ce(logits, targets, scribbles, valid):
  """Soft cross-entropy towards the closed-form mattes, over valid pixels.

  Target distribution per pixel: q_0 = 1 - max_c alpha*_c (background),
  q_c = alpha*_c, normalised to sum 1; one-hot on scribbled pixels.

  Args:
    logits: float [B, H, W, K]; targets: float [B, H, W, K-1] in [0, 1];
    scribbles: int [B, H, W]; valid: float [B, H, W].

  Returns:
    (mean over valid pixels, number of valid pixels).
  """
  k = logits.shape[-1]
  q = jnp.concatenate([1.0 - jnp.max(targets, axis=-1, keepdims=True),
                       targets], axis=-1)
  q = q / jnp.maximum(jnp.sum(q, axis=-1, keepdims=True), 1e-6)
  onehot = jax.nn.one_hot(scribbles, k, dtype=q.dtype)
  q = jnp.where((scribbles != labels_lib.IGNORE)[..., None], onehot, q)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.sum(q * log_probs, axis=-1) * valid
  count = jnp.sum(valid)
  return jnp.sum(nll) / jnp.maximum(count, 1.0), count


def _masked_cross_entropy(name: str, logits, labels):
  """Mean softmax cross-entropy over pixels whose label is not 255."""
  validation.check_shape('logits', logits, (None, None, None, None),
                        '[B, H, W, K]')
  validation.check_shape(name, labels, logits.shape[:3], '[B, H, W]')
  validation.check_labels(name, labels, logits.shape[-1])
  labels = jnp.asarray(labels)
  mask = labels != labels_lib.IGNORE
  safe = jnp.where(mask, labels, 0)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
  count = jnp.sum(mask)
  total = jnp.sum(jnp.where(mask, nll, 0.0))
  return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


def partial_ce(logits, scribbles) -> jax.Array:
  """Partial cross-entropy (pCE): softmax CE on scribbled pixels only.

  Args:
    logits: float [B, H, W, K] (K classes including background).
    scribbles: int [B, H, W], class ids and 255 = unlabelled.

  Returns:
    Scalar mean over scribbled pixels; 0 if no pixel is scribbled.
  """
  return _masked_cross_entropy('scribbles', logits, scribbles)


def full_ce(logits, masks) -> jax.Array:
  """Cross-entropy on full ground-truth masks (255 = void, ignored).

  Args:
    logits: float [B, H, W, K].
    masks: int [B, H, W], class ids and 255 = void.

  Returns:
    Scalar mean over non-void pixels; 0 if all are void.
  """
  return _masked_cross_entropy('masks', logits, masks)


def mlc_bce(logits, presence) -> jax.Array:
  """Multi-label classification loss: sigmoid binary cross-entropy.

  Args:
    logits: float [B, K-1], one per foreground class.
    presence: [B, K-1] in {0, 1} (or soft targets in [0, 1]).

  Returns:
    Scalar mean over the B * (K-1) entries.
  """
  validation.check_shape('logits', logits, (None, None), '[B, K-1]')
  validation.check_shape('presence', presence, logits.shape, '[B, K-1]')
  logits = logits.astype(jnp.float32)
  presence = jnp.asarray(presence, jnp.float32)
  return -jnp.mean(presence * jax.nn.log_sigmoid(logits)
                   + (1.0 - presence) * jax.nn.log_sigmoid(-logits))
