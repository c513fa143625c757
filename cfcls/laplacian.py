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

Numerics. The per-window affinity (I_i - mu_k)^T Delta_k^-1 (I_j - mu_k) is
computed from centred colours in float64 (a float64 island inside an otherwise
float32 program, via `jax.enable_x64`): Delta_k^-1 reaches ~1e8 in flat or grey
windows, but the affinities themselves are bounded by |w|, so after this step
every number is of order one and float32 is safe. The uncentred box-filter form
is NOT used: it loses everything in float32 at eps = 1e-7. Even in float64 the
textbook 3x3 adjugate of Delta_k is off by ~1e-2 on grey windows; we build it
from a QR factorisation of the centred colours (`_inverse_covariances`).

Speed. On the CPU the float64 window computations run strip by strip
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

from cfcls import _validate


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


def _window_offsets(radius: int):
  return [(dy, dx) for dy in range(-radius, radius + 1)
          for dx in range(-radius, radius + 1)]


def _safe_div(num, den):
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _dot(u, v):
  return sum(p * q for p, q in zip(u, v))


def _inverse_covariances(cen, eps: float):
  """(Sigma_k + eps/|w| I)^-1 of every window from its centred colours.

  Args:
    cen: cen[a][c] = centred colour channel c of window pixel a, [B, hk, wk].
    eps: the regulariser.

  Returns:
    inv[c][e], [B, hk, wk] each.

  Delta = M + reg I with M = C^T C / |w| and reg = eps / |w|. We use
  Delta^-1 = adj(Delta) / det(Delta) with
    adj(Delta) = adj(M) + reg (tr(M) I - M) + reg^2 I,
    det(Delta) = det(M) + reg tr(adj(M)) + reg^2 tr(M) + reg^3,
  and adj(M), det(M) from a QR factorisation C = Q R (modified Gram-Schmidt on
  the three channel vectors): adj(C^T C) = adj(R) adj(R)^T, det = prod R_ii^2.
  These are accurate even for grey, flat or two-colour windows, where M is
  (nearly) singular. The textbook adjugate of Delta loses reg^2 ~ 1e-16
  against the rounding of |M|^2, even in float64.
  """
  n = len(cen)
  x = [q[0] for q in cen]
  y = [q[1] for q in cen]
  z = [q[2] for q in cen]
  xx, xy, xz = _dot(x, x), _dot(x, y), _dot(x, z)
  yy, yz, zz = _dot(y, y), _dot(y, z), _dot(z, z)
  # Modified Gram-Schmidt: y1 = y - proj_x y, z1 = z - proj_x z,
  # z2 = z1 - proj_y1 z1.
  ty = _safe_div(xy, xx)
  tz = _safe_div(xz, xx)
  y1 = [q - ty * p for p, q in zip(x, y)]
  z1 = [q - tz * p for p, q in zip(x, z)]
  yy1 = _dot(y1, y1)
  y1z1 = _dot(y1, z1)
  t2 = _safe_div(y1z1, yy1)
  z2 = [q - t2 * p for p, q in zip(y1, z1)]
  zz2 = _dot(z2, z2)
  r11, r22, r33 = jnp.sqrt(xx), jnp.sqrt(yy1), jnp.sqrt(zz2)
  r12, r13 = _safe_div(xy, r11), _safe_div(xz, r11)
  r23 = _safe_div(y1z1, r22)
  # adj(R) for upper triangular R (rows).
  u0 = (r22 * r33, -r12 * r33, r12 * r23 - r13 * r22)
  u1 = (r11 * r33, -r11 * r23)
  u2 = r11 * r22
  scale = 1.0 / (n * n)
  adj = {
      (0, 0): _dot(u0, u0) * scale,
      (0, 1): (u0[1] * u1[0] + u0[2] * u1[1]) * scale,
      (0, 2): u0[2] * u2 * scale,
      (1, 1): _dot(u1, u1) * scale,
      (1, 2): u1[1] * u2 * scale,
      (2, 2): u2 * u2 * scale,
  }
  cov = {(0, 0): xx / n, (0, 1): xy / n, (0, 2): xz / n, (1, 1): yy / n,
         (1, 2): yz / n, (2, 2): zz / n}
  for c, e in list(adj):
    adj[e, c] = adj[c, e]
    cov[e, c] = cov[c, e]
  reg = eps / n
  trace = cov[0, 0] + cov[1, 1] + cov[2, 2]
  det_m = xx * yy1 * zz2 / n ** 3
  det = (det_m + reg * (adj[0, 0] + adj[1, 1] + adj[2, 2])
         + reg * reg * trace + reg ** 3)
  return [[(adj[c, e] + reg * ((trace + reg) * float(c == e) - cov[c, e]))
           / det for e in range(3)] for c in range(3)]


def _window_weights(images, eps: float, radius: int, valid, dtype):
  """Window weights W_ab = delta_ab - (1 + affinity_ab) / |w| for a <= b.

  Args:
    images: [B, H, W, 3] (any float dtype; computed in float64).
    eps, radius: as in `window_stats`.
    valid: None or bool [B, H, W].
    dtype: output dtype.

  Returns:
    [B, P, H - 2r, W - 2r] with P = |w| (|w| + 1) / 2 pairs in the order of
    `_window_pairs(radius)`, per window centre; 0 for windows touching an
    invalid pixel.
  """
  r = radius
  n = (2 * r + 1) ** 2
  _, h, w, _ = images.shape
  hk, wk = h - 2 * r, w - 2 * r  # number of window centres per axis
  offsets = _window_offsets(r)

  def patch(x, oy, ox):
    # x[..., centre + (oy, ox)] for every window centre: [B, hk, wk].
    return x[:, r + oy:r + oy + hk, r + ox:r + ox + wk]

  with jax.enable_x64(True):
    img = images.astype(jnp.float64)
    chans = [img[..., c] for c in range(3)]
    # Centred colours of every window, per window position a: cen[a][c].
    pix = [[patch(chans[c], oy, ox) for c in range(3)] for oy, ox in offsets]
    mean = [sum(p[c] for p in pix) / n for c in range(3)]
    cen = [[p[c] - mean[c] for c in range(3)] for p in pix]
    inv = _inverse_covariances(cen, eps)
    # m[a] = Delta^-1 (I_a - mu): then affinity(a, b) = m[a] . cen[b], which
    # is bounded by |w| although Delta^-1 reaches ~1e8.
    m = [[_dot(inv[c], q) for c in range(3)] for q in cen]
    keep = None
    if valid is not None:
      keep = patch(valid, 0, 0)
      for oy, ox in offsets:
        keep = keep & patch(valid, oy, ox)
    # Bounded by ~1: from here on float32 is safe.
    weights = []
    for a, b in _window_pairs(r):
      wab = float(a == b) - (1.0 + _dot(m[a], cen[b])) / n
      if keep is not None:
        wab = jnp.where(keep, wab, 0.0)
      weights.append(wab.astype(dtype))
    return jnp.stack(weights, axis=1)


def _window_pairs(radius: int):
  n = (2 * radius + 1) ** 2
  return [(a, b) for a in range(n) for b in range(a, n)]


def _assemble(weights, radius: int):
  """Window weights [B, P, hc, W - 2r] -> stencil rows [B, T, hc + 2r, W + 4r].

  Row u of the window centres covers pixel rows u .. u + 2r of the output;
  columns get the 2r frame of WindowStats.stencil.
  """
  r = radius
  offsets = _window_offsets(r)
  half = half_offsets(r)
  index = {d: t for t, d in enumerate(half)}
  terms = [[] for _ in half]
  for p, (a, b) in enumerate(_window_pairs(r)):
    (ay, ax), (by, bx) = offsets[a], offsets[b]
    d = (by - ay, bx - ax)
    if d not in index:
      d, (ay, ax) = (ay - by, ax - bx), (by, bx)
    # W_ab sits at pixel centre + o_a and couples it to centre + o_b (tap
    # o_b - o_a); stored at the upper-half tap of the pair.
    terms[index[d]].append(jnp.pad(
        weights[:, p], ((0, 0), (r + ay, r - ay), (3 * r + ax, 3 * r - ax))))
  return jnp.stack([sum(t[1:], t[0]) for t in terms], axis=1)


# Window-centre rows per strip when tiling on the CPU (cache locality).
_STRIP_ROWS = 16
_STRIP_BATCH = 2


def _tiled_stencil(images, eps, radius, valid, dtype):
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
    weights = _window_weights(img[None], eps, r,
                              None if vmask is None else vmask[None], dtype)
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


def _stencil(images, eps: float, radius: int, valid, dtype):
  """Builds WindowStats.stencil; see `window_stats` (no input checks)."""
  r = radius
  images = jax.lax.stop_gradient(images)
  if valid is not None:
    valid = jax.lax.stop_gradient(valid) > 0.5
  if jax.default_backend() == 'cpu':
    stencil = _tiled_stencil(images, eps, r, valid, dtype)
  else:
    weights = _window_weights(images, eps, r, valid, dtype)
    # Materialise once, so the assembly does not recompute the chain.
    stencil = _assemble(jax.lax.optimization_barrier(weights), r)
  stencil = jnp.pad(stencil, ((0, 0), (0, 0), (2 * r, 2 * r), (0, 0)))
  # Materialised, also inside a caller's jit: otherwise XLA fuses the
  # assembly into every use of the stencil.
  return jax.lax.optimization_barrier(stencil)


_stencil_jit = jax.jit(_stencil, static_argnames=('eps', 'radius', 'dtype'))


def _check_images(images, valid, radius: int, eps: float):
  _validate.check_shape('images', images, (None, None, None, 3),
                        '[B, H, W, 3]')
  if radius < 1 or int(radius) != radius:
    raise ValueError(f'radius must be an integer >= 1, got {radius}')
  if not eps > 0:
    raise ValueError(f'eps must be > 0, got {eps}')
  _, h, w, _ = images.shape
  if h < 2 * radius + 1 or w < 2 * radius + 1:
    raise ValueError(f'images of {h}x{w} are smaller than one window '
                     f'({2 * radius + 1}x{2 * radius + 1})')
  _validate.check_finite('images', images)
  _validate.check_unit_range('images', images)
  if valid is not None:
    _validate.check_shape('valid', valid, images.shape[:3], '[B, H, W]')
    _validate.check_finite('valid', valid)


def window_stats(images, eps: float = 1e-7, radius: int = 1,
                 valid=None, dtype=jnp.float32) -> WindowStats:
  """Per-image statistics for `laplacian_matvec`: L as a per-pixel stencil.

  Args:
    images: float [B, H, W, 3], RGB in [0, 1]. No gradient flows to them.
    eps: regulariser of the window covariances (paper: 1e-7), > 0.
    radius: window radius r >= 1 (windows of (2r+1)^2 pixels).
    valid: optional [B, H, W], 1 = real pixel, 0 = padding. Windows touching
      a padding pixel are left out of L.
    dtype: dtype of the stored stencil (float32; float64 needs x64 mode).

  Returns:
    WindowStats with stencil [B, ((4r+1)^2 + 1) / 2, H + 4r, W + 4r] (the
    upper half of the stencil, zero-padded). Jit-compatible; value checks
    (finite pixels) run only on concrete inputs.
  """
  _check_images(images, valid, radius, eps)
  if valid is not None:
    valid = jnp.asarray(valid, jnp.float32)
  return WindowStats(_stencil_jit(jnp.asarray(images, jnp.float32),
                                  eps=float(eps), radius=int(radius),
                                  valid=valid, dtype=jnp.dtype(dtype)))


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
  _validate.check_shape('x', x, (b, h, w, None),
                        f'[B, H, W, C] = [{b}, {h}, {w}, C]')
  stencil = jax.lax.stop_gradient(stats.stencil)
  return _apply(stencil, x)


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
  image = np.asarray(image)
  _validate.check_shape('image', image, (None, None, 3), '[H, W, 3]')
  images = image[None].astype(np.float32)
  if valid is not None:
    _validate.check_shape('valid', valid, image.shape[:2], '[H, W]')
    valid = np.asarray(valid, np.float32)[None]
  _check_images(images, valid, radius, eps)
  h, w, _ = image.shape
  with jax.enable_x64(True):
    stencil = np.asarray(_stencil_jit(
        jnp.asarray(image[None], jnp.float64), eps=float(eps),
        radius=int(radius),
        valid=None if valid is None else jnp.asarray(valid),
        dtype=jnp.dtype(jnp.float64)))[0]
  r2 = 2 * radius
  stencil = stencil[:, r2:r2 + h, r2:r2 + w]
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
