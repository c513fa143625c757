"""Closed-form matting: solve (L + lam D) alpha_c = lam D S_c per class.

`solve_alpha` picks one of two methods (`method='auto'`: by image size
and memory). The direct method factorises each image's system once for
all its classes with this package's multifrontal Cholesky
(`cfcls.matting.multifrontal`: nested dissection of the pixel grid, dense fronts on
BLAS-3, then iterative refinement), on the host: exact, and the faster of
the two on CPUs at the sizes measured, but its memory grows like N log N.

The iterative method is batched and matrix-free, all images and classes at
once: mixed-precision iterative refinement. The residual b - A x is
recomputed in float64 from a float64 stencil (the operator of
`solve_alpha_direct`), and each correction A d = r is solved in float32 by
preconditioned conjugate gradients on the float32 stencil. The
preconditioner is two-level additive: Jacobi (diag(L) + lam D) plus a
coarse correction on block x block tiles (piecewise-constant aggregation,
the small coarse matrix inverted once per image). The stopping rule is on
the answer: refinement stops when the last correction changed no alpha by
more than `tol`.

Why not stop on the float32 residual: A is nearly singular on unscribbled
regions that are weakly coupled to the rest (flat areas behind an edge, thin
structures); there a tiny residual hides a large error, and the float32
residual of the CG recurrence floors near 1e-6 of ||b||. Each refinement
starts from the exact (float64) residual, so once the well-determined part
of alpha is resolved, what is left of the residual is the weakly coupled
part, and the next correction resolves it.

`solve_alpha_direct` is the direct method for one image; with a scipy
ordering (`ordering='COLAMD'`, partial pivoting) it is the reference.
"""
import functools
import os
from typing import Dict, Tuple
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from cfcls.matting import constraints
from cfcls.matting import validation
from cfcls.matting import grid_ordering
from cfcls.matting import laplacian
from cfcls.matting import multifrontal
from cfcls.matting import multigrid


def _sum_hw(x):
  return jnp.sum(x, axis=(1, 2), keepdims=True)  # [B, 1, 1, C]


def _coarse_inverse(stats, labelled, lam, block: int):
  """(R A R^T)^-1 in float64, [B, nc, nc] with nc = ceil(H/block) ceil(W/block).

  R sums pixels over block x block tiles (piecewise-constant aggregation),
  A = L + lam diag(labelled). Built from the stencil: the entry L[i, i + d]
  lands in coarse entry (tile(i), tile(i + d)); with |d| <= 2r < block that
  is a neighbouring tile, fixed by the position of i inside its tile.
  """
  r = stats.radius
  b, h, w = stats.shape
  ny, nx = -(-h // block), -(-w // block)
  pos = np.arange(block)
  with jax.enable_x64(True):
    sten = stats.stencil[:, :, 2 * r:2 * r + h, 2 * r:2 * r + w].astype(
        jnp.float64)
    sten = jnp.pad(sten, ((0, 0), (0, 0), (0, ny * block - h),
                          (0, nx * block - w)))
    sten = sten.reshape(b, -1, ny, block, nx, block)
    lab = jnp.pad(labelled[..., 0].astype(jnp.float64),
                  ((0, 0), (0, ny * block - h), (0, nx * block - w)))
    dsum = jnp.sum(sten[:, 0] + lam * lab.reshape(b, ny, block, nx, block),
                   axis=(2, 4))
    # upper[b, p, q, p', q']: couplings of tile (p, q) to tile (p', q') from
    # the upper-half taps d != 0; the lower half is its transpose.
    upper = jnp.zeros((b, ny, nx, ny, nx), jnp.float64)
    for k, (dy, dx) in enumerate(laplacian.half_offsets(r)):
      if k == 0:
        continue
      for oy in (-1, 0, 1):
        my = ((pos + dy) // block == oy).astype(np.float64)
        for ox in (-1, 0, 1):
          mx = ((pos + dx) // block == ox).astype(np.float64)
          if not (my.any() and mx.any()):
            continue
          part = jnp.einsum('bpuqv,u,v->bpq', sten[:, k], my, mx)
          upper = upper + jnp.einsum('bpq,pP,qQ->bpqPQ', part,
                                     np.eye(ny, k=oy), np.eye(nx, k=ox))
    nc = ny * nx
    upper = upper.reshape(b, nc, nc)
    coarse = upper + jnp.swapaxes(upper, 1, 2)
    # A ridge keeps it positive definite without scribbles or with all-padding
    # tiles; it only changes the preconditioner, not the solution.
    dsum = dsum.reshape(b, nc)
    dsum = dsum + 1e-6 * jnp.max(dsum, axis=1, keepdims=True) + 1e-30
    coarse = coarse + dsum[:, :, None] * np.eye(nc)[None]
    return jnp.linalg.inv(coarse)


def _coarse_apply(coarse_inv, r, block: int):
  """R^T (R A R^T)^-1 R r for r [B, H, W, C]."""
  b, h, w, c = r.shape
  ny, nx = -(-h // block), -(-w // block)
  rp = jnp.pad(r, ((0, 0), (0, ny * block - h), (0, nx * block - w), (0, 0)))
  sums = jnp.sum(rp.reshape(b, ny, block, nx, block, c), axis=(2, 4))
  with jax.enable_x64(True):
    sol = jnp.einsum('bij,bjc->bic', coarse_inv,
                     sums.reshape(b, ny * nx, c).astype(coarse_inv.dtype))
  sol = sol.astype(r.dtype).reshape(b, ny, 1, nx, 1, c)
  up = jnp.broadcast_to(sol, (b, ny, block, nx, block, c))
  return up.reshape(b, ny * block, nx * block, c)[:, :h, :w]


PRECONDITIONERS = ('multigrid', 'tiles', 'jacobi')


@functools.partial(jax.jit, static_argnames=('kind', 'coarse_block'))
def _setup(stats, labelled, lam, images, kind, coarse_block):
  """The preconditioner's data (jit-friendly pytree of arrays)."""
  if kind == 'multigrid':
    return multigrid.setup(stats.stencil, labelled, lam, images)
  diag = stats.diagonal[..., None] + lam * labelled
  inv_diag = jnp.where(diag > 0, 1.0 / jnp.where(diag > 0, diag, 1.0), 0.0)
  if kind == 'jacobi':
    return inv_diag, None
  return inv_diag, _coarse_inverse(stats, labelled, lam, coarse_block)


def _preconditioner(precond_data, kind, coarse_block):
  """v [B, H, W, C] -> M^-1 v, a fixed symmetric positive operator."""
  if kind == 'multigrid':
    return functools.partial(multigrid.apply, precond_data)
  inv_diag, coarse_inv = precond_data
  if coarse_inv is None:
    return lambda v: inv_diag * v
  active = (inv_diag > 0).astype(inv_diag.dtype)
  return lambda v: inv_diag * v + active * _coarse_apply(
      coarse_inv, v, coarse_block)


@functools.partial(jax.jit, static_argnames=('kind', 'coarse_block'))
def _pcg(stats, labelled, lam, precond_data, rhs, todo, rtol, max_iters,
         kind, coarse_block):
  """Preconditioned CG for A d = rhs, float32; d starts at 0.

  Args:
    stats: float32 WindowStats; labelled [B, H, W, 1]; lam scalar.
    precond_data: from `_setup` (of `kind`, `coarse_block`).
    rhs: [B, H, W, C]; todo: bool [B, 1, 1, C], the systems to solve.
    rtol: stop a system when its preconditioned residual norm
      sqrt(r^T M r) falls to rtol times its initial value.
    max_iters: int32 scalar cap.

  Returns:
    (d [B, H, W, C], iterations int32).
  """
  precond = _preconditioner(precond_data, kind, coarse_block)

  def matvec(x):
    return laplacian.laplacian_matvec(stats, x) + lam * labelled * x

  x = jnp.zeros_like(rhs)
  r = rhs
  z = precond(r)
  p = z
  rz = _sum_hw(r * z)
  stop = (rtol * rtol) * rz
  live0 = todo & (rz > 0)

  def cond(state):
    _, _, _, rz, k, live = state
    return (k < max_iters) & jnp.any(live)

  def body(state):
    x, r, p, rz, k, live = state
    ap = matvec(p)
    pap = _sum_hw(p * ap)
    ok = live & (pap > 0)
    step = jnp.where(ok, rz / jnp.where(pap > 0, pap, 1.0), 0.0)
    x = x + step * p
    r = r - step * ap
    z = precond(r)
    rz_new = _sum_hw(r * z)
    beta = jnp.where(rz > 0, rz_new / jnp.where(rz > 0, rz, 1.0), 0.0)
    p = jnp.where(ok, z + beta * p, p)
    rz = jnp.where(ok, rz_new, rz)
    live = ok & (rz > stop)
    return x, r, p, rz, k + 1, live

  x, _, _, _, iters, _ = jax.lax.while_loop(
      cond, body, (x, r, p, rz, jnp.zeros((), jnp.int32), live0))
  return x, iters


@jax.jit
def _residual64(stencil64, labelled, lam, rhs, x):
  """rhs - (L + lam D) x in float64 ([B, H, W, C]; call under x64)."""
  stats = laplacian.WindowStats(stencil64)
  ax = laplacian.laplacian_matvec(stats, x) + lam * labelled * x
  return rhs - ax


def solve_alpha(images, scribbles, num_classes: int, lam: float = 100.0,
                eps: float = 1e-7, radius: int = 1, tol: float = 1e-4,
                max_iters: int = 5000, valid=None, x0=None,
                inner_tol: float = 1e-3, max_refinements: int = 30,
                preconditioner: str = 'tiles', coarse_block: int = 16,
                method: str = 'auto', direct_max_pixels: int = 2 ** 21,
                direct_precision: str = 'auto'
                ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """Closed-form mattes of every foreground class.

  Solves (L + lam D) alpha_c = lam D S_c for c = 1..K-1 with D = diag(1 on
  scribbled pixels) and S_c = 1 on pixels scribbled c (one-vs-rest), for
  all images and classes, by one of two methods:

  * 'direct': per image, a multifrontal Cholesky factorisation in
    nested-dissection order (`cfcls.matting.multifrontal`, the factor shared by
    all classes), computed on the host: LAPACK / BLAS driven by loops
    compiled with numba (`cfcls.matting.direct_kernels`, compiled once per machine
    and loaded at import; nothing is compiled per image size), or by
    NumPy loops without numba. Up to MIXED_PIXELS (2^20) pixels the factor is float64 and
    one refinement step follows: exact to ~1e-10. Above, by default
    (`direct_precision`), the factor is computed in float64 but stored in
    float32 (half the memory) and float64 iterative refinement runs until
    a step changes no alpha by more than MIXED_TOL (1e-7), 2-3 steps on
    photos; if it does not converge in MIXED_MAX_STEPS, the image is
    refactorised and kept in float64. Time and memory grow like
    N^1.5 and N log N (figures: benchmarks/README.md). On a 2-core CPU it
    is faster than the iterative method at every size measured.
  * 'iterative': matrix-free, all images and classes at once: float64
    iterative refinement around float32 preconditioned conjugate gradients
    (see the module doc). Memory linear in pixels, jit-compiled for any
    backend, but its preconditioners are not yet good enough: at 480x640
    on the photo-like bench scene it hits `max_iters` with errors of order
    1 (info['error_estimate'] says so).

  'auto' (default) takes 'direct' for images of at most
  `direct_max_pixels` pixels (H * W, default 2^21 = 1024 x 2048), and for
  larger ones too while their factor (`multifrontal.factor_nbytes`, stored
  in float32) fits in DIRECT_MEMORY_SHARE (0.4) of this machine's memory
  (a solve peaks at ~1.75x its factor). Above that it takes 'iterative'
  and warns that its accuracy is not guaranteed.

  Args:
    images: float [B, H, W, 3] in [0, 1] (uint8 is scaled to [0, 1]).
    scribbles: int [B, H, W], class ids 0..K-1 and 255 = unlabelled.
    num_classes: K, including background.
    lam, eps, radius: as in the CFM loss and `laplacian.window_stats`.
    tol: stop when the last refinement step changed no alpha of an image and
      class by more than tol (max abs). That change is what is reported as
      info['error_estimate']; the returned mattes include it. The default
      1e-4 keeps max |alpha - exact| well under 1e-3 on photos.
    max_iters: cap on the float32 CG iterations, all refinements together.
    valid: optional [B, H, W] mask of real pixels (padding gets alpha 0).
    x0: optional [B, H, W, K-1] starting mattes (a previous solution, a
      network's output); default 0.
    inner_tol: each correction's CG stops when its preconditioned residual
      norm has fallen by this factor.
    max_refinements: cap on the refinement steps.
    preconditioner: 'tiles' (default: Jacobi + a coarse correction on
      coarse_block x coarse_block tiles whose ceil(H/block) * ceil(W/block)
      matrix is inverted densely in float64: small images only), 'jacobi',
      or 'multigrid' (experimental, `cfcls/matting/multigrid.py`: few iterations,
      nearly independent of the image size, but its setup and cycle are
      not yet fast on the CPU).
    coarse_block: tile side for 'tiles'.
    method: 'auto', 'direct' or 'iterative' (above). tol, max_iters, x0,
      inner_tol, max_refinements, preconditioner and coarse_block are
      those of the iterative method; 'direct' ignores them.
    direct_max_pixels: 'auto' solves images of at most this many pixels
      directly whatever their memory; larger ones if their factor fits.
    direct_precision: the direct method's factor: 'float64', 'mixed'
      (stored in float32, float64 refinement) or 'auto' (default: 'mixed'
      above MIXED_PIXELS pixels).

  Returns:
    alpha [B, H, W, K-1] float32 (not clipped) and info with
    'relative_residual' [B, K-1] = ||A alpha - b|| / ||b|| in float64
    (||A alpha|| when b = 0), 'error_estimate' [B, K-1] = max abs change of
    the last refinement step, 'iterations' (int, CG iterations of the whole
    batch; 0 for 'direct'), 'refinements' (int), 'scribbled' bool [B] and
    'method' ('direct' or 'iterative').

    An image with no scribbled pixel at all has no unique solution (L is
    singular, and L alpha = 0 for every constant alpha): its mattes are
    defined as 0 (like `solve_alpha_direct`), whatever x0, and
    info['scribbled'] is False for it. A class with no scribble in an image
    that has others solves to 0 (the background constraints pin it).
  """
  if getattr(images, 'dtype', None) == np.uint8:
    images = np.asarray(images, np.float32) / 255.0
  validation.check_shape('scribbles', scribbles, np.shape(images)[:3],
                        '[B, H, W] (the image size)')
  validation.check_labels('scribbles', scribbles, num_classes)
  if not tol > 0:
    raise ValueError(f'tol must be > 0, got {tol}')
  if method not in METHODS:
    raise ValueError(f'method={method!r} is not one of {METHODS}')
  b, h, w = np.shape(scribbles)
  c = num_classes - 1
  if x0 is not None:
    validation.check_shape('x0', x0, (b, h, w, c),
                          f'[B, H, W, K-1] = [{b}, {h}, {w}, {c}]')
    validation.check_finite('x0', x0)
  if method == 'direct' or (method == 'auto' and _direct_fits(
      h, w, radius, direct_max_pixels)):
    return _solve_direct_batch(images, scribbles, num_classes, lam, eps,
                               radius, valid, direct_precision)
  scribbles = jnp.asarray(scribbles)
  labelled, targets = constraints.scribble_constraints(scribbles, num_classes)
  scribbled = np.asarray(jnp.any(labelled > 0, axis=(1, 2, 3)))
  with jax.enable_x64(True):
    stats64 = laplacian.window_stats(images, eps=eps, radius=radius,
                                     valid=valid, dtype=jnp.float64)
    lab64 = labelled.astype(jnp.float64)
    rhs64 = lam * lab64 * targets.astype(jnp.float64)
    x = (jnp.zeros(rhs64.shape, jnp.float64) if x0 is None
         else jnp.asarray(x0, jnp.float64))
    keep = jnp.asarray(scribbled)[:, None, None, None]
    if valid is not None:
      keep = keep & (jnp.asarray(valid)[..., None] > 0.5)
    x = jnp.where(keep, x, 0.0)
    stencil32 = stats64.stencil.astype(jnp.float32)
  stats32 = laplacian.WindowStats(stencil32)
  lab32 = labelled.astype(jnp.float32)
  lam32 = jnp.asarray(lam, jnp.float32)
  if preconditioner not in PRECONDITIONERS:
    raise ValueError(f'preconditioner={preconditioner!r} is not one of '
                     f'{PRECONDITIONERS}')
  coarse_block = int(coarse_block) if preconditioner == 'tiles' else 0
  precond_data = _setup(stats32, lab32, lam32, jnp.asarray(images),
                        preconditioner, coarse_block)
  todo = np.broadcast_to(scribbled[:, None], (b, c)).copy()
  change = np.zeros((b, c))
  iters = 0
  steps = 0
  while todo.any() and steps < max_refinements and iters < max_iters:
    with jax.enable_x64(True):
      res = _residual64(stats64.stencil, lab64, lam, rhs64, x)
      scale = jnp.max(jnp.abs(res), axis=(1, 2), keepdims=True)
      scale = jnp.where(scale > 0, scale, 1.0)
      r32 = (res / scale).astype(jnp.float32)
    d, k = _pcg(stats32, lab32, lam32, precond_data, r32,
                jnp.asarray(todo)[:, None, None, :],
                jnp.asarray(inner_tol, jnp.float32),
                jnp.asarray(max_iters - iters, jnp.int32), preconditioner,
                coarse_block)
    iters += int(k)
    steps += 1
    with jax.enable_x64(True):
      d = d.astype(jnp.float64) * scale
      d = jnp.where(jnp.asarray(todo)[:, None, None, :], d, 0.0)
      x = x + d
      step_change = np.asarray(jnp.max(jnp.abs(d), axis=(1, 2)))
    change = np.where(todo, step_change, change)
    todo = todo & (step_change > tol)
  with jax.enable_x64(True):
    res = _residual64(stats64.stencil, lab64, lam, rhs64, x)
    b_norm = jnp.sqrt(jnp.sum(rhs64 * rhs64, axis=(1, 2)))
    res_norm = jnp.sqrt(jnp.sum(res * res, axis=(1, 2)))
    rel = np.asarray(jnp.where(b_norm > 0, res_norm / jnp.where(
        b_norm > 0, b_norm, 1.0), res_norm))
    alpha = x.astype(jnp.float32)
  return alpha, {'relative_residual': rel, 'error_estimate': change,
                 'iterations': iters, 'refinements': steps,
                 'scribbled': scribbled, 'method': 'iterative'}


METHODS = ('auto', 'direct', 'iterative')


ORDERINGS = ('nested_dissection', 'MMD_AT_PLUS_A', 'COLAMD', 'MMD_ATA',
             'NATURAL')


def _factorise(a_mat, h: int, w: int, radius: int, ordering: str):
  """A solve function for the sparse SPD matrix a_mat (scipy SuperLU)."""
  if ordering not in ORDERINGS:
    raise ValueError(f'ordering={ordering!r} is not one of {ORDERINGS}')
  if ordering != 'nested_dissection':
    lu = scipy.sparse.linalg.splu(a_mat.tocsc(), permc_spec=ordering)
    return lu.solve
  perm = grid_ordering.nested_dissection(h, w, reach=2 * radius)
  # A is symmetric positive definite: no pivoting, the ordering is kept as
  # given (a symmetric permutation, as for a Cholesky factor).
  lu = scipy.sparse.linalg.splu(
      a_mat[perm][:, perm].tocsc(), permc_spec='NATURAL',
      diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))

  def solve(rhs):
    out = np.empty_like(rhs)
    out[perm] = lu.solve(np.ascontiguousarray(rhs[perm]))
    return out
  return solve


def _scribble_diagonal(scribbles, lam):
  """lam D as float64 [H * W]: lam on scribbled pixels, else 0."""
  return lam * (scribbles != constraints.UNLABELLED).ravel().astype(np.float64)


def _scribble_terms(scribbles, num_classes, lam):
  """(lam D as float64 [H * W], rhs = lam D S float64 [H * W, K-1])."""
  lam_d = _scribble_diagonal(scribbles, lam)
  classes = np.arange(1, num_classes)
  targets = scribbles.reshape(-1, 1) == classes[None, :]
  return lam_d, lam_d[:, None] * targets


def _direct_system(image, scribbles, num_classes, lam, eps, radius, valid):
  """(A, rhs) of one image, float64 scipy CSR and numpy [H * W, K-1]."""
  lam_d, rhs = _scribble_terms(scribbles, num_classes, lam)
  a_mat = laplacian.sparse_laplacian(image, eps=eps, radius=radius,
                                     valid=valid)
  diag = a_mat.diagonal() + lam_d
  # Rows of pixels in no kept window and unscribbled are all zero: pin them.
  a_mat = a_mat + scipy.sparse.diags(lam_d + (diag <= 0))
  return a_mat.tocsr(), rhs


def _direct_taps(image, scribbles, lam, eps, radius, valid):
  """The taps of one image's system matrix: float64 [T, H, W] for
  `multifrontal.factorise_taps` (reach 2 * radius)."""
  h, w = scribbles.shape
  return _system_taps(image, _scribble_diagonal(scribbles, lam).reshape(h, w),
                      eps, radius, valid)


def _system_taps(image, diagonal, eps, radius, valid):
  """The taps of L + diag(diagonal), float64 [T, H, W] (diagonal [H, W])."""
  half = laplacian.host_stencil(image, eps, radius, valid)
  _, h, w = half.shape
  reach = 2 * radius
  offsets = multifrontal.full_offsets(reach)
  taps = np.zeros((len(offsets), h, w))
  index = {d: t for t, d in enumerate(offsets)}
  for t, (dy, dx) in enumerate(laplacian.half_offsets(radius)):
    taps[index[dy, dx]] = half[t]
    if (dy, dx) != (0, 0):  # A[p + d, p] = A[p, p + d]
      ya, xa, xb = max(0, -dx), max(0, dx), w - max(0, -dx)
      taps[index[-dy, -dx], dy:, xa:xb] = half[t][:h - dy, ya:ya + xb - xa]
  lam_d = diagonal
  centre = taps[index[0, 0]]
  # Rows of pixels in no kept window and unscribbled are all zero: pin them.
  centre += lam_d + (centre + lam_d <= 0)
  return taps


def solve_weighted(image, prior, weights, lam: float = 1.0,
                   eps: float = 1e-4, radius: int = 1, valid=None
                   ) -> Tuple[np.ndarray, Dict]:
  """The soft matting system: x = (L + lam W)^-1 lam W prior, per channel.

  The closed-form system with a data term on every pixel instead of hard
  scribbles (He, Sun and Tang's soft matting): W = diag(weights) says how
  much each pixel's prior counts, L pulls the solution onto the image's
  colour edges. `solve_alpha`'s system is the case weights = 1 on the
  scribbles and 0 elsewhere, prior = the scribbles' one-hot. Solved by the
  direct method (one float64 multifrontal factorisation shared by the
  channels, one refinement step).

  Args:
    image: [H, W, 3] in [0, 1] (uint8 is scaled).
    prior: [H, W, C], e.g. a network's class probabilities.
    weights: [H, W] >= 0, at least one > 0 in every part of the image that
      no window joins to another (a zero-weight pixel in no kept window is
      pinned to 0).
    lam, eps, radius: the data weight, the Laplacian's regulariser and
      window radius.
    valid: optional [H, W] mask of real pixels, as in `window_stats`.

  Returns:
    (float64 [H, W, C], info with 'relative_residual' per channel).
  """
  image = np.asarray(image)
  if image.dtype == np.uint8:
    image = image.astype(np.float64) / 255.0
  prior = np.asarray(prior, np.float64)
  weights = np.asarray(weights, np.float64)
  validation.check_shape('image', image, (None, None, 3), '[H, W, 3]')
  h, w = image.shape[:2]
  validation.check_shape('prior', prior, (h, w, None), f'[{h}, {w}, C]')
  validation.check_shape('weights', weights, (h, w), f'[{h}, {w}]')
  validation.check_finite('prior', prior)
  validation.check_finite('weights', weights)
  if np.any(weights < 0):
    raise ValueError('solve_weighted: weights must be >= 0')
  lam_w = lam * weights
  taps = _system_taps(image.astype(np.float64), lam_w, eps, radius, valid)
  c = prior.shape[-1]

  def make_rhs():
    return (lam_w[..., None] * prior).reshape(h * w, c)

  sol, info = _solve_direct_one(taps, make_rhs, 2 * radius, False, 0)
  return sol.reshape(h, w, c), info


# 'auto' solves an image above direct_max_pixels directly if its factor
# takes at most this share of the machine's physical memory.
DIRECT_MEMORY_SHARE = 0.4


def _physical_memory() -> int:
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def _direct_fits(h: int, w: int, radius: int, direct_max_pixels: int) -> bool:
  """'auto''s choice: direct up to direct_max_pixels, or while the factor
  fits in DIRECT_MEMORY_SHARE of the memory (with a warning if not)."""
  if h * w <= direct_max_pixels:
    return True
  need = multifrontal.factor_nbytes(h, w, 2 * radius, np.float32)
  have = _physical_memory()
  if need <= DIRECT_MEMORY_SHARE * have:
    return True
  warnings.warn(
      f'solve_alpha: a {h}x{w} image would need a {need / 2 ** 30:.1f} GiB '
      f'factor for the direct method (more than {DIRECT_MEMORY_SHARE:.0%} '
      f'of this machine\'s {have / 2 ** 30:.1f} GiB); using the iterative '
      f"method, which is not yet accurate on large photos: check "
      f"info['error_estimate'], or split the image", stacklevel=3)
  return False


DIRECT_PRECISIONS = ('auto', 'float64', 'mixed')
# 'auto' factorises images of more pixels than this in float32 ('mixed').
MIXED_PIXELS = 2 ** 20
# 'mixed' refines until no alpha changes by more than this, in at most
# MIXED_MAX_STEPS steps (each ~1e-3..1e-5 of the last on photos: 2-3).
MIXED_TOL = 1e-7
MIXED_MAX_STEPS = 10


def _refine(solve, matvec, rhs, tol, max_steps):
  """x = A^-1 rhs, then refinement steps until one changes no entry by more
  than tol (at least one step, at most max_steps); info on the last."""
  def residual(x):  # rhs - A x, in A x's buffer
    ax = matvec(x)
    return np.subtract(rhs, ax, out=ax)

  sol = solve(rhs)
  for steps in range(1, max_steps + 1):
    step = solve(residual(sol))
    sol += step
    change = np.max(np.abs(step), axis=0)
    del step
    if np.all(change <= tol):
      break
  res = residual(sol)
  b_norm = np.linalg.norm(rhs, axis=0)
  res_norm = np.linalg.norm(res, axis=0)
  rel = np.where(b_norm > 0, res_norm / np.where(b_norm > 0, b_norm, 1.0),
                 res_norm)
  return sol, {'relative_residual': rel, 'error_estimate': change,
               'refinements': steps, 'converged': bool(np.all(change <= tol))}


def _solve_direct_one(taps, make_rhs, reach, mixed, index):
  """(alpha [N, K-1], info) of one image's system: a float64 factor and
  one refinement step, or (mixed) a factor stored in float32 refined to
  MIXED_TOL, falling back to float64 if that does not converge. make_rhs()
  is called after the factorisation, so that the right-hand sides are not
  held through its memory peak (151 MB less at 1024x2048 with 9 mattes)."""
  matvec = functools.partial(multifrontal.matvec, taps)

  def solver(storage):
    try:
      factor = multifrontal.factorise_taps(taps, reach, storage=storage)
    except np.linalg.LinAlgError as e:
      raise ValueError(
          f'image {index}: the matting system is singular (a part of the '
          f'image that no window connects to any scribble?): {e}') from e
    return functools.partial(multifrontal.solve, factor)

  if mixed:
    solve = solver(np.float32)
    rhs = make_rhs()
    sol, info = _refine(solve, matvec, rhs, MIXED_TOL, MIXED_MAX_STEPS)
    if info['converged']:
      return sol, info
    del sol, solve, rhs
  solve = solver(np.float64)
  return _refine(solve, matvec, make_rhs(), np.inf, 1)


def _solve_direct_batch(images, scribbles, num_classes, lam, eps, radius,
                        valid, precision):
  """solve_alpha's 'direct' method: a multifrontal Cholesky per image."""
  if precision not in DIRECT_PRECISIONS:
    raise ValueError(f'direct_precision={precision!r} is not one of '
                     f'{DIRECT_PRECISIONS}')
  images = np.asarray(images)
  validation.check_finite('images', images)
  scribbles = np.asarray(scribbles)
  if valid is not None:
    valid = np.asarray(valid)
  b, h, w = scribbles.shape
  c = num_classes - 1
  mixed = precision == 'mixed' or (precision == 'auto'
                                   and h * w > MIXED_PIXELS)
  alphas = np.zeros((b, h, w, c))
  rel, change = np.zeros((b, c)), np.zeros((b, c))
  steps = 0
  scribbled = np.any(scribbles != constraints.UNLABELLED, axis=(1, 2))
  for i in np.flatnonzero(scribbled):
    taps = _direct_taps(images[i].astype(np.float64), scribbles[i], lam, eps,
                        radius, None if valid is None else valid[i])
    def make_rhs(image_scribbles=scribbles[i]):
      return _scribble_terms(image_scribbles, num_classes, lam)[1]
    sol, info = _solve_direct_one(taps, make_rhs, 2 * radius, mixed, i)
    alphas[i] = sol.reshape(h, w, c)
    rel[i], change[i] = info['relative_residual'], info['error_estimate']
    steps = max(steps, info['refinements'])
  # Cast in NumPy and device_put: jnp.asarray compiles a copy on its first
  # call (80 ms of a cold 160x240 solve).
  return jax.device_put(alphas.astype(np.float32)), {
      'relative_residual': rel, 'error_estimate': change, 'iterations': 0,
      'refinements': steps, 'scribbled': scribbled, 'method': 'direct'}


def solve_alpha_direct(image, scribbles, num_classes: int, lam: float = 100.0,
                       eps: float = 1e-7, radius: int = 1,
                       valid=None, ordering: str = 'MMD_AT_PLUS_A'
                       ) -> np.ndarray:
  """Closed-form mattes of one image with scipy's sparse LU (SuperLU).

  The reference for `solve_alpha` (whose direct method is this package's
  own multifrontal Cholesky, `cfcls.matting.multifrontal`).

  Args:
    image: [H, W, 3] in [0, 1] (uint8 is scaled to [0, 1]).
    scribbles: int [H, W], class ids and 255 = unlabelled.
    num_classes: K, including background.
    lam, eps, radius, valid: as in `solve_alpha`.
    ordering: a column ordering of `scipy.sparse.linalg.splu`
      (`permc_spec`, with scipy's partial pivoting): 'MMD_AT_PLUS_A'
      (default: minimum degree on A^T + A), 'COLAMD' (scipy's default),
      'MMD_ATA', 'NATURAL'; or 'nested_dissection' (`cfcls.matting.grid_ordering`,
      the symmetric positive definite system factorised without pivoting in
      that order; ~4x faster). All give the same mattes to ~1e-10;
      benchmarks/solver_bench.py times them.

  Returns:
    float64 numpy [H, W, K-1]. All zero when nothing is scribbled.
  """
  image = np.asarray(image)
  if image.dtype == np.uint8:
    image = image.astype(np.float64) / 255.0
  scribbles = np.asarray(scribbles)
  validation.check_shape('image', image, (None, None, 3), '[H, W, 3]')
  validation.check_shape('scribbles', scribbles, image.shape[:2],
                        '[H, W] (the image size)')
  validation.check_labels('scribbles', scribbles, num_classes)
  h, w, _ = image.shape
  if not np.any(scribbles != constraints.UNLABELLED):
    return np.zeros((h, w, num_classes - 1))
  a_mat, rhs = _direct_system(image, scribbles, num_classes, lam, eps,
                              radius, valid)
  solve = _factorise(a_mat, h, w, radius, ordering)
  return solve(rhs).reshape(h, w, num_classes - 1)
