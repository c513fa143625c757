"""One objective per loss: what a network outputs, how it is trained, how its
outputs become labels, and what evaluation reports.

  objective = objectives.get(config.loss)   # the one place a loss is named
  objective.num_outputs(K)                   # per-pixel output channels
  objective.loss_shares(config, K, outputs, mlc_logits, batch)
  objective.refine(outputs, images, radius, eps)
  objective.class_scores(outputs, mlc_logits, mlc_gate=...)
  objective.labels(outputs, scores, thresholds)
  objective.metric_keys(thresholds), objective.main_key(threshold)

Two kinds of networks (docs/method.md, section 3):
- matte networks ('cfm'): outputs `[B, H, W, K-1]` are linear alpha mattes.
  alpha_c = clip(output_c, 0, 1) for each class whose MLC probability is
  >= 0.5 (others 0, when `mlc_gate`). A pixel takes the class with the
  largest alpha if that alpha >= threshold, else background; evaluation
  reports every threshold.
- softmax networks ('pce', 'ce', 'two_stage', 'cfm_soft'): outputs `[B, H, W, K]` are logits over all
  classes incl. background. Scores are the softmax probabilities of the
  foreground classes, the label is the argmax over the K classes (thresholds
  do not apply) and evaluation reports one 'argmax' entry.

Global means. Each loss term is a mean over something (images for CFM and
MLC, scribbled pixels for pCE, labelled pixels for CE). A device's share of
the global loss is its local mean times its count divided by the global
count (psum of the counts), so the psum of the shares over the mapped axis is
the global mean whatever the distribution of labelled pixels over devices.

Closed-form targets: 'cfm' with cfm_norm='target', 'two_stage' and
'cfm_soft' read batch['targets'] `[B, H, W, K-1]`, the closed-form mattes of
the training images (cfcls.data.targets), and need data.targets.enabled
(`needs_targets`).

A new loss is one new class here (and its name in `OBJECTIVES`).
"""

from typing import Dict, Sequence, Tuple

import jax
import jax.numpy as jnp

from cfcls.matting import guided_filter
from cfcls import labels as labels_lib
from cfcls.matting import laplacian
from cfcls import losses
from cfcls import parallel

DATA_AXIS = parallel.DATA_AXIS
# Which classes' matting systems count per image (config.cfm_classes).
CFM_CLASSES = ('scribbles', 'all')


def labels_from_scores(scores, threshold: float):
  """Label map from matte scores.

  Args:
    scores: float `[B, H, W, K-1]` foreground scores.
    threshold: minimum winning score for a foreground label.

  Returns:
    int32 `[B, H, W]`: 1 + argmax_c scores_c where max_c scores_c >=
    threshold, else 0 (background). Ties go to the lower class id.
  """
  best = jnp.argmax(scores, axis=-1).astype(jnp.int32) + 1
  return jnp.where(jnp.max(scores, axis=-1) >= threshold, best, 0)


def _global_mean(value, count, axis_name: str):
  """This device's share of a mean over items of which it holds `count`."""
  count = jnp.asarray(count, jnp.float32)
  total = jax.lax.psum(count, axis_name)
  return value * count / jnp.maximum(total, 1.0)


def _finish(config, shares: Dict[str, jax.Array], mlc_logits, batch,
            use_mlc: bool, axis_name: str):
  """Adds the MLC term; returns (scalar share, global value of each term)."""
  if use_mlc:
    shares['mlc'] = losses.mlc_bce(mlc_logits, batch['presence']) / (
        jax.lax.psum(1, axis_name))
  share = sum(shares[k] * (config.beta if k == 'mlc' else 1.0) for k in shares)
  terms = {k: jax.lax.psum(jax.lax.stop_gradient(v), axis_name)
           for k, v in shares.items()}
  return share, terms


def _laplacian_share(config, outputs, batch, axis_name: str):
  """This device's share of sum_c p_c^T L p_c / N over the global batch.

  p: the softmax probabilities of the K classes; L: each crop's matting
  Laplacian (laplacian_reg_eps, laplacian_radius, laplacian_precision), with
  windows touching padding left out; N: the real pixels of the global batch.
  """
  valid = batch.get('valid')
  stats = laplacian.window_stats(batch['images'],
                                 eps=config.laplacian_reg_eps,
                                 radius=config.laplacian_radius, valid=valid,
                                 precision=config.laplacian_precision)
  probs = jax.nn.softmax(outputs.astype(jnp.float32), axis=-1)
  energy, count = losses.laplacian_energy(stats, probs, valid)
  return _global_mean(energy / jnp.maximum(count, 1.0), count, axis_name)


class Objective:
  """Base of the objectives; see the module docstring."""
  name = ''
  matte = False  # outputs are mattes (thresholded) rather than logits
  needs_targets = False  # reads batch['targets'] (closed-form mattes)

  def num_outputs(self, num_classes: int) -> int:
    raise NotImplementedError

  def loss_shares(self, config, num_classes: int, outputs, mlc_logits, batch,
                  axis_name: str = DATA_AXIS) -> Tuple[jax.Array, Dict]:
    """This device's share of the global loss (its psum is the global loss).

    Args:
      config: the validated config (lam, beta, class_weights, ...).
      num_classes: K.
      outputs: `[b, H, W, num_outputs(K)]`.
      mlc_logits: `[b, K-1]`.
      batch: images float32 `[b, H, W, 3]` in [0, 1], scribbles int32
        `[b, H, W]`, mask int32 `[b, H, W]`, valid float32 `[b, H, W]`,
        presence float32 `[b, K-1]`.
      axis_name: the mapped device axis.

    Returns:
      (share, terms): the scalar share and a dict of the global value of each
      term (already summed over devices).
    """
    raise NotImplementedError

  def refine(self, outputs, images, radius: int, eps: float = 1e-3):
    """Guided filter of the raw outputs with the image (radius 0: unchanged).

    Args:
      outputs: raw network outputs.
      images: float `[B, H, W, 3]` in [0, 1], the guide.
      radius, eps: see `cfcls.matting.guided_filter.guided_filter`.
    """
    raise NotImplementedError

  def class_scores(self, outputs, mlc_logits, *, mlc_gate: bool = True,
                   mlc_threshold: float = 0.5):
    """(scores float32 `[B, H, W, K-1]` in [0, 1], class probs `[B, K-1]`)."""
    raise NotImplementedError

  def labels(self, outputs, scores, thresholds: Sequence[float]):
    """int32 `[T, B, H, W]`: one label map per threshold."""
    raise NotImplementedError

  def metric_keys(self, thresholds: Sequence[float]) -> Tuple[str, ...]:
    """Keys of the reported segmentation metrics, one per label map."""
    if self.matte:
      return tuple(f'{t:g}' for t in thresholds)
    return ('argmax',)

  def main_key(self, threshold: float) -> str:
    """The key of the metrics that pick the best checkpoint."""
    return f'{threshold:g}' if self.matte else 'argmax'

  @property
  def prediction(self) -> str:
    """How labels are taken: 'threshold' (mattes) or 'argmax' (softmax)."""
    return 'threshold' if self.matte else 'argmax'


class ClosedFormMatting(Objective):
  """'cfm': K-1 linear mattes, the matting-system residual + beta * MLC BCE."""
  name = 'cfm'
  matte = True

  def num_outputs(self, num_classes):
    return num_classes - 1

  def loss_shares(self, config, num_classes, outputs, mlc_logits, batch,
                  axis_name=DATA_AXIS):
    stats = laplacian.window_stats(batch['images'], eps=config.laplacian_eps,
                                   radius=config.laplacian_radius,
                                   valid=batch.get('valid'),
                                   precision=config.laplacian_precision)
    presence = None  # 'scribbles': gate by the scribbles of each crop
    if config.cfm_classes == 'all':
      presence = jnp.ones(outputs.shape[:1] + outputs.shape[-1:], jnp.float32)
    weights = (None if config.class_weights is None
               else jnp.asarray(config.class_weights, jnp.float32))
    images = jax.lax.psum(1, axis_name)
    shares = {}
    energy_weight = 1.0
    if config.cfm_norm == 'target':
      shares['target'] = losses.target_loss(
          outputs, batch['targets'], batch.get('valid'))[0] / images
      energy_weight = config.cfm_energy_weight
    if energy_weight:
      norm = 'energy' if config.cfm_norm == 'target' else config.cfm_norm
      cfm, _ = losses.cfm_loss(stats, outputs, batch['scribbles'],
                               num_classes, lam=config.lam,
                               class_weights=weights, presence=presence,
                               norm=norm)
      shares['cfm'] = energy_weight * cfm / images
    return _finish(config, shares, mlc_logits, batch, True, axis_name)

  def refine(self, outputs, images, radius, eps=1e-3):
    if not radius:
      return outputs
    return guided_filter.guided_filter(images, outputs, radius, eps)

  def class_scores(self, outputs, mlc_logits, *, mlc_gate=True,
                   mlc_threshold=0.5):
    probs = jax.nn.sigmoid(mlc_logits.astype(jnp.float32))
    scores = jnp.clip(outputs.astype(jnp.float32), 0.0, 1.0)
    if mlc_gate:
      keep = (probs >= mlc_threshold).astype(scores.dtype)
      scores = scores * keep[:, None, None, :]
    return scores, probs

  def labels(self, outputs, scores, thresholds):
    return jnp.stack([labels_from_scores(scores, t) for t in thresholds])


class _Softmax(Objective):
  """K softmax logits; subclasses name the labels their cross-entropy uses."""
  matte = False

  def num_outputs(self, num_classes):
    return num_classes

  def _cross_entropy(self, config, outputs, batch, num_classes):
    """(local mean, number of counted pixels) on this device."""
    raise NotImplementedError

  def loss_shares(self, config, num_classes, outputs, mlc_logits, batch,
                  axis_name=DATA_AXIS):
    value, count = self._cross_entropy(config, outputs, batch, num_classes)
    shares = {self.name: _global_mean(value, count, axis_name)}
    if config.laplacian_weight:
      shares['laplacian'] = config.laplacian_weight * _laplacian_share(
          config, outputs, batch, axis_name)
    return _finish(config, shares, mlc_logits, batch, config.baseline_mlc,
                   axis_name)

  def refine(self, outputs, images, radius, eps=1e-3):
    """Filters the class probabilities and returns their logarithms.

    The probabilities still sum to 1 (the filter is linear and keeps
    constants); where the filter overshoots below 0 they are floored at 1e-6,
    so `class_scores` and the argmax see the filtered probabilities.
    """
    if not radius:
      return outputs
    probs = guided_filter.guided_filter(
        images, jax.nn.softmax(outputs.astype(jnp.float32), axis=-1), radius,
        eps)
    return jnp.log(jnp.maximum(probs, 1e-6))

  def class_scores(self, outputs, mlc_logits, *, mlc_gate=True,
                   mlc_threshold=0.5):
    """Class probability: the largest softmax probability over the image."""
    del mlc_logits, mlc_gate, mlc_threshold
    scores = jax.nn.softmax(outputs.astype(jnp.float32), axis=-1)[..., 1:]
    return scores, jnp.max(scores, axis=(1, 2))

  def labels(self, outputs, scores, thresholds):
    labels = jnp.argmax(outputs, axis=-1).astype(jnp.int32)
    return jnp.broadcast_to(labels[None], (len(thresholds),) + labels.shape)


class PartialCrossEntropy(_Softmax):
  """'pce': softmax cross-entropy on the scribbled pixels (the lower bound)."""
  name = 'pce'

  def _cross_entropy(self, config, outputs, batch, num_classes):
    scribbles = batch['scribbles']
    return (losses.partial_ce(outputs, scribbles),
            jnp.sum(scribbles != labels_lib.IGNORE))


class FullCrossEntropy(_Softmax):
  """'ce': softmax cross-entropy on full ground-truth masks (upper bound)."""
  name = 'ce'

  def _cross_entropy(self, config, outputs, batch, num_classes):
    mask = batch['mask']
    labelled = (mask != labels_lib.IGNORE) & (mask < num_classes)
    return losses.full_ce(outputs, mask), jnp.sum(labelled)


class TwoStage(_Softmax):
  """'two_stage': CE on the closed-form labels (alpha* >= target_threshold,
  scribbled pixels kept, pixels within target_margin of a decision left out;
  needs data.targets.enabled). With batch['check_targets'] (the check mattes,
  data.targets.check_radius > 0) an object label they do not confirm is left
  out too."""
  name = 'two_stage'
  needs_targets = True

  def _cross_entropy(self, config, outputs, batch, num_classes):
    labels = losses.closed_form_labels(batch['targets'], batch['scribbles'],
                                       batch['valid'],
                                       config.target_threshold,
                                       config.target_margin,
                                       check=batch.get('check_targets'))
    if config.label_drop_prob > 0:  # batch['step']: the train step's
      late = batch['step'] >= int(config.label_drop_after
                                  * config.num_train_steps)
      labels = jnp.where(late, losses.drop_confident_disagreements(
          outputs, labels, batch['scribbles'], config.label_drop_prob),
                         labels)
    return losses.full_ce(outputs, labels), jnp.sum(
        labels != labels_lib.IGNORE)


class SoftClosedForm(_Softmax):
  """'cfm_soft': soft CE towards the closed-form mattes (background 1 - max;
  needs data.targets.enabled)."""
  name = 'cfm_soft'
  needs_targets = True

  def _cross_entropy(self, config, outputs, batch, num_classes):
    return losses.soft_target_ce(outputs, batch['targets'],
                                 batch['scribbles'], batch['valid'])


def needs_targets(config) -> bool:
  """Whether config's loss reads the closed-form targets (batch['targets'])."""
  return get(config.loss).needs_targets or (
      config.loss == 'cfm' and config.cfm_norm == 'target')


OBJECTIVES = {o.name: o for o in (ClosedFormMatting(), PartialCrossEntropy(),
                                  FullCrossEntropy(), TwoStage(),
                                  SoftClosedForm())}
NAMES = tuple(OBJECTIVES)


def get(name: str) -> Objective:
  """The objective of a loss name (one of NAMES)."""
  try:
    return OBJECTIVES[name]
  except KeyError:
    raise ValueError(
        f'unknown loss {name!r}: expected one of {NAMES}') from None
