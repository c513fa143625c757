"""Textured instances: a second synthetic family, unlike the demo scenes.

The demo scenes (cfcls.data.synthetic) have one object per class at most a
few times, flat two-piece colours and a class pattern on each core. Here a
scene holds SEVERAL instances per class, textured like the background, and
the class is the instance's GEOMETRY only:

  1 'stroke'  thin curved bands (quadratic Bezier, 3-7 px wide at 128 px)
  2 'blob'    smooth random star-convex blobs
  3 'star'    five- to eight-pointed stars

Every region (background and each instance) is filled with its own random
texture: fractal value noise (2-4 octaves) through a random 2- or 3-colour
palette, sometimes with oriented waves, so texture and colour say nothing
about the class, and edges are texture edges rather than flat colour steps.
Instances may overlap (later ones on top). Scribbles come from the masks
(`scribbles.synthesize_scribbles`), as in the demo.

Everything is a pure function of (seed, split, index).
"""
from __future__ import annotations

import cv2
import numpy as np

from cfcls.data import scribbles as scribbles_lib

CLASS_NAMES = ('background', 'stroke', 'blob', 'star')
NUM_CLASSES = len(CLASS_NAMES)
_SPLIT_CODES = {'train': 10, 'validation': 11}


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
  """A random texture in [0, 1], float32 [size, size, 3]."""
  t = np.zeros((size, size), np.float32)
  amp, total = 1.0, 0.0
  base = int(rng.integers(3, 9))
  for octave in range(int(rng.integers(2, 5))):
    cells = base * 2 ** octave
    grid = rng.random((cells, cells)).astype(np.float32)
    t += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    total += amp
    amp *= rng.uniform(0.4, 0.7)
  t = t / total
  if rng.random() < 0.4:  # oriented waves
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(3, 12) * size / 128
    wave = np.sin(2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy)
                  / period)
    t = (1 - 0.5) * t + 0.5 * (0.5 + 0.5 * wave)
  t = np.clip((t - t.min()) / max(float(np.ptp(t)), 1e-6), 0, 1)
  stops = rng.random((int(rng.integers(2, 4)), 3)).astype(np.float32)
  pos = t[..., None] * (len(stops) - 1)
  lo = np.clip(np.floor(pos).astype(np.int64), 0, len(stops) - 2)
  frac = pos - lo
  colour = stops[lo[..., 0]] * (1 - frac) + stops[lo[..., 0] + 1] * frac
  return np.clip(colour + rng.normal(0, 0.02, colour.shape), 0, 1).astype(
      np.float32)


def bezier_curve(rng, size, points: int = 64):
  """A random quadratic Bezier curve across the image, float [points, 2]
  (x, y), or None where its ends are closer than 0.3 size."""
  p = rng.uniform(0.1 * size, 0.9 * size, (3, 2))
  t = np.linspace(0, 1, points)[:, None]
  curve = ((1 - t) ** 2 * p[0] + 2 * t * (1 - t) * p[1] + t ** 2 * p[2])
  if np.linalg.norm(curve[-1] - curve[0]) < 0.3 * size:
    return None
  return curve


def polyline_distance(curve, xx, yy) -> np.ndarray:
  """Distance of every pixel (xx, yy) to the polyline through curve."""
  dist = np.full(xx.shape, np.inf, np.float32)
  for a, b in zip(curve[:-1], curve[1:]):
    d = b - a
    s = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1])
                / max(float(d @ d), 1e-9), 0, 1)
    dist = np.minimum(dist, np.hypot(xx - a[0] - s * d[0],
                                     yy - a[1] - s * d[1]))
  return dist


def _stroke(rng, size, xx, yy):
  """Coverage in [0, 1] of a thin quadratic Bezier band, [size, size]."""
  curve = bezier_curve(rng, size)
  if curve is None:
    return None
  half = rng.uniform(1.5, 3.5) * size / 128
  return np.clip(half + 0.5 - polyline_distance(curve, xx, yy), 0, 1)


def star_convex_cover(rng, xx, yy, cx, cy, r, star: bool, points=(5, 9),
                      phase=None) -> np.ndarray:
  """Coverage in [0, 1] of a star (points drawn from the range, phase drawn
  unless given) or of a smooth random blob of radius ~r around (cx, cy)."""
  ang = np.arctan2(yy - cy, xx - cx)
  if star:
    n = int(rng.integers(*points))
    if phase is None:
      phase = rng.uniform(0, 2 * np.pi)
    tri = np.abs(((ang * n + phase) / np.pi) % 2 - 1)  # 1 at the tips
    radius = r * (0.45 + 0.55 * tri)
  else:
    radius = np.full_like(ang, r)
    for k in range(1, 4):
      radius = radius + r * rng.uniform(0, 0.25 / k) * np.cos(
          k * ang + rng.uniform(0, 2 * np.pi))
  return np.clip(radius + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1)


def _radial(rng, size, xx, yy, star: bool):
  """Coverage of a star-convex blob or a star, [size, size]."""
  r = rng.uniform(10, 22) * size / 128
  cx, cy = rng.uniform(r, size - r, 2)
  return star_convex_cover(rng, xx, yy, cx, cy, r, star)


def render_scene(rng: np.random.Generator, size: int = 128):
  """image uint8 [S, S, 3], mask uint8 [S, S] (ids 0..3), scribbles uint8."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  img = texture(rng, size)
  mask = np.zeros((size, size), np.uint8)
  for _ in range(int(rng.integers(3, 7))):
    cls = int(rng.integers(1, NUM_CLASSES))
    cover = (_stroke(rng, size, xx, yy) if cls == 1
             else _radial(rng, size, xx, yy, star=cls == 3))
    if cover is None or (cover > 0.5).sum() < 30:
      continue
    a = cover[..., None]
    img = img * (1 - a) + texture(rng, size) * a
    mask[cover > 0.5] = cls
  scribbles = scribbles_lib.synthesize_scribbles(mask)
  image = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
  return image, mask, scribbles


def generate_example(seed: int, split: str, index: int, size: int = 128):
  """One example, a pure function of (seed, split, index).

  Returns:
    dict with image uint8 [S, S, 3], mask, scribbles uint8 [S, S],
    file_name str.
  """
  rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
  image, mask, scribbles = render_scene(rng, size)
  return dict(image=image, mask=mask, scribbles=scribbles,
              file_name=f'{split}_{index:05d}')


def write_rendered_folder(folder: str, class_names, render, num_train: int,
                          num_val: int) -> float:
  """Writes a scribble_folder layout (images, scribbles, masks, train.txt,
  val.txt, classes.txt) of examples render(split, index) -> (image uint8
  [H, W, 3] RGB, mask, scribbles), named SPLIT_INDEX; split is 'train' or
  'validation'. Returns the share of pixels scribbled over all examples."""
  import os  # pylint: disable=g-import-not-at-top
  for sub in ('images', 'scribbles', 'masks'):
    os.makedirs(os.path.join(folder, sub), exist_ok=True)
  scribbled, pixels = 0, 0
  for split, num, listing in (('train', num_train, 'train.txt'),
                              ('validation', num_val, 'val.txt')):
    names = []
    for i in range(num):
      image, mask, scribbles = render(split, i)
      name = f'{split}_{i:05d}'
      names.append(name)
      cv2.imwrite(os.path.join(folder, 'images', name + '.png'),
                  image[..., ::-1])
      cv2.imwrite(os.path.join(folder, 'scribbles', name + '.png'), scribbles)
      cv2.imwrite(os.path.join(folder, 'masks', name + '.png'), mask)
      scribbled += int((scribbles != scribbles_lib.IGNORE).sum())
      pixels += scribbles.size
    with open(os.path.join(folder, listing), 'w') as f:
      f.write('\n'.join(names) + '\n')
  with open(os.path.join(folder, 'classes.txt'), 'w') as f:
    f.write('\n'.join(class_names) + '\n')
  return scribbled / max(pixels, 1)


def write_folder(folder: str, num_train: int = 300, num_val: int = 100,
                 size: int = 128, seed: int = 0) -> str:
  """Writes a scribble_folder layout (images, scribbles, masks, splits)."""
  def render(split, index):
    ex = generate_example(seed, split, index, size)
    return ex['image'], ex['mask'], ex['scribbles']
  write_rendered_folder(folder, CLASS_NAMES, render, num_train, num_val)
  return folder
