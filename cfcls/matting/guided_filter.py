"""The guided filter (He, Sun and Tang, ECCV 2010 / TPAMI 2013), in JAX.

Edge-aware smoothing of per-pixel maps (mattes, class probabilities) with
the image as the guide. In every (2r+1) x (2r+1) window w_k the output is an
affine function of the guide colours, q_i = a_k . I_i + b_k, fitted to the
input p by ridge least squares,

    min_{a_k, b_k}  mean_{i in w_k} (a_k . I_i + b_k - p_i)^2 + eps |a_k|^2,

so a_k = (Sigma_k + eps U)^-1 cov_k(I, p), b_k = mean_k(p) - a_k . mean_k(I),
and each pixel averages the a_k, b_k of the windows that contain it. That is
the local colour-affine model of the closed-form matting Laplacian (Levin et
al.), so a map that is blurred across a colour edge comes out with the
edge where the image has it. Windows are clipped at the image border (means
over the pixels inside). Box sums are cumulative sums: the cost does not
grow with the radius. Differentiable; float32 is safe for guides in [0, 1]
and eps >= 1e-6.

Used by `cfcls.training.train_step.forward` (evaluation and prediction) when
`config.guided_filter_radius > 0`.
"""

import jax
import jax.numpy as jnp


def _box_sum_axis(x, radius: int, axis: int):
  """Sums over [i - radius, i + radius] along `axis`, clipped at the ends."""
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (radius + 1, radius)
  sums = jnp.cumsum(jnp.pad(x, pad), axis=axis)
  upper = jax.lax.slice_in_dim(sums, 2 * radius + 1, 2 * radius + 1 + n,
                               axis=axis)
  lower = jax.lax.slice_in_dim(sums, 0, n, axis=axis)
  return upper - lower


def box_mean(x, radius: int):
  """Mean of `[B, H, W, ...]` over clipped (2r+1)^2 windows, per pixel."""
  h, w = x.shape[1], x.shape[2]
  ones = jnp.ones((1, h, w), x.dtype)
  count = _box_sum_axis(_box_sum_axis(ones, radius, 1), radius, 2)
  count = count.reshape((1, h, w) + (1,) * (x.ndim - 3))
  return _box_sum_axis(_box_sum_axis(x, radius, 1), radius, 2) / count


def guided_filter(guide, src, radius: int, eps: float):
  """Guided filter of `src` with a colour `guide`.

  Args:
    guide: float `[B, H, W, 3]`, colours in [0, 1].
    src: float `[B, H, W, C]`, the maps to filter (each channel on its own).
    radius: window radius r >= 1 (windows of (2r+1) x (2r+1) pixels).
    eps: ridge weight (> 0); larger keeps less of the guide's fine structure.

  Returns:
    float32 `[B, H, W, C]`.
  """
  if radius < 1:
    raise ValueError(f'guided filter radius={radius!r} must be >= 1')
  if not eps > 0:
    raise ValueError(f'guided filter eps={eps!r} must be > 0')
  if guide.ndim != 4 or guide.shape[-1] != 3:
    raise ValueError(f'guide has shape {guide.shape}: expected [B, H, W, 3]')
  if src.ndim != 4 or src.shape[:3] != guide.shape[:3]:
    raise ValueError(f'src has shape {src.shape}: expected [B, H, W, C] with '
                     f'[B, H, W] = {list(guide.shape[:3])}')
  guide = guide.astype(jnp.float32)
  src = src.astype(jnp.float32)
  mean = lambda x: box_mean(x, radius)
  mean_i = mean(guide)  # [B, H, W, 3]
  cov_ii = (mean(guide[..., :, None] * guide[..., None, :])
            - mean_i[..., :, None] * mean_i[..., None, :])  # [B, H, W, 3, 3]
  mean_p = mean(src)  # [B, H, W, C]
  cov_ip = (mean(guide[..., :, None] * src[..., None, :])
            - mean_i[..., :, None] * mean_p[..., None, :])  # [B, H, W, 3, C]
  ridge = eps * jnp.eye(3, dtype=guide.dtype).reshape(1, 1, 1, 3, 3)
  a = jnp.linalg.solve(cov_ii + ridge, cov_ip)
  b = mean_p - jnp.einsum('bhwjc,bhwj->bhwc', a, mean_i)
  return jnp.einsum('bhwjc,bhwj->bhwc', mean(a), guide) + mean(b)
