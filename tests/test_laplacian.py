"""Tests for cfcls.matting.laplacian against a float64 per-window SVD reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfcls.matting import direct_kernels
from cfcls.matting import laplacian
from cfcls import losses
from cfcls.matting import window_weights

EPS = 1e-7


def reference_laplacian(image, eps=EPS, radius=1, valid=None):
  """Dense L in float64, window by window, via the SVD of centred colours.

  C_k (C_k^T C_k + eps I)^-1 C_k^T = U diag(s^2 / (s^2 + eps)) U^T is stable
  for grey, flat and two-colour windows (SPEC section 1).
  """
  image = np.asarray(image, np.float64)
  h, w, _ = image.shape
  n = (2 * radius + 1) ** 2
  lap = np.zeros((h * w, h * w))
  for y in range(radius, h - radius):
    for x in range(radius, w - radius):
      ys, xs = np.mgrid[y - radius:y + radius + 1, x - radius:x + radius + 1]
      idx = (ys * w + xs).ravel()
      if valid is not None and not np.all(valid.ravel()[idx] > 0.5):
        continue
      cen = image[ys, xs].reshape(n, 3)
      cen = cen - cen.mean(axis=0)
      u, s, _ = np.linalg.svd(cen, full_matrices=False)
      proj = (u * (s ** 2 / (s ** 2 + eps))) @ u.T
      lap[np.ix_(idx, idx)] += np.eye(n) - (1.0 + n * proj) / n
  return lap


def random_image(rng, h, w):
  return rng.random((h, w, 3))


def natural_image(rng, h, w):
  """Smooth colour gradients + noise, quantised to 8 bits."""
  ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
  base = np.stack([0.2 + 0.6 * xs, 0.5 + 0.3 * np.sin(3 * ys),
                   0.3 + 0.4 * xs * ys], axis=-1)
  img = base + 0.02 * rng.standard_normal((h, w, 3))
  return np.round(np.clip(img, 0, 1) * 255) / 255


def flat_grey_image(rng, h, w):
  """Flat blocks, grey (R=G=B) regions, two-colour edges, 8-bit noise."""
  img = natural_image(rng, h, w)
  img[:h // 2, :w // 2] = 0.3  # flat grey block
  img[h // 2:, :, :] = img[h // 2:, :, :1]  # grey region with texture
  img[:h // 2, w // 2:] = [0.8, 0.1, 0.2]  # flat colour block
  img[:3, -4:] = [0.1, 0.2, 0.9]  # two-colour windows at the corner
  img[h // 2:, -3:] = 0.0  # flat black at the bottom-right border
  return img


def saturated_image(rng, h, w):
  """Over-exposed: most channels clipped at exactly 0 or 1, 8-bit."""
  img = 3.0 * natural_image(rng, h, w) - 1.0
  img += 0.5 * rng.standard_normal((h, w, 3)) * (rng.random((h, w, 1)) < 0.3)
  return np.round(np.clip(img, 0, 1) * 255) / 255


def blurred_image(rng, h, w):
  """A flat/grey image resized by a non-integer factor, then blurred.

  Bilinear interpolation and the [1, 2, 1] / 4 blur make colours that are
  not multiples of 1/255 and nearly rank-deficient windows (smooth ramps
  across the flat blocks' edges).
  """
  small = flat_grey_image(rng, (h * 2) // 3 + 1, (w * 2) // 3 + 1)
  img = np.asarray(jax.image.resize(jnp.asarray(small), (h, w, 3),
                                    'bilinear'), np.float64)
  for axis in (0, 1):
    pad = np.pad(img, [(1, 1) if a == axis else (0, 0) for a in range(3)],
                 mode='edge')
    img = (np.take(pad, range(0, img.shape[axis]), axis=axis)
           + 2 * np.take(pad, range(1, img.shape[axis] + 1), axis=axis)
           + np.take(pad, range(2, img.shape[axis] + 2), axis=axis)) / 4
  return np.clip(img, 0, 1)


IMAGE_KINDS = {
    'random': random_image,
    'natural8bit': natural_image,
    'flat_grey': flat_grey_image,
    'saturated': saturated_image,
    'blurred': blurred_image,
}
PRECISIONS = ('float64', 'float32')


def _float32(x):
  return np.asarray(x, np.float32)


def _errors(got, want):
  err = np.abs(got - want)
  return err.max(), np.linalg.norm(got - want) / np.linalg.norm(want)


@pytest.fixture(scope='module')
def batch():
  """12x15 images (one per kind), their references, test vectors, stats."""
  rng = np.random.default_rng(0)
  h, w = 12, 15
  images = _float32([make(rng, h, w) for make in IMAGE_KINDS.values()])
  refs = [reference_laplacian(img) for img in images]
  x = rng.standard_normal((len(images), h, w, 4)).astype(np.float32)
  stats = laplacian.window_stats(jnp.asarray(images))
  return images, refs, x, stats


@pytest.fixture(scope='module')
def stats32(batch):
  """The batch's WindowStats from the float32-only path."""
  return laplacian.window_stats(jnp.asarray(batch[0]), precision='float32')


def test_test_images_are_what_they_claim(batch):
  images = batch[0]
  kinds = list(IMAGE_KINDS)
  sat = images[kinds.index('saturated')]
  assert np.mean((sat == 0) | (sat == 1)) > 0.4
  blur = images[kinds.index('blurred')].astype(np.float64) * 255
  assert np.mean(np.abs(blur - np.round(blur)) > 1e-3) > 0.5
  grey = images[kinds.index('flat_grey')]
  assert np.mean((grey[..., 0] == grey[..., 1])
                 & (grey[..., 1] == grey[..., 2])) > 0.5


@pytest.mark.parametrize('precision', PRECISIONS)
@pytest.mark.parametrize('kind_index,kind', enumerate(IMAGE_KINDS))
def test_matvec_matches_float64_svd_reference(batch, stats32, kind_index,
                                              kind, precision):
  images, refs, x, stats = batch
  if precision == 'float32':
    stats = stats32
  got = np.asarray(laplacian.laplacian_matvec(stats, jnp.asarray(x)))
  assert got.dtype == np.float32
  h, w = images.shape[1:3]
  want = (refs[kind_index] @ x[kind_index].reshape(h * w, -1).astype(
      np.float64)).reshape(h, w, -1)
  max_err, rel = _errors(got[kind_index], want)
  assert max_err < 1e-3, (kind, max_err)
  assert rel < 1e-4, (kind, rel)
  # Borders and corners on their own (the windows there are fewer).
  border = np.ones((h, w), bool)
  border[2:-2, 2:-2] = False
  assert np.abs(got[kind_index] - want)[border].max() < 1e-3


def _dense(stats, index):
  """L of image `index` as a dense float64 matrix, from L @ (unit vectors)."""
  _, h, w = stats.shape
  one = laplacian.WindowStats(stats.stencil[index:index + 1])
  eye = jnp.eye(h * w, dtype=jnp.float32).reshape(1, h, w, h * w)
  return np.asarray(laplacian.laplacian_matvec(one, eye), np.float64).reshape(
      h * w, h * w)


@pytest.mark.parametrize('precision', PRECISIONS)
def test_entries_of_l_match_float64_svd_reference(batch, stats32, precision):
  _, refs, _, stats = batch
  if precision == 'float32':
    stats = stats32
  for kind_index, kind in enumerate(IMAGE_KINDS):
    got = _dense(stats, kind_index)
    max_err, rel = _errors(got, refs[kind_index])
    # Measured: float64 <= 2e-7, float32 <= 5e-6 (saturated) max abs.
    assert max_err < 1e-3, (kind, max_err)
    assert rel < 1e-4, (kind, rel)


def test_float32_path_agrees_with_float64_on_larger_images():
  """Many windows of every kind (40x40): float32 weights vs float64 ones."""
  rng = np.random.default_rng(7)
  images = _float32([make(rng, 40, 40) for make in IMAGE_KINDS.values()])
  f = jax.jit(lambda i, p: laplacian.window_stats(i, precision=p).stencil,
              static_argnums=1)
  s64 = np.asarray(f(jnp.asarray(images), 'float64'), np.float64)
  s32 = np.asarray(f(jnp.asarray(images), 'float32'), np.float64)
  for kind_index, kind in enumerate(IMAGE_KINDS):
    max_err, rel = _errors(s32[kind_index], s64[kind_index])
    assert max_err < 1e-4, (kind, max_err)
    assert rel < 1e-5, (kind, rel)


def test_float32_path_has_no_float64_under_jit(batch):
  images = jnp.asarray(batch[0])
  def stencil(precision):
    return lambda i: laplacian.window_stats(i, precision=precision).stencil
  jaxpr32 = str(jax.make_jaxpr(stencil('float32'))(images))
  hlo32 = jax.jit(stencil('float32')).lower(images).as_text()
  assert 'f64' not in jaxpr32 and 'f64' not in hlo32
  # The check can see float64: the default path has its island.
  assert 'f64' in str(jax.make_jaxpr(stencil('float64'))(images))
  assert not jax.config.jax_enable_x64


def test_resolve_precision():
  assert laplacian.resolve_precision('auto', 'tpu') == 'float32'
  assert laplacian.resolve_precision('auto', 'gpu') == 'float64'
  assert laplacian.resolve_precision('auto', 'cpu') == 'float64'
  assert laplacian.resolve_precision('auto') == 'float64'  # tests: CPU
  assert laplacian.resolve_precision('float32', 'cpu') == 'float32'
  assert laplacian.resolve_precision('float64', 'tpu') == 'float64'
  with pytest.raises(ValueError, match='precision'):
    laplacian.resolve_precision('bfloat16')
  with pytest.raises(ValueError, match='precision'):
    laplacian.window_stats(np.zeros((1, 5, 6, 3), np.float32),
                           precision='f32')


@pytest.mark.parametrize('norm', ['residual', 'energy'])
def test_cfm_loss_gradient_with_float32_stats_matches_finite_differences(
    batch, stats32, norm):
  """d loss / d alpha through laplacian_matvec with float32 statistics."""
  images, _, _, _ = batch
  b, h, w, _ = images.shape
  rng = np.random.default_rng(8)
  num_classes = 4
  alpha = rng.uniform(0, 1, (b, h, w, num_classes - 1)).astype(np.float32)
  scribbles = np.full((b, h, w), 255, np.int32)
  scribbles[:, 2:4, 3:10] = rng.integers(0, num_classes, (b, 2, 7))

  def loss(stats, a):
    return losses.cfm_loss(stats, a, scribbles, num_classes, lam=10.0,
                           norm=norm)[0]

  grad = np.asarray(jax.jit(jax.grad(lambda a: loss(stats32, a)))(
      jnp.asarray(alpha)), np.float64)
  # Central differences of the same loss in float64 (the stencil cast up):
  # the loss is quadratic in alpha, so they are exact up to rounding.
  with jax.enable_x64(True):
    stats64 = laplacian.WindowStats(stats32.stencil.astype(jnp.float64))
    f64 = jax.jit(lambda a: loss(stats64, a))
    a64 = jnp.asarray(alpha, jnp.float64)
    step = 1e-3
    for _ in range(4):
      v = rng.standard_normal(alpha.shape)
      fd = (float(f64(a64 + step * v)) - float(f64(a64 - step * v))) / (
          2 * step)
      np.testing.assert_allclose(np.sum(grad * v), fd, rtol=1e-4)
    for index in [(0, 0, 0, 0), (3, 6, 7, 1), (4, 11, 14, 2), (2, 3, 5, 0)]:
      e = np.zeros(alpha.shape)
      e[index] = 1.0
      fd = (float(f64(a64 + step * e)) - float(f64(a64 - step * e))) / (
          2 * step)
      np.testing.assert_allclose(grad[index], fd, rtol=1e-3,
                                 atol=1e-6 * np.abs(grad).max())
  # No gradient reaches the images, and none is NaN.
  g_img = jax.grad(lambda i: loss(
      laplacian.window_stats(i, precision='float32'), jnp.asarray(alpha)))(
          jnp.asarray(images))
  assert np.all(np.asarray(g_img) == 0)


def test_sparse_laplacian_matches_reference(batch):
  images, refs, _, _ = batch
  for image, ref in zip(images, refs):
    sparse = laplacian.sparse_laplacian(image)
    assert sparse.shape == ref.shape and sparse.dtype == np.float64
    np.testing.assert_allclose(sparse.toarray(), ref, rtol=0, atol=1e-7)


def test_reference_is_stable_where_naive_formula_is_not(batch):
  """Sanity check of the judge: the grey image has rank-1 windows, where the
  direct inverse of (Sigma + eps/9 I) in float32 is off by a lot."""
  images, refs, _, _ = batch
  image = images[2].astype(np.float64)
  ref = refs[2]
  # Naive float32 product with the uncentred (box-filter) moments.
  h, w, _ = image.shape
  img32 = image.astype(np.float32)
  naive = np.zeros_like(ref)
  for y in range(1, h - 1):
    for x in range(1, w - 1):
      ys, xs = np.mgrid[y - 1:y + 2, x - 1:x + 2]
      idx = (ys * w + xs).ravel()
      pix = img32[ys, xs].reshape(9, 3)
      mu = pix.mean(axis=0)
      cov = (pix.T @ pix) / 9 - np.outer(mu, mu)
      inv = np.linalg.inv(cov + np.float32(EPS / 9) * np.eye(
          3, dtype=np.float32))
      cen = pix - mu
      naive[np.ix_(idx, idx)] += np.eye(9) - (1 + cen @ inv @ cen.T) / 9
  assert np.abs(naive - ref).max() > 1e-2
  assert np.abs(ref.sum(axis=1)).max() < 1e-9


@pytest.mark.parametrize('precision', PRECISIONS)
def test_radius_two_matches_reference(precision):
  rng = np.random.default_rng(1)
  image = _float32(flat_grey_image(rng, 9, 11))
  ref = reference_laplacian(image, radius=2)
  stats = laplacian.window_stats(jnp.asarray(image[None]), radius=2,
                                 precision=precision)
  assert stats.radius == 2
  x = rng.standard_normal((1, 9, 11, 2)).astype(np.float32)
  got = np.asarray(laplacian.laplacian_matvec(stats, jnp.asarray(x)))[0]
  want = (ref @ x[0].reshape(99, 2)).reshape(9, 11, 2)
  max_err, rel = _errors(got, want)
  assert max_err < 1e-3 and rel < 1e-4


@pytest.mark.parametrize('precision', PRECISIONS)
def test_valid_mask_leaves_out_windows_touching_padding(batch, precision):
  images, refs, x, _ = batch
  images = images.copy()
  b, h, w, _ = images.shape
  valid = np.ones((b, h, w), np.float32)
  valid[0, :, -4:] = 0  # right padding
  valid[0, -3:, :] = 0  # bottom padding
  valid[1, 4:7, 5:9] = 0  # a hole
  images[valid == 0] = 0.0
  stats = laplacian.window_stats(jnp.asarray(images),
                                 valid=jnp.asarray(valid),
                                 precision=precision)
  got = np.asarray(laplacian.laplacian_matvec(stats, jnp.asarray(x)))
  for i in range(b):
    ref = reference_laplacian(images[i], valid=valid[i])
    if i < 2:
      assert np.abs(ref - reference_laplacian(images[i])).max() > 0.1
    else:  # all valid: the same L as without a mask
      np.testing.assert_allclose(ref, refs[i], atol=1e-12)
    want = (ref @ x[i].reshape(h * w, -1)).reshape(h, w, -1)
    max_err, rel = _errors(got[i], want)
    assert max_err < 1e-3 and rel < 1e-4
    # Padding pixels take no part in L at all.
    assert np.all(got[i][valid[i] == 0] == 0)
  sparse = laplacian.sparse_laplacian(images[0], valid=valid[0]).toarray()
  np.testing.assert_allclose(
      sparse, reference_laplacian(images[0], valid=valid[0]), rtol=0,
      atol=1e-7)


def test_symmetry_null_space_and_semidefinite(batch):
  images, _, x, stats = batch
  rng = np.random.default_rng(3)
  y = rng.standard_normal(x.shape).astype(np.float32)
  lx = np.asarray(laplacian.laplacian_matvec(stats, jnp.asarray(x)), np.float64)
  ly = np.asarray(laplacian.laplacian_matvec(stats, jnp.asarray(y)), np.float64)
  # Symmetry: <y, L x> = <L y, x> per image and channel.
  ylx = np.einsum('bhwc,bhwc->bc', y, lx)
  lyx = np.einsum('bhwc,bhwc->bc', ly, x)
  np.testing.assert_allclose(ylx, lyx, rtol=1e-5, atol=1e-4)
  # L 1 = 0.
  ones = jnp.ones(images.shape[:3] + (1,), jnp.float32)
  l1 = np.asarray(laplacian.laplacian_matvec(stats, ones))
  assert np.abs(l1).max() < 1e-5
  # x^T L x >= 0, also for smooth x where it is small.
  xlx = np.einsum('bhwc,bhwc->bc', x, lx)
  assert np.all(xlx > 0)
  ys, xs = np.mgrid[0:images.shape[1], 0:images.shape[2]]
  smooth = np.broadcast_to((0.1 * ys + 0.05 * xs)[None, :, :, None],
                           images.shape[:3] + (1,)).astype(np.float32)
  ls = np.asarray(laplacian.laplacian_matvec(stats, jnp.asarray(smooth)))
  assert np.all(np.einsum('bhwc,bhwc->b', smooth, ls) > -1e-5)


def test_diagonal_matches_sparse(batch):
  images, _, _, stats = batch
  diag = np.asarray(stats.diagonal)
  for image, d in zip(images, diag):
    want = laplacian.sparse_laplacian(image).diagonal().reshape(d.shape)
    np.testing.assert_allclose(d, want, atol=1e-5)


def test_grad_and_jvp_use_the_symmetric_product(batch):
  _, _, x, stats = batch
  y = jnp.asarray(np.random.default_rng(4).standard_normal(x.shape),
                  jnp.float32)
  f = lambda v: jnp.sum(laplacian.laplacian_matvec(stats, v) * y)
  grad = jax.jit(jax.grad(f))(jnp.asarray(x))
  ly = laplacian.laplacian_matvec(stats, y)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(ly), atol=1e-5)
  _, tangent = jax.jvp(lambda v: laplacian.laplacian_matvec(stats, v),
                       (jnp.asarray(x),), (y,))
  np.testing.assert_allclose(np.asarray(tangent), np.asarray(ly), atol=1e-5)
  both = jax.vmap(lambda v: laplacian.laplacian_matvec(stats, v))(
      jnp.stack([jnp.asarray(x), y]))
  np.testing.assert_allclose(np.asarray(both[1]), np.asarray(ly), atol=1e-5)


def test_under_jit_equal_values_and_value_checks_skipped(batch):
  images, _, _, stats = batch
  bad = images.copy()
  bad[0, 2, 2, 1] = np.nan
  with pytest.raises(ValueError, match='non-finite'):
    laplacian.window_stats(bad)
  # Under jit the values are unknown: no error, no host sync; the NaN stays in
  # its own image.
  jitted = jax.jit(laplacian.window_stats)(jnp.asarray(bad))
  assert np.isnan(np.asarray(jitted.stencil[0])).any()
  np.testing.assert_array_equal(np.asarray(jitted.stencil[1:]),
                                np.asarray(stats.stencil[1:]))


@pytest.mark.parametrize('shape,kwargs,match', [
    ((5, 6, 3), {}, 'rank 4'),
    ((1, 5, 6, 4), {}, 'axis 3'),
    ((1, 2, 6, 3), {}, 'smaller than one window'),
    ((1, 5, 6, 3), {'radius': 0}, 'radius'),
    ((1, 5, 6, 3), {'eps': 0.0}, 'eps'),
    ((1, 5, 6, 3), {'valid': np.ones((1, 5, 5))}, 'valid'),
])
def test_bad_inputs(shape, kwargs, match):
  with pytest.raises(ValueError, match=match):
    laplacian.window_stats(np.zeros(shape, np.float32), **kwargs)


def test_bad_matvec_and_sparse_inputs(batch):
  _, _, _, stats = batch
  with pytest.raises(ValueError, match='x must have'):
    laplacian.laplacian_matvec(stats, jnp.zeros((3, 12, 14, 2)))
  with pytest.raises(ValueError, match='image must have rank 3'):
    laplacian.sparse_laplacian(np.zeros((1, 5, 6, 3)))
  bad = np.full((5, 6, 3), 0.5)
  bad[1, 1, 0] = np.inf
  with pytest.raises(ValueError, match='non-finite'):
    laplacian.sparse_laplacian(bad)
  with pytest.raises(ValueError, match=r'must be in \[0, 1\]'):
    laplacian.window_stats(np.full((1, 5, 6, 3), 255.0, np.float32))


@pytest.mark.parametrize('precision', PRECISIONS)
def test_tall_image_spans_several_cpu_strips(precision):
  # On the CPU the window statistics are computed in strips of
  # laplacian._STRIP_ROWS window rows; 37 rows make three strips.
  assert 37 - 2 > 2 * laplacian._STRIP_ROWS
  rng = np.random.default_rng(6)
  image = _float32(flat_grey_image(rng, 37, 9))
  valid = np.ones((37, 9), np.float32)
  valid[-5:] = 0  # bottom padding, as from a random crop
  valid[15:18, 3] = 0  # a hole across a strip boundary
  stats = laplacian.window_stats(jnp.asarray(image[None]),
                                 valid=jnp.asarray(valid[None]),
                                 precision=precision)
  x = rng.standard_normal((1, 37, 9, 2)).astype(np.float32)
  got = np.asarray(laplacian.laplacian_matvec(stats, jnp.asarray(x)))[0]
  ref = reference_laplacian(image, valid=valid)
  want = (ref @ x[0].reshape(-1, 2)).reshape(37, 9, 2)
  max_err, rel = _errors(got, want)
  assert max_err < 1e-3 and rel < 1e-4
  # Other backends compute all rows at once: the same stencil.
  weights = {'float64': window_weights.weights_float64,
             'float32': window_weights.weights_float32}[precision]
  whole = jax.jit(lambda i, v: laplacian._assemble(
      weights(i, EPS, 1, v, jnp.float32), 1))(
          jnp.asarray(image[None]), jnp.asarray(valid[None] > 0.5))
  np.testing.assert_allclose(np.asarray(stats.stencil)[:, :, 2:-2],
                             np.asarray(whole), atol=1e-6)


@pytest.mark.parametrize('kernel', ['numpy', 'compiled, 1 thread',
                                    'compiled, 2 threads'])
def test_host_stencil_matches_window_stats_in_strips(monkeypatch, kernel):
  # The host stencil (the direct solver's: the NumPy one in strips of
  # window rows, or the compiled one, a window at a time, on one or two
  # threads) is the jax float64 stencil, with and without padding.
  if kernel == 'numpy':
    monkeypatch.setattr(direct_kernels, 'available', lambda: False)
  elif not direct_kernels.available():
    pytest.skip('needs numba')
  else:
    monkeypatch.setattr(direct_kernels, 'THREADS', int(kernel.split()[1]))
  rng = np.random.default_rng(5)
  image = natural_image(rng, 23, 17)
  valid = np.ones((23, 17), np.float32)
  valid[19:], valid[:, 14:] = 0, 0
  monkeypatch.setattr(laplacian, '_HOST_STRIP_ROWS', 4)  # 5 strips
  for v in (None, valid):
    with jax.enable_x64(True):  # float64 images, not window_stats' float32
      want = np.asarray(laplacian._stencil_jit(
          jnp.asarray(image[None], jnp.float64), eps=EPS, radius=1,
          valid=None if v is None else jnp.asarray(v[None]),
          dtype=jnp.dtype(jnp.float64), precision='float64'))
    want = want[0, :, 2:25, 2:19]  # the 2r frame
    got = laplacian.host_stencil(image, valid=v)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.skipif(not direct_kernels.available(), reason='needs numba')
@pytest.mark.parametrize('radius', [1, 2])
def test_compiled_host_stencil_is_the_numpy_one(monkeypatch, radius):
  # Grey, flat and saturated windows (where Delta^-1 reaches ~1e8) too.
  rng = np.random.default_rng(6)
  image = natural_image(rng, 31, 26)
  image[:8, :9] = 0.5  # flat grey
  image[10:20, :, :] = image[10:20, :, :1]  # grey texture
  image[22:, 15:] = (1.0, 0.0, 0.0)  # saturated
  valid = np.ones(image.shape[:2])
  valid[:, 23:] = 0
  monkeypatch.setattr(direct_kernels, 'THREADS', 2)
  for v in (None, valid):
    got = laplacian.host_stencil(image, 1e-7, radius, v)
    with monkeypatch.context() as patch:
      patch.setattr(direct_kernels, 'available', lambda: False)
      want = laplacian.host_stencil(image, 1e-7, radius, v)
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=1e-13 * np.abs(want).max())
