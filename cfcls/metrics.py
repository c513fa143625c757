"""Segmentation and matting metrics (docs/method.md, section 4).

Segmentation metrics come from a confusion matrix summed over all evaluated
pixels (rows: ground truth, columns: prediction, both over all K classes
including background). The confusion matrix is computed on device with
`confusion_matrix` and summed across batches and devices; the scores are derived
from the summed matrix on the host with `segmentation_metrics`.

Matting metrics compare a network matte with the closed-form matting solution
for the same image and scribbles: MSE, mean absolute difference (mAD) and the
gradient error of Rhemann et al. (2009),
    GE = sum_i (|grad alpha_i| - |grad alpha*_i|)^q,  q = 2,
with gradients from first-order Gaussian derivative filters.
"""

from typing import Dict, Optional

import jax.numpy as jnp
import numpy as np
import scipy.ndimage


def confusion_matrix(labels, predictions, num_classes: int, weights=None):
  """Confusion matrix of one batch, on device.

  Args:
    labels: int `[...]` ground-truth class ids in 0..K-1; 255 (void) and any
      other id outside 0..K-1 is ignored.
    predictions: int `[...]` (same shape) predicted class ids in 0..K-1.
    num_classes: K.
    weights: optional `[...]` (same shape) pixel mask; pixels with weight 0
      are ignored (padding, padded examples). Non-zero weights count as 1.

  Returns:
    int32 `[K, K]`, entry [g, p] = number of counted pixels with ground truth
    g and prediction p.
  """
  if labels.shape != predictions.shape:
    raise ValueError(f'labels {labels.shape} and predictions '
                     f'{predictions.shape} must have the same shape')
  if weights is not None and tuple(weights.shape) != tuple(labels.shape):
    raise ValueError(f'weights {weights.shape} must have the shape of labels '
                     f'{labels.shape}')
  labels = jnp.asarray(labels).astype(jnp.int32).reshape(-1)
  predictions = jnp.asarray(predictions).astype(jnp.int32).reshape(-1)
  counted = (labels >= 0) & (labels < num_classes)
  counted &= (predictions >= 0) & (predictions < num_classes)
  if weights is not None:
    counted &= jnp.asarray(weights).reshape(-1) > 0
  k2 = num_classes * num_classes
  # Pixels that do not count go to an extra bin that is dropped.
  index = jnp.where(counted, labels * num_classes + predictions, k2)
  counts = jnp.bincount(index, length=k2 + 1)[:k2]
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def _safe_ratio(numerator, denominator):
  """numerator / denominator with NaN where the denominator is 0."""
  numerator = np.asarray(numerator, np.float64)
  denominator = np.asarray(denominator, np.float64)
  out = np.full(numerator.shape, np.nan)
  np.divide(numerator, denominator, out=out, where=denominator > 0)
  return out


def segmentation_metrics(confusion) -> Dict[str, object]:
  """Scores from a summed confusion matrix `[K, K]` (rows: ground truth).

  Per class c: IoU = TP / (TP + FP + FN), precision = TP / (TP + FP),
  recall = TP / (TP + FN), F1 = 2 P R / (P + R). A class whose denominator is
  0 (it never occurs in the ground truth nor in the predictions, or is never
  predicted for precision) gets NaN and is left out of the means.

  Returns a dict with per-class lists 'iou', 'precision', 'recall', 'f1' and
  scalars 'miou', 'mean_precision', 'mean_recall', 'f1' (= 2 mP mR /
  (mP + mR), docs/method.md, section 4), 'mean_class_f1', 'pixel_accuracy' and
  'num_pixels'.
  """
  confusion = np.asarray(confusion, np.float64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f'confusion matrix must be [K, K], got {confusion.shape}')
  tp = np.diag(confusion)
  gt = confusion.sum(axis=1)
  pred = confusion.sum(axis=0)
  iou = _safe_ratio(tp, gt + pred - tp)
  precision = _safe_ratio(tp, pred)
  recall = _safe_ratio(tp, gt)
  f1 = _safe_ratio(2 * precision * recall, precision + recall)
  f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)

  def nanmean(x):
    return float(np.nanmean(x)) if np.any(~np.isnan(x)) else float('nan')

  mean_p, mean_r = nanmean(precision), nanmean(recall)
  total = confusion.sum()
  return {
      'iou': [float(v) for v in iou],
      'precision': [float(v) for v in precision],
      'recall': [float(v) for v in recall],
      'class_f1': [float(v) for v in f1],
      'miou': nanmean(iou),
      'mean_precision': mean_p,
      'mean_recall': mean_r,
      'f1': (2 * mean_p * mean_r / (mean_p + mean_r)
             if mean_p + mean_r > 0 else float('nan')),
      'mean_class_f1': nanmean(f1),
      'pixel_accuracy': float(tp.sum() / total) if total > 0 else float('nan'),
      'num_pixels': int(total),
  }


def gaussian_gradient_magnitude(image, sigma: float):
  """|grad image| with first-order Gaussian derivative filters.

  Args:
    image: float `[H, W]`.
    sigma: standard deviation of the Gaussian in pixels.

  Returns:
    float64 `[H, W]`. Borders are handled by reflection.
  """
  image = np.asarray(image, np.float64)
  gy = scipy.ndimage.gaussian_filter(image, sigma, order=(1, 0), mode='reflect')
  gx = scipy.ndimage.gaussian_filter(image, sigma, order=(0, 1), mode='reflect')
  return np.hypot(gx, gy)


def matting_errors(alpha, alpha_ref, sigma: float = 1.4,
                   q: float = 2.0) -> Dict[str, float]:
  """Errors of one image's mattes against reference mattes.

  Args:
    alpha: float `[H, W, C]` network mattes (already clipped to [0, 1]).
    alpha_ref: float `[H, W, C]` reference (closed-form) mattes.
    sigma: Gaussian derivative filter sigma for the gradient error.
    q: exponent of the gradient error (2 in the paper).

  Returns:
    dict with 'mse' and 'mad' (means over pixels and channels) and
    'gradient_error' (sum over pixels of (|grad a| - |grad a*|)^q, averaged
    over the C channels; so it grows with the image area, as in Rhemann et
    al.).
  """
  alpha = np.asarray(alpha, np.float64)
  alpha_ref = np.asarray(alpha_ref, np.float64)
  if alpha.shape != alpha_ref.shape or alpha.ndim != 3:
    raise ValueError(f'alpha {alpha.shape} and alpha_ref {alpha_ref.shape} '
                     'must both be [H, W, C]')
  diff = alpha - alpha_ref
  ge = []
  for c in range(alpha.shape[-1]):
    g = gaussian_gradient_magnitude(alpha[..., c], sigma)
    g_ref = gaussian_gradient_magnitude(alpha_ref[..., c], sigma)
    ge.append(np.sum(np.abs(g - g_ref) ** q))
  return {
      'mse': float(np.mean(diff ** 2)),
      'mad': float(np.mean(np.abs(diff))),
      'gradient_error': float(np.mean(ge)) if ge else 0.0,
  }


class MattingErrorAccumulator:
  """Running means of `matting_errors` over images."""

  def __init__(self):
    self._sums: Dict[str, float] = {}
    self.count = 0

  def add(self, errors: Dict[str, float]):
    for k, v in errors.items():
      self._sums[k] = self._sums.get(k, 0.0) + v
    self.count += 1

  def result(self) -> Optional[Dict[str, float]]:
    if not self.count:
      return None
    out = {k: v / self.count for k, v in self._sums.items()}
    out['num_images'] = self.count
    return out
