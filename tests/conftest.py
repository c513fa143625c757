"""Test-wide settings: 2 host CPU devices and strict rank promotion.

These must be set before jax initialises its backends, which is why they live
here and not in the individual test modules.
"""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# Every run builds its own compiled steps (cfcls.training.run_lib); the persistent
# compilation cache lets a test that builds the same run again (a restart, an
# evaluation after training) reuse the executables instead of compiling anew.
jax.config.update(
    "jax_compilation_cache_dir",
    os.path.join(tempfile.gettempdir(), "cfcls_tests_jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
