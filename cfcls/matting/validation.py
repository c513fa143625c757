"""Input checks shared by the Laplacian, the losses and the solver.

Shape and rank checks always run (shapes are static, also under jit). Value
checks (finite pixels, label ranges) need concrete arrays: they run on numpy
and concrete jax arrays outside jit and are skipped for tracers, so a
compiled train step never waits for the host.
"""
from typing import Optional, Sequence

import jax
import numpy as np

from cfcls.matting import constraints



def is_concrete(x) -> bool:
  """True if `x` holds values we may read on the host (not a jax tracer)."""
  return not isinstance(x, jax.core.Tracer)


def check_shape(name: str, x, expected: Sequence[Optional[int]], what: str):
  """Raises ValueError unless x.shape matches `expected` (None = any size).

  Args:
    name: argument name used in the message.
    x: array-like with a `.shape`.
    expected: sizes per axis; None matches any size.
    what: human description of the layout, e.g. '[B, H, W, 3]'.
  """
  shape = tuple(np.shape(x))
  if len(shape) != len(expected):
    raise ValueError(
        f'{name} must have rank {len(expected)} {what}, got shape {shape}')
  for axis, (got, want) in enumerate(zip(shape, expected)):
    if want is not None and got != want:
      raise ValueError(
          f'{name} must have shape {what}; axis {axis} is {got}, expected '
          f'{want} (full shape {shape})')


def check_finite(name: str, x):
  """Raises ValueError if a concrete `x` holds NaN or Inf."""
  if not is_concrete(x):
    return
  values = np.asarray(x)
  if not np.all(np.isfinite(values)):
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    raise ValueError(f'{name} holds {bad} non-finite values (NaN or Inf)')


def check_unit_range(name: str, x):
  """Raises ValueError if a concrete `x` has values outside [0, 1]."""
  if not is_concrete(x):
    return
  values = np.asarray(x)
  if values.size and (values.min() < 0 or values.max() > 1):
    raise ValueError(
        f'{name} must be in [0, 1], got values in [{values.min()}, '
        f'{values.max()}] (uint8 images must be divided by 255)')


def check_labels(name: str, labels, num_classes: int,
                 ignore: int = constraints.UNLABELLED):
  """Raises ValueError if a concrete label map has ids outside 0..K-1, ignore.

  Args:
    name: argument name used in the message.
    labels: integer array of class ids.
    num_classes: K, the number of classes including background.
    ignore: the id for unlabelled / void pixels.
  """
  if num_classes < 2 or num_classes >= ignore:
    raise ValueError(f'num_classes must be in 2..{ignore - 1}, got '
                     f'{num_classes}')
  dtype = np.dtype(labels.dtype) if hasattr(labels, 'dtype') else None
  if dtype is not None and not np.issubdtype(dtype, np.integer):
    raise ValueError(f'{name} must hold integer class ids, got dtype {dtype}')
  if not is_concrete(labels):
    return
  values = np.asarray(labels)
  bad = (values != ignore) & ((values < 0) | (values >= num_classes))
  if np.any(bad):
    wrong = np.unique(values[bad])[:10].tolist()
    raise ValueError(
        f'{name} holds class ids {wrong} outside 0..{num_classes - 1} '
        f'(num_classes={num_classes}; {ignore} marks unlabelled pixels)')
