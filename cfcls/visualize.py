"""Colour maps and overlays for label maps and mattes (numpy, uint8 out)."""

import numpy as np

from cfcls import labels as labels_lib

IGNORE_COLOUR = (255, 255, 255)


def palette(num_colours: int = 256) -> np.ndarray:
  """The PASCAL VOC colour map: uint8 `[num_colours, 3]` (0 = black)."""
  colours = np.zeros((num_colours, 3), np.uint8)
  for i in range(num_colours):
    c, r, g, b = i, 0, 0, 0
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    colours[i] = (r, g, b)
  return colours


_PALETTE = palette()


def colorize(labels) -> np.ndarray:
  """int `[..., H, W]` class ids -> uint8 `[..., H, W, 3]`; 255 shown white."""
  labels = np.asarray(labels)
  out = _PALETTE[np.clip(labels, 0, 255).astype(np.int64)]
  out[labels == labels_lib.IGNORE] = IGNORE_COLOUR
  return out


def overlay(image, labels, opacity: float = 0.5) -> np.ndarray:
  """Blend colourised foreground labels over an image.

  Args:
    image: uint8 `[H, W, 3]`.
    labels: int `[H, W]`; background (0) and 255 leave the image unchanged.
    opacity: weight of the label colour on foreground pixels.

  Returns:
    uint8 `[H, W, 3]`.
  """
  image = np.asarray(image, np.float32)
  labels = np.asarray(labels)
  colours = colorize(labels).astype(np.float32)
  fg = ((labels != 0) & (labels != labels_lib.IGNORE))[..., None]
  blended = np.where(fg, (1 - opacity) * image + opacity * colours, image)
  return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def matte_to_uint8(alpha) -> np.ndarray:
  """float `[...]` in [0, 1] -> uint8 `[...]` (0..255), clipped."""
  return np.clip(np.round(np.asarray(alpha, np.float32) * 255.0), 0,
                 255).astype(np.uint8)
