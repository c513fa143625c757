"""Per-window weights of the matting Laplacian, in float64 or float32 only.

For a window w_k of |w| = n pixels with centred colours C_k (n x 3), the
Laplacian adds W_ab = delta_ab - 1/n - P_ab to L at the pixel pair (a, b) of
the window, where

    P = C_k (C_k^T C_k + eps I3)^-1 C_k^T = U diag(s^2 / (s^2 + eps)) U^T

(C_k = U diag(s) V^T), i.e. P_ab = (I_a - mu_k)^T Delta_k^-1 (I_b - mu_k) / n
with Delta_k = Sigma_k + eps/n I3. P is a contraction (eigenvalues in [0, 1))
whatever the conditioning of Sigma_k, but Delta_k^-1 reaches ~1e8 in flat or
grey (R=G=B) windows at eps = 1e-7, so the route to P decides the accuracy.

* float64 (`weights_float64`): Delta_k^-1 from a QR factorisation of the
  centred colours, in a float64 island (`jax.enable_x64`).
* float32 (`weights_float32`), for backends with slow or no float64: never
  forms Delta_k^-1. The colours are centred twice (see there). A few cyclic
  Jacobi rotations on the 3x3 Gram matrix C^T C give an orthonormal V that
  nearly diagonalises it; W = C V is then recomputed from the colours, so
  the Gram matrix W^T W of the small directions is not swamped by the
  rounding of the large ones; and P = W (W^T W + eps I)^-1 W^T = Z Z^T with
  Z = W R^-1 from the Cholesky factor R of W^T W + eps I. After scaling by
  its diagonal that matrix is well conditioned (V decorrelated the colour
  directions), which is what Cholesky needs to be accurate in float32.
  Every stored number is O(1). Accuracy against float64 (per weight):
  ~3e-7 on random and 8-bit images, ~5e-6 on saturated ones, up to ~5e-5
  at sharp edges with sub-8-bit noise, where a window has one direction
  with s ~ 1 and one with s ~ sqrt(eps): there the float32 rounding of the
  centred colours alone (relative 6e-8) moves P by ~6e-8 s_1 / sqrt(eps).
"""
import contextlib

import jax
import jax.numpy as jnp

# Cyclic Jacobi sweeps (3 rotations each) on the 3x3 Gram matrices: 2 are
# as accurate as 3 or 4 (the Cholesky step absorbs what they leave), 1 is not
# on saturated images.
JACOBI_SWEEPS = 2


def window_offsets(radius: int):
  """The n = (2r+1)^2 pixel offsets (dy, dx) of a window, row-major."""
  return [(dy, dx) for dy in range(-radius, radius + 1)
          for dx in range(-radius, radius + 1)]


def window_pairs(radius: int):
  """The n (n + 1) / 2 window pixel pairs (a, b), a <= b, of the weights."""
  n = (2 * radius + 1) ** 2
  return [(a, b) for a in range(n) for b in range(a, n)]


def _safe_div(num, den, xp=jnp):
  ok = den > 0
  return xp.where(ok, num / xp.where(ok, den, 1.0), 0.0)


def _dot(u, v):
  return sum(p * q for p, q in zip(u, v))


def _centred_colours(images, radius: int):
  """cen[a][c]: colour c of window pixel a minus the window mean.

  Args:
    images: [B, H, W, 3].
    radius: window radius r.

  Returns:
    n lists of 3 arrays [B, H - 2r, W - 2r] (one entry per window centre).
  """
  r = radius
  n = (2 * r + 1) ** 2
  _, h, w, _ = images.shape
  hk, wk = h - 2 * r, w - 2 * r
  chans = [images[..., c] for c in range(3)]
  pix = [[x[:, r + oy:r + oy + hk, r + ox:r + ox + wk] for x in chans]
         for oy, ox in window_offsets(r)]
  mean = [sum(p[c] for p in pix) / n for c in range(3)]
  return [[p[c] - mean[c] for c in range(3)] for p in pix]


def _weights(left, right, valid, radius: int, dtype, xp=jnp):
  """W_ab = delta_ab - 1/n - left[a] . right[b] for a <= b, stacked.

  Args:
    left, right: n lists of 3 arrays [B, hk, wk] with P_ab = left[a] .
      right[b].
    valid: None or bool [B, H, W]; windows touching a False pixel get 0.
    radius: window radius r.
    dtype: output dtype.
    xp: the array library (jax.numpy, or numpy on the host).

  Returns:
    [B, n (n + 1) / 2, hk, wk] in the order of `window_pairs(radius)`.
  """
  r = radius
  n = (2 * r + 1) ** 2
  keep = None
  if valid is not None:
    hk, wk = left[0][0].shape[1:]
    for oy, ox in window_offsets(r):
      inside = valid[:, r + oy:r + oy + hk, r + ox:r + ox + wk]
      keep = inside if keep is None else keep & inside
  out = []
  for a, b in window_pairs(r):
    wab = float(a == b) - 1.0 / n - _dot(left[a], right[b])
    if keep is not None:
      wab = xp.where(keep, wab, 0.0)
    out.append(wab.astype(dtype))
  return xp.stack(out, axis=1)


def _inverse_covariances(cen, eps: float, xp=jnp):
  """(Sigma_k + eps/|w| I)^-1 of every window from its centred colours.

  Args:
    cen: cen[a][c] = centred colour channel c of window pixel a, [B, hk, wk].
    eps: the regulariser.
    xp: the array library (jax.numpy, or numpy on the host).

  Returns:
    inv[c][e], [B, hk, wk] each.

  Delta = M + reg I with M = C^T C / |w| and reg = eps / |w|. We use
  Delta^-1 = adj(Delta) / det(Delta) with
    adj(Delta) = adj(M) + reg (tr(M) I - M) + reg^2 I,
    det(Delta) = det(M) + reg tr(adj(M)) + reg^2 tr(M) + reg^3,
  and adj(M), det(M) from a QR factorisation C = Q R (modified Gram-Schmidt on
  the three channel vectors): adj(C^T C) = adj(R) adj(R)^T, det = prod R_ii^2.
  These are accurate (in float64) even for grey, flat or two-colour windows,
  where M is (nearly) singular. The textbook adjugate of Delta loses
  reg^2 ~ 1e-16 against the rounding of |M|^2, even in float64.
  """
  n = len(cen)
  x = [q[0] for q in cen]
  y = [q[1] for q in cen]
  z = [q[2] for q in cen]
  xx, xy, xz = _dot(x, x), _dot(x, y), _dot(x, z)
  yy, yz, zz = _dot(y, y), _dot(y, z), _dot(z, z)
  # Modified Gram-Schmidt: y1 = y - proj_x y, z1 = z - proj_x z,
  # z2 = z1 - proj_y1 z1.
  div = lambda num, den: _safe_div(num, den, xp)
  ty = div(xy, xx)
  tz = div(xz, xx)
  y1 = [q - ty * p for p, q in zip(x, y)]
  z1 = [q - tz * p for p, q in zip(x, z)]
  yy1 = _dot(y1, y1)
  y1z1 = _dot(y1, z1)
  t2 = div(y1z1, yy1)
  z2 = [q - t2 * p for p, q in zip(y1, z1)]
  zz2 = _dot(z2, z2)
  r11, r22, r33 = xp.sqrt(xx), xp.sqrt(yy1), xp.sqrt(zz2)
  r12, r13 = div(xy, r11), div(xz, r11)
  r23 = div(y1z1, r22)
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


def weights_float64(images, eps: float, radius: int, valid, dtype, xp=jnp):
  """Window weights via Delta_k^-1, computed in a float64 island.

  Args:
    images: [B, H, W, 3] (any float dtype; computed in float64).
    eps: the regulariser (> 0).
    radius: window radius r.
    valid: None or bool [B, H, W]; windows touching a False pixel get 0.
    dtype: output dtype.
    xp: jax.numpy (default), or numpy to compute on the host without
      compiling anything (`cfcls.matting.laplacian.host_stencil`).

  Returns:
    [B, n (n + 1) / 2, H - 2r, W - 2r] in the order of `window_pairs(r)`,
    per window centre.
  """
  n = (2 * radius + 1) ** 2
  island = (jax.enable_x64(True) if xp is jnp
            else contextlib.nullcontext())
  with island:
    cen = _centred_colours(images.astype(xp.float64), radius)
    inv = _inverse_covariances(cen, eps, xp)
    # m[a] = Delta^-1 (I_a - mu) / n: P_ab = m[a] . cen[b], bounded by 1
    # although Delta^-1 reaches ~1e8.
    m = [[_dot(inv[c], q) / n for c in range(3)] for q in cen]
    return _weights(m, cen, valid, radius, dtype, xp)


def _jacobi_rotations(gram, sweeps: int):
  """Orthonormal V (columns) that nearly diagonalises a symmetric 3x3 matrix.

  Args:
    gram: dict (c, e) -> [...] for c <= e, the upper half.
    sweeps: cyclic sweeps over the pairs (0, 1), (0, 2), (1, 2).

  Returns:
    v[c][k]: component c of column k, [...] each.
  """
  a = dict(gram)
  for c, e in list(gram):
    a[e, c] = gram[c, e]
  v = [[float(c == k) for k in range(3)] for c in range(3)]
  for _ in range(sweeps):
    for p, q in ((0, 1), (0, 2), (1, 2)):
      o = 3 - p - q
      d = a[q, q] - a[p, p]
      apq = a[p, q]
      # t = tan(theta) of the rotation that zeroes a_pq (the smaller root).
      den = jnp.abs(d) + jnp.sqrt(d * d + 4.0 * apq * apq)
      # den = 0 only where apq = 0 (then t = 0).
      t = jnp.copysign(2.0, d) * apq / jnp.maximum(den, 1e-30)
      c = jax.lax.rsqrt(1.0 + t * t)
      s = t * c
      a[p, p], a[q, q] = a[p, p] - t * apq, a[q, q] + t * apq
      a[p, q] = a[q, p] = jnp.zeros_like(apq)
      aop, aoq = a[o, p], a[o, q]
      a[o, p] = a[p, o] = c * aop - s * aoq
      a[o, q] = a[q, o] = s * aop + c * aoq
      for row in v:
        row[p], row[q] = c * row[p] - s * row[q], s * row[p] + c * row[q]
  return v


def _projection_factors(cen, eps: float, sweeps: int):
  """z[a] with P_ab = z[a] . z[b], all in the dtype of `cen` (float32).

  Args:
    cen: n lists of 3 centred colour arrays [B, hk, wk].
    eps: the regulariser.
    sweeps: Jacobi sweeps for V.

  Returns:
    n lists of 3 arrays [B, hk, wk].
  """
  cols = [[q[c] for q in cen] for c in range(3)]
  gram = {(c, e): _dot(cols[c], cols[e]) for c in range(3)
          for e in range(c, 3)}
  v = _jacobi_rotations(gram, sweeps)
  # Unit columns (a no-op up to rounding). Being divisions, they also keep
  # XLA from recomputing the rotations in every consumer of V.
  for k in range(3):
    norm = jnp.sqrt(sum(v[c][k] * v[c][k] for c in range(3)))
    for c in range(3):
      v[c][k] = v[c][k] / norm
  # W = C V, recomputed from the colours: accurate relative to each column.
  w = [[_dot(q, [v[c][k] for c in range(3)]) for k in range(3)] for q in cen]
  wcols = [[row[k] for row in w] for k in range(3)]
  g = {(c, e): _dot(wcols[c], wcols[e]) for c in range(3)
       for e in range(c, 3)}
  # Cholesky W^T W + eps I = R^T R (R upper). Its Schur complements are
  # >= eps exactly, hence the clamps (against rounding only).
  r00 = jnp.sqrt(g[0, 0] + eps)
  r01, r02 = g[0, 1] / r00, g[0, 2] / r00
  r11 = jnp.sqrt(jnp.maximum(g[1, 1] + eps - r01 * r01, eps))
  r12 = (g[1, 2] - r01 * r02) / r11
  r22 = jnp.sqrt(jnp.maximum(g[2, 2] + eps - r02 * r02 - r12 * r12, eps))
  z = []
  for w0, w1, w2 in w:  # z = R^-T w (forward substitution)
    # Divisions, not products with 1 / r_kk: XLA does not duplicate them
    # into each of the n (n + 1) / 2 weights that read z (it would with
    # cheap products, recomputing z ~n times); the same for R above.
    z0 = w0 / r00
    z1 = (w1 - r01 * z0) / r11
    z.append([z0, z1, (w2 - r02 * z0 - r12 * z1) / r22])
  return z


def weights_float32(images, eps: float, radius: int, valid, dtype,
                    sweeps: int = JACOBI_SWEEPS):
  """Window weights computed in float32 only (no float64 anywhere).

  Args and returns: as `weights_float64`; `sweeps` as `JACOBI_SWEEPS`.
  """
  cen = _centred_colours(images.astype(jnp.float32), radius)
  # Centre again: the rounding error e of the first mean is common to the
  # window and would enter P as 1 e^T (C^T C + eps)^-1 C^T, up to
  # |e| / (2 sqrt(eps)) ~ 1e-4; the second mean's error is relative to the
  # (often small) centred colours.
  n = len(cen)
  mean = [sum(q[c] for q in cen) / n for c in range(3)]
  cen = [[q[c] - mean[c] for c in range(3)] for q in cen]
  z = _projection_factors(cen, eps, sweeps)
  return _weights(z, z, valid, radius, dtype)
