"""The matting system at inference: a network's confident pixels as seeds.

  labels, mattes = refine.refine_image(image, probs, ...)

A segmentation network is right far from its own boundaries and wrong near
them, where it smooths at its decoder's scale rather than at the image's
colour edges. The matting system (L + lam D) alpha_c = lam D S_c puts those
boundaries on colour edges: its seeds S are the pixels where the network is
confident (class probability >= `threshold`, 0.8) and more than `erode` pixels
inside its own region of that class; every class's closed-form matte is
solved from them by `solver.solve_alpha` (one factorisation per image,
shared by the classes), and each pixel takes the class with the largest
matte. The K mattes sum to 1 at every pixel (L 1 = 0 and every seed has
one class), so the background's matte is 1 - sum of the others and no
threshold is needed.

Pure NumPy + the solver: no network, no learning library.
"""
import time
from typing import Dict, Tuple

import numpy as np
import scipy.ndimage

from cfcls.matting import constraints
from cfcls.matting import solver
from cfcls.matting import validation


def seeds_from_probabilities(probs, threshold: float = 0.8, erode: int = 2,
                             valid=None) -> np.ndarray:
  """Scribble map of a network's confident pixels.

  Args:
    probs: float [H, W, K] class probabilities (all classes, background 0).
    threshold: a pixel is a seed of its argmax class if that class's
      probability is >= threshold.
    erode: and if it lies more than `erode` pixels (chessboard distance)
      inside the region where the network labels that class (0: no erosion).
    valid: optional [H, W], 1 = real pixel; padding is never a seed.

  Returns:
    uint8 [H, W]: class ids on the seeds, UNLABELLED (255) elsewhere.
  """
  probs = np.asarray(probs)
  validation.check_shape('probs', probs, (None, None, None), '[H, W, K]')
  best = np.argmax(probs, axis=-1)
  sure = np.max(probs, axis=-1) >= threshold
  if valid is not None:
    sure &= np.asarray(valid) > 0.5
  seeds = np.full(best.shape, constraints.UNLABELLED, np.uint8)
  structure = np.ones((3, 3), bool)
  for c in np.unique(best[sure]):
    region = best == c
    if erode:
      region = scipy.ndimage.binary_erosion(region, structure, erode,
                                            border_value=1)
    seeds[region & sure] = c
  return seeds


def refreshed_scribbles(scribbles, probs, threshold: float = 0.8,
                        erode: int = 2, valid=None) -> np.ndarray:
  """A training image's scribbles joined by a network's confident pixels.

  The refreshed teacher: the seeds of `seeds_from_probabilities` fill the
  pixels no stroke covers; the user's strokes win wherever they are.

  Args:
    scribbles: int [H, W], class ids and UNLABELLED (255).
    probs, threshold, erode, valid: as in `seeds_from_probabilities`.

  Returns:
    uint8 [H, W], class ids and UNLABELLED.
  """
  scribbles = np.asarray(scribbles)
  seeds = seeds_from_probabilities(probs, threshold, erode, valid)
  validation.check_shape('scribbles', scribbles, seeds.shape, '[H, W]')
  return np.where(scribbles != constraints.UNLABELLED, scribbles,
                  seeds).astype(np.uint8)


def _checked_inputs(image, probs, valid):
  """(float image, float32 probs, (rows, cols) of the valid pixels' bounding
  box or None when no pixel is valid, the valid mask in that box or None)."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    image = image.astype(np.float32) / 255.0
  probs = np.asarray(probs, np.float32)
  validation.check_shape('image', image, (None, None, 3), '[H, W, 3]')
  validation.check_shape('probs', probs, image.shape[:2] + (None,),
                         f'[H, W, K] = [{image.shape[0]}, {image.shape[1]}, K]')
  if valid is None:
    return image, probs, (slice(None), slice(None)), None
  valid = np.asarray(valid) > 0.5
  ys, xs = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(0))
  if not len(ys):
    return image, probs, None, None
  rows, cols = slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)
  return image, probs, (rows, cols), valid[rows, cols]


def refine_image(image, probs, threshold: float = 0.8, erode: int = 2,
                 lam: float = 100.0, eps: float = 1e-4, radius: int = 1,
                 valid=None) -> Tuple[np.ndarray, np.ndarray, Dict]:
  """Labels and mattes of one image from its network probabilities.

  Args:
    image: float [H, W, 3] in [0, 1] (uint8 is scaled).
    probs: float [H, W, K], the network's class probabilities.
    threshold, erode: the seeds (`seeds_from_probabilities`).
    lam, eps, radius: the matting system (eps 1e-4: smoother than the
      teacher's 1e-5 and the paper's 1e-7; the best of 1e-5, 1e-4 and 1e-3
      on the training images of two synthetic families).
    valid: optional [H, W] mask of real pixels: the solve covers their
      bounding box only; outside it the labels are the network's argmax and
      the mattes its probabilities.

  Returns:
    (labels int32 [H, W], mattes float32 [H, W, K] clipped to [0, 1], info)
    with info 'seconds' (the solve), 'seeded' (the share of seeded pixels)
    and 'solved' (False where no class or one class had seeds: then the
    network's own labels and probabilities are returned).
  """
  image, probs, box, box_valid = _checked_inputs(image, probs, valid)
  num_classes = probs.shape[-1]
  labels = np.argmax(probs, axis=-1).astype(np.int32)
  mattes = probs.copy()
  if box is None:
    return labels, mattes, {'seconds': 0.0, 'seeded': 0.0, 'solved': False}
  rows, cols = box
  box_image, box_probs = image[rows, cols], probs[rows, cols]
  seeds = seeds_from_probabilities(box_probs, threshold, erode, box_valid)
  seeded = seeds != constraints.UNLABELLED
  info = {'seconds': 0.0, 'seeded': float(seeded.mean()), 'solved': False}
  small = min(box_image.shape[:2]) < 2 * radius + 1
  if small or len(np.unique(seeds[seeded])) < 2:
    return labels, mattes, info
  start = time.perf_counter()
  fg, _ = solver.solve_alpha(box_image[None].astype(np.float32),
                             seeds[None].astype(np.int32), num_classes,
                             lam=lam, eps=eps, radius=radius)
  fg = np.asarray(fg[0], np.float32)
  info['seconds'] = time.perf_counter() - start
  info['solved'] = True
  box = np.concatenate([1.0 - fg.sum(-1, keepdims=True), fg], axis=-1)
  labels[rows, cols] = np.argmax(box, axis=-1)
  mattes[rows, cols] = np.clip(box, 0.0, 1.0)
  return labels, mattes, info


SOFT_WEIGHTS = ('max', 'margin')


def confidence(probs, weight: str = 'max') -> np.ndarray:
  """Per-pixel confidence [H, W] of probabilities [H, W, K]: the largest
  ('max') or the largest minus the second largest ('margin')."""
  top = np.sort(np.asarray(probs, np.float32), axis=-1)
  if weight == 'max':
    return top[..., -1]
  if weight == 'margin':
    return top[..., -1] - top[..., -2]
  raise ValueError(f'weight={weight!r} is not one of {SOFT_WEIGHTS}')


def soft_refine_image(image, probs, lam: float = 0.1, eps: float = 1e-4,
                      weight: str = 'max', radius: int = 1, valid=None
                      ) -> Tuple[np.ndarray, np.ndarray, Dict]:
  """Labels and mattes of one image from the soft matting system.

  Every pixel's probabilities are a prior, weighted by the network's
  confidence there: x = (L + lam W)^-1 lam W p for all K classes at once
  (`solver.solve_weighted`, one factorisation), W = diag(confidence(p)).
  Where the network is sure the prior holds; where it hesitates (near its
  own boundaries, which it smooths at its decoder's scale) L carries the
  classes along the image's colour edges. Unlike `refine_image` there are
  no seeds to pick: no threshold, no erosion, and no class is lost for
  lack of a confident pixel. The K mattes sum to 1 (L 1 = 0).

  Args:
    image: float [H, W, 3] in [0, 1] (uint8 is scaled).
    probs: float [H, W, K], class probabilities (summing to 1).
    lam: the weight of the prior against L. The smaller, the farther the
      colour edges can move a boundary (about 1/sqrt(lam) pixels).
    eps, radius: the matting Laplacian's.
    weight: the confidence, 'max' or 'margin' (`confidence`).
    valid: optional [H, W] mask of real pixels: the solve covers their
      bounding box; outside it the labels are the argmax of probs and the
      mattes probs.

  Returns:
    (labels int32 [H, W], mattes float32 [H, W, K] clipped to [0, 1], info
    with 'seconds' (the solve) and 'solved').
  """
  if not lam > 0:
    raise ValueError(f'lam={lam!r} must be > 0')
  image, probs, box, box_valid = _checked_inputs(image, probs, valid)
  labels = np.argmax(probs, axis=-1).astype(np.int32)
  mattes = probs.copy()
  info = {'seconds': 0.0, 'solved': False}
  if box is None:
    return labels, mattes, info
  rows, cols = box
  box_image, box_probs = image[rows, cols], probs[rows, cols]
  if min(box_image.shape[:2]) < 2 * radius + 1:
    return labels, mattes, info
  weights = confidence(box_probs, weight)
  if box_valid is not None:
    weights = weights * box_valid
  start = time.perf_counter()
  x, _ = solver.solve_weighted(box_image, box_probs, weights, lam=lam,
                               eps=eps, radius=radius, valid=box_valid)
  info['seconds'] = time.perf_counter() - start
  info['solved'] = True
  labels[rows, cols] = np.argmax(x, axis=-1)
  mattes[rows, cols] = np.clip(x, 0.0, 1.0)
  return labels, mattes, info
