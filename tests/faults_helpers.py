"""Shared by tests/test_faults.py and tests/test_multihost.py.

Runs `python train.py --config=tests/faults_tiny_config.py` in subprocesses
(their own CPU device count, the test session's persistent compilation cache
of tests/conftest.py, so that later runs, and the reference in the test
process, skip most of the compile time), and computes the reference
parameters in the test process with the library's own train step.
"""

import os
import re
import socket
import subprocess
import sys
import time
from typing import Optional

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

import compile_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'tests', 'faults_tiny_config.py')
TRAIN_KEYS = ('image', 'scribbles', 'mask', 'valid', 'presence')


def shared_dir(tmp_path_factory) -> str:
  """One folder per test session: prepared data, the multi-process cache."""
  path = tmp_path_factory.getbasetemp() / 'cfcls_faults'
  path.mkdir(exist_ok=True)
  return str(path)


def load_config(data_dir: str, *overrides: str):
  """tests/faults_tiny_config.py with overrides, exactly as train.py loads it."""
  values = flags.FlagValues()
  argv = ['train.py', f'--config={CONFIG}',
          f'--config.data.data_dir={data_dir}', *overrides]
  config_flags.DEFINE_config_file('config', CONFIG, flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  return values.config


def prepare_data(data_dir: str):
  """Prepares the tiny synthetic dataset once (subprocesses then only read)."""
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.dataset_info(load_config(data_dir).data)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def subprocess_env(cache_dir: Optional[str] = None) -> dict:
  """The subprocesses' environment; every compile is written to the cache.

  cache_dir None: the test process's compilation cache (tests/conftest.py),
  so that a one-process run loads what the test process or an earlier run
  compiled, and the reference here loads what the runs compiled. Runs of
  several processes get a folder of their own, cold in each session: there
  only process 0 writes cache entries, and process 1's programs on its own
  devices (the initial state) have keys of their own, so with a warm cache
  process 1 alone compiles them and reaches the first collective ~30 s after
  process 0 under load, while gloo gives a new group of devices 30 s to join
  (measured: 3 of 3 runs of 2 processes x 2 devices failed so).
  """
  env = dict(os.environ)
  # Devices come from --cpu_devices; compiles as in the test process.
  env['XLA_FLAGS'] = compile_flags.FAST_COMPILE
  if cache_dir is None:
    cache_dir = jax.config.jax_compilation_cache_dir
    assert cache_dir, 'tests/conftest.py sets the compilation cache'
  env.update(CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
             JAX_NUMPY_RANK_PROMOTION='raise',
             JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  return env


def train_command(workdir: str, data_dir: str, *args: str) -> list:
  return [sys.executable, os.path.join(ROOT, 'train.py'),
          f'--config={CONFIG}', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', '--cpu_devices=2', *args]


def start(command, log_path: str, env: dict) -> subprocess.Popen:
  with open(log_path, 'w') as log:  # the child keeps its own descriptor
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def read(path: str) -> str:
  with open(path, errors='replace') as f:
    return f.read()


def logged_steps(log_path: str) -> list:
  """Steps whose training loss the run logged (`] step k/N  loss ...`)."""
  return [int(k) for k in re.findall(r'\] step (\d+)/\d+  loss ',
                                     read(log_path))]


def checkpoint_steps(workdir: str) -> list:
  """Finished checkpoints (orbax writes to a temporary name, then renames)."""
  path = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def wait_until(predicate, proc: subprocess.Popen, log_path: str,
               timeout: float = 300.0, poll: float = 0.02):
  """Polls predicate() until it holds; fails if proc ends first."""
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    if predicate():
      return
    if proc.poll() is not None:
      raise AssertionError(f'run ended (rc {proc.returncode}) before the '
                           f'awaited point:\n{read(log_path)[-4000:]}')
    time.sleep(poll)
  proc.kill()
  raise AssertionError(f'timed out:\n{read(log_path)[-4000:]}')


def finish(proc: subprocess.Popen, log_path: str, timeout: float = 300.0):
  proc.wait(timeout=timeout)
  return proc.returncode, read(log_path)


def build_run(config):
  from cfcls.training import run_lib  # pylint: disable=g-import-not-at-top
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  info = pipeline.dataset_info(config.data)
  return run_lib.build(config, info.num_classes, info.class_names)


def reference_states(config, batches, num_steps: int) -> list:
  """Host copies of the train state after each of `num_steps` steps.

  batches: iterator of host numpy batches holding the whole global batch,
  fed to the library's compiled train step on this process's devices.
  """
  from cfcls import parallel  # pylint: disable=g-import-not-at-top
  from cfcls.training import run_lib  # pylint: disable=g-import-not-at-top
  run = build_run(config)
  state = run_lib.initial_state(run)
  train_step = run.train_step
  out = []
  for _ in range(num_steps):
    batch = parallel.host_batch_to_global(next(batches), run.mesh,
                                          keys=TRAIN_KEYS)
    state, _ = train_step(state, batch)
    out.append(jax.tree_util.tree_map(np.array, jax.device_get(state)))
  return out


def restore(config, workdir: str):
  """(step, host state) of the newest readable checkpoint in workdir."""
  from cfcls.training import checkpointing  # pylint: disable=g-import-not-at-top
  from cfcls.training import run_lib  # pylint: disable=g-import-not-at-top
  run = build_run(config)
  ckpts = checkpointing.Checkpoints(workdir, keep=config.keep_checkpoints)
  try:
    state, step = ckpts.restore_latest(run_lib.abstract_state(run))
  finally:
    ckpts.close()
  assert step > 0, f'no checkpoint in {workdir}'
  return step, jax.tree_util.tree_map(np.array, jax.device_get(state))


def assert_states_close(actual, expected, rtol=1e-4, trace_rtol=1e-3):
  """Same step, params, BN statistics and optimiser state (float tolerance).

  Per tensor, |actual - expected| <= rtol * max |expected|: sums taken in
  another order (another device count) differ by rounding relative to the
  tensor's scale, which for entries near zero is a large relative error.
  The optimiser state (momentum traces: sums of raw gradients) gets
  trace_rtol: a BatchNorm scale's or bias's gradient is a sum over pixels
  that cancels to ~1e-3..1e-4 of its terms, and rounding is relative to the
  terms (measured: 1.05e-4 on the patterned scenes, 2 processes vs 1, while
  every parameter and BN statistic agrees to < 1e-4). Biases start at zero,
  so after a few SGD steps a bias is -lr times the sum of its traces and
  inherits their rounding: they get trace_rtol too (measured: 1.1e-4 on a
  BatchNorm bias with the tests' unoptimised compiles, tests/compile_flags.py;
  every other parameter < 1e-4).
  """
  assert int(actual.step) == int(expected.step)
  worst = []
  for group, tol in (('params', rtol), ('batch_stats', rtol),
                     ('opt_state', trace_rtol)):
    leaves_a, tree_a = jax.tree_util.tree_flatten_with_path(
        getattr(actual, group))
    leaves_e, tree_e = jax.tree_util.tree_flatten(getattr(expected, group))
    assert tree_a == tree_e, group
    for (path, a), e in zip(leaves_a, leaves_e):
      a, e = np.asarray(a), np.asarray(e)
      name = group + jax.tree_util.keystr(path)
      assert a.shape == e.shape and a.dtype == e.dtype, name
      if not e.size:
        continue
      scale = max(float(np.max(np.abs(e))), 1e-30)
      error = float(np.max(np.abs(a.astype(np.float64) - e))) / scale
      leaf_tol = trace_rtol if name.endswith("['bias']") else tol
      worst.append((error / leaf_tol, error, name))
  worst.sort(reverse=True)
  assert worst and worst[0][0] <= 1.0, worst[:5]


def assert_params_differ(a, b):
  """Guards against comparing a state with itself (training did change it)."""
  diff = max(float(np.max(np.abs(x - y))) for x, y in zip(
      jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)))
  assert diff > 1e-4, diff
