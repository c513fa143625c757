"""The host's allocator on the CPU backend: keep freed memory for the next step.

  host_memory.keep_freed_memory()   # once, when training starts

XLA's CPU runtime takes each call's temporary buffers as one block and frees
it when the call returns; for the demo's train step the block is over 32 MiB.
glibc's malloc serves blocks that large with mmap (its dynamic mmap threshold
stops rising at 32 MiB on 64-bit systems, mallopt(3)) and unmaps them at
free, so every step maps the block anew and the kernel zero-fills it page by
page: ~8,600 page faults per demo step, and the step's time with them
(benchmarks/host_memory_bench.py measures both).

keep_freed_memory() turns that off for the rest of the process: no mmap
for large blocks (M_MMAP_MAX = 0, they come from the heap like small ones)
and no trimming of the heap's free top (M_TRIM_THRESHOLD at its largest),
so a freed step's block is reused by the next step. Memory freed meanwhile
stays with the process until it exits. train_lib sets it when the training
loop starts, after the dataset and the closed-form targets are prepared;
train.py --nokeep_freed_memory leaves glibc's defaults. It is not undone:
any mallopt call switches glibc's adaptive mmap threshold off for good, so
setting the old limits again would give a fixed threshold, not glibc's
defaults. Elsewhere than glibc (macOS, musl) this does nothing.
"""

import ctypes
import ctypes.util
import sys

# mallopt(3) parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


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


def keep_freed_memory() -> bool:
  """Makes malloc keep freed memory for reuse; True where it took effect."""
  libc = _glibc()
  if libc is None:
    return False
  ok = libc.mallopt(_M_MMAP_MAX, ctypes.c_int(0))
  ok &= libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_INT_MAX))
  return bool(ok)
