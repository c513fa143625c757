"""Compiled kernels of the matting Laplacian's stencil on the host (numba):
its window weights (`laplacian.host_stencil`) and its matrix-vector product
(`multifrontal.matvec`), one call per image, two halves of the rows in two
threads where two cores are free (`direct_kernels.threads`).

Used only where `direct_kernels.available()`; compiled (or loaded from
numba's disk cache) when imported, as `cfcls.matting.direct_kernels`.
"""
import numpy as np

from cfcls.matting import direct_kernels
from cfcls.matting.direct_kernels import in_two_threads

if direct_kernels.available():
  import numba  # pylint: disable=g-import-not-at-top
  from cfcls.matting.direct_kernels import sig  # pylint: disable=g-import-not-at-top

  _X = 'float64[:, ::1]'

  @numba.njit(sig('void', 'float64[:, :, ::1]', _X, _X, 'n', 'n'),
              cache=True, nogil=True)
  def _matvec(taps, x, out, y0, y1):
    """out[p] = sum_t taps[t, p] x[p + d_t] for the pixels of rows
    y0..y1-1 (x, out [H * W, C]; d_t as multifrontal.full_offsets)."""
    t, height, width = taps.shape
    reach = (int(round(t ** 0.5)) - 1) // 2
    side = 2 * reach + 1
    n_rhs = x.shape[1]
    for y in range(y0, y1):
      row = out[y * width:(y + 1) * width]
      row[:] = 0.0
      for k in range(t):
        dy, dx = k // side - reach, k % side - reach
        if y + dy < 0 or y + dy >= height:
          continue
        for xx in range(max(0, -dx), min(width, width - dx)):
          a = taps[k, y, xx]
          q = (y + dy) * width + xx + dx
          for c in range(n_rhs):
            row[xx, c] += a * x[q, c]


  @numba.njit(sig('void', 'float64[:, :, ::1]', 'bool_[:, ::1]',
                  'float64', 'n', 'int64[:, ::1]', 'float64[:, :, ::1]',
                  'n', 'n'), cache=True, nogil=True)
  def _stencil(image, keep, eps, radius, placements, out, u0, u1):
    """Adds the weights of the windows whose top rows are u0..u1-1 to
    `out` [T, H, W] (`cfcls.matting.laplacian.host_stencil`). The arithmetic of
    `window_weights.weights_float64` (the same formulas, in the same
    order), a window at a time."""
    h, w, _ = image.shape
    side = 2 * radius + 1
    n = side * side
    pairs = placements.shape[0]
    cen = np.empty((n, 3))
    m = np.empty((n, 3))
    inv = np.empty((3, 3))
    adj = np.empty((3, 3))
    cov = np.empty((3, 3))
    masked = keep.shape[0] > 0
    for u in range(u0, u1):
      for v in range(w - 2 * radius):
        if masked:
          inside = True
          for a in range(n):
            inside &= keep[u + a // side, v + a % side]
          if not inside:  # windows touching a padded pixel weigh 0
            continue
        for c in range(3):
          total = 0.0
          for a in range(n):
            total += image[u + a // side, v + a % side, c]
          mean = total / n
          for a in range(n):
            cen[a, c] = image[u + a // side, v + a % side, c] - mean
        # (Sigma + eps/n I)^-1 via the QR of the centred colours, as
        # window_weights._inverse_covariances.
        xx = xy = xz = yy = yz = zz = 0.0
        for a in range(n):
          xx += cen[a, 0] * cen[a, 0]
          xy += cen[a, 0] * cen[a, 1]
          xz += cen[a, 0] * cen[a, 2]
          yy += cen[a, 1] * cen[a, 1]
          yz += cen[a, 1] * cen[a, 2]
          zz += cen[a, 2] * cen[a, 2]
        ty = xy / xx if xx > 0 else 0.0
        tz = xz / xx if xx > 0 else 0.0
        yy1 = y1z1 = 0.0
        for a in range(n):
          y1 = cen[a, 1] - ty * cen[a, 0]
          yy1 += y1 * y1
          y1z1 += y1 * (cen[a, 2] - tz * cen[a, 0])
        t2 = y1z1 / yy1 if yy1 > 0 else 0.0
        zz2 = 0.0
        for a in range(n):
          y1 = cen[a, 1] - ty * cen[a, 0]
          z2 = (cen[a, 2] - tz * cen[a, 0]) - t2 * y1
          zz2 += z2 * z2
        r11, r22, r33 = np.sqrt(xx), np.sqrt(yy1), np.sqrt(zz2)
        r12 = xy / r11 if r11 > 0 else 0.0
        r13 = xz / r11 if r11 > 0 else 0.0
        r23 = y1z1 / r22 if r22 > 0 else 0.0
        u00, u01, u02 = r22 * r33, -r12 * r33, r12 * r23 - r13 * r22
        u11, u12 = r11 * r33, -r11 * r23
        u22 = r11 * r22
        scale = 1.0 / (n * n)
        adj[0, 0] = (u00 * u00 + u01 * u01 + u02 * u02) * scale
        adj[0, 1] = (u01 * u11 + u02 * u12) * scale
        adj[0, 2] = u02 * u22 * scale
        adj[1, 1] = (u11 * u11 + u12 * u12) * scale
        adj[1, 2] = u12 * u22 * scale
        adj[2, 2] = u22 * u22 * scale
        cov[0, 0], cov[0, 1], cov[0, 2] = xx / n, xy / n, xz / n
        cov[1, 1], cov[1, 2], cov[2, 2] = yy / n, yz / n, zz / n
        for c in range(3):
          for e in range(c):
            adj[c, e] = adj[e, c]
            cov[c, e] = cov[e, c]
        reg = eps / n
        trace = cov[0, 0] + cov[1, 1] + cov[2, 2]
        det_m = xx * yy1 * zz2 / n ** 3
        det = (det_m + reg * (adj[0, 0] + adj[1, 1] + adj[2, 2])
               + reg * reg * trace + reg ** 3)
        for c in range(3):
          for e in range(3):
            inv[c, e] = (adj[c, e] + reg * (
                (trace + reg) * (1.0 if c == e else 0.0) - cov[c, e])) / det
        for a in range(n):
          for c in range(3):
            m[a, c] = (inv[c, 0] * cen[a, 0] + inv[c, 1] * cen[a, 1]
                       + inv[c, 2] * cen[a, 2]) / n
        p = 0
        for a in range(n):
          for b in range(a, n):
            wab = ((1.0 if a == b else 0.0) - 1.0 / n
                   - (m[a, 0] * cen[b, 0] + m[a, 1] * cen[b, 1]
                      + m[a, 2] * cen[b, 2]))
            out[placements[p, 0], u + placements[p, 1],
                v + placements[p, 2]] += wab
            p += 1
        assert p == pairs


def matvec(taps, x, threads: int = 1):
  """A x (see `multifrontal.matvec`) for float64 taps [T, H, W] and x
  [H * W, C], rows split between `threads` threads."""
  height = taps.shape[1]
  out = np.empty(x.shape)
  if threads < 2 or height < 2:
    _matvec(taps, x, out, 0, height)
  else:
    in_two_threads(lambda: _matvec(taps, x, out, 0, height // 2),
              lambda: _matvec(taps, x, out, height // 2, height))
  return out


def stencil(image, keep, eps, radius, placements, threads: int = 1):
  """float64 [T, H, W] (`cfcls.matting.laplacian.host_stencil`) of image float64
  [H, W, 3] and keep bool [H, W] (or None); placements int64 [P, 3] as
  `laplacian._pair_placements`. With threads=2, two halves of the rows at
  once (the second into its own buffer, added after: windows of both
  halves share 2 radius pixel rows)."""
  h = image.shape[0]
  t = int(placements[:, 0].max()) + 1
  keep = np.zeros((0, 0), bool) if keep is None else keep
  out = np.zeros((t, h, image.shape[1]))
  rows = h - 2 * radius  # window top rows
  if threads < 2 or rows < 2:
    _stencil(image, keep, eps, radius, placements, out, 0, rows)
    return out
  mid = rows // 2
  second = np.zeros_like(out[:, mid:])
  in_two_threads(
      lambda: _stencil(image, keep, eps, radius, placements, out, 0, mid),
      lambda: _stencil(image[mid:], keep[mid:] if keep.size else keep, eps,
                       radius, placements, second, 0, rows - mid))
  out[:, mid:] += second
  return out
