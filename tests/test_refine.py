"""cfcls.matting.refine: the matting system at inference, seeded by a network.

Checked against a direct scipy solve of the same seeds (the sparse matting
Laplacian + lam D, spsolve per class), and on what the seeds are.
"""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from cfcls.matting import laplacian
from cfcls.matting import refine

K = 3


def _scene(h=24, w=30, seed=0):
  """Two colour regions and a disc; probabilities blurred and shifted."""
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[0:h, 0:w]
  mask = np.zeros((h, w), np.int64)
  mask[(ys - h / 2) ** 2 + (xs - w / 3) ** 2 < (h / 4) ** 2] = 1
  mask[:, int(0.7 * w):] = 2
  colours = np.array([[0.2, 0.3, 0.8], [0.9, 0.6, 0.1], [0.1, 0.7, 0.3]])
  image = colours[mask] + 0.02 * rng.standard_normal((h, w, 3))
  image = np.clip(image, 0, 1).astype(np.float32)
  onehot = np.eye(K, dtype=np.float32)[mask]
  probs = np.roll(onehot, 2, axis=1) * 0.96 + 0.04 / K
  return image, mask, probs


def _padded(image, probs):
  """The scene padded by 6 rows and 9 columns: image, probabilities
  (confident "background" in the padding), valid mask."""
  h, w = image.shape[:2]
  big = np.zeros((h + 6, w + 9, 3), np.float32)
  big[:h, :w] = image
  bprobs = np.full((h + 6, w + 9, K), 1.0 / K, np.float32)
  bprobs[h:, :, 0] = 1.0
  bprobs[:h, :w] = probs
  valid = np.zeros((h + 6, w + 9), np.float32)
  valid[:h, :w] = 1
  return big, bprobs, valid


def _scipy_mattes(image, seeds, lam=100.0, eps=1e-4):
  lmat = laplacian.sparse_laplacian(image.astype(np.float64), eps=eps)
  d = (seeds != 255).ravel().astype(np.float64)
  a = (lmat + lam * scipy.sparse.diags(d)).tocsc()
  out = []
  for c in range(1, K):
    b = lam * d * (seeds == c).ravel()
    out.append(scipy.sparse.linalg.spsolve(a, b).reshape(seeds.shape))
  fg = np.stack(out, -1)
  return np.concatenate([1 - fg.sum(-1, keepdims=True), fg], -1)


def test_refined_labels_and_mattes_match_a_scipy_solve_of_the_same_seeds():
  image, mask, probs = _scene()
  labels, mattes, info = refine.refine_image(image, probs)
  seeds = refine.seeds_from_probabilities(probs)
  want = _scipy_mattes(image, seeds)
  assert info['solved'] and 0 < info['seeded'] < 1
  np.testing.assert_allclose(mattes, np.clip(want, 0, 1), atol=1e-4)
  np.testing.assert_array_equal(labels, np.argmax(want, -1))
  # The shifted network is wrong on a band; the matting system is not.
  assert (np.argmax(probs, -1) == mask).mean() < 0.95
  assert (labels == mask).mean() > 0.99


def test_seeds_are_confident_and_away_from_the_networks_boundaries():
  _, _, probs = _scene()
  seeds = refine.seeds_from_probabilities(probs, threshold=0.8, erode=2)
  best = np.argmax(probs, -1)
  seeded = seeds != 255
  assert np.all(seeds[seeded] == best[seeded])
  # No seed within 2 px (chessboard) of a pixel the network labels otherwise.
  ys, xs = np.nonzero(seeded)
  for y, x in zip(ys, xs):
    window = best[max(0, y - 2):y + 3, max(0, x - 2):x + 3]
    assert np.all(window == best[y, x])
  unsure = probs.copy()
  unsure[:, :, :] = 1.0 / K
  assert np.all(refine.seeds_from_probabilities(unsure) == 255)


@pytest.mark.parametrize('refine_fn', [refine.refine_image,
                                       refine.soft_refine_image])
def test_padding_is_not_solved_and_never_seeds(refine_fn):
  image, mask, probs = _scene()
  h, w = mask.shape
  big, bprobs, valid = _padded(image, probs)
  labels, mattes, _ = refine_fn(big, bprobs, valid=valid)
  alone, alone_mattes, _ = refine_fn(image, probs)
  np.testing.assert_array_equal(labels[:h, :w], alone)
  np.testing.assert_allclose(mattes[:h, :w], alone_mattes, atol=1e-5)
  # Outside the valid box: the probabilities as they were.
  np.testing.assert_array_equal(mattes[h:], bprobs[h:])
  assert np.all(refine.seeds_from_probabilities(bprobs, valid=valid)[h:] == 255)


def test_one_seeded_class_keeps_the_network_labels():
  image, _, _ = _scene()
  probs = np.zeros(image.shape[:2] + (K,), np.float32)
  probs[..., 1] = 1.0
  labels, mattes, info = refine.refine_image(image, probs)
  assert not info['solved']
  assert np.all(labels == 1) and np.array_equal(mattes, probs)


def test_bad_input_names_the_argument():
  image, _, probs = _scene()
  with pytest.raises(ValueError, match='probs'):
    refine.refine_image(image, probs[:-1])


@pytest.mark.parametrize('field,value', [('refine', 'crf'),
                                         ('refine_threshold', 0.0),
                                         ('refine_erode', -1),
                                         ('refine_eps', 0.0),
                                         ('refine_lam', 0.0),
                                         ('refine_weight', 'entropy')])
def test_config_checks(field, value):
  from cfcls import config_schema  # pylint: disable=g-import-not-at-top
  from cfcls.training import config_utils  # pylint: disable=g-import-not-at-top
  config = config_schema.get_config()
  config.num_train_steps = 10
  config_utils.validate_config(config)
  config[field] = value
  with pytest.raises(config_utils.ConfigError, match=field):
    config_utils.validate_config(config)


def test_refreshed_scribbles_keep_the_strokes_and_add_confident_pixels():
  _, mask, probs = _scene()
  strokes = np.full(mask.shape, 255, np.uint8)
  strokes[5, 2:12] = 2  # a stroke where the network says otherwise
  strokes[20, 25:29] = 0
  joined = refine.refreshed_scribbles(strokes, probs)
  seeds = refine.seeds_from_probabilities(probs)
  stroked = strokes != 255
  np.testing.assert_array_equal(joined[stroked], strokes[stroked])
  np.testing.assert_array_equal(joined[~stroked], seeds[~stroked])
  assert (joined[~stroked] != 255).any()
  with pytest.raises(ValueError, match='scribbles'):
    refine.refreshed_scribbles(strokes[:-1], probs)


@pytest.mark.parametrize('lam,eps', [(1.0, 1e-4), (0.1, 1e-5)])
def test_weighted_solve_matches_scipy(lam, eps):
  """solver.solve_weighted: (L + lam W) x = lam W p, against spsolve."""
  from cfcls.matting import solver  # pylint: disable=g-import-not-at-top
  image, _, probs = _scene(seed=3)
  weights = np.random.default_rng(1).uniform(0.0, 1.0, probs.shape[:2])
  weights[:4] = 0.0  # rows of pixels with no data term
  x, info = solver.solve_weighted(image, probs, weights, lam=lam, eps=eps)
  lmat = laplacian.sparse_laplacian(image.astype(np.float64), eps=eps)
  a = (lmat + lam * scipy.sparse.diags(weights.ravel())).tocsc()
  b = lam * weights.reshape(-1, 1) * probs.reshape(-1, K)
  want = scipy.sparse.linalg.spsolve(a, b).reshape(probs.shape)
  np.testing.assert_allclose(x, want, atol=1e-8)
  assert np.all(info['relative_residual'] < 1e-10)
  # The solution keeps the classes' sum (L 1 = 0): 1 where p sums to 1.
  np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-6)


def test_weighted_solve_rejects_bad_weights():
  from cfcls.matting import solver  # pylint: disable=g-import-not-at-top
  image, _, probs = _scene()
  with pytest.raises(ValueError, match='weights'):
    solver.solve_weighted(image, probs, -np.ones(probs.shape[:2]))
  with pytest.raises(ValueError, match='weights'):
    solver.solve_weighted(image, probs, np.ones((3, 3)))


@pytest.mark.parametrize('weight', ['max', 'margin'])
def test_soft_refinement_matches_a_scipy_solve_and_follows_colour_edges(
    weight):
  """soft_refine_image: (L + lam W) x = lam W p, W = the confidence, solved
  by spsolve here; labels are its argmax. The probabilities are the true
  regions shifted by 2 px, and the solve puts the boundaries back on the
  colour edges."""
  image, mask, probs = _scene()
  lam, eps = 0.1, 1e-4
  labels, mattes, info = refine.soft_refine_image(image, probs, lam=lam,
                                                  eps=eps, weight=weight)
  assert info['solved']
  top = np.sort(probs, -1)
  w = top[..., -1] if weight == 'max' else top[..., -1] - top[..., -2]
  lmat = laplacian.sparse_laplacian(image.astype(np.float64), eps=eps)
  a = (lmat + lam * scipy.sparse.diags(w.ravel().astype(np.float64))).tocsc()
  want = scipy.sparse.linalg.spsolve(
      a, lam * w.reshape(-1, 1) * probs.reshape(-1, K)).reshape(probs.shape)
  np.testing.assert_allclose(mattes, np.clip(want, 0, 1), atol=1e-5)
  np.testing.assert_array_equal(labels, np.argmax(want, -1))
  network_errors = np.mean(np.argmax(probs, -1) != mask)
  assert network_errors > 0.05
  assert np.mean(labels != mask) < 0.2 * network_errors
