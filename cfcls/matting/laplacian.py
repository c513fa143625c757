"""The closed-form matting Laplacian of Levin, Lischinski and Weiss (2008).

For an RGB image I and windows w_k of radius r (|w| = (2r+1)^2 pixels) lying
fully inside the image,

    L_ij = sum_{k: i, j in w_k} delta_ij
           - (1 + (I_i - mu_k)^T (Sigma_k + eps/|w| I3)^-1 (I_j - mu_k)) / |w|.

L couples pixels at most 2r apart, so L is a (4r+1)^2-tap stencil: row i of L
holds at most (4r+1)^2 non-zeros, at the offsets d in [-2r, 2r]^2. We store the
upper half of that stencil per pixel ("window statistics"; L is symmetric) and
apply it with shifted multiply-adds: no sparse matrices, batched over images,
vectorised over channels.

Numerics. The per-window affinities (I_i - mu_k)^T Delta_k^-1 (I_j - mu_k)
are bounded by |w| although Delta_k^-1 reaches ~1e8 in flat or grey windows;
once they are computed every number is of order one and float32 is safe. They
come from centred colours (`cfcls/matting/window_weights.py`), with
`precision='float64'` (default) in a float64 island inside an otherwise
float32 program (`jax.enable_x64`), or with `precision='float32'` in float32
only (Jacobi rotations + Cholesky, no Delta_k^-1), for backends whose float64
is slow or missing (TPUs, most GPUs); `resolve_precision('auto')` picks one
per backend. The uncentred box-filter form is NOT used: it loses everything
in float32 at eps = 1e-7.

Speed. On the CPU the window computations run strip by strip
(`lax.map` over 16 window rows) so that the working set stays in cache; other
backends process the whole batch at once. The stencil is materialised
(`optimization_barrier`) so that a caller's jit does not fuse its assembly
into every product.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from cfcls.matting import validation
from cfcls.matting import direct_kernels
from cfcls.matting import stencil_kernels
from cfcls.matting import window_weights


class WindowStats(NamedTuple):
  """Per-image matting Laplacian as a per-pixel stencil (upper half).

  Attributes:
    stencil: [B, T, H + 4r, W + 4r] with T = ((4r+1)^2 + 1) / 2 taps: the
      offsets d = (dy, dx) with dy > 0 or (dy == 0 and dx >= 0), in the order
      of `half_offsets(r)`.
      stencil[b, t, 2r + y, 2r + x] = L[(y, x), (y, x) + d] of image b's
      Laplacian; the other half follows from symmetry,
      L[p, p - d] = L[p - d, p]. Zero in the 2r-pixel frame, where the
      neighbour is outside the image, and where no kept window holds both
      pixels.
  """
  stencil: jax.Array

  @property
  def radius(self) -> int:
    taps = self.stencil.shape[1]
    side = int(round(np.sqrt(2 * taps - 1)))
    return (side - 1) // 4

  @property
  def shape(self):
    """(B, H, W) of the images."""
    b, _, hp, wp = self.stencil.shape
    r = self.radius
    return (b, hp - 4 * r, wp - 4 * r)

  @property
  def diagonal(self) -> jax.Array:
    """diag(L) as [B, H, W]."""
    r = self.radius
    _, h, w = self.shape
    return self.stencil[:, 0, 2 * r:2 * r + h, 2 * r:2 * r + w]


def half_offsets(radius: int):
  """The T stencil offsets (dy, dx) stored in WindowStats, (0, 0) first."""
  r2 = 2 * radius
  return [(dy, dx) for dy in range(0, r2 + 1) for dx in range(-r2, r2 + 1)
          if dy > 0 or dx >= 0]


def _pair_placements(radius: int):
  """(tap, row offset, column offset) of every window pair (a, b) of
  `window_weights.window_pairs`: W_ab at window centre c sits at pixel c +
  o_a and couples it to c + o_b (tap o_b - o_a), stored at the upper-half
  tap of the pair, so at pixel c + o_a or c + o_b; the offsets are that
  pixel's position in the window (0 .. 2r)."""
  r = radius
  offsets = window_weights.window_offsets(r)
  index = {d: t for t, d in enumerate(half_offsets(r))}
  out = []
  for a, b in window_weights.window_pairs(r):
    (ay, ax), (by, bx) = offsets[a], offsets[b]
    d = (by - ay, bx - ax)
    if d not in index:
      d, (ay, ax) = (ay - by, ax - bx), (by, bx)
    out.append((index[d], r + ay, r + ax))
  return out


def _assemble(weights, radius: int, xp=jnp):
  """Window weights [B, P, hc, W - 2r] -> stencil rows [B, T, hc + 2r, W + 4r].

  Row u of the window centres covers pixel rows u .. u + 2r of the output;
  columns get the 2r frame of WindowStats.stencil. xp: the array library
  (jax.numpy, or numpy on the host).
  """
  r = radius
  terms = [[] for _ in half_offsets(r)]
  for p, (t, oy, ox) in enumerate(_pair_placements(r)):
    terms[t].append(xp.pad(
        weights[:, p], ((0, 0), (oy, 2 * r - oy), (2 * r + ox, 4 * r - ox))))
  return xp.stack([sum(t[1:], t[0]) for t in terms], axis=1)


# Window-centre rows per strip of `host_stencil` (bounds its memory).
_HOST_STRIP_ROWS = 64
# Window-centre rows per strip when tiling on the CPU (cache locality).
_STRIP_ROWS = 16
_STRIP_BATCH = 2


_WEIGHTS = {'float64': window_weights.weights_float64,
            'float32': window_weights.weights_float32}
PRECISIONS = ('float64', 'float32', 'auto')


def resolve_precision(precision: str, backend=None) -> str:
  """'float64' or 'float32': the arithmetic of the window statistics.

  Args:
    precision: 'float64', 'float32' or 'auto'.
    backend: for 'auto', the jax backend name ('cpu', 'gpu', 'tpu');
      default `jax.default_backend()`.

  Returns:
    `precision` itself unless it is 'auto': then 'float32' on TPUs (no
    native float64) and 'float64' elsewhere (CPUs, and GPUs, where it is
    exact to ~1e-7 and fast on H100/H200).
  """
  if precision not in PRECISIONS:
    raise ValueError(f'precision={precision!r} is not one of {PRECISIONS}')
  if precision != 'auto':
    return precision
  backend = backend or jax.default_backend()
  return 'float32' if backend == 'tpu' else 'float64'


def _tiled_stencil(images, eps, radius, valid, dtype, precision):
  """Stencil rows [B, T, H, W + 4r], computed strip by strip (CPU).

  Each strip of S window-centre rows yields S + 2r stencil rows; consecutive
  strips overlap by 2r rows, which are added.
  """
  r = radius
  b, h, w, _ = images.shape
  hk = h - 2 * r
  rows_s = _STRIP_ROWS
  strips = -(-hk // rows_s)
  pad = strips * rows_s - hk
  rows = (np.arange(strips)[:, None] * rows_s
          + np.arange(rows_s + 2 * r)[None, :])

  def split(x):  # [B, H, ...] -> [B * strips, S + 2r, ...]
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    x = x[:, rows]
    return x.reshape((b * strips,) + x.shape[2:])

  # Window-centre rows beyond the image (the last strip's padding): 0.
  real = jnp.asarray(np.tile(rows[:, :rows_s] < hk, (b, 1)))

  def one(args):
    img, vmask, keep = args
    weights = _WEIGHTS[precision](
        img[None], eps, r, None if vmask is None else vmask[None], dtype)
    weights = jnp.where(keep[None, None, :, None], weights, 0.0)
    return _assemble(jax.lax.optimization_barrier(weights), r)[0]

  out = jax.lax.map(one, (split(images),
                          None if valid is None else split(valid), real),
                    batch_size=_STRIP_BATCH)
  t, wp = out.shape[1], out.shape[3]
  out = out.reshape(b, strips, t, rows_s + 2 * r, wp)
  main, tail = out[:, :, :, :rows_s], out[:, :, :, rows_s:]
  # Strip j's tail rows are strip j + 1's first rows.
  tail = jnp.pad(tail, ((0, 0), (1, 0), (0, 0), (0, rows_s - 2 * r), (0, 0)))
  full = jnp.concatenate([main, jnp.zeros_like(main[:, :1])], axis=1) + tail
  full = full.transpose(0, 2, 1, 3, 4).reshape(b, t, (strips + 1) * rows_s,
                                               wp)
  return full[:, :, :h]


def _stencil(images, eps: float, radius: int, valid, dtype, precision):
  """Builds WindowStats.stencil; see `window_stats` (no input checks)."""
  r = radius
  images = jax.lax.stop_gradient(images)
  if valid is not None:
    valid = jax.lax.stop_gradient(valid) > 0.5
  if jax.default_backend() == 'cpu':
    stencil = _tiled_stencil(images, eps, r, valid, dtype, precision)
  else:
    weights = _WEIGHTS[precision](images, eps, r, valid, dtype)
    # Materialise once, so the assembly does not recompute the chain.
    stencil = _assemble(jax.lax.optimization_barrier(weights), r)
  stencil = jnp.pad(stencil, ((0, 0), (0, 0), (2 * r, 2 * r), (0, 0)))
  # Materialised, also inside a caller's jit: otherwise XLA fuses the
  # assembly into every use of the stencil.
  return jax.lax.optimization_barrier(stencil)


_stencil_jit = jax.jit(
    _stencil, static_argnames=('eps', 'radius', 'dtype', 'precision'))


def _check_images(images, valid, radius: int, eps: float):
  validation.check_shape('images', images, (None, None, None, 3),
                        '[B, H, W, 3]')
  if radius < 1 or int(radius) != radius:
    raise ValueError(f'radius must be an integer >= 1, got {radius}')
  if not eps > 0:
    raise ValueError(f'eps must be > 0, got {eps}')
  _, h, w, _ = images.shape
  if h < 2 * radius + 1 or w < 2 * radius + 1:
    raise ValueError(f'images of {h}x{w} are smaller than one window '
                     f'({2 * radius + 1}x{2 * radius + 1})')
  validation.check_finite('images', images)
  validation.check_unit_range('images', images)
  if valid is not None:
    validation.check_shape('valid', valid, images.shape[:3], '[B, H, W]')
    validation.check_finite('valid', valid)


def window_stats(images, eps: float = 1e-7, radius: int = 1,
                 valid=None, dtype=jnp.float32,
                 precision: str = 'float64') -> WindowStats:
  """Per-image statistics for `laplacian_matvec`: L as a per-pixel stencil.

  Args:
    images: float [B, H, W, 3], RGB in [0, 1]. No gradient flows to them.
    eps: regulariser of the window covariances (paper: 1e-7), > 0.
    radius: window radius r >= 1 (windows of (2r+1)^2 pixels).
    valid: optional [B, H, W], 1 = real pixel, 0 = padding. Windows touching
      a padding pixel are left out of L.
    dtype: dtype of the stored stencil (float32; float64 needs x64 mode).
    precision: arithmetic of the per-window statistics: 'float64' (a
      float64 island, exact to ~1e-7), 'float32' (no float64 anywhere, for
      TPUs and GPUs with slow float64; within ~1e-6 of float64 on 8-bit
      photos, up to ~5e-5 per window weight at sharp edges with sub-8-bit
      noise), or 'auto' (`resolve_precision`).

  Returns:
    WindowStats with stencil [B, ((4r+1)^2 + 1) / 2, H + 4r, W + 4r] (the
    upper half of the stencil, zero-padded). Jit-compatible; value checks
    (finite pixels) run only on concrete inputs.
  """
  _check_images(images, valid, radius, eps)
  precision = resolve_precision(precision)
  if valid is not None:
    valid = jnp.asarray(valid, jnp.float32)
  return WindowStats(_stencil_jit(jnp.asarray(images, jnp.float32),
                                  eps=float(eps), radius=int(radius),
                                  valid=valid, dtype=jnp.dtype(dtype),
                                  precision=precision))


def _apply(stencil, x):
  """L @ x from the padded half stencil; x [B, H, W, C]."""
  _, t, hp, wp = stencil.shape
  side = int(round(np.sqrt(2 * t - 1)))
  r2 = (side - 1) // 2  # 2r
  h, w = hp - 2 * r2, wp - 2 * r2
  xp = jnp.pad(x, ((0, 0), (r2, r2), (r2, r2), (0, 0)))

  def s_at(k, dy, dx):  # stencil tap k at pixel p + (dy, dx): [B, H, W, 1]
    return stencil[:, k, r2 + dy:r2 + dy + h, r2 + dx:r2 + dx + w, None]

  def x_at(dy, dx):  # x at pixel p + (dy, dx)
    return xp[:, r2 + dy:r2 + dy + h, r2 + dx:r2 + dx + w, :]

  out = s_at(0, 0, 0) * x
  for k, (dy, dx) in enumerate(half_offsets(r2 // 2)):
    if k == 0:
      continue
    # L[p, p + d] x[p + d] + L[p - d, p] x[p - d].
    out = out + s_at(k, 0, 0) * x_at(dy, dx) + s_at(k, -dy, -dx) * x_at(
        -dy, -dx)
  return out


def laplacian_matvec(stats: WindowStats, x) -> jax.Array:
  """L @ x per image and channel, with the same L for all channels.

  Args:
    stats: WindowStats of B images of H x W pixels.
    x: [B, H, W, C].

  Returns:
    [B, H, W, C] in x's dtype promoted with the stencil's (float32 for float32
    inputs). Linear in x; plain jax ops, so jit, grad, jvp, vmap and
    hessian all apply. No gradient flows to `stats`.
  """
  b, h, w = stats.shape
  validation.check_shape('x', x, (b, h, w, None),
                        f'[B, H, W, C] = [{b}, {h}, {w}, C]')
  stencil = jax.lax.stop_gradient(stats.stencil)
  return _apply(stencil, x)


def host_stencil(image, eps: float = 1e-7, radius: int = 1,
                 valid=None) -> np.ndarray:
  """The stencil of one image's matting Laplacian, in float64 NumPy.

  The same window weights as `window_stats` at precision 'float64', but
  computed on the host: by `stencil_kernels.stencil` (numba, compiled when
  cfcls is imported, the formulas of `window_weights.weights_float64` a
  window at a time, two halves of the rows at once where two cores are
  free), or without numba by `weights_float64` in NumPy. Nothing is
  compiled for the image's size, so a first call costs what later ones do
  (the direct solver and the sparse reference use it).

  Args:
    image: [H, W, 3] array, RGB in [0, 1].
    eps, radius: as in `window_stats`.
    valid: optional [H, W] mask (1 = real pixel), as in `window_stats`.

  Returns:
    float64 [T, H, W]: L[p, p + d_t] at pixel p for the offsets d_t of
    `half_offsets(radius)` (0 where p + d_t is outside the image).
  """
  image = np.asarray(image)
  validation.check_shape('image', image, (None, None, 3), '[H, W, 3]')
  if valid is not None:
    validation.check_shape('valid', valid, image.shape[:2], '[H, W]')
    valid = np.asarray(valid)
  _check_images(image[None], None if valid is None else valid[None], radius,
                eps)
  h, w, _ = image.shape
  r2 = 2 * radius
  image = image.astype(np.float64)
  keep = None if valid is None else valid > 0.5
  placements = _pair_placements(radius)
  if direct_kernels.available():
    return stencil_kernels.stencil(
        np.ascontiguousarray(image), keep, float(eps), int(radius),
        np.array(placements, np.int64), direct_kernels.threads())
  out = np.zeros((len(half_offsets(radius)), h, w))
  # Strips of window-centre rows (their temporaries are ~100 floats per
  # pixel); strip rows u0..u1 cover pixel rows u0..u1 + 2r. Each weight is
  # added in place where it belongs (no padded copies, as in _assemble).
  for u0 in range(0, h - r2, _HOST_STRIP_ROWS):
    rows = slice(u0, min(h, u0 + _HOST_STRIP_ROWS + r2))
    weights = window_weights.weights_float64(
        image[None, rows], float(eps), int(radius),
        None if keep is None else keep[None, rows], np.float64, xp=np)[0]
    hc = weights.shape[1]
    for p, (t, oy, ox) in enumerate(placements):
      out[t, u0 + oy:u0 + oy + hc, ox:ox + w - r2] += weights[p]
  return out


def sparse_laplacian(image, eps: float = 1e-7, radius: int = 1,
                     valid=None) -> scipy.sparse.csr_matrix:
  """The matting Laplacian of one image as a scipy CSR matrix in float64.

  Args:
    image: [H, W, 3] array, RGB in [0, 1].
    eps, radius: as in `window_stats`.
    valid: optional [H, W] mask (1 = real pixel), as in `window_stats`.

  Returns:
    N x N CSR float64 matrix, N = H * W, pixels in row-major order.
  """
  stencil = host_stencil(image, eps, radius, valid)
  _, h, w = stencil.shape
  ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  rows, cols, vals = [], [], []
  for k, (dy, dx) in enumerate(half_offsets(radius)):
    ny, nx = ys + dy, xs + dx
    inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w) & (stencil[k] != 0)
    i, j, v = (ys * w + xs)[inside], (ny * w + nx)[inside], stencil[k][inside]
    rows.append(i)
    cols.append(j)
    vals.append(v)
    if k > 0:  # the lower half, by symmetry
      rows.append(j)
      cols.append(i)
      vals.append(v)
  n = h * w
  return scipy.sparse.csr_matrix(
      (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
      shape=(n, n))
