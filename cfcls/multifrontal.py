"""Sparse Cholesky of a grid-stencil SPD matrix by geometric nested dissection.

A multifrontal factorisation (each front a dense matrix, factorised with
LAPACK / BLAS-3) on the tree of `cfcls.grid_ordering.dissection_tree`:

* the front of a node holds its own pixels (a leaf block or a separating
  band) and its *ring*: the pixels outside the node's rectangle within
  `reach` of it. The ring lies on separators of ancestors, and it is all
  that the node's subtree couples to once the subtree is eliminated.
* assembly: the rows of A of the node's own pixels (entries to pixels of
  the subtree below were assembled by the children) plus the children's
  update matrices (extend-add);
* elimination: F = [[F_oo, F_or], [F_ro, F_rr]] (own, ring):
  L_oo = chol(F_oo), L_ro = F_ro L_oo^-T, and the update
  F_rr - L_ro L_ro^T goes to the parent.

The same fill as a sparse Cholesky in nested-dissection order, but the
work is dense matrix products (multi-threaded BLAS), which on a CPU run
several times faster per flop than SuperLU's supernodal kernels.
"""
import contextlib
from typing import List, NamedTuple

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.linalg.lapack
import scipy.sparse

try:  # in requirements.txt; optional so the solver imports without it
  import threadpoolctl
except ImportError:  # pragma: no cover
  threadpoolctl = None

from cfcls import grid_ordering

LEAF_PIXELS = 128


def _one_blas_thread():
  """BLAS on one thread: the fronts are many and mostly small, and a
  multi-threaded BLAS on a busy machine spends more time waking threads than
  computing (480x640: 4.3 s on one thread, 136 s with two on a loaded
  2-core CPU)."""
  if threadpoolctl is None:
    return contextlib.nullcontext()
  return threadpoolctl.threadpool_limits(1, user_api='blas')


class Front(NamedTuple):
  own: np.ndarray      # int64 pixels eliminated at this node
  ring: np.ndarray     # int64 pixels of ancestors the subtree couples to
  l_own: np.ndarray    # [n_own, n_own] lower Cholesky factor of F_oo
  l_ring: np.ndarray   # [n_ring, n_own] = F_ro L_oo^-T


class Factor(NamedTuple):
  n: int
  fronts: List[Front]


def _ring(region, height, width, reach, index):
  y0, y1, x0, x1 = region
  ya, yb = max(0, y0 - reach), min(height, y1 + reach)
  xa, xb = max(0, x0 - reach), min(width, x1 + reach)
  block = index[ya:yb, xa:xb]
  inside = np.zeros(block.shape, bool)
  inside[y0 - ya:y1 - ya, x0 - xa:x1 - xa] = True
  return block[~inside]


def factorise(a_mat, height: int, width: int, reach: int,
              leaf_pixels: int = LEAF_PIXELS) -> Factor:
  """Cholesky factor of the SPD matrix `a_mat` on a height x width grid.

  Args:
    a_mat: scipy sparse [N, N], N = height * width, pixels row-major,
      symmetric positive definite, coupling only pixels at most `reach`
      apart in each axis.
    height, width, reach: the grid and the stencil's reach.
    leaf_pixels: the largest block eliminated as one leaf front.

  Raises:
    numpy.linalg.LinAlgError if a front is not numerically positive
    definite.
  """
  n = height * width
  if a_mat.shape != (n, n):
    raise ValueError(f'a_mat is {a_mat.shape}, expected ({n}, {n}) for a '
                     f'{height}x{width} grid')
  index = np.arange(n).reshape(height, width)
  nodes = grid_ordering.dissection_tree(height, width, reach, leaf_pixels)
  # The rows of A in elimination order: a node's own rows are a slice.
  order = np.concatenate([node.pixels for node in nodes])
  rank = np.empty(n, np.int64)
  rank[order] = np.arange(n)
  rows_csr = scipy.sparse.csr_matrix(a_mat)[order]
  indptr, indices, data = rows_csr.indptr, rows_csr.indices, rows_csr.data
  pos = np.full(n, -1, np.int64)
  updates = {}
  fronts = []
  start = 0
  with _one_blas_thread():
    for k, node in enumerate(nodes):
      own = node.pixels
      ring = _ring(node.region, height, width, reach, index)
      # Fronts list their pixels in elimination order (own pixels first,
      # ancestors after), so a child's ring lands in its parent's front in
      # increasing order: lower triangles map to lower triangles, and only
      # lower triangles are ever read.
      ring = ring[np.argsort(rank[ring])]
      front = np.concatenate([own, ring])
      m, s = len(front), len(own)
      pos[front] = np.arange(m)
      lo, hi = indptr[start], indptr[start + s]
      row = np.repeat(np.arange(s), np.diff(indptr[start:start + s + 1]))
      col = pos[indices[lo:hi]]
      keep = col >= 0
      start += s
      dense = np.zeros((m, m))
      flat = dense.reshape(-1)
      flat[row[keep] * m + col[keep]] = data[lo:hi][keep]
      dense[s:, :s] = dense[:s, s:].T
      for child in node.children:
        child_ring, update = updates.pop(child)
        at = pos[child_ring]
        flat[(at[:, None] * m + at[None, :]).reshape(-1)] += update.reshape(-1)
      pos[front] = -1
      l_own, info = scipy.linalg.lapack.dpotrf(dense[:s, :s], lower=1,
                                               clean=1)
      if info != 0:
        raise np.linalg.LinAlgError(
            f'front {k} ({s} pixels) is not positive definite (dpotrf '
            f'info {info})')
      if len(ring):
        # L_ro = F_ro L_oo^-T, from the lower-left block F_ro.
        l_ring_t, _ = scipy.linalg.lapack.dtrtrs(
            l_own, np.ascontiguousarray(dense[s:, :s].T), lower=1)
        l_ring = np.ascontiguousarray(l_ring_t.T)
      else:
        l_ring = np.zeros((0, s))
      if k != len(nodes) - 1 and len(ring):
        # F_rr - L_ro L_ro^T, lower triangle (SYRK; the upper is not read).
        updates[k] = (ring, scipy.linalg.blas.dsyrk(
            -1.0, l_ring, beta=1.0, c=dense[s:, s:], lower=1))
      fronts.append(Front(own, ring, l_own, l_ring))
  return Factor(n, fronts)


def solve(factor: Factor, rhs: np.ndarray) -> np.ndarray:
  """A^-1 rhs for rhs [N] or [N, C] (float64)."""
  rhs = np.asarray(rhs, np.float64)
  if rhs.shape[0] != factor.n:
    raise ValueError(f'rhs has {rhs.shape[0]} rows, the factor {factor.n}')
  x = rhs.reshape(factor.n, -1).copy()
  trtrs = scipy.linalg.lapack.dtrtrs
  with _one_blas_thread():
    for f in factor.fronts:  # forward: L y = b
      y, _ = trtrs(f.l_own, x[f.own], lower=1)
      x[f.own] = y
      if len(f.ring):
        x[f.ring] -= f.l_ring @ y
    for f in reversed(factor.fronts):  # backward: L^T x = y
      b = x[f.own]
      if len(f.ring):
        b = b - f.l_ring.T @ x[f.ring]
      x[f.own], _ = trtrs(f.l_own, b, lower=1, trans=1)
  return x.reshape(rhs.shape)
