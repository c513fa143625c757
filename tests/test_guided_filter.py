"""cfcls.matting.guided_filter against a per-window float64 least-squares reference."""

import jax.numpy as jnp
import numpy as np
import pytest

from cfcls.matting import guided_filter as gf


def reference(guide, src, radius, eps):
  """He et al.'s definition, window by window: ridge least squares for
  (a_k, b_k) on the pixels of each clipped window, then per pixel the mean
  of a_k . I_i + b_k over the windows that contain it (float64 numpy)."""
  h, w, _ = guide.shape
  c = src.shape[-1]
  total = np.zeros((h, w, c))
  count = np.zeros((h, w, 1))
  for y in range(h):
    for x in range(w):
      ys = slice(max(y - radius, 0), y + radius + 1)
      xs = slice(max(x - radius, 0), x + radius + 1)
      colours = guide[ys, xs].reshape(-1, 3)
      n = colours.shape[0]
      # min (1/n) ||[I 1] [a; b] - p||^2 + eps |a|^2: an augmented system.
      design = np.concatenate([
          np.concatenate([colours, np.ones((n, 1))], 1) / np.sqrt(n),
          np.concatenate([np.sqrt(eps) * np.eye(3), np.zeros((3, 1))], 1)])
      rhs = np.concatenate([src[ys, xs].reshape(-1, c) / np.sqrt(n),
                            np.zeros((3, c))])
      coef = np.linalg.lstsq(design, rhs, rcond=None)[0]  # [4, C]
      block = np.concatenate([guide[ys, xs], np.ones(guide[ys, xs].shape[:2]
                                                      + (1,))], -1)
      total[ys, xs] += block @ coef
      count[ys, xs] += 1
  return total / count


@pytest.mark.parametrize('radius,eps', [(1, 1e-3), (2, 1e-2), (3, 1e-4)])
def test_matches_per_window_reference(radius, eps):
  rng = np.random.default_rng(radius)
  guide = rng.uniform(size=(2, 11, 14, 3))
  guide[1, :, :7] = [0.2, 0.5, 0.9]  # a flat region and an edge
  guide[1, :, 7:] = [0.8, 0.3, 0.1]
  src = rng.normal(size=(2, 11, 14, 4))
  out = np.asarray(gf.guided_filter(jnp.asarray(guide, jnp.float32),
                                    jnp.asarray(src, jnp.float32),
                                    radius, eps))
  for b in range(2):
    np.testing.assert_allclose(out[b], reference(guide[b], src[b], radius,
                                                 eps), atol=2e-4)


def test_box_mean_clips_windows_at_the_border():
  x = np.arange(20, dtype=np.float32).reshape(1, 4, 5, 1)
  out = np.asarray(gf.box_mean(jnp.asarray(x), 1))
  # Corner (0, 0): the mean of rows 0-1 and columns 0-1.
  assert out[0, 0, 0, 0] == pytest.approx(np.mean(x[0, :2, :2]))
  assert out[0, 2, 2, 0] == pytest.approx(np.mean(x[0, 1:4, 1:4]))


def test_blurred_edge_is_moved_onto_the_colour_edge():
  # A two-colour image and its mask blurred across the edge (steps of 1/7):
  # the filtered map jumps by half its range exactly where the colours
  # change and varies slowly elsewhere (in flat windows it can only average).
  guide = np.zeros((1, 16, 16, 3), np.float32)
  guide[0, :, 8:] = [0.9, 0.6, 0.2]
  guide[0, :, :8] = [0.1, 0.3, 0.7]
  mask = (np.arange(16) >= 8).astype(np.float32)
  blurred = np.convolve(np.pad(mask, 3, mode='edge'), np.ones(7) / 7,
                        mode='valid')
  src = np.broadcast_to(blurred[None, None, :, None], (1, 16, 16, 1))
  out = np.asarray(gf.guided_filter(jnp.asarray(guide), jnp.asarray(src), 3,
                                    1e-4))[0, 8, :, 0]
  steps = np.diff(out)
  assert np.max(np.diff(blurred)) < 0.15
  assert steps[7] > 0.45
  assert np.max(np.abs(np.delete(steps, 7))) < 0.06
  np.testing.assert_allclose(out + out[::-1], 1.0, atol=1e-4)  # symmetric


@pytest.mark.parametrize('kwargs,match', [
    (dict(radius=0, eps=1e-3), 'radius'),
    (dict(radius=2, eps=0.0), 'eps'),
])
def test_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    gf.guided_filter(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 4, 4, 1)),
                     **kwargs)


def test_src_of_another_size_raises():
  with pytest.raises(ValueError, match=r'\[B, H, W\] = \[1, 4, 4\]'):
    gf.guided_filter(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 4, 5, 1)), 1,
                     1e-3)
