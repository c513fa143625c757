"""The closed-form teacher of one image: the labels training would use.

  settings = Settings.from_config(config)       # lam, eps, radius, threshold,
                                                # margin of the chosen config
  result = solve(image, scribbles, num_classes, settings)
  result.labels    # uint8 [H, W]: sure labels, 255 = unsure (left out)
  result.decision  # uint8 [H, W]: the mattes' own label of every pixel

The mattes are those of `cfcls.data.targets` (`solve_targets`, the exact
direct solve with `data.targets` lam, eps, radius, and the check mattes with
check_radius > 0), clipped and quantised to 1/255 as the target cache stores
them; the labels are `losses.closed_form_labels` of them
(config.target_threshold, config.target_margin, the check mattes), the
function the 'two_stage' loss applies to each training crop, so a pixel is
labelled here exactly as training labels it (before augmentation).
`decision` is the same function on the unquantised mattes with margin 0 and
no scribble kept: 1 + argmax above the threshold, else background, on every
pixel; what `benchmarks/demo_closed_form.py` scores (the teacher's mIoU).
The two differ on a few pixels: the quantisation and scribbled pixels (kept
in `labels`).

`max_pixels` solves a smaller copy of the image (an integer downscale: the
image area-averaged, each scribble block labelled if any of its pixels is)
and upsamples the mattes bilinearly: a preview for the annotation page
(`cfcls.data.annotation_server`), about f^3 faster at factor f.
"""
from __future__ import annotations

import dataclasses
import math
import time

import cv2
import numpy as np

from cfcls import labels as labels_lib
from cfcls import losses
from cfcls import visualize
from cfcls.data import targets

IGNORE = labels_lib.IGNORE


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the teacher's labels depend on (defaults: configs/folder.py's)."""
  lam: float = 100.0
  eps: float = 1e-5
  radius: int = 1
  threshold: float = 0.6
  margin: float = 0.2
  loss: str = 'two_stage'
  check_radius: int = 2

  @classmethod
  def from_config(cls, config) -> 'Settings':
    tc = config.data.targets
    return cls(lam=float(tc.lam), eps=float(tc.eps), radius=int(tc.radius),
               threshold=float(config.target_threshold),
               margin=float(config.target_margin), loss=str(config.loss),
               check_radius=targets.check_radius(tc))

  def describe(self) -> str:
    text = (f'lam={self.lam:g}, eps={self.eps:g}, radius={self.radius}, '
            f'threshold {self.threshold:g}, margin {self.margin:g}')
    if self.check_radius > 0:
      text += f', object labels checked at radius {self.check_radius}'
    if self.loss != 'two_stage':
      text += (f" (the config's loss is {self.loss!r}: training does not "
               'use these labels)')
    return text


@dataclasses.dataclass
class Result:
  alpha: np.ndarray     # float32 [H, W, K-1], clipped, quantised to 1/255
  labels: np.ndarray    # uint8 [H, W], 255 = unsure
  decision: np.ndarray  # uint8 [H, W], every pixel (unquantised mattes);
                        # None where solve(decision=False)
  seconds: float        # the solve's wall time
  factor: int = 1       # downscale factor of the solve (1 = full size)

  @property
  def unsure(self) -> np.ndarray:
    return self.labels == IGNORE

  @property
  def unsure_share(self) -> float:
    return float(np.mean(self.unsure))


def _downscale(image, scribbles, f):
  """Integer downscale by f: image area-averaged; a scribble block takes the
  lowest class id scribbled in it (255 = none), so no stroke vanishes."""
  h, w = scribbles.shape
  hp, wp = -(-h // f) * f, -(-w // f) * f
  img = np.pad(image, ((0, hp - h), (0, wp - w), (0, 0)), mode='edge')
  scr = np.pad(scribbles, ((0, hp - h), (0, wp - w)), constant_values=IGNORE)
  small = img.reshape(hp // f, f, wp // f, f, 3).astype(np.float64).mean(
      axis=(1, 3))
  blocks = scr.reshape(hp // f, f, wp // f, f).min(axis=(1, 3))
  return small, blocks


def preview_factor(shape, max_pixels) -> int:
  """Smallest integer f with (H / f) * (W / f) <= max_pixels (1: none)."""
  if not max_pixels:
    return 1
  return max(1, math.ceil(math.sqrt(shape[0] * shape[1] / max_pixels)))


def solve(image, scribbles, num_classes: int, settings: Settings,
          max_pixels: int | None = None, decision: bool = True,
          factor: int | None = None) -> Result:
  """The teacher's mattes and labels of one image.

  Args:
    image: uint8 [H, W, 3].
    scribbles: int [H, W], class ids and 255 = unlabelled.
    num_classes: K (classes.txt's lines).
    settings: `Settings`.
    max_pixels: solve a copy downscaled to at most this many pixels (a
      preview); None or 0 solves the image itself.
    decision: also label every pixel (Result.decision; else None).
    factor: the downscale factor itself (overrides max_pixels; 1 = none).

  Returns:
    `Result`. Without any scribble every matte is 0 (all background, or
    unsure where the margin covers 0).
  """
  image = np.asarray(image)
  scribbles = np.asarray(scribbles).astype(np.uint8)
  h, w = scribbles.shape
  f = preview_factor((h, w), max_pixels) if factor is None else int(factor)

  def solve_targets(image, scribbles):  # mattes (and check mattes), clipped
    return targets.solve_targets(image, scribbles, num_classes, settings.lam,
                                 settings.eps, settings.radius,
                                 settings.check_radius)

  start = time.perf_counter()
  if f > 1:
    small, small_scr = _downscale(image.astype(np.float64) / 255.0,
                                  scribbles, f)
    alpha = solve_targets(small, small_scr)
    alpha = cv2.resize(alpha, (alpha.shape[1] * f, alpha.shape[0] * f),
                       interpolation=cv2.INTER_LINEAR)
    alpha = alpha.reshape(alpha.shape[0], alpha.shape[1], -1)[:h, :w]
  else:
    alpha = solve_targets(image, scribbles)
  seconds = time.perf_counter() - start
  alpha, check = targets.split_checks(alpha, num_classes)
  if decision:
    decision = _closed_form_labels(alpha, np.full_like(scribbles, IGNORE),
                                   settings.threshold, 0.0)
  else:
    decision = None

  def quantised(a):  # as the target cache stores them (QUANT = 255)
    return (np.rint(a * targets.QUANT) / targets.QUANT).astype(np.float32)

  alpha = quantised(alpha)
  labels = _closed_form_labels(alpha, scribbles, settings.threshold,
                               settings.margin,
                               None if check is None else quantised(check))
  return Result(alpha, labels, decision, seconds, f)


def _closed_form_labels(alpha, scribbles, threshold, margin, check=None):
  """`losses.closed_form_labels` of one image: uint8 [H, W]."""
  s = np.asarray(scribbles)[None].astype(np.int32)
  out = losses.closed_form_labels(
      alpha[None], s, np.ones(s.shape, np.float32), threshold, margin,
      None if check is None else check[None])
  return np.asarray(out)[0].astype(np.uint8)


def overlay_rgba(labels, opacity: int = 110) -> np.ndarray:
  """uint8 [H, W, 4] to lay over the image: each class in its colour
  (`visualize.palette`) at `opacity`/255, background (black) at a third of
  it; unsure pixels (255) hatched in black and white stripes."""
  labels = np.asarray(labels)
  h, w = labels.shape
  out = np.zeros((h, w, 4), np.uint8)
  out[..., :3] = visualize.palette(256)[labels]
  out[..., 3] = np.where(labels == 0, opacity // 3, opacity)
  unsure = labels == IGNORE
  yy, xx = np.mgrid[:h, :w]
  stripe = ((xx + yy) // 3) % 2 == 0
  out[unsure & stripe] = (255, 255, 255, 170)
  out[unsure & ~stripe] = (0, 0, 0, 170)
  return out


def blend(image, labels, opacity: float = 0.45) -> np.ndarray:
  """uint8 [H, W, 3]: `overlay_rgba` composited over the image."""
  rgba = overlay_rgba(labels, int(round(opacity * 255))).astype(np.float32)
  a = rgba[..., 3:] / 255.0
  return np.clip(np.asarray(image, np.float32) * (1 - a) + rgba[..., :3] * a,
                 0, 255).astype(np.uint8)
