"""Synthetic scenes: the demo's dataset, generated here (numpy + OpenCV only).

Each scene is a textured background with a few objects. An object's class is
its SHAPE (disc, square, triangle, ring, cross) and a class-specific fine
pattern (horizontal, vertical or diagonal stripes, checks, dots) printed on
its CORE only, the part deeper than CORE_DEPTH of its largest depth, where
the scribbles run. Its colours are random per instance (two flat colour
pieces split by a line across the object's scribble, light noise) and chosen
to contrast with the background under it, so colour does not give away the
class while colour edges do give away the object's extent. So, as with a
pretrained network on photos, what an object is can be learnt from the
scribbled pixels, but where it ends cannot: the plain band between the core
and the edge is never scribbled, and only the image's colour edges (the
matting Laplacian) or full masks say how far it reaches. Edges are soft
(anti-aliased from signed distance functions). Scribbles are synthesised from
the masks with `scribbles.synthesize_scribbles` (also on the background), so
they cover the middle of each region and leave its extent to be inferred.

Everything is a pure function of (seed, split, index).
"""
from __future__ import annotations

import cv2
import numpy as np

from cfcls.data import scribbles as scribbles_lib

CLASS_NAMES = ('background', 'disc', 'square', 'triangle', 'ring', 'cross')
NUM_CLASSES = len(CLASS_NAMES)
# The class patterns on the object cores (index = class id - 1), their
# brightness amplitude, and the core: depth > CORE_DEPTH * the object's
# largest depth (distance from its edge).
PATTERNS = ('hstripes', 'vstripes', 'checks', 'diagonal', 'dots')
PATTERN_AMPLITUDE = 0.14
CORE_DEPTH = 0.45
_SPLIT_CODES = {'train': 0, 'validation': 1}


def _rot(dx, dy, theta):
  c, s = np.cos(theta), np.sin(theta)
  return c * dx + s * dy, -s * dx + c * dy


def _box_sdf(px, py, hx, hy):
  qx, qy = np.abs(px) - hx, np.abs(py) - hy
  outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
  return outside + np.minimum(np.maximum(qx, qy), 0)


def shape_sdf(cls: int, dx, dy, r: float, theta: float) -> np.ndarray:
  """Signed distance (pixels, < 0 inside) of shape class `cls` of size r.

  dx, dy: [H, W] offsets from the shape centre. r: outer radius.
  """
  px, py = _rot(dx, dy, theta)
  name = CLASS_NAMES[cls]
  if name == 'disc':
    return np.hypot(px, py) - r
  if name == 'square':
    return _box_sdf(px, py, 0.8 * r, 0.8 * r)
  if name == 'triangle':
    inradius = 0.55 * r
    d = None
    for k in range(3):
      a = 2 * np.pi * k / 3 + np.pi / 2
      e = np.cos(a) * px + np.sin(a) * py - inradius
      d = e if d is None else np.maximum(d, e)
    return d
  if name == 'ring':
    return np.abs(np.hypot(px, py) - 0.72 * r) - 0.28 * r
  if name == 'cross':
    arm = 0.3 * r
    return np.minimum(_box_sdf(px, py, r, arm), _box_sdf(px, py, arm, r))
  raise ValueError(f'unknown shape class {cls}')


def class_pattern(cls: int, xx, yy, scale: float = 1.0) -> np.ndarray:
  """Class `cls`'s pattern in {-1, 1} at pixel coordinates xx, yy [H, W].

  Axis-aligned in image coordinates, periods of 4-6 px at 128 px images
  (times `scale`).
  """
  name = PATTERNS[cls - 1]
  p = 4.0 * scale
  if name == 'hstripes':
    v = np.sin(2 * np.pi * (yy + 0.5) / p)
  elif name == 'vstripes':
    v = np.sin(2 * np.pi * (xx + 0.5) / p)
  elif name == 'checks':
    v = np.sin(np.pi * (xx + 0.5) / (1.5 * p)) * np.sin(
        np.pi * (yy + 0.5) / (1.5 * p))
  elif name == 'diagonal':
    v = np.sin(2 * np.pi * (xx + yy + 0.5) / (1.4 * p))
  elif name == 'dots':
    v = np.where((np.mod(xx, 1.25 * p) < 0.5 * p)
                 & (np.mod(yy, 1.25 * p) < 0.5 * p), 1.0, -1.0)
  else:
    raise ValueError(f'unknown pattern {name!r}')
  return np.where(v >= 0, 1.0, -1.0).astype(np.float32)


def _smooth_noise(rng, size, cells, channels):
  """Low-frequency noise in [0, 1]: [size, size, channels]."""
  grid = rng.random((cells, cells, channels)).astype(np.float32)
  out = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
  return np.clip(out.reshape(size, size, channels), 0, 1)


def _background(rng, size):
  """Textured background in [0, 1]: two colours mixed by smooth noise."""
  c0, c1 = rng.random(3), rng.random(3)
  t = _smooth_noise(rng, size, int(rng.integers(3, 7)), 1)
  img = c0 * (1 - t) + c1 * t
  # Soft stripes of low contrast and fine noise.
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  theta = rng.uniform(0, np.pi)
  period = rng.uniform(6, 16) * size / 128
  stripes = 0.04 * np.sin(2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy)
                          / period)
  img = img + stripes[..., None] + rng.normal(0, 0.015, img.shape)
  return np.clip(img, 0, 1)


def _contrasting_colour(rng, reference, min_dist=0.4, tries=50):
  best, best_d = None, -1.0
  for _ in range(tries):
    c = rng.random(3)
    d = float(np.linalg.norm(c - reference))
    if d >= min_dist:
      return c
    if d > best_d:
      best, best_d = c, d
  return best


def _split_side(rng, xx, yy, stroke_rows, stroke_cols, cx, cy, r):
  """bool [H, W]: one side of the line splitting an object in two pieces.

  With stroke pixels given, the line runs across the stroke through its
  middle (within 35 degrees of perpendicular), so the stroke touches both
  colour pieces, as an annotator's stroke through an object would; otherwise
  the line is random near the centre.
  """
  if stroke_rows.size >= 2:
    pts = np.stack([stroke_cols, stroke_rows], axis=1).astype(np.float64)
    mid = pts.mean(axis=0)
    mid = pts[np.argmin(np.sum((pts - mid) ** 2, axis=1))]
    cov = np.cov((pts - mid).T)
    along = np.linalg.eigh(cov)[1][:, -1]  # the stroke's direction
    phi = np.arctan2(along[1], along[0]) + rng.uniform(-0.6, 0.6)
    return (np.cos(phi) * (xx - mid[0]) + np.sin(phi) * (yy - mid[1])) > 0
  phi = rng.uniform(0, 2 * np.pi)
  off = rng.uniform(-0.5, 0.5) * r
  return (np.cos(phi) * (xx - cx) + np.sin(phi) * (yy - cy)) > off


def render_scene(rng: np.random.Generator, size: int = 128,
                 min_objects: int = 2, max_objects: int = 4):
  """Renders one scene with its synthesised scribbles.

  Geometry first (shapes, mask, scribbles from the mask), then colours: each
  object gets two random colour pieces that contrast with the background
  under it, split by a line across its stroke, and its class pattern on its
  core.

  Returns:
    image uint8 [size, size, 3], mask uint8 [size, size] (ids 0..5),
    scribbles uint8 [size, size].
  """
  bg = _background(rng, size).astype(np.float32)
  mask = np.zeros((size, size), np.uint8)
  instance = np.full((size, size), -1, np.int64)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  scale = size / 128
  objects = []
  for _ in range(int(rng.integers(min_objects, max_objects + 1))):
    cls = int(rng.integers(1, NUM_CLASSES))
    r = rng.uniform(13, 26) * scale
    for _ in range(30):
      cx, cy = rng.uniform(r * 0.8, size - r * 0.8, size=2)
      if all(np.hypot(cx - o[1], cy - o[2]) > 0.85 * (r + o[3])
             for o in objects):
        break
    else:
      continue
    theta = rng.uniform(0, 2 * np.pi)
    # Work in the object's bounding box (plus the soft edge).
    box = (slice(max(int(cy - r) - 3, 0), min(int(cy + r) + 4, size)),
           slice(max(int(cx - r) - 3, 0), min(int(cx + r) + 4, size)))
    sdf = shape_sdf(cls, xx[box] - cx, yy[box] - cy, r, theta)
    alpha = np.clip(0.5 - sdf / (0.8 + rng.uniform(0, 0.7)), 0, 1)
    inside = alpha > 0.5
    mask[box][inside] = cls
    instance[box][inside] = len(objects)
    core = sdf < CORE_DEPTH * np.min(sdf)
    objects.append((cls, cx, cy, r, box, alpha.astype(np.float32), core))
  scribbles = scribbles_lib.synthesize_scribbles(mask)
  img = bg.copy()
  for k, (cls, cx, cy, r, box, alpha, core) in enumerate(objects):
    inside = alpha > 0.5
    # Contrast with what lies under the object (background, earlier objects).
    under = img[box]
    ref = under[inside].mean(axis=0) if inside.any() else under.mean((0, 1))
    col_a = _contrasting_colour(rng, ref)
    col_b = _contrasting_colour(rng, ref)
    rows, cols = np.nonzero((instance == k) & (scribbles == cls))
    side = _split_side(rng, xx[box], yy[box], rows, cols, cx, cy, r)
    obj = np.where(side[..., None], col_a, col_b).astype(np.float32)
    pattern = class_pattern(cls, xx[box], yy[box], scale)
    obj = obj + (PATTERN_AMPLITUDE * pattern * core)[..., None]
    obj = np.clip(obj + rng.normal(0, 0.015, obj.shape), 0, 1)
    a = alpha[..., None]
    img[box] = img[box] * (1 - a) + obj * a
  image = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
  return image, mask, scribbles


def generate_example(seed: int, split: str, index: int, size: int = 128):
  """One synthetic example, a pure function of (seed, split, index).

  Returns:
    dict with image uint8 [S, S, 3], mask, scribbles, dots uint8 [S, S],
    presence bool [NUM_CLASSES - 1] (from the scribbles), file_name str.
  """
  rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
  image, mask, scribbles = render_scene(rng, size)
  dots = scribbles_lib.dots_from_scribbles(scribbles, rng)
  return dict(
      image=image, mask=mask, scribbles=scribbles, dots=dots,
      presence=scribbles_lib.class_presence(scribbles, NUM_CLASSES),
      file_name=f'{split}_{index:05d}')
