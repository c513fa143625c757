"""Tests for cfcls.matting.multigrid: Galerkin operators, symmetry, size-independence."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfcls.matting import laplacian
from cfcls.matting import constraints
from cfcls.matting import multigrid

import matting_scenes

LAM = 100.0


def _system(n, num_classes=7, seed=0):
  image, scribbles = matting_scenes.photo_like_scene(n, n, num_classes,
                                                     seed=seed)
  labelled, targets = constraints.scribble_constraints(
      jnp.asarray(scribbles[None]), num_classes)
  stats = laplacian.window_stats(jnp.asarray(image[None]))
  return image, stats, labelled, targets


def _dense_a(image, labelled):
  a = laplacian.sparse_laplacian(image).toarray()
  return a + np.diag(LAM * np.asarray(labelled).ravel())


def test_galerkin_block_stencil_is_q_t_a_q():
  # 14 x 17 pixels: partial 3 x 3 tiles at the far edges.
  image, scribbles = matting_scenes.photo_like_scene(14, 17, 4)
  labelled, _ = constraints.scribble_constraints(jnp.asarray(scribbles[None]), 4)
  stats = laplacian.window_stats(jnp.asarray(image[None]))
  diag_term = (LAM * labelled[..., 0])[:, None, None]
  active = (stats.diagonal > 0).astype(jnp.float32)
  basis = multigrid._colour_basis(jnp.asarray(image[None]), active)
  matvec = functools.partial(multigrid._pixel_matvec, stats.stencil,
                             diag_term)
  op = np.asarray(multigrid._galerkin(matvec, basis, 14, 17))
  assert op.shape == (1, 9, 4, 4, 5, 6)
  # Q as a dense [pixels, coarse unknowns] matrix from the prolongation.
  ncoarse = 4 * 5 * 6
  eye = jnp.eye(ncoarse).reshape(5, 6, 4, ncoarse).transpose(2, 3, 0, 1)
  q = np.asarray(multigrid.prolong(basis, eye[None], 14, 17))[0, 0]
  q = q.transpose(1, 2, 0).reshape(14 * 17, ncoarse)  # pixels row-major
  want = q.T @ _dense_a(image, labelled) @ q  # coarse index (y, x, k)
  got = np.zeros((5, 6, 4, 5, 6, 4))
  for o, (dy, dx) in enumerate(multigrid._OFFSETS):
    for y in range(5):
      for x in range(6):
        if 0 <= y + dy < 5 and 0 <= x + dx < 6:
          got[y, x, :, y + dy, x + dx, :] = op[0, o, :, :, y, x]
  got = got.reshape(ncoarse, ncoarse)
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=1e-5 * np.abs(want).max())
  # Orthonormal colour basis (to float32 eigh accuracy on nearly flat
  # tiles): Q^T Q = I on the kept columns, 0 on the dropped ones.
  qtq = q.T @ q
  np.testing.assert_allclose(qtq, np.diag(np.diag(qtq)), atol=1e-3)
  assert set(np.round(np.diag(qtq), 2)) <= {0.0, 1.0}


def test_preconditioner_is_symmetric_positive():
  image, stats, labelled, _ = _system(40)
  setup = jax.jit(functools.partial(multigrid.setup, max_coarse=300))
  hier = setup(stats.stencil, labelled, LAM, jnp.asarray(image[None]))
  assert len(hier.levels) == 3  # pixels, 14 x 14 x 4, 5 x 5 x 12 (dense)
  rng = np.random.default_rng(0)
  u, v = (jnp.asarray(rng.standard_normal((1, 40, 40, 2)), jnp.float32)
          for _ in range(2))
  mu, mv = multigrid.apply(hier, u), multigrid.apply(hier, v)
  uv, vu = float(jnp.sum(u * mv)), float(jnp.sum(v * mu))
  # Symmetric up to float32 rounding around the float64 coarsest solve
  # (measured 2.9e-4 relative on this scene).
  assert abs(uv - vu) <= 1e-3 * np.sqrt(float(jnp.sum(u * mu))
                                        * float(jnp.sum(v * mv)))
  assert float(jnp.sum(u * mu)) > 0 and float(jnp.sum(v * mv)) > 0


def _pcg_iterations(n, tol=1e-6, max_iters=300):
  """Iterations of multigrid PCG (float32) until ||r|| <= tol ||b||, all
  classes of the photo-like scene at n x n."""
  image, stats, labelled, targets = _system(n)
  hier = jax.jit(multigrid.setup)(stats.stencil, labelled, LAM,
                                  jnp.asarray(image[None]))

  @jax.jit
  def solve(hier, b):
    def matvec(x):
      return laplacian.laplacian_matvec(stats, x) + LAM * labelled * x

    dot = lambda a, c: jnp.sum(a * c)
    z = multigrid.apply(hier, b)
    state = (jnp.zeros_like(b), b, z, z, dot(b, z), 0)
    stop = tol * tol * dot(b, b)

    def cond(s):
      return (dot(s[1], s[1]) > stop) & (s[5] < max_iters)

    def body(s):
      x, r, p, _, rz, k = s
      ap = matvec(p)
      step = rz / dot(p, ap)
      x, r = x + step * p, r - step * ap
      z = multigrid.apply(hier, r)
      rz_new = dot(r, z)
      return x, r, z + (rz_new / rz) * p, z, rz_new, k + 1

    return jax.lax.while_loop(cond, body, state)[5]

  return int(solve(hier, LAM * labelled * targets))


SIZES = (64, 128, 256, 512)


@pytest.mark.skipif(not os.environ.get('CFCLS_SLOW'),
                    reason='minutes on a 2-core CPU: set CFCLS_SLOW=1')
def test_iterations_grow_slowly_with_image_size():
  # The photo-like scene at several sizes (same layout, 1-px wire and pole,
  # 8-bit noise): at most ~1.5x more iterations per doubling of the side.
  iters = [_pcg_iterations(n) for n in SIZES]
  print('multigrid PCG iterations', dict(zip(SIZES, iters)))
  assert iters[0] < 40
  for small, big in zip(iters[:-1], iters[1:]):
    assert big <= 1.6 * small + 2, iters
