"""Photo-like test scenes for the benchmarks (no data files needed)."""
import numpy as np


def photo_like_batch(batch: int, size: int, num_classes: int, seed: int = 0):
  """Smooth backgrounds with textured objects and scribbles, 8-bit quantised.

  Args:
    batch: number of images B.
    size: image side (H = W = size).
    num_classes: K including background; objects of classes 1..K-1.
    seed: random seed.

  Returns:
    images float32 [B, size, size, 3] in [0, 1] (multiples of 1/255) and
    scribbles int32 [B, size, size] (class ids, 255 = unlabelled), about 3%
    of the pixels labelled, every class scribbled in every image.
  """
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[0:size, 0:size] / size
  images = np.zeros((batch, size, size, 3))
  scribbles = np.full((batch, size, size), 255, np.int32)
  for b in range(batch):
    base = np.stack([0.3 + 0.4 * xs, 0.4 + 0.2 * np.sin(4 * ys + b),
                     0.5 - 0.3 * ys * xs], axis=-1)
    img = base.copy()
    labels = np.zeros((size, size), np.int32)
    for c in range(1, num_classes):
      cy, cx = rng.uniform(0.15, 0.85, 2)
      ry, rx = rng.uniform(0.06, 0.16, 2)
      inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1
      colour = rng.uniform(0.05, 0.95, 3)
      shade = 0.15 * np.sin(20 * (ys * rng.uniform(-1, 1) + xs))[..., None]
      img[inside] = np.clip(colour + shade[inside], 0, 1)
      labels[inside] = c
    img += 0.03 * rng.standard_normal(img.shape)
    images[b] = np.round(np.clip(img, 0, 1) * 255) / 255
    # Scribbles: a short horizontal stroke (3 px wide) through each object
    # and a few background strokes.
    for c in range(num_classes):
      yy, xx = np.nonzero(labels == c)
      if yy.size == 0:
        continue
      for _ in range(1 if c else 4):
        k = rng.integers(yy.size)
        y, x = yy[k], xx[k]
        row = slice(max(y - 1, 0), y + 2)
        cols = slice(max(x - size // 20, 0), x + size // 20)
        stroke = labels[row, cols] == c
        scribbles[b, row, cols] = np.where(stroke, c,
                                           scribbles[b, row, cols])
  return images.astype(np.float32), scribbles
