"""Test-wide settings: 2 host CPU devices, fast compiles, strict rank
promotion, one cache.

These must be set before jax initialises its backends, which is why they live
here and not in the individual test modules.
"""
import importlib.util
import os
import tempfile

import compile_flags  # noqa: E402  (tests/ is on sys.path: rootdir conftest)

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
# Fast, unoptimised XLA compiles (tests/compile_flags.py).
os.environ["XLA_FLAGS"] = compile_flags.with_fast_compile(
    os.environ["XLA_FLAGS"])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Every run builds its own compiled steps (cfcls.training.run_lib); the
# persistent compilation cache lets a test that builds the same run again (a
# restart, an evaluation after training) reuse the executables instead of
# compiling anew. It is one folder for the whole session, set in the
# environment so that the `python train.py` subprocesses the tests start use
# it too: a subprocess and the test process compile the same program for the
# same devices to the same cache key (xla_force_host_platform_device_count is
# not part of the key), so e.g. the reference run of tests/test_faults.py
# loads the train step its subprocesses compiled (measured: 43 s of CPU to
# compile the tiny config's train step, 6 s when it is loaded).
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), "cfcls_tests_jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir",
                  os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


# pytest-xdist (`python -m pytest -q -n 2 tests`, README.md) runs the modules
# on 2 workers. pytest_xdist_make_scheduler below hands out whole modules
# (module fixtures are built once), with the modules that start several
# train.py processes at a time (gloo collectives, heartbeat timeouts) as one
# unit: they share one prepared dataset (faults_helpers.shared_dir) and run
# in turn on one worker rather than beside each other on 2 cores. Units go
# out in the order of pytest_collection_modifyitems: the longest first
# (seconds of a serial run on a 2-core machine, in brackets), so that no worker
# is left with a long one at the end. The order does not matter to the
# results: every module builds what it needs.
TRAIN_PROCESS_MODULES = ("test_multihost_faults",  # (90)
                         "test_faults",  # (70)
                         "test_multihost")  # (40)
LONGEST_FIRST = TRAIN_PROCESS_MODULES + (
    "test_console",  # (70)
    "test_train_step",  # (55)
    "test_train_lib",  # (50)
    "test_light_models",  # (45)
    "test_laplacian",  # (45)
    "test_models",  # (30)
    "test_matting",  # (30)
    "test_train_cli",  # (25)
    "test_reliability",  # (25)
    "test_annotate_browser",  # (20)
)


def module_name(nodeid: str) -> str:
  """The test module of a node id: tests/test_x.py::test_y -> test_x."""
  return os.path.splitext(os.path.basename(nodeid.split("::", 1)[0]))[0]


def xdist_unit(nodeid: str) -> str:
  """The unit of work (one worker, in turn) a test belongs to."""
  module = module_name(nodeid)
  return "train_processes" if module in TRAIN_PROCESS_MODULES else module


def pytest_collection_modifyitems(config, items):
  del config  # unused
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(module_name(item.nodeid), len(rank)))


if importlib.util.find_spec("xdist") is not None:

  def pytest_xdist_make_scheduler(config, log):
    """Whole modules per worker, the train-process modules as one unit."""
    if config.getvalue("dist") != "load":  # another --dist asked for
      return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: E402  pylint: disable=g-import-not-at-top

    class ModuleScheduling(LoadScopeScheduling):

      def _split_scope(self, nodeid):
        return xdist_unit(nodeid)

    config.option.loadscopereorder = False  # the collection's order
    return ModuleScheduling(config, log)
