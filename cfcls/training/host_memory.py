"""The host's allocator on the CPU backend: keep freed memory for the next step.

  with host_memory.freed_memory_kept():   # around the training loop
    ...

XLA's CPU runtime takes each call's temporary buffers as one block and frees
it when the call returns; for the demo's train step the block is over 32 MiB.
glibc's malloc serves blocks that large with mmap (its dynamic mmap threshold
stops rising at 32 MiB on 64-bit systems, mallopt(3)) and unmaps them at
free, so every step maps the block anew and the kernel zero-fills it page by
page: ~8,600 page faults per demo step, and the step's time with them
(benchmarks/host_memory_bench.py measures both).

keep_freed_memory() turns that off: no mmap for large blocks (M_MMAP_MAX =
0, they come from the heap like small ones) and no trimming of the heap's
free top (M_TRIM_THRESHOLD at its largest), so a freed step's block is
reused by the next step. Memory freed meanwhile stays with the process.
It is not for everything: the closed-form solver (cfcls.matting, the
targets solved before training) ran ~15 % slower under it, so train_lib
sets it around the training loop only (`freed_memory_kept`) and
restore_defaults() gives glibc's limits back afterwards (its mmap threshold
then stays where it was instead of adapting). train.py
--nokeep_freed_memory leaves glibc's defaults throughout. Elsewhere than
glibc (macOS, musl) all of this does nothing.
"""

import contextlib
import ctypes
import ctypes.util
import sys

# mallopt(3) parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1
# glibc's defaults (DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX in malloc.c).
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536


def _glibc():
  """glibc's handle, or None where the C library is another."""
  if not sys.platform.startswith('linux'):
    return None
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement
  except (OSError, AttributeError):
    return None
  return libc


def _mallopt(mmap_max: int, trim_threshold: int) -> bool:
  libc = _glibc()
  if libc is None:
    return False
  ok = libc.mallopt(_M_MMAP_MAX, ctypes.c_int(mmap_max))
  ok &= libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(trim_threshold))
  return bool(ok)


def keep_freed_memory() -> bool:
  """Makes malloc keep freed memory for reuse; True where it took effect."""
  return _mallopt(0, _INT_MAX)


def restore_defaults() -> bool:
  """glibc's mmap and trim limits again; True where it took effect."""
  return _mallopt(_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD)


@contextlib.contextmanager
def freed_memory_kept(enabled: bool = True):
  """keep_freed_memory() for the block (if `enabled`), defaults after it."""
  kept = enabled and keep_freed_memory()
  try:
    yield kept
  finally:
    if kept:
      restore_defaults()
