"""Test-wide settings: 2 host CPU devices, fast compiles, strict rank
promotion, one cache.

These must be set before jax initialises its backends, which is why they live
here and not in the individual test modules.
"""
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
