"""Compiled kernels of the direct matting solver (numba): the plan, the
multifrontal factorisation and its solves, each one call per image (the
stencil's window weights and matvec: `cfcls.matting.stencil_kernels`).

`cfcls.matting.multifrontal` eliminates a few thousand small fronts per image
(2047 at 321x321). Driven from Python, each front costs tens of
microseconds of interpreter and wrapper work around BLAS calls of about
the same length, so half of a factorisation and most of a solve was that
overhead. Here the whole loop over the fronts is one compiled function:
assembly, extend-add, and LAPACK `dpotrf` / BLAS `dtrsm`, `dsyrk`, `dgemm`
called through the function pointers that scipy exports
(`scipy.linalg.cython_lapack`, `cython_blas`), the same OpenBLAS that
scipy's Python wrappers call, so `threadpoolctl` limits it alike.

The factorisation and solves work on the flat plan
(`multifrontal.FlatPlan`), which `plan` makes: per front, its offsets into
concatenated index arrays, into one factor buffer and into a stack of
update matrices (in post-order a node's children's updates are the top of
the stack; the parent builds its own above them, then moves it down over
them). Where two cores are free (`threads`), the root's two subtrees run
in two threads (the kernels release the GIL). Factor buffers are reused
between images (`buffer`).

numba is optional: `available()` says whether these kernels can be used;
without it (for these and `cfcls.matting.stencil_kernels`) `cfcls.matting.multifrontal`
and `cfcls.matting.laplacian` run the same loops in NumPy. The kernels have
explicit signatures, so they are compiled (or loaded from numba's disk
cache, `cache=True`) when this module is imported: about 20 s the first
time on a machine (2 cores), 0.5 s after. Where numba can cache nowhere
(a read-only install, no writable NUMBA_CACHE_DIR or home) they are not
compiled at all: a warning, and the NumPy loops.
"""
import mmap
import os
import threading
import warnings
import weakref

import numpy as np

try:
  import llvmlite.binding
  import numba
  from numba import types
  from numba.core import cgutils
  from numba.extending import get_cython_function_address
  from numba.extending import intrinsic
except ImportError:  # pragma: no cover - numba is in requirements.txt
  numba = None


def _probe():
  pass


def _why_not_cached():
  """None where numba can cache this folder's kernels on disk, else its
  reason. numba decides when a function is decorated with cache=True: the
  package's __pycache__, or else its user cache directory (NUMBA_CACHE_DIR,
  ~/.cache/numba), must be writable."""
  try:
    numba.njit(cache=True)(_probe)
  except RuntimeError as e:  # 'cannot cache function ...: no locator ...'
    return str(e)
  return None


_NOT_CACHED = None if numba is None else _why_not_cached()
if _NOT_CACHED is not None:
  # Compiling without a cache would cost every process ~20 s at import.
  warnings.warn(
      f'cfcls: numba cannot cache compiled kernels for '
      f'{os.path.dirname(os.path.abspath(__file__))} (its __pycache__ and '
      f'numba\'s user cache directory are read-only: {_NOT_CACHED}); '
      f'the direct matting solver runs its NumPy loops instead, about 2x '
      f'slower. Set NUMBA_CACHE_DIR to a writable folder to use the '
      f'compiled kernels.', RuntimeWarning, stacklevel=2)
  numba = None


# Threads of the kernels (1 or 2; None: 2 where this process may run on two
# or more cores). Each thread runs BLAS on one thread.
THREADS = None


def available() -> bool:
  """Whether the compiled kernels can run (numba imports)."""
  return numba is not None


def threads() -> int:
  """THREADS, or 2 where this process may use two cores or more, else 1."""
  if THREADS is not None:
    return THREADS
  cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
           else os.cpu_count() or 1)
  return 2 if cores >= 2 else 1


if numba is not None:
  # Symbols by name (not ctypes pointers baked into the code), so that the
  # compiled functions can be cached on disk: they are resolved again when
  # a later process loads the cache.
  _ROUTINES = (('scipy.linalg.cython_lapack', 'dpotrf', 5),
               ('scipy.linalg.cython_blas', 'dtrsm', 11),
               ('scipy.linalg.cython_blas', 'dsyrk', 10),
               ('scipy.linalg.cython_blas', 'dgemm', 13))
  _fns = {}
  for _module, _name, _nargs in _ROUTINES:
    llvmlite.binding.add_symbol(f'cfcls_{_name}',
                                get_cython_function_address(_module, _name))
    # Fortran calling convention: every argument by pointer.
    _fns[_name] = types.ExternalFunction(
        f'cfcls_{_name}', types.void(*([types.voidptr] * _nargs)))
  _dpotrf, _dtrsm, _dsyrk, _dgemm = (
      _fns[name] for _, name, _ in _ROUTINES)

  @intrinsic
  def _at(typingctx, arr, offset):  # pylint: disable=unused-argument
    """A void pointer to arr.flat[offset] (arr 1-D, contiguous)."""
    def codegen(context, builder, sig, args):
      ary = context.make_array(sig.args[0])(context, builder, args[0])
      return builder.bitcast(builder.gep(ary.data, [args[1]]),
                             cgutils.voidptr_t)
    return types.voidptr(arr, types.intp), codegen

  _L, _R, _N, _T = ord('L'), ord('R'), ord('N'), ord('T')

  def sig(result, *args):
    """A numba signature: 'i' int64[::1], 'j' int32[::1], 'f'
    float64[::1], 'n' an int64 scalar, or a type spelled out."""
    names = {'i': 'int64[::1]', 'j': 'int32[::1]', 'f': 'float64[::1]',
             'n': 'int64'}
    return f'{result}({", ".join(names.get(a, a) for a in args)})'

  # Eager (explicit signatures): compiled, or loaded from numba's disk
  # cache, when this module is imported, not inside the first solve.
  _S = 'float32[::1]'

  @numba.jit(sig('void', 'f', 'n', 'n', _S, 'n'), nopython=True, cache=True,
             nogil=True, inline='always')
  def _store(out, lo, s, store, p):
    """The lower triangle of the s x s column-major block out[lo:] into
    store[p:], column by column (LAPACK's packed 'L' storage)."""
    for j in range(s):
      for i in range(j, s):
        store[p] = out[lo + j * s + i]
        p += 1

  @numba.jit(sig('void', _S, 'n', 'n', 'f'), nopython=True, cache=True,
             nogil=True, inline='always')
  def _unstore(store, p, s, out):
    """_store's inverse into out[:s * s] (lower triangle only)."""
    for j in range(s):
      for i in range(j, s):
        out[j * s + i] = store[p]
        p += 1

  @numba.njit(sig('int64', 'f', 'i', 'i', 'i', 'i', 'j', 'j', 'i', 'j', 'j',
                  'i', 'int64[:, ::1]', 'i', 'i', 'i', 'i', 'n', 'n', 'f',
                  'f', _S, 'i', 'i'), cache=True, nogil=True)
  def _factorise(values, own, ring, zero, oo_ptr, dst_oo, src_oo, ro_ptr,
                 dst_ro, src_ro, blk_ptr, blk, l_off, lr_off, build_at,
                 upd_off, k0, k1, out, stack, store, p_off, pr_off):
    """Fills `out` with the L_oo and L_ro of fronts k0..k1-1; or, if
    `store` is not empty, computes each front in `out` (a scratch of
    max(s^2 + r (s - z)) entries) and stores them in float32 in `store`
    (L_oo packed at p_off, L_ro at pr_off). Returns -1, or the index of the
    first front that is not positive definite."""
    packed = store.shape[0] > 0
    chars = np.array([_L, _R, _N, _T], np.uint8)
    ints = np.zeros(4, np.int32)  # s, r, c, info
    dbl = np.array([1.0, -1.0, 0.0])
    last = len(own) - 1
    for k in range(k0, k1):
      s, r, z = own[k], ring[k], zero[k]
      c = s - z
      if packed:
        lo, lr = 0, s * s
      else:
        lo, lr = l_off[k], lr_off[k]
      fr = build_at[k]
      out[lo:lo + s * s] = 0.0
      out[lr:lr + r * c] = 0.0
      stack[fr:fr + r * r] = 0.0
      for e in range(oo_ptr[k], oo_ptr[k + 1]):
        out[lo + dst_oo[e]] = values[src_oo[e]]
      for e in range(ro_ptr[k], ro_ptr[k + 1]):
        out[lr + dst_ro[e]] = values[src_ro[e]]
      # Extend-add: each child's update, rectangle by rectangle.
      for b in range(blk_ptr[k], blk_ptr[k + 1]):
        child, block = blk[b, 0], blk[b, 1]
        row, col, ca, cb, na, nb = (blk[b, 2], blk[b, 3], blk[b, 4],
                                    blk[b, 5], blk[b, 6], blk[b, 7])
        rc, u = ring[child], upd_off[child]
        if block == 0:
          dst, base, ld = out, lo, s
        elif block == 1:
          dst, base, ld = out, lr, r
        else:
          dst, base, ld = stack, fr, r
        for j in range(nb):
          d0 = base + (col + j) * ld + row
          s0 = u + (cb + j) * rc + ca
          for i in range(na):
            dst[d0 + i] += stack[s0 + i]
      ints[0], ints[1], ints[2] = s, r, c
      _dpotrf(_at(chars, 0), _at(ints, 0), _at(out, lo), _at(ints, 0),
              _at(ints, 3))
      if ints[3] != 0:
        return k
      if r > 0 and c > 0:
        # L_ro = F_ro L_oo^-T with L_oo's trailing c x c block.
        _dtrsm(_at(chars, 1), _at(chars, 0), _at(chars, 3), _at(chars, 2),
               _at(ints, 1), _at(ints, 2), _at(dbl, 0),
               _at(out, lo + z * s + z), _at(ints, 0), _at(out, lr),
               _at(ints, 1))
        if k != last:  # F_rr - L_ro L_ro^T, lower triangle
          _dsyrk(_at(chars, 0), _at(chars, 2), _at(ints, 1), _at(ints, 2),
                 _at(dbl, 1), _at(out, lr), _at(ints, 1), _at(dbl, 0),
                 _at(stack, fr), _at(ints, 1))
      if r > 0 and k != last:  # down over the children's, now consumed
        u = upd_off[k]
        if u != fr:
          for i in range(r * r):
            stack[u + i] = stack[fr + i]
      if packed:
        _store(out, lo, s, store, p_off[k])
        p = pr_off[k]
        for i in range(r * c):
          store[p + i] = out[lr + i]
    return -1

  _X = 'float64[:, ::1]'

  @numba.jit(sig('Tuple((float64[::1], int64, int64))', 'f', _S, 'i', 'i',
                 'i', 'i', 'i', 'n', 'f'),
             nopython=True, cache=True, nogil=True, inline='always')
  def _front(factor, store, own, ring, zero, l_off, lr_off, k, scratch):
    """(array, where L_oo starts, where L_ro starts) of front k: `factor`
    at l_off[k], lr_off[k]; or, if `store` is not empty, its float32 L_oo
    (packed, at l_off[k]) and L_ro (at lr_off[k]) unpacked into `scratch`
    in float64 (L_oo column-major at 0, L_ro at s^2)."""
    if store.shape[0] == 0:
      return factor, l_off[k], lr_off[k]
    s, c = own[k], own[k] - zero[k]
    _unstore(store, l_off[k], s, scratch)
    p = lr_off[k]
    for i in range(ring[k] * c):
      scratch[s * s + i] = store[p + i]
    return scratch, 0, s * s

  @numba.njit(sig('void', _X, *'iiiiiiiif', _S, *'nnnfff'), cache=True,
              nogil=True)
  def _forward(x, start, own, ring, zero, ring_ptr, ring_rank, l_off,
               lr_off, factor, store, k0, k1, split, alt, work, scratch):
    """L y = b for fronts k0..k1-1, in place in x [N, C] (C-order,
    elimination order); what they subtract from rows split.. goes to alt
    instead (so that two subtrees can run at once). The factor is
    `factor`, or the float32 `store` (then l_off, lr_off are its offsets,
    and each front is unpacked into `scratch`)."""
    n_rhs = x.shape[1]
    flat = x.reshape(-1)
    chars = np.array([_L, _R, _N, _T], np.uint8)
    ints = np.zeros(4, np.int32)  # C, s, r, c
    dbl = np.array([1.0, -1.0, 0.0])
    ints[0] = n_rhs
    # Row-major [s, C] blocks are column-major C x s: solve Y L^T = B^T.
    for k in range(k0, k1):
      s, r, z = own[k], ring[k], zero[k]
      c = s - z
      ints[1], ints[2], ints[3] = s, r, c
      b0 = start[k] * n_rhs
      fac, lo, lr = _front(factor, store, own, ring, zero, l_off, lr_off, k,
                           scratch)
      _dtrsm(_at(chars, 1), _at(chars, 0), _at(chars, 3), _at(chars, 2),
             _at(ints, 0), _at(ints, 1), _at(dbl, 0), _at(fac, lo),
             _at(ints, 1), _at(flat, b0), _at(ints, 0))
      if r > 0 and c > 0:  # work (C x r) = y_z^T L_ro^T
        _dgemm(_at(chars, 2), _at(chars, 3), _at(ints, 0), _at(ints, 2),
               _at(ints, 3), _at(dbl, 0), _at(flat, b0 + z * n_rhs),
               _at(ints, 0), _at(fac, lr), _at(ints, 2),
               _at(dbl, 2), _at(work, 0), _at(ints, 0))
        p = ring_ptr[k]
        for i in range(r):
          rank, w0 = ring_rank[p + i], i * n_rhs
          if rank < split:
            for q in range(n_rhs):
              flat[rank * n_rhs + q] -= work[w0 + q]
          else:
            for q in range(n_rhs):
              alt[(rank - split) * n_rhs + q] -= work[w0 + q]

  @numba.njit(sig('void', _X, *'iiiiiiiif', _S, *'nnff'), cache=True,
              nogil=True)
  def _backward(x, start, own, ring, zero, ring_ptr, ring_rank, l_off,
                lr_off, factor, store, k0, k1, work, scratch):
    """L^T x = y for fronts k1-1..k0, in place (see _forward)."""
    n_rhs = x.shape[1]
    flat = x.reshape(-1)
    chars = np.array([_L, _R, _N, _T], np.uint8)
    ints = np.zeros(4, np.int32)  # C, s, r, c
    dbl = np.array([1.0, -1.0, 0.0])
    ints[0] = n_rhs
    for k in range(k1 - 1, k0 - 1, -1):
      s, r, z = own[k], ring[k], zero[k]
      c = s - z
      ints[1], ints[2], ints[3] = s, r, c
      b0 = start[k] * n_rhs
      fac, lo, lr = _front(factor, store, own, ring, zero, l_off, lr_off, k,
                           scratch)
      if r > 0 and c > 0:  # b_z^T -= x_ring^T L_ro
        p = ring_ptr[k]
        for i in range(r):
          d0, w0 = ring_rank[p + i] * n_rhs, i * n_rhs
          for q in range(n_rhs):
            work[w0 + q] = flat[d0 + q]
        _dgemm(_at(chars, 2), _at(chars, 2), _at(ints, 0), _at(ints, 3),
               _at(ints, 2), _at(dbl, 1), _at(work, 0), _at(ints, 0),
               _at(fac, lr), _at(ints, 2), _at(dbl, 0),
               _at(flat, b0 + z * n_rhs), _at(ints, 0))
      _dtrsm(_at(chars, 1), _at(chars, 0), _at(chars, 2), _at(chars, 2),
             _at(ints, 0), _at(ints, 1), _at(dbl, 0), _at(fac, lo),
             _at(ints, 1), _at(flat, b0), _at(ints, 0))


  @numba.njit(cache=True, nogil=True)
  def _grow(arr, need):
    """arr, or a copy twice as long if it holds fewer than `need`."""
    if need <= arr.shape[0]:
      return arr
    out = np.empty((max(need, 2 * arr.shape[0]),) + arr.shape[1:], arr.dtype)
    out[:arr.shape[0]] = arr
    return out

  @numba.njit(sig('Tuple((int64[::1], int64[::1], int64[::1], int32[::1], '
                  'int32[::1], int64[::1], int32[::1], int32[::1], '
                  'int64[::1], int64[:, ::1], int64[::1]))', 'n', 'n', 'n',
                  'i', 'i', 'int64[:, ::1]', 'i', 'i', 'int64[:, ::1]'),
              cache=True, nogil=True)
  def _plan(height, width, reach, order, rank, regions, start, own,
            children):
    """The fronts of `multifrontal._front_plans`, as FlatPlan's arrays:
    (ring_ptr, ring_rank, oo_ptr, dst_oo, src_oo, ro_ptr, dst_ro, src_ro,
    blk_ptr, blk, zero), entries in the same order."""
    n = height * width
    side = 2 * reach + 1
    taps = side * side
    num = own.shape[0]
    pos = np.full(n, -1, np.int64)
    ring_ptr = np.zeros(num + 1, np.int64)
    oo_ptr = np.zeros(num + 1, np.int64)
    ro_ptr = np.zeros(num + 1, np.int64)
    blk_ptr = np.zeros(num + 1, np.int64)
    zero = np.zeros(num, np.int64)
    ring_rank = np.empty(max(16, n), np.int64)
    dst_oo = np.empty(max(16, 8 * n), np.int32)
    src_oo = np.empty(max(16, 8 * n), np.int32)
    dst_ro = np.empty(max(16, 2 * n), np.int32)
    src_ro = np.empty(max(16, 2 * n), np.int32)
    ro_lo = np.empty(taps * 256, np.int64)
    ro_hi = np.empty(taps * 256, np.int64)
    blk = np.empty((max(16, n // 8), 8), np.int64)
    runs = np.empty((64, 3), np.int64)
    for k in range(num):
      y0, y1 = regions[k, 0], regions[k, 1]
      x0, x1 = regions[k, 2], regions[k, 3]
      s = own[k]
      # The ring: outside the region, within reach of it; by rank.
      ya, yb = max(0, y0 - reach), min(height, y1 + reach)
      xa, xb = max(0, x0 - reach), min(width, x1 + reach)
      ring = np.empty((yb - ya) * (xb - xa) - (y1 - y0) * (x1 - x0),
                      np.int64)
      r = 0
      for y in range(ya, yb):
        for x in range(xa, xb):
          if not (y0 <= y < y1 and x0 <= x < x1):
            ring[r] = rank[y * width + x]
            r += 1
      ring.sort()
      ring_rank = _grow(ring_rank, ring_ptr[k] + r)
      ring_rank[ring_ptr[k]:ring_ptr[k] + r] = ring
      ring_ptr[k + 1] = ring_ptr[k] + r
      m = s + r
      for i in range(s):
        pos[order[start[k] + i]] = i
      for i in range(r):
        pos[order[ring[i]]] = s + i
      # Taps of the own rows, each own-own pair once (col >= row).
      oo, ro = oo_ptr[k], 0
      dst_oo = _grow(dst_oo, oo + s * taps)
      src_oo = _grow(src_oo, oo + s * taps)
      ro_lo = _grow(ro_lo, s * taps)
      ro_hi = _grow(ro_hi, s * taps)
      for i in range(s):
        p = order[start[k] + i]
        py, px = p // width, p % width
        for t in range(taps):
          qy, qx = py + t // side - reach, px + t % side - reach
          if qy < 0 or qy >= height or qx < 0 or qx >= width:
            continue
          col = pos[qy * width + qx]
          if col < i:
            continue
          if col < s:
            dst_oo[oo] = i * s + col
            src_oo[oo] = t * n + p
            oo += 1
          else:
            ro_lo[ro], ro_hi[ro] = i, col
            src_ro = _grow(src_ro, ro_ptr[k] + ro + 1)
            src_ro[ro_ptr[k] + ro] = t * n + p
            ro += 1
      oo_ptr[k + 1] = oo
      # Children's updates: runs of consecutive positions, split at s.
      b0 = blk_ptr[k]
      z = s
      for e in range(ro):
        z = min(z, ro_lo[e])
      for j in range(2):
        c = children[k, j]
        if c < 0:
          continue
        num_runs = 0
        ca = ring_ptr[c]
        cn = ring_ptr[c + 1] - ca
        runs = _grow(runs, 2 * cn + 2)
        e = 0
        while e < cn:
          f = e + 1
          first = pos[order[ring_rank[ca + e]]]
          while f < cn and pos[order[ring_rank[ca + f]]] == first + f - e:
            f += 1
          length = f - e
          if first < s < first + length:
            runs[num_runs, 0], runs[num_runs, 1] = e, s - first
            runs[num_runs, 2] = first
            runs[num_runs + 1, 0] = e + s - first
            runs[num_runs + 1, 1] = first + length - s
            runs[num_runs + 1, 2] = s
            num_runs += 2
          else:
            runs[num_runs, 0], runs[num_runs, 1] = e, length
            runs[num_runs, 2] = first
            num_runs += 1
          e = f
        blk = _grow(blk, b0 + num_runs * (num_runs + 1) // 2)
        for a in range(num_runs):
          for b in range(a + 1):
            pa, pb = runs[a, 2], runs[b, 2]
            block = 0 if pa < s else (1 if pb < s else 2)
            blk[b0, 0], blk[b0, 1] = c, block
            blk[b0, 2] = pa if block == 0 else pa - s
            blk[b0, 3] = pb - s if block == 2 else pb
            blk[b0, 4], blk[b0, 5] = runs[a, 0], runs[b, 0]
            blk[b0, 6], blk[b0, 7] = runs[a, 1], runs[b, 1]
            if block == 1:
              z = min(z, blk[b0, 3])
            b0 += 1
      # F_ro is stored from column z on (the leading columns that nothing
      # couples to the ring are zero).
      for b in range(blk_ptr[k], b0):
        if blk[b, 1] == 1:
          blk[b, 3] -= z
      blk_ptr[k + 1] = b0
      dst_ro = _grow(dst_ro, ro_ptr[k] + ro)
      for e in range(ro):
        dst_ro[ro_ptr[k] + e] = (ro_lo[e] - z) * (m - s) + ro_hi[e] - s
      ro_ptr[k + 1] = ro_ptr[k] + ro
      zero[k] = z
      for i in range(s):
        pos[order[start[k] + i]] = -1
      for i in range(r):
        pos[order[ring[i]]] = -1
    return (ring_ptr, ring_rank[:ring_ptr[num]].copy(), oo_ptr,
            dst_oo[:oo_ptr[num]].copy(), src_oo[:oo_ptr[num]].copy(), ro_ptr,
            dst_ro[:ro_ptr[num]].copy(), src_ro[:ro_ptr[num]].copy(),
            blk_ptr, blk[:blk_ptr[num]].copy(), zero)


# Freed buffers are kept for the next factorisation while they hold at most
# this many bytes together (`release_buffers` frees them).
SPARE_BYTES = 2 ** 30
_spare = []  # mmap objects, least recently freed first
_spare_lock = threading.Lock()


def buffer(size: int, dtype=np.float64, keep: bool = True) -> np.ndarray:
  """An uninitialised [size] array for a factor or its update
  stack: memory of its own in 4 KiB pages, reused once the array is freed.

  A factor is hundreds of MiB (160 MB at 321x321), written once per image,
  and on the 2-core VM this was measured on every fresh 4 KiB page costs
  ~3 us of system time (0.25 s of a 0.55 s solve at 321x321). So freed
  buffers are kept (SPARE_BYTES; not with keep=False) for the next image.
  The huge pages NumPy
  asks for on large arrays fault 512x less often, but cost 1.5-4.7 s of
  system time on some first touches of a 480x640 factor (605 MB; kernel
  compaction). First / second / third default call at 480x640 in a fresh
  process: 6.7-7.8 / 1.9-2.9 / 1.9-2.8 s with NumPy's allocation, 3.1-3.3 /
  1.7-1.9 / 1.7-2.3 s with fresh 4 KiB pages on every call.
  """
  nbytes = size * np.dtype(dtype).itemsize
  if nbytes < 2 ** 22:
    return np.empty(size, dtype)
  with _spare_lock:
    fits = [m for m in _spare if nbytes <= len(m) <= 2 * nbytes]
    memory = min(fits, key=len) if fits else None
    if memory is not None:
      _spare.remove(memory)
  if memory is None:
    memory = mmap.mmap(-1, nbytes)
  out = np.frombuffer(memory, dtype, count=size)
  if keep:
    weakref.finalize(out, _keep, memory)
  return out


def _keep(memory):
  with _spare_lock:
    _spare.append(memory)
    while sum(len(m) for m in _spare) > SPARE_BYTES:
      _spare.pop(0)


def release_buffers():
  """Frees the buffers kept for reuse (`buffer`)."""
  with _spare_lock:
    _spare.clear()


def plan(height, width, reach, order, rank, regions, start, own, children):
  """The fronts' index arrays of a grid (see `multifrontal._plan`)."""
  return _plan(height, width, reach, order, rank, regions, start, own,
               children)


def in_two_threads(first, second):
  """Runs second() in a thread while first() runs here; the compiled
  kernels release the GIL. Returns (first(), second())."""
  box = []
  worker = threading.Thread(target=lambda: box.append(second()))
  worker.start()
  try:
    one = first()
  finally:
    worker.join()
  return one, box[0]


_NO_STORE = np.empty(0, np.float32)


def factorise(values, flat, factor, stack, threads: int = 1) -> int:
  """Runs the compiled factorisation (see `multifrontal.FlatPlan`) into
  `factor`: float64 [flat.size], or float32 [flat.size32] (each front
  computed in float64, then stored with L_oo packed). Returns -1 on
  success, else the index of the first front that is not positive
  definite. With threads=2 the root's two subtrees are factorised at
  once."""
  packed = factor.dtype == np.float32
  store = factor if packed else _NO_STORE
  offsets = (flat.p_off, flat.pr_off) if packed else (flat.l_off,
                                                      flat.lr_off)

  def run(k0, k1):
    out = np.empty(flat.scratch) if packed else factor
    return _factorise(
        values, flat.own, flat.ring, flat.zero, flat.oo_ptr, flat.dst_oo,
        flat.src_oo, flat.ro_ptr, flat.dst_ro, flat.src_ro, flat.blk_ptr,
        flat.blk, flat.l_off, flat.lr_off, flat.build_at, flat.upd_off, k0,
        k1, out, stack, store, *offsets)

  root = len(flat.own) - 1
  if threads < 2 or not flat.split:
    return run(0, root + 1)
  one, two = in_two_threads(lambda: run(0, flat.split),
                       lambda: run(flat.split, root))
  for k in (one, two):
    if k >= 0:
      return k
  return run(root, root + 1)


def solve(x, flat, factor, threads: int = 1) -> None:
  """x [N, C] float64 C-order in elimination order := A^-1 x, in place,
  with `factorise`'s factor (a float32 one is unpacked front by front and
  applied in float64). With threads=2 the root's two subtrees are solved
  at once."""
  n_rhs = x.shape[1]
  if factor.dtype == np.float32:
    indices = (flat.start, flat.own, flat.ring, flat.zero, flat.ring_ptr,
               flat.ring_rank, flat.p_off, flat.pr_off, np.empty(0), factor)
    scratch = lambda: np.empty(flat.scratch)
  else:
    indices = (flat.start, flat.own, flat.ring, flat.zero, flat.ring_ptr,
               flat.ring_rank, flat.l_off, flat.lr_off, factor, _NO_STORE)
    scratch = lambda: np.empty(0)
  work = lambda: (np.empty(max(1, int(flat.ring.max(initial=0))) * n_rhs),
                  scratch())
  root, n = len(flat.own) - 1, x.shape[0]
  none = np.empty(0)
  if threads < 2 or not flat.split:
    _forward(x, *indices, 0, root + 1, n, none, *work())
    _backward(x, *indices, 0, root + 1, *work())
    return
  # Both subtrees subtract from the root's rows (their only shared rows):
  # the second into a buffer, added after.
  at = int(flat.start[root])
  alt = np.zeros(((n - at) * n_rhs))
  in_two_threads(
      lambda: _forward(x, *indices, 0, flat.split, n, none, *work()),
      lambda: _forward(x, *indices, flat.split, root, at, alt, *work()))
  x[at:] += alt.reshape(n - at, n_rhs)
  _forward(x, *indices, root, root + 1, n, none, *work())
  _backward(x, *indices, root, root + 1, *work())
  in_two_threads(lambda: _backward(x, *indices, 0, flat.split, *work()),
            lambda: _backward(x, *indices, flat.split, root, *work()))
