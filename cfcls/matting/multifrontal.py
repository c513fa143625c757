"""Sparse Cholesky of a grid-stencil SPD matrix by geometric nested dissection.

A multifrontal factorisation (each front a dense matrix, factorised with
LAPACK / BLAS-3) on the tree of `cfcls.matting.grid_ordering.dissection_tree`:

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
work is dense matrix products, which on a CPU run several times faster per
flop than SuperLU's supernodal kernels.

The matrix comes as *taps* (`factorise_taps`): taps[t, y, x] = A[(y, x),
(y + dy_t, x + dx_t)] for the offsets of `full_offsets(reach)`, which is
how a grid stencil is stored anyway (no sparse matrix is built), or as a
scipy sparse matrix (`factorise`). Everything that depends only on the grid
(the tree, each front's pixels, where each tap lands in its front, how a
child's update maps into its parent) is the *plan* of the grid, computed
once per grid size (`plan`, cached while the cached grids hold at most
PLAN_CACHE_PIXELS pixels together): on a 321x321 image it is about a third
of the time of a factorisation, at 480x640 more than half.

The factor is computed in float64; it can be stored in float32 (own blocks
packed), 0.42x the memory, for use inside iterative refinement
(`cfcls.matting.solver` does so above 2^20 pixels). `factor_nbytes` says how
large a factor will be before anything is computed.

Two backends run the same elimination: 'compiled' (`cfcls.matting.direct_kernels`:
the loop over the fronts compiled with numba, one call per image, the
root's two subtrees in two threads where two cores are free) and 'numpy'
(the loop in Python, calling scipy's LAPACK / BLAS wrappers per front).
'auto' picks the compiled one for float64 factors of cached plans when
numba imports; they make the same factor bit for bit.
"""
import collections
import contextlib
import threading
from typing import Iterable, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import scipy.linalg.blas
import scipy.linalg.lapack
import scipy.sparse

try:  # in requirements.txt; optional so the solver imports without it
  import threadpoolctl
except ImportError:  # pragma: no cover
  threadpoolctl = None

from cfcls.matting import direct_kernels
from cfcls.matting import stencil_kernels
from cfcls.matting import grid_ordering

LEAF_PIXELS = 128
# Plans are cached, least recently used out first, while the cached grids
# hold at most this many pixels together: a plan of reach 2 holds ~160
# bytes per pixel (47 MiB at 480x640), so at most ~170 MiB. A grid larger
# than this is planned front by front during each factorisation (1.7 s of
# a 3.1 s factorisation at 480x640 when it was not cached).
PLAN_CACHE_PIXELS = 2 ** 20
# factorise_taps's backend when none is given (see there).
BACKEND = 'auto'


_blas_controller = []  # threadpoolctl's view of the loaded BLAS, made once


def _one_blas_thread():
  """BLAS on one thread: the fronts are many and mostly small, and a
  multi-threaded BLAS on a busy machine spends more time waking threads than
  computing (480x640: 4.3 s on one thread, 136 s with two on a loaded
  2-core CPU). The controller is made on first use (scanning the loaded
  libraries: 0.8 ms per call if made each time, 20 us to reuse)."""
  if threadpoolctl is None:
    return contextlib.nullcontext()
  if not _blas_controller:
    _blas_controller.append(threadpoolctl.ThreadpoolController())
  return _blas_controller[0].limit(limits=1, user_api='blas')


def full_offsets(reach: int) -> List[Tuple[int, int]]:
  """The (2 reach + 1)^2 tap offsets (dy, dx), row-major; (0, 0) in the
  middle, and offset t and its mirror T - 1 - t are opposite."""
  return [(dy, dx) for dy in range(-reach, reach + 1)
          for dx in range(-reach, reach + 1)]


class FrontPlan(NamedTuple):
  start: int           # own pixels = order[start:stop]
  stop: int
  ring_rank: np.ndarray  # int64 increasing: ring pixels = order[ring_rank]
  dst_oo: np.ndarray   # Fortran-order flat positions in F_oo [s, s] ...
  src_oo: np.ndarray   # ... of these entries of taps.reshape(-1)
  dst_ro: np.ndarray   # the same for F_ro's columns z.. [r, s - z]
  src_ro: np.ndarray
  children: Tuple  # (child, its blocks in this front), see _child_blocks
  z: int  # F_ro's first z columns are structurally zero (s if r = 0)


class FlatPlan(NamedTuple):
  """A plan as flat arrays, for the compiled kernels
  (`cfcls.matting.direct_kernels`): per front k, its sizes and its offsets into
  the concatenated index arrays (x_ptr[k]:x_ptr[k + 1]), into the factor
  buffer, and into the stack of update matrices."""
  start: np.ndarray    # int64 [F]: own pixels are order[start:start + own]
  own: np.ndarray      # int64 [F]: s
  ring: np.ndarray     # int64 [F]: r
  zero: np.ndarray     # int64 [F]: z (FrontPlan.z)
  ring_ptr: np.ndarray  # int64 [F + 1] into ring_rank
  ring_rank: np.ndarray
  oo_ptr: np.ndarray   # int64 [F + 1] into dst_oo / src_oo
  dst_oo: np.ndarray
  src_oo: np.ndarray
  ro_ptr: np.ndarray   # int64 [F + 1] into dst_ro / src_ro
  dst_ro: np.ndarray
  src_ro: np.ndarray
  blk_ptr: np.ndarray  # int64 [F + 1] into blk
  blk: np.ndarray      # int64 [M, 8]: (child,) + a _child_blocks entry
  l_off: np.ndarray    # int64 [F]: L_oo (s x s, column-major) in the buffer
  lr_off: np.ndarray   # int64 [F]: L_ro (r x (s - z), column-major)
  size: int            # float64 entries of the factor buffer
  p_off: np.ndarray    # int64 [F]: the same in a float32 buffer, with L_oo
  pr_off: np.ndarray   # packed (its lower triangle, column by column)
  size32: int          # float32 entries of that buffer
  scratch: int         # max s^2 + r (s - z): one front computed in float64
  build_at: np.ndarray  # int64 [F]: where F_rr is built on the stack
  upd_off: np.ndarray  # int64 [F]: where the update then rests (-1: none)
  stack_size: int
  # The first front of the root's second subtree (0: the root has no
  # children): fronts 0..split-1 and split..F-2 are independent, and
  # their updates lie in separate parts of the stack.
  split: int


class Plan:
  """The symbolic analysis of a grid (`plan`).

  Attributes:
    height, width, reach: the grid and its stencil's reach.
    order: int64 [N], the pixels in elimination order.
    num_fronts: the number of fronts (nodes of the dissection tree).
    flat: the fronts as flat arrays (FlatPlan), or None for a grid planned
      in one pass (above PLAN_CACHE_PIXELS).
    fronts: the fronts as FrontPlan tuples (the NumPy backend's): views of
      `flat`, made on first use, or the one-pass iterator.
  """

  def __init__(self, height, width, reach, order, num_fronts,
               fronts: Optional[Iterable[FrontPlan]] = None,
               flat: Optional[FlatPlan] = None):
    self.height, self.width, self.reach = height, width, reach
    self.order, self.num_fronts, self.flat = order, num_fronts, flat
    self._fronts = fronts
    self._lock = threading.Lock()

  @property
  def fronts(self) -> Iterable[FrontPlan]:
    with self._lock:
      if self._fronts is None:
        self._fronts = _front_views(self.flat)
      return self._fronts


def _ring(region, height, width, reach, index):
  y0, y1, x0, x1 = region
  ya, yb = max(0, y0 - reach), min(height, y1 + reach)
  xa, xb = max(0, x0 - reach), min(width, x1 + reach)
  block = index[ya:yb, xa:xb]
  inside = np.zeros(block.shape, bool)
  inside[y0 - ya:y1 - ya, x0 - xa:x1 - xa] = True
  return block[~inside]


def _runs(at):
  """Maximal runs of consecutive positions in the increasing array `at`:
  (start in `at`, length, position of the first) per run."""
  breaks = np.flatnonzero(np.diff(at) != 1) + 1
  starts = np.concatenate([[0], breaks])
  lengths = np.diff(np.concatenate([starts, [len(at)]]))
  return tuple(zip(starts.tolist(), lengths.tolist(), at[starts].tolist()))


# The blocks of a front: F_oo (own x own), F_ro (ring x own), F_rr (ring x
# ring), each its own Fortran-order array, so that LAPACK and BLAS work on
# them in place (a block of one m x m array would be copied on every call).
OO, RO, RR = 0, 1, 2


def _child_blocks(at, s):
  """Where a child's update goes in its parent's front: `at` (increasing)
  are the positions of the child's ring in the parent's front of s own
  pixels. Returns (block, row, column, child row, child column, rows,
  columns) per rectangle of the update's lower triangle (row runs at or
  after column runs), block one of OO, RO, RR."""
  runs = []
  for c, n, p in _runs(at) if len(at) else ():
    if p < s < p + n:  # a run across the own/ring boundary: split it
      runs += [(c, s - p, p), (c + s - p, p + n - s, s)]
    else:
      runs.append((c, n, p))
  blocks = []
  for a, (ca, na, pa) in enumerate(runs):
    for cb, nb, pb in runs[:a + 1]:
      block = OO if pa < s else RO if pb < s else RR
      row = pa - s if block != OO else pa
      col = pb - s if block == RR else pb
      blocks.append((block, row, col, ca, cb, na, nb))
  return tuple(blocks)


def _plan(height: int, width: int, reach: int, leaf_pixels: int,
          lazy: bool = False, compiled: Optional[bool] = None) -> Plan:
  """The plan; with `lazy`, its fronts are made as the factorisation asks
  for them (a whole plan holds ~160 bytes per pixel at reach 2). The
  fronts' index arrays come from `direct_kernels.plan` (compiled; the
  whole plan 0.085 s at 321x321 against 0.45-0.53 s) when numba imports,
  else from `_front_plans`: the same arrays."""
  n = height * width
  nodes = grid_ordering.dissection_tree(height, width, reach, leaf_pixels)
  order = np.concatenate([node.pixels for node in nodes])
  rank = np.empty(n, np.int64)
  rank[order] = np.arange(n)
  if lazy:
    return Plan(height, width, reach, order, len(nodes),
                _front_plans(height, width, reach, nodes, rank))
  own = np.array([len(node.pixels) for node in nodes], np.int64)
  start = _offsets(own)[:-1]
  kids = [node.children for node in nodes]
  if direct_kernels.available() if compiled is None else compiled:
    children = np.array([c + (-1,) * (2 - len(c)) for c in kids],
                        np.int64).reshape(-1, 2)
    regions = np.array([node.region for node in nodes], np.int64)
    arrays = direct_kernels.plan(height, width, reach, order, rank, regions,
                                 start, own, children)
  else:
    arrays = _flat_arrays(list(_front_plans(height, width, reach, nodes,
                                            rank)))
  return Plan(height, width, reach, order, len(nodes),
              flat=_flatten(start, own, kids, *arrays))


def _offsets(sizes) -> np.ndarray:
  return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])


def _flat_arrays(fronts: List[FrontPlan]):
  """(ring_ptr, ring_rank, oo_ptr, dst_oo, src_oo, ro_ptr, dst_ro, src_ro,
  blk_ptr, blk, zero) of FlatPlan from the fronts."""
  cat = lambda name, dtype: np.concatenate(
      [np.zeros(0, dtype)] + [getattr(fp, name) for fp in fronts])
  blk = [(child,) + b for fp in fronts for child, blocks in fp.children
         for b in blocks]
  num_blk = [sum(len(blocks) for _, blocks in fp.children) for fp in fronts]
  return (_offsets([len(fp.ring_rank) for fp in fronts]),
          cat('ring_rank', np.int64),
          _offsets([len(fp.dst_oo) for fp in fronts]), cat('dst_oo', np.int32),
          cat('src_oo', np.int32),
          _offsets([len(fp.dst_ro) for fp in fronts]), cat('dst_ro', np.int32),
          cat('src_ro', np.int32),
          _offsets(num_blk), np.array(blk, np.int64).reshape(-1, 8),
          np.array([fp.z for fp in fronts], np.int64))


def _flatten(start, own, kids, ring_ptr, ring_rank, oo_ptr, dst_oo, src_oo,
             ro_ptr, dst_ro, src_ro, blk_ptr, blk, zero) -> FlatPlan:
  """FlatPlan from the fronts' index arrays: the offsets into the factor
  buffer, and the update stack's layout."""
  ring = np.diff(ring_ptr)
  l_size, lr_size = own * own, ring * (own - zero)
  l_off = _offsets(l_size)[:-1]
  lr_off = l_size.sum() + _offsets(lr_size)[:-1]
  p_size = own * (own + 1) // 2
  p_off = _offsets(p_size)[:-1]
  pr_off = p_size.sum() + _offsets(lr_size)[:-1]
  # The update stack: in post-order, a node's children's updates are the
  # top of the stack when the node is eliminated.
  last = len(own) - 1
  split = kids[-1][0] + 1 if len(kids[-1]) == 2 else 0
  assert not split or ring[last] == 0, 'the root has a ring'
  build_at = np.zeros(len(own), np.int64)
  upd_off = np.full(len(own), -1, np.int64)
  top = peak = 0
  squares = (ring * ring).tolist()
  for k, node_kids in enumerate(kids):
    if split and k == split:  # the second subtree: above all of the first
      top = peak
    base = top
    if not (split and k == last):  # (the root forms no update)
      for child in reversed(node_kids):  # the last child's is the top one
        base -= squares[child]
        assert upd_off[child] == base, 'children not on top of the stack'
    build_at[k] = top
    peak = max(peak, top + squares[k])
    top = base
    if squares[k] and k != last:
      upd_off[k] = base
      top = base + squares[k]
  return FlatPlan(start, own, ring, zero, ring_ptr, ring_rank, oo_ptr, dst_oo,
                  src_oo, ro_ptr, dst_ro, src_ro, blk_ptr, blk, l_off, lr_off,
                  int(l_size.sum() + lr_size.sum()), p_off, pr_off,
                  int(p_size.sum() + lr_size.sum()),
                  int((l_size + lr_size).max(initial=0)), build_at, upd_off,
                  peak, split)


def _front_views(flat: FlatPlan) -> List[FrontPlan]:
  """The fronts again, their arrays views of the flat ones (no copy)."""
  fronts = []
  for k in range(len(flat.own)):
    ring = slice(flat.ring_ptr[k], flat.ring_ptr[k + 1])
    oo = slice(flat.oo_ptr[k], flat.oo_ptr[k + 1])
    ro = slice(flat.ro_ptr[k], flat.ro_ptr[k + 1])
    children = {}
    for row in flat.blk[flat.blk_ptr[k]:flat.blk_ptr[k + 1]].tolist():
      children.setdefault(row[0], []).append(tuple(row[1:]))
    start = int(flat.start[k])
    fronts.append(FrontPlan(
        start, start + int(flat.own[k]), flat.ring_rank[ring],
        flat.dst_oo[oo], flat.src_oo[oo], flat.dst_ro[ro], flat.src_ro[ro],
        tuple((c, tuple(b)) for c, b in children.items()),
        int(flat.zero[k])))
  return fronts


def _front_plans(height, width, reach, nodes, rank) -> Iterator[FrontPlan]:
  n = height * width
  index = np.arange(n).reshape(height, width)
  offsets = np.array(full_offsets(reach))
  ys, xs = np.divmod(np.arange(n), width)
  pos = np.full(n, -1, np.int64)
  rings = {}
  start = 0
  for k, node in enumerate(nodes):
    own = node.pixels
    ring = _ring(node.region, height, width, reach, index)
    # Fronts list their pixels in elimination order (own pixels first,
    # ancestors after), so a child's ring lands in its parent's front in
    # increasing order: lower triangles map to lower triangles, and only
    # lower triangles are ever read.
    ring = ring[np.argsort(rank[ring])]
    front = np.concatenate([own, ring])
    m = len(front)
    pos[front] = np.arange(m)
    # Taps of the own rows: row i (own), column j (own or ring; pixels
    # eliminated below are the children's), stored at (max, min).
    qy = ys[own][:, None] + offsets[None, :, 0]
    qx = xs[own][:, None] + offsets[None, :, 1]
    inside = (qy >= 0) & (qy < height) & (qx >= 0) & (qx < width)
    col = np.where(inside, pos[np.where(inside, qy * width + qx, 0)], -1)
    row = np.broadcast_to(np.arange(len(own))[:, None], col.shape)
    # An own-own pair comes from both of its rows, with the same value
    # (A is symmetric): keep it from the earlier row only (col >= row).
    keep = col >= row
    i, j = row[keep], col[keep]
    hi, lo = np.maximum(i, j), np.minimum(i, j)  # the lower triangle
    tap = np.broadcast_to(np.arange(len(offsets))[None, :], col.shape)[keep]
    src = tap * n + own[row[keep]]
    s = len(own)
    in_oo = hi < s
    in_ro = ~in_oo
    dst_oo = lo[in_oo] * s + hi[in_oo]  # Fortran order: column-major
    children = [(c, _child_blocks(pos[rings.pop(c)], s))
                for c in node.children]
    # The leading own columns that nothing couples to the ring (a leaf's
    # interior, grid_ordering.dissection_tree) stay zero in F_ro and L_ro:
    # F_ro is stored from column z on.
    z = min([int(lo[in_ro].min(initial=s)),
             *(b[2] for _, blocks in children for b in blocks if b[0] == RO)])
    dst_ro = (lo[in_ro] - z) * (m - s) + hi[in_ro] - s
    children = tuple(
        (c, tuple(b if b[0] != RO else (RO, b[1], b[2] - z) + b[3:]
                  for b in blocks)) for c, blocks in children)
    pos[front] = -1
    rings[k] = ring
    as32 = lambda a: a.astype(np.int32)
    yield FrontPlan(start, start + s, rank[ring], as32(dst_oo),
                    as32(src[in_oo]), as32(dst_ro), as32(src[in_ro]),
                    children, z)
    start += s


_plans: 'collections.OrderedDict[Tuple[int, int, int, int], Plan]' = (
    collections.OrderedDict())
_plans_lock = threading.Lock()


def plan(height: int, width: int, reach: int,
         leaf_pixels: int = LEAF_PIXELS, one_pass: bool = True) -> Plan:
  """The symbolic analysis of a height x width grid: cached (see
  PLAN_CACHE_PIXELS), or for a grid above PLAN_CACHE_PIXELS made for this
  call only: front by front as the factorisation asks (`one_pass`, the
  NumPy backend), or whole (flat, the compiled backend; ~160 bytes per
  pixel while it runs)."""
  if height < 1 or width < 1 or reach < 1:
    raise ValueError(f'a grid needs height, width, reach >= 1, got '
                     f'{height}x{width}, reach {reach}')
  pixels = height * width
  if pixels > PLAN_CACHE_PIXELS:
    return _plan(height, width, reach, leaf_pixels, lazy=one_pass)
  key = (height, width, reach, leaf_pixels)
  with _plans_lock:
    if key in _plans:
      _plans.move_to_end(key)
      return _plans[key]
  grid = _plan(height, width, reach, leaf_pixels)
  with _plans_lock:
    _plans[key] = grid
    while sum(h * w for h, w, _, _ in _plans) > PLAN_CACHE_PIXELS:
      _plans.popitem(last=False)
  return grid


def clear_plan_cache():
  """Drops the cached plans (their memory: see PLAN_CACHE_PIXELS) and the
  factor buffers kept for reuse (`direct_kernels.buffer`)."""
  with _plans_lock:
    _plans.clear()
  direct_kernels.release_buffers()


def _front_sizes(height, width, reach,
                 leaf_pixels) -> Iterator[Tuple[int, int, int]]:
  """(own pixels s, ring pixels r, zero columns z of F_ro) of every front,
  from the tree's rectangles alone (nothing is planned or factorised)."""
  for node in grid_ordering.dissection_regions(height, width, reach,
                                               leaf_pixels):
    y0, y1, x0, x1 = node.region
    oy0, oy1, ox0, ox1 = node.own
    outer = ((min(height, y1 + reach) - max(0, y0 - reach))
             * (min(width, x1 + reach) - max(0, x0 - reach)))
    s, r = (oy1 - oy0) * (ox1 - ox0), outer - (y1 - y0) * (x1 - x0)
    if not r:
      z = s
    elif node.children:
      z = 0
    else:
      z = grid_ordering.interior_pixels(node.region, height, width, reach)
    yield s, r, z


def factor_nbytes(height: int, width: int, reach: int, storage=np.float64,
                  leaf_pixels: int = LEAF_PIXELS) -> int:
  """Bytes of the factor `factorise_taps` would make (from the tree alone,
  nothing is factorised): what a caller checks before a large solve."""
  packed = np.dtype(storage) == np.float32
  total = sum((s * (s + 1) // 2 if packed else s * s) + r * (s - z)
              for s, r, z in _front_sizes(height, width, reach, leaf_pixels))
  return total * np.dtype(storage).itemsize


def factor_flops(height: int, width: int, reach: int,
                 leaf_pixels: int = LEAF_PIXELS) -> int:
  """Floating-point operations of `factorise_taps`'s dense kernels: per
  front s^3/3 (dpotrf) + r c^2 (dtrsm) + r^2 c (dsyrk), s own and r ring
  pixels, c = s - z the own columns coupled to the ring (the root's update
  is not formed). Divided by a BLAS rate it is the time the factorisation
  cannot go below on one core."""
  sizes = list(_front_sizes(height, width, reach, leaf_pixels))
  total = sum(s ** 3 // 3 + r * (s - z) ** 2 for s, r, z in sizes)
  return total + sum(r * r * (s - z) for s, r, z in sizes[:-1])


class Front(NamedTuple):
  start: int           # the own pixels are order[start:stop]
  stop: int
  ring_rank: np.ndarray  # the ring pixels are order[ring_rank]
  l_own: np.ndarray    # lower Cholesky factor of F_oo: [n_own, n_own],
                       # or packed in LAPACK's rectangular full packed
                       # format (?trttf) when stored in float32
  l_ring: np.ndarray   # [n_ring, n_own - z]: F_ro L_oo^-T without its
                       # first z columns (zero: FrontPlan.z)


class Factor(NamedTuple):
  n: int
  order: np.ndarray    # int64 [N]: the pixels in elimination order
  fronts: List[Front]  # the NumPy backend's fronts ([] if compiled)
  # The compiled backend's: (the grid's FlatPlan, the buffer that holds
  # every front's L_oo then every L_ro, column-major: float64 [size], or
  # float32 [size32] with each L_oo packed, FlatPlan.p_off).
  compiled: Optional[Tuple[FlatPlan, np.ndarray]] = None

  @property
  def nbytes(self) -> int:
    """Bytes of the factor's entries (what `factor_nbytes` predicts)."""
    if self.compiled is not None:
      return self.compiled[1].nbytes
    return sum(f.l_own.nbytes + f.l_ring.nbytes for f in self.fronts)


BACKENDS = ('auto', 'compiled', 'numpy')


def _use_compiled(backend: Optional[str]) -> bool:
  """Whether `factorise_taps` runs the compiled kernels: 'auto' does when
  numba imports; 'numpy' never."""
  backend = BACKEND if backend is None else backend
  if backend not in BACKENDS:
    raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
  if backend == 'numpy':
    return False
  if not direct_kernels.available():
    if backend == 'compiled':
      raise ValueError("backend='compiled' is not available: numba does not "
                       "import")
    return False
  return True


def taps_from_sparse(a_mat, height: int, width: int, reach: int
                     ) -> np.ndarray:
  """[T, H, W] taps (`full_offsets(reach)`) of a sparse grid matrix.

  Raises ValueError if a_mat has the wrong shape or couples pixels further
  than `reach` apart.
  """
  n = height * width
  if a_mat.shape != (n, n):
    raise ValueError(f'a_mat is {a_mat.shape}, expected ({n}, {n}) for a '
                     f'{height}x{width} grid')
  coo = scipy.sparse.coo_matrix(a_mat)
  (ry, rx), (cy, cx) = np.divmod(coo.row, width), np.divmod(coo.col, width)
  dy, dx = cy - ry, cx - rx
  far = (np.abs(dy) > reach) | (np.abs(dx) > reach)
  if np.any(far & (coo.data != 0)):
    raise ValueError(f'a_mat couples pixels more than reach={reach} apart')
  keep = ~far
  tap = (dy[keep] + reach) * (2 * reach + 1) + dx[keep] + reach
  taps = np.zeros((2 * reach + 1) ** 2 * n)
  np.add.at(taps, tap * n + coo.row[keep], coo.data[keep])
  return taps.reshape(-1, height, width)


def factorise(a_mat, height: int, width: int, reach: int,
              leaf_pixels: int = LEAF_PIXELS,
              backend: Optional[str] = None) -> Factor:
  """Cholesky factor of the SPD sparse matrix `a_mat` on a height x width
  grid (pixels row-major, coupling pixels at most `reach` apart in each
  axis); see `factorise_taps`."""
  return factorise_taps(taps_from_sparse(a_mat, height, width, reach),
                        reach, leaf_pixels, backend=backend)


def factorise_taps(taps: np.ndarray, reach: int,
                   leaf_pixels: int = LEAF_PIXELS,
                   storage=np.float64,
                   backend: Optional[str] = None) -> Factor:
  """Cholesky factor of the SPD matrix given by its taps.

  Args:
    taps: float64 [T, H, W], T = (2 reach + 1)^2: taps[t, y, x] =
      A[(y, x), (y + dy_t, x + dx_t)] for the offsets of
      `full_offsets(reach)` (A symmetric; taps reaching outside the grid
      are ignored).
    reach: the stencil's reach.
    leaf_pixels: the largest block eliminated as one leaf front.
    storage: the factor's dtype: float64, or float32 (computed in float64
      and rounded; the own blocks are packed: 0.42x the memory of
      float64. `solve` then runs in float32 and is accurate to about
      cond(A) * 1e-7, so use it inside iterative refinement).

  Raises:
    numpy.linalg.LinAlgError if a front is not numerically positive
    definite.
  """
  t, height, width = taps.shape
  if t != (2 * reach + 1) ** 2:
    raise ValueError(f'taps has {t} taps, expected {(2 * reach + 1) ** 2} '
                     f'for reach {reach}')
  storage = np.dtype(storage)
  if storage not in (np.float64, np.float32):
    raise ValueError(f'storage must be float64 or float32, got {storage}')
  values = np.ascontiguousarray(taps, np.float64).reshape(-1)
  pack, = scipy.linalg.lapack.get_lapack_funcs(('trttf',), dtype=storage)
  if _use_compiled(backend):
    return _factorise_compiled(
        values, plan(height, width, reach, leaf_pixels, one_pass=False),
        storage)
  grid = plan(height, width, reach, leaf_pixels)
  updates = {}
  fronts = []
  last = grid.num_fronts - 1
  with _one_blas_thread():
    for k, fp in enumerate(grid.fronts):
      s, r, z = fp.stop - fp.start, len(fp.ring_rank), fp.z
      blocks = (np.zeros((s, s), order='F'),
                np.zeros((r, s - z), order='F'), np.zeros((r, r), order='F'))
      # .T.reshape(-1): the Fortran-order flat view (no copy).
      blocks[OO].T.reshape(-1)[fp.dst_oo] = values[fp.src_oo]
      blocks[RO].T.reshape(-1)[fp.dst_ro] = values[fp.src_ro]
      for child, child_blocks in fp.children:
        update = updates.pop(child)
        # Extend-add, lower triangle, rectangle by rectangle (a child's
        # ring is a few runs of consecutive positions in this front).
        for block, row, col, ca, cb, na, nb in child_blocks:
          blocks[block][row:row + na, col:col + nb] += (
              update[ca:ca + na, cb:cb + nb])
      l_own, info = scipy.linalg.lapack.dpotrf(blocks[OO], lower=1, clean=1,
                                               overwrite_a=1)
      if info != 0:
        raise np.linalg.LinAlgError(
            f'front {k} ({s} pixels) is not positive definite (dpotrf '
            f'info {info})')
      l_ring, update = blocks[RO], blocks[RR]
      if r and s > z:
        # L_ro = F_ro L_oo^-T, in place; F_ro's first z columns are zero,
        # so are L_ro's, and the rest needs L_oo's trailing block only.
        l_ring = scipy.linalg.blas.dtrsm(1.0, l_own[z:, z:], l_ring, side=1,
                                         lower=1, trans_a=1, overwrite_b=1)
        if k != last:
          # F_rr - L_ro L_ro^T, lower triangle (SYRK, in place; the upper
          # is not read).
          update = scipy.linalg.blas.dsyrk(-1.0, l_ring, beta=1.0, c=update,
                                           lower=1, overwrite_c=1)
      if r and k != last:
        updates[k] = update
      if storage == np.float32:  # the memory-saving storage: packed
        l_own, _ = pack(l_own.astype(storage), uplo='L')
      fronts.append(Front(fp.start, fp.stop, fp.ring_rank, l_own,
                          l_ring.astype(storage, copy=False)))
  return Factor(height * width, grid.order, fronts)


def _factorise_compiled(values: np.ndarray, grid: Plan, storage) -> Factor:
  flat = grid.flat
  if storage == np.float64:
    out = direct_kernels.buffer(flat.size)
  else:  # the memory-saving storage: its update stack is not kept for
    out = direct_kernels.buffer(flat.size32, np.float32)  # the next image
  stack = direct_kernels.buffer(max(1, flat.stack_size),
                                keep=storage == np.float64)
  with _one_blas_thread():
    k = direct_kernels.factorise(values, flat, out, stack,
                                 direct_kernels.threads())
  del stack
  if k >= 0:
    raise np.linalg.LinAlgError(
        f'front {k} ({flat.own[k]} pixels) is not positive definite '
        f'(dpotrf)')
  # The solves need no assembly maps: a plan made for this call only (a
  # large grid) gives their memory back now (218 MB at 1024x2048).
  none = np.zeros(0, np.int32)
  flat = flat._replace(dst_oo=none, src_oo=none, dst_ro=none, src_ro=none,
                       blk=np.zeros((0, 8), np.int64))
  return Factor(grid.height * grid.width, grid.order, [], (flat, out))


def matvec(taps: np.ndarray, x: np.ndarray) -> np.ndarray:
  """A x for A given by its taps ([T, H, W], as `factorise_taps`) and x
  [H * W] or [H * W, C], in strips of rows that stay in cache."""
  t, height, width = taps.shape
  if (direct_kernels.available() and taps.dtype == np.float64
      and np.result_type(x) == np.float64):
    x2 = np.ascontiguousarray(x.reshape(height * width, -1))
    return stencil_kernels.matvec(np.ascontiguousarray(taps), x2,
                                  direct_kernels.threads()).reshape(x.shape)
  reach = (int(round(t ** 0.5)) - 1) // 2
  # [C, H + 2r, W + 2r]: every product runs along contiguous rows.
  padded = np.pad(np.moveaxis(x.reshape(height, width, -1), -1, 0),
                  ((0, 0), (reach, reach), (reach, reach)))
  out = np.empty((padded.shape[0], height, width),
                 np.result_type(taps, x))
  rows = max(1, 2 ** 15 // (padded.shape[0] * width))
  offsets = full_offsets(reach)
  for y0 in range(0, height, rows):
    y1 = min(height, y0 + rows)
    acc = out[:, y0:y1]
    acc[...] = 0
    for k, (dy, dx) in enumerate(offsets):
      acc += taps[k, y0:y1] * padded[:, reach + dy + y0:reach + dy + y1,
                                     reach + dx:reach + dx + width]
  return np.moveaxis(out, 0, -1).reshape(x.shape)


def solve(factor: Factor, rhs: np.ndarray) -> np.ndarray:
  """A^-1 rhs for rhs [N] or [N, C], in the factor's precision; returns
  float64."""
  rhs = np.asarray(rhs, np.float64)
  if rhs.shape[0] != factor.n:
    raise ValueError(f'rhs has {rhs.shape[0]} rows, the factor {factor.n}')
  if factor.compiled is not None:
    x = np.ascontiguousarray(rhs.reshape(factor.n, -1)[factor.order])
    with _one_blas_thread():
      direct_kernels.solve(x, *factor.compiled, direct_kernels.threads())
    out = np.empty(x.shape)
    out[factor.order] = x
    return out.reshape(rhs.shape)
  dtype = factor.fronts[-1].l_own.dtype
  # In elimination order, every front's own pixels are a slice.
  x = rhs.reshape(factor.n, -1)[factor.order].astype(dtype)
  trtrs, tfsm = scipy.linalg.lapack.get_lapack_funcs(('trtrs', 'tfsm'),
                                                     dtype=dtype)

  def triangular(l_own, b, trans):  # L^-1 b or L^-T b
    if l_own.ndim == 1:  # packed
      return tfsm(1.0, l_own, b, uplo='L', trans='T' if trans else 'N')
    return trtrs(l_own, b, lower=1, trans=int(trans))[0]

  with _one_blas_thread():
    # L_ro's first z columns are zero and not stored (Front.l_ring).
    for f in factor.fronts:  # forward: L y = b
      y = triangular(f.l_own, x[f.start:f.stop], False)
      x[f.start:f.stop] = y
      if len(f.ring_rank):
        x[f.ring_rank] -= f.l_ring @ y[len(y) - f.l_ring.shape[1]:]
    for f in reversed(factor.fronts):  # backward: L^T x = y
      b = x[f.start:f.stop]
      if len(f.ring_rank):
        b = b.copy()
        b[len(b) - f.l_ring.shape[1]:] -= f.l_ring.T @ x[f.ring_rank]
      x[f.start:f.stop] = triangular(f.l_own, b, True)
  out = np.empty(x.shape)
  out[factor.order] = x
  return out.reshape(rhs.shape)
