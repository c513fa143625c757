"""cfcls.training.host_memory: freed large blocks are reused, not re-faulted."""
import json
import os
import subprocess
import sys

import pytest

from cfcls.training import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In a child process (the setting holds for the rest of a process): page
# faults of writing a fresh 64 MiB numpy array, then freeing it, four times,
# before and after keep_freed_memory.
_CHILD = r"""
import json, resource, sys
import numpy as np
from cfcls.training import host_memory

def faults_per_cycle(cycles=4):
  start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(cycles):
    block = np.empty(64 << 20, np.uint8)
    block[::4096] = 1  # touch every page
    del block
  return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / cycles

faults_per_cycle(1)
before = faults_per_cycle()
took = host_memory.keep_freed_memory()
faults_per_cycle(1)  # the first block after the change is new to the heap
kept = faults_per_cycle()
print(json.dumps({'before': before, 'kept': kept, 'took': took}))
"""


@pytest.mark.skipif(host_memory._glibc() is None,  # pylint: disable=protected-access
                    reason='the setting exists only with glibc (Linux)')
def test_freed_blocks_are_reused():
  out = subprocess.run([sys.executable, '-c', _CHILD], cwd=ROOT, check=True,
                       capture_output=True, text=True)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['took']
  # glibc's default: a block this large is mapped anew on every allocation,
  # and a new mapping faults at least once per page (numpy asks the kernel
  # for 2 MiB pages: 32 of them; XLA's buffers take 4 KiB ones, 16384).
  assert result['before'] >= (64 << 20) // (2 << 20)
  # Kept: the freed block is the next one, its pages already there.
  assert result['kept'] < 0.05 * result['before']


def test_elsewhere_it_does_nothing(monkeypatch):
  monkeypatch.setattr(host_memory.sys, 'platform', 'darwin')
  assert host_memory.keep_freed_memory() is False
