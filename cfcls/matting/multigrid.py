"""Aggregation multigrid preconditioner for the matting system A = L + lam D.

Levels. Level 0 is the pixel grid with A's 25-tap stencil. Level 1
aggregates 3 x 3 pixel tiles with the local colour basis {1, R, G, B} of
each tile (orthonormalised per tile; colours the tile does not vary in are
dropped): the matting Laplacian is nearly zero on functions affine in the
colour of a window, so this basis holds the smooth error of the pixels.
Deeper levels aggregate 3 x 3 nodes of the level above with an adaptive
basis: `num_test` random vectors are relaxed on A x = 0 at that level (what
the smoother cannot reduce: region indicators, colour-affine pieces) and
each aggregate keeps the leading `coarse_dim` left singular vectors of its
part of them. Every coarse operator is Galerkin, Q^T A Q, so the scribble
term lam D sits on the diagonal of every level. Aggregates couple only to
their 8 neighbours, so a level > 0 is a block stencil:
op [B, 9, k, k, Y, X], op[b, o, :, :, y, x] = A[(y, x), (y, x) + offset_o],
built from matrix-vector products with 9 colourings of the aggregates
(probing), never as a sparse or dense matrix. The coarsest level (at most
`max_coarse` unknowns per image) is inverted densely in float64.

Cycle: Chebyshev smoothing with block-Jacobi (point-Jacobi on pixels),
the same polynomial before and after the coarse correction, and a W-cycle:
a fixed symmetric positive definite operator, so plain PCG applies.
All images and classes are batched: vectors are [B, k, C, Y, X].
"""
import functools
from typing import List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cfcls.matting import laplacian

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
_CENTRE = 4


class Level(NamedTuple):
  """One level of the hierarchy (arrays only: a jit-friendly pytree).

  Layout: the grid is last, for vectorisation over pixels/nodes: a vector
  is [B, k, C, Y, X] (k unknowns per node, C right-hand sides).

  Attributes:
    op: [B, 9, k, k, Y, X] block stencil (None on level 0, the pixels).
    inv_diag: [B, k, k, Y, X] pseudo-inverse of the diagonal blocks.
    lmax: [B, 1, 1, 1, 1] upper estimate of the spectrum of inv_diag A.
    basis: [B, 9 k, k', Y', X'] prolongation to this level from the next
      (None on the coarsest level).
  """
  op: Optional[jax.Array]
  inv_diag: jax.Array
  lmax: jax.Array
  basis: Optional[jax.Array]


class Hierarchy(NamedTuple):
  """Levels, the pixel operator and the coarsest inverse.

  Attributes:
    stencil: float32 WindowStats.stencil of L.
    diag_term: [B, 1, 1, H, W] lam * scribbled.
    levels: list of Level, finest first.
    coarse_inv: [B, n, n] float64 inverse of the coarsest operator.
  """
  stencil: jax.Array
  diag_term: jax.Array
  levels: List[Level]
  coarse_inv: jax.Array


def _bmm(a, x):
  """Per-node a @ x: a [B, m, k, Y, X], x [B, k, C, Y, X] -> [B, m, C, Y, X]."""
  # Unrolled over k: ~100x faster on XLA:CPU than a broadcast-multiply-reduce
  # (which does not vectorise over the grid).
  out = a[:, :, 0, None] * x[:, 0, None]
  for j in range(1, a.shape[2]):
    out = out + a[:, :, j, None] * x[:, j, None]
  return out


def _bmm_t(a, x):
  """Per-node a^T @ x: a [B, m, k, Y, X], x [B, m, C, Y, X] -> [B, k, C, Y, X]."""
  out = a[:, 0, :, None] * x[:, 0, None]
  for m in range(1, a.shape[1]):
    out = out + a[:, m, :, None] * x[:, m, None]
  return out


def _shift(x, dy, dx):
  """y[..., i, j] = x[..., i + dy, j + dx], zero outside."""
  y, xx = x.shape[-2:]
  xp = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
  return xp[..., 1 + dy:1 + dy + y, 1 + dx:1 + dx + xx]


def block_matvec(op, x):
  """A @ x for a block stencil op [B, 9, k, k, Y, X], x [B, k, C, Y, X]."""
  out = _bmm(op[:, _CENTRE], x)
  for o, (dy, dx) in enumerate(_OFFSETS):
    if o != _CENTRE:
      out = out + _bmm(op[:, o], _shift(x, dy, dx))
  return out


def _to_aggregates(x, a: int):
  """[B, k, C, Y, X] -> [B, a a k, C, ceil(Y/a), ceil(X/a)] (zero-padded)."""
  b, k, c, y, xx = x.shape
  yc, xc = -(-y // a), -(-xx // a)
  x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, yc * a - y), (0, xc * a - xx)))
  x = x.reshape(b, k, c, yc, a, xc, a).transpose(0, 4, 6, 1, 2, 3, 5)
  return x.reshape(b, a * a * k, c, yc, xc)


def _from_aggregates(x, a: int, y: int, xx: int):
  """Inverse of `_to_aggregates`: -> [B, k, C, y, xx]."""
  b, m, c, yc, xc = x.shape
  k = m // (a * a)
  x = x.reshape(b, a, a, k, c, yc, xc).transpose(0, 3, 4, 5, 1, 6, 2)
  return x.reshape(b, k, c, yc * a, xc * a)[..., :y, :xx]


def restrict(basis, x):
  """Q^T x: basis [B, 9 k, k', Y', X'], x [B, k, C, Y, X] -> [B, k', C, Y', X']."""
  return _bmm_t(basis, _to_aggregates(x, 3))


def prolong(basis, xc, y: int, xx: int):
  """Q xc: xc [B, k', C, Y', X'] -> [B, k, C, y, xx]."""
  return _from_aggregates(_bmm(basis, xc), 3, y, xx)


def _pixel_matvec(stencil, diag_term, x):
  """(L + lam D) x on pixels, x [B, 1, C, H, W] (stencil as in WindowStats)."""
  _, t, hp, wp = stencil.shape
  r2 = (hp - x.shape[3]) // 2  # 2r
  h, w = x.shape[3:]
  xp = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (r2, r2), (r2, r2)))

  def tap(k, dy, dx):  # L[p + (dy, dx), p + (dy, dx) + d_k]: [B, 1, 1, H, W]
    return stencil[:, None, k:k + 1, r2 + dy:r2 + dy + h, r2 + dx:r2 + dx + w]

  def at(dy, dx):
    return xp[..., r2 + dy:r2 + dy + h, r2 + dx:r2 + dx + w]

  out = (tap(0, 0, 0) + diag_term) * x
  for k, (dy, dx) in enumerate(laplacian.half_offsets(r2 // 2)):
    if k:
      out = out + tap(k, 0, 0) * at(dy, dx) + tap(k, -dy, -dx) * at(-dy, -dx)
  return out


def _galerkin(matvec, basis, y: int, xx: int):
  """Q^T A Q as a block stencil [B, 9, k', k', Y', X'] by probing.

  Aggregates of one colour (I mod 3, J mod 3) are 3 apart, so A Q e on them
  meets each aggregate's neighbourhood once: Q^T A Q e gives, at aggregate
  I, the block of I's neighbour of that colour.
  """
  b, _, kc, yc, xc = basis.shape
  colour = jnp.asarray((np.arange(yc)[:, None] % 3) * 3
                       + np.arange(xc)[None, :] % 3)
  eye = jnp.eye(kc, dtype=basis.dtype)[None, :, :, None, None]

  def probe(c):
    sel = (colour == c).astype(basis.dtype)[None, None, None]
    e = jnp.broadcast_to(sel * eye, (b, kc, kc, yc, xc))
    return restrict(basis, matvec(prolong(basis, e, y, xx)))

  cols = jax.lax.map(probe, jnp.arange(9))  # [colour, B, k', k', Y', X']
  ops = []
  for dy, dx in _OFFSETS:
    src = (((np.arange(yc)[:, None] + dy) % 3) * 3
           + (np.arange(xc)[None, :] + dx) % 3)
    pick = jnp.asarray((src[None] == np.arange(9)[:, None, None]).astype(
        np.float32))
    ops.append(jnp.sum(cols * pick[:, None, None, None], axis=0))
  # Symmetrise: A[I, I + o] = A[I + o, I]^T.
  sym = [0.5 * (ops[o] + jnp.swapaxes(_shift(ops[8 - o], dy, dx), 1, 2))
         for o, (dy, dx) in enumerate(_OFFSETS)]
  return jnp.stack(sym, axis=1)


def _pinv_blocks(blocks, rel: float = 1e-6):
  """Pseudo-inverse of symmetric PSD blocks [B, k, k, Y, X]."""
  w, v = jnp.linalg.eigh(jnp.moveaxis(blocks, (1, 2), (3, 4)))
  top = jnp.max(w, axis=-1, keepdims=True)
  inv_w = jnp.where(w > rel * top, 1.0 / jnp.where(w > 0, w, 1.0), 0.0)
  inv = jnp.einsum('byxij,byxj,byxkj->byxik', v, inv_w, v)
  return jnp.moveaxis(inv, (3, 4), (1, 2))


def _chebyshev(matvec, inv_diag, lmax, rhs, degree: int, ratio: float):
  """Chebyshev iteration for A x = rhs from x = 0, preconditioned by inv_diag.

  A fixed polynomial in (inv_diag A) times inv_diag: a symmetric operator.
  Targets the eigenvalues in [lmax / ratio, lmax].
  """
  lmin = lmax / ratio
  theta, delta = 0.5 * (lmax + lmin), 0.5 * (lmax - lmin)
  sigma = theta / delta
  rho = 1.0 / sigma
  d = _bmm(inv_diag, rhs) / theta
  x = d
  r = rhs
  for _ in range(degree - 1):
    r = r - matvec(d)
    rho_new = 1.0 / (2.0 * sigma - rho)
    d = rho_new * rho * d + (2.0 * rho_new / delta) * _bmm(inv_diag, r)
    rho = rho_new
    x = x + d
  return x


def _power_lmax(matvec, inv_diag, shape, key, iters: int = 12):
  """1.1 x the power-iteration estimate of max eig(inv_diag A), [B,1,1,1,1]."""
  x = jax.random.normal(key, shape, jnp.float32)

  def step(_, carry):
    x, _ = carry
    y = _bmm(inv_diag, matvec(x))
    num = jnp.sum(x * y, axis=(1, 2, 3, 4), keepdims=True)
    den = jnp.sum(x * x, axis=(1, 2, 3, 4), keepdims=True)
    lam = num / jnp.where(den > 0, den, 1.0)
    norm = jnp.sqrt(jnp.sum(y * y, axis=(1, 2, 3, 4), keepdims=True))
    return y / jnp.where(norm > 0, norm, 1.0), lam

  lam = jnp.ones((shape[0], 1, 1, 1, 1), jnp.float32)
  _, lam = jax.lax.fori_loop(0, iters, step, (x, lam))
  return 1.1 * jnp.where(lam > 0, lam, 1.0)


def _colour_basis(images, active):
  """[B, 9, 4, Y', X']: per 3 x 3 tile, {1, R, G, B} orthonormalised.

  images [B, H, W, 3], active [B, H, W] (pixels with a non-zero row).
  """
  x = jnp.concatenate([jnp.ones_like(images[..., :1]), images], axis=-1)
  x = jnp.moveaxis(x * active[..., None], -1, 1)[:, None]  # [B, 1, 4, H, W]
  x = _to_aggregates(x, 3)  # [B, 9, 4, Y', X']
  n = jnp.sum(x[:, :, :1], axis=1, keepdims=True)  # pixels per tile
  mean = jnp.sum(x, axis=1, keepdims=True) / jnp.maximum(n, 1.0)
  ones = x[:, :, :1] / jnp.sqrt(jnp.maximum(n, 1.0))
  cent = (x[:, :, 1:] - mean[:, :, 1:]) * x[:, :, :1]
  gram = jnp.moveaxis(_bmm_t(cent, cent), (1, 2), (3, 4))  # [B, Y', X', 3, 3]
  w, v = jnp.linalg.eigh(gram)
  keep = w > 1e-9
  scale = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, w, 1.0)), 0.0)
  v = jnp.moveaxis(v * scale[..., None, :], (3, 4), (1, 2))
  return jnp.concatenate([ones, _bmm(cent, v)], axis=2)


def _adaptive_basis(matvec, smooth, shape, key, num_test: int, sweeps: int,
                    coarse_dim: int):
  """[B, 9 k, coarse_dim, Y', X']: per 3 x 3 aggregate of a level of shape
  (B, k, Y, X), the leading singular vectors of relaxed random vectors."""
  b, k, y, xx = shape
  x = jax.random.normal(key, (b, k, num_test, y, xx), jnp.float32)

  def sweep(_, x):
    x = x - smooth(matvec(x))
    norm = jnp.sqrt(jnp.sum(x * x, axis=(1, 3, 4), keepdims=True))
    return x / jnp.where(norm > 0, norm, 1.0)

  x = jax.lax.fori_loop(0, sweeps, sweep, x)
  t = _to_aggregates(x, 3)  # [B, 9k, T, Y', X']
  gram = jnp.einsum('bmtyx,bntyx->byxmn', t, t)
  w, v = jnp.linalg.eigh(gram)  # ascending
  w, v = w[..., ::-1][..., :coarse_dim], v[..., ::-1][..., :coarse_dim]
  keep = w > 1e-8 * jnp.max(w, axis=-1, keepdims=True)
  v = v * keep[..., None, :].astype(v.dtype)
  return jnp.moveaxis(v, (1, 2), (3, 4))


def _dense_inverse(op, ridge: float = 1e-7):
  """float64 inverse [B, n, n] of a block stencil op, n = Y X k (small)."""
  b, _, k, _, y, xx = op.shape
  with jax.enable_x64(True):
    op = op.astype(jnp.float64)
    dense = 0.0
    for o, (dy, dx) in enumerate(_OFFSETS):
      dense = dense + jnp.einsum('bijyx,yY,xX->byxiYXj', op[:, o],
                                 np.eye(y, k=dy), np.eye(xx, k=dx))
    n = y * xx * k
    dense = dense.reshape(b, n, n)
    dense = 0.5 * (dense + jnp.swapaxes(dense, 1, 2))
    d = jnp.diagonal(dense, axis1=1, axis2=2)
    d = d + ridge * jnp.max(d, axis=1, keepdims=True) + 1e-30
    dense = dense + (d - jnp.diagonal(dense, axis1=1, axis2=2))[
        :, :, None] * np.eye(n)[None]
    return jnp.linalg.inv(dense)


def setup(stencil, labelled, lam, images, coarse_dim: int = 12,
          num_test: int = 24, sweeps: int = 30, degree: int = 2,
          ratio: float = 8.0, max_coarse: int = 1200,
          seed: int = 0) -> Hierarchy:
  """Builds the hierarchy (call under jit; all sizes are static).

  Args:
    stencil: float32 WindowStats.stencil [B, T, H + 4r, W + 4r] of L.
    labelled: [B, H, W, 1] 1 on scribbled pixels; lam: scalar.
    images: [B, H, W, 3] in [0, 1] (the level-1 colour basis).
    coarse_dim: unknowns per aggregate on levels >= 2.
    num_test, sweeps: relaxed random test vectors for those levels.
    degree, ratio: the Chebyshev smoother (as in `apply`).
    max_coarse: the coarsest level has at most this many unknowns.
    seed: of the random test vectors.
  """
  b, h, w = labelled.shape[:3]
  key = jax.random.PRNGKey(seed)
  diag_term = (lam * labelled[..., 0])[:, None, None]  # [B, 1, 1, H, W]
  diag = laplacian.WindowStats(stencil).diagonal[:, None, None] + diag_term
  active = diag > 0
  inv_diag = jnp.where(active, 1.0 / jnp.where(active, diag, 1.0), 0.0)
  matvec = functools.partial(_pixel_matvec, stencil, diag_term)
  key, sub = jax.random.split(key)
  lmax = _power_lmax(matvec, inv_diag, (b, 1, 1, h, w), sub)
  basis = _colour_basis(images.astype(jnp.float32),
                        active[:, 0, 0].astype(jnp.float32))
  levels = []
  op = None
  shape = (h, w)
  while True:
    next_op = _galerkin(matvec, basis, *shape)
    levels.append(Level(op, inv_diag, lmax, basis))
    op = next_op
    kc, shape = op.shape[2], op.shape[4:]
    matvec = functools.partial(block_matvec, op)
    inv_diag = _pinv_blocks(op[:, _CENTRE])
    if shape[0] * shape[1] * kc <= max_coarse:
      levels.append(Level(op, inv_diag, jnp.ones((b, 1, 1, 1, 1)), None))
      return Hierarchy(stencil, diag_term, levels, _dense_inverse(op))
    key, sub, sub2 = jax.random.split(key, 3)
    lmax = _power_lmax(matvec, inv_diag, (b, kc, 1) + shape, sub)
    smooth = functools.partial(_chebyshev, matvec, inv_diag, lmax,
                               degree=degree, ratio=ratio)
    basis = _adaptive_basis(matvec, smooth, (b, kc) + shape, sub2,
                            num_test, sweeps, coarse_dim)


def _coarse_solve(coarse_inv, r):
  """r [B, k, C, Y, X] -> coarse_inv r (float64 inside)."""
  b, k, c, y, xx = r.shape
  with jax.enable_x64(True):
    flat = r.transpose(0, 3, 4, 1, 2).reshape(b, y * xx * k, c)
    x = jnp.einsum('bij,bjc->bic', coarse_inv, flat.astype(jnp.float64))
  x = x.astype(r.dtype).reshape(b, y, xx, k, c)
  return x.transpose(0, 3, 4, 1, 2)


def _cycle(hier: Hierarchy, l: int, r, degree, ratio, gamma):
  """Approximate A_l^-1 r, r [B, k, C, Y, X]."""
  levels = hier.levels
  if l == len(levels) - 1:
    return _coarse_solve(hier.coarse_inv, r)
  level = levels[l]
  if l == 0:
    matvec = functools.partial(_pixel_matvec, hier.stencil, hier.diag_term)
  else:
    matvec = functools.partial(block_matvec, level.op)
  smooth = functools.partial(_chebyshev, matvec, level.inv_diag, level.lmax,
                             degree=degree, ratio=ratio)
  y, xx = r.shape[3:]
  x = smooth(r)

  def correct(_, x):
    res = restrict(level.basis, r - matvec(x))
    return x + prolong(level.basis, _cycle(hier, l + 1, res, degree, ratio,
                                           gamma), y, xx)

  visits = 1 if l == len(levels) - 2 else gamma
  x = jax.lax.fori_loop(0, visits, correct, x)
  return x + smooth(r - matvec(x))


def apply(hier: Hierarchy, r, degree: int = 2, ratio: float = 8.0,
          gamma: int = 2):
  """One multigrid cycle as the preconditioner: r [B, H, W, C] -> same.

  Symmetric positive (semi)definite in r: the same Chebyshev polynomial
  smooths before and after, the coarsest solve is exact.
  """
  x = _cycle(hier, 0, jnp.moveaxis(r, 3, 1)[:, None], degree, ratio, gamma)
  return jnp.moveaxis(x[:, 0], 1, 3)
