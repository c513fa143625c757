"""Photo-like test scenes for the matting solver, with sparse hand-drawn strokes.

Scale-free: the same scene at any size (coordinates are fractions of the
image), so solver iteration counts can be compared across sizes. Features
that make the closed-form matting system hard: a saturated, exactly flat sky
(weakly coupled to the rest), a thin wire across it and a thin pole, a flat
grey block, textured objects, smooth shading, sensor noise, 8-bit values, and
strokes covering ~1% of the pixels (one class marked by a single dot, large
regions with no stroke at all).
"""
import numpy as np


def _draw_stroke(mask, points, width):
  """Sets mask to True within width/2 of the polyline through points."""
  h, w = mask.shape
  r = width / 2
  for (y0, x0), (y1, x1) in zip(points[:-1], points[1:]):
    n = int(max(abs(y1 - y0), abs(x1 - x0))) + 1
    for t in np.linspace(0, 1, n):
      y, x = y0 + t * (y1 - y0), x0 + t * (x1 - x0)
      ylo, yhi = int(max(0, np.floor(y - r))), int(min(h, np.ceil(y + r) + 1))
      xlo, xhi = int(max(0, np.floor(x - r))), int(min(w, np.ceil(x + r) + 1))
      yy, xx = np.mgrid[ylo:yhi, xlo:xhi]
      mask[ylo:yhi, xlo:xhi] |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r


def photo_like_scene(h: int, w: int, num_classes: int = 7, seed: int = 0,
                     grey: bool = False):
  """One photo-like image with scribbles.

  Args:
    h, w: image size.
    num_classes: K including background (objects of classes 1..K-1 on a grid
      of 3 columns).
    seed: random seed (colours, textures, noise, background strokes).
    grey: R = G = B (the matting Laplacian's hardest case).

  Returns:
    image float32 [h, w, 3] in [0, 1] (multiples of 1/255) and scribbles
    int32 [h, w] (class ids, 255 = unlabelled).
  """
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
  img = np.stack([0.35 + 0.3 * xs, 0.45 + 0.15 * np.sin(5 * ys),
                  0.3 + 0.2 * ys * xs], axis=-1)
  labels = np.zeros((h, w), np.int32)
  sky = ys < 0.18 + 0.04 * np.sin(7 * xs)
  img[sky] = 1.0
  objects = []
  for c in range(1, num_classes):
    rows = -(-(num_classes - 1) // 3)
    step = 0.45 if rows <= 2 else 0.55 / (rows - 1)
    cy = 0.35 + step * ((c - 1) // 3) + rng.uniform(-0.05, 0.05)
    cx = 0.2 + 0.3 * ((c - 1) % 3) + rng.uniform(-0.05, 0.05)
    ry, rx = rng.uniform(0.07, 0.13, 2)
    inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1
    shade = 0.12 * np.sin(25 * (ys * rng.uniform(-1, 1) + xs))[..., None]
    img[inside] = np.clip(rng.uniform(0.05, 0.95, 3) + shade[inside], 0, 1)
    labels[inside] = c
    objects.append((c, cy, cx, ry, rx))
  block = (abs(ys - 0.88) < 0.06) & (abs(xs - 0.7) < 0.2)
  img[block] = 0.5
  wire = abs(ys - (0.1 + 0.05 * xs + 0.02 * np.sin(9 * xs))) < 0.6 / h
  img[wire] = [0.15, 0.15, 0.2]
  pole = (abs(xs - 0.33) < 1.2 / w) & (ys > 0.05)
  img[pole] = [0.3, 0.25, 0.2]
  noisy = ~sky | wire | pole
  img = np.where(noisy[..., None],
                 img + 0.02 * rng.standard_normal(img.shape), img)
  img = np.round(np.clip(img, 0, 1) * 255) / 255
  if grey:
    img = np.repeat(np.round(img.mean(-1, keepdims=True) * 255) / 255, 3, -1)
  scribbles = np.full((h, w), 255, np.int32)
  width = max(3, max(h, w) // 100)
  for c, cy, cx, ry, rx in objects:
    mask = np.zeros((h, w), bool)
    if c < num_classes - 1:
      points = [(h * (cy + 0.4 * ry * np.sin(a)),
                 w * (cx + 0.5 * rx * np.cos(1.3 * a) * (a - 1)))
                for a in np.linspace(0, 2, 5)]
    else:  # the last class: one dot
      points = [(h * cy, w * cx), (h * cy, w * cx + 1)]
    _draw_stroke(mask, points, width)
    scribbles[mask & (labels == c)] = c
    if not (scribbles == c).any():
      scribbles[int(h * cy), int(w * cx)] = c
  for _ in range(2):  # background: two wavy strokes, none in the sky
    mask = np.zeros((h, w), bool)
    y0 = rng.uniform(0.2, 0.95)
    points = [(h * (y0 + 0.03 * np.sin(3 * a)), w * a)
              for a in np.linspace(0.05, 0.6, 6)]
    _draw_stroke(mask, points, width)
    scribbles[mask & (labels == 0) & ~block & ~sky] = 0
  return img.astype(np.float32), scribbles
