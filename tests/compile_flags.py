"""XLA flags of the test session and of the train.py runs the tests start.

The tests' programs are tiny (a few steps of a 1/8-width network on 32-pixel
crops, matting systems of a few hundred pixels), so XLA's CPU compiler, not
running them, is where the suite's time goes: a cold 3-step run of
tests/faults_tiny_config.py took 76 s, 55 CPU-s, and 37 s, 28 CPU-s with
LLVM's optimisation off (2-core CPU, load ~3), with the same losses to the
printed digit; the whole suite on a clean clone with a cold cache, 18 min
33 s without and 13 min 24 s with (2026-12-06, idle, this 2-core VM, 462
tests). Optimisation changes how fast a program runs, not what it
computes (XLA CPU keeps fast-math off by default), and every test
that compares two runs compiles both with the same flags.
"""
import os

# Appended to XLA_FLAGS by tests/conftest.py and by every subprocess env the
# tests build (tests/faults_helpers.py, test_console, test_reliability,
# test_train_cli).
FAST_COMPILE = ('--xla_backend_optimization_level=0 '
                '--xla_llvm_disable_expensive_passes=true')


if os.environ.get('CFCLS_TEST_FAST_COMPILE', '1') == '0':  # for comparisons
  FAST_COMPILE = ''


def with_fast_compile(xla_flags: str = '') -> str:
  """xla_flags with FAST_COMPILE added (once)."""
  if FAST_COMPILE in xla_flags:
    return xla_flags
  return f'{xla_flags} {FAST_COMPILE}'.strip()
