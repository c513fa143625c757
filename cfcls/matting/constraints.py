"""The scribble constraints of the matting system (docs/method.md, section 2).

A scribble map holds class ids 0..K-1 (0 = background) and UNLABELLED for
pixels no stroke covers; foreground class c (1..K-1) is matte c - 1. This is
the convention of `cfcls.labels` (IGNORE there); the matting package keeps its
own name for the value so that it imports nothing of cfcls outside itself
(tests/test_layout.py checks both are equal).
"""
import jax.numpy as jnp

UNLABELLED = 255


def scribble_constraints(scribbles, num_classes: int):
  """One-vs-rest constraints of every foreground class from a scribble map.

  Args:
    scribbles: int [B, H, W], class ids and 255 = unlabelled.
    num_classes: K, including background.

  Returns:
    (labelled, targets): labelled float32 [B, H, W, 1], 1 on scribbled pixels
    (the diagonal of D_c, the same for every class); targets float32
    [B, H, W, K-1], S_c = 1 where the scribble is class c, else 0.
  """
  labelled = (scribbles != UNLABELLED)[..., None].astype(jnp.float32)
  classes = jnp.arange(1, num_classes, dtype=scribbles.dtype)
  targets = (scribbles[..., None] == classes[None, None, None, :])
  return labelled, targets.astype(jnp.float32)
