"""Small pieces shared by the lighter networks (U-Net, ERFNet).

* ``pad_to_multiple`` / ``crop``: encoder-decoder networks whose skip or
  upsampling path halves and doubles the grid need sides that are multiples
  of 2^levels; any input size (odd ones included) is padded inside the model
  and the output cropped back to it.
"""

import jax.numpy as jnp


def padded_size(size: int, multiple: int) -> int:
  """The smallest multiple of ``multiple`` that is >= ``size``."""
  return -(-int(size) // multiple) * multiple


def pad_to_multiple(x, multiple: int):
  """Pads ``[B, H, W, C]`` at the bottom and right to multiples of ``multiple``.

  The padding repeats the last row / column (``edge``): no artificial border
  that the BatchNorm statistics or the convolutions would see as an edge of
  another colour.

  Returns:
    ``[B, H', W', C]`` with ``H' = padded_size(H)``, ``W' = padded_size(W)``.
  """
  height, width = x.shape[1], x.shape[2]
  pad_h = padded_size(height, multiple) - height
  pad_w = padded_size(width, multiple) - width
  if pad_h == 0 and pad_w == 0:
    return x
  return jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def crop(x, height: int, width: int):
  """The top-left ``[B, height, width, C]`` of ``x`` (undoes the padding)."""
  return x[:, :height, :width, :]
