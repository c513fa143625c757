"""Several processes (hosts) training together: jax.distributed set-up.

Every host runs the same `train.py`; `initialize` joins them into one JAX
runtime before JAX is used, after which `jax.devices()` lists the devices of
all hosts, each host feeds the rows of its own devices (cfcls.parallel) and
reads its own shard of the data (cfcls.data.pipeline, by process index).

Where the settings come from (a flag wins over the environment):
  coordinator address  --coordinator_address  JAX_COORDINATOR_ADDRESS
  number of processes  --num_processes        JAX_NUM_PROCESSES
  this process's id    --process_id           JAX_PROCESS_ID
With none of them set the run is a single process. With --distributed_auto
the unset ones are left to JAX's own cluster detection (Slurm, Open MPI,
Cloud TPU, Kubernetes).

On the CPU the processes exchange data with gloo collectives
(`jax_cpu_collectives_implementation`), and `cpu_devices` sets how many CPU
devices each process has (`jax_num_cpu_devices`). Both must be set before the
first JAX computation, and so must `jax.distributed.initialize`.

This module does not import tensorflow.
"""

import dataclasses
import os
from typing import Mapping, Optional

from absl import logging
import jax
import numpy as np

ENV_COORDINATOR = 'JAX_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'


@dataclasses.dataclass(frozen=True)
class Settings:
  """Resolved multi-process settings; None = unset (single process or auto)."""
  coordinator_address: Optional[str] = None
  num_processes: Optional[int] = None
  process_id: Optional[int] = None
  auto: bool = False

  @property
  def multi_process(self) -> bool:
    if self.auto:
      return True
    return self.num_processes is not None and self.num_processes > 1


def _env_int(env: Mapping[str, str], name: str) -> Optional[int]:
  value = env.get(name, '').strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'environment variable {name}={value!r} is not an '
                     'integer') from None


def resolve(coordinator_address: Optional[str] = None,
            num_processes: Optional[int] = None,
            process_id: Optional[int] = None, *, auto: bool = False,
            env: Optional[Mapping[str, str]] = None) -> Settings:
  """Merges flags with the environment and checks them.

  Raises:
    ValueError naming the missing or impossible setting (e.g. a process id
    without a process count, process_id >= num_processes).
  """
  env = os.environ if env is None else env
  address = coordinator_address or env.get(ENV_COORDINATOR) or None
  count = num_processes if num_processes is not None else _env_int(
      env, ENV_NUM_PROCESSES)
  pid = process_id if process_id is not None else _env_int(env,
                                                           ENV_PROCESS_ID)
  settings = Settings(address, count, pid, auto)
  if auto:
    return settings
  if count is not None and count < 1:
    raise ValueError(f'--num_processes={count} must be >= 1')
  if count is None or count == 1:
    if count is None and (address is not None or pid is not None):
      raise ValueError(
          'multi-process run: --coordinator_address / --process_id given but '
          f'not --num_processes (or {ENV_NUM_PROCESSES})')
    if pid not in (None, 0):
      raise ValueError(f'--process_id={pid} but --num_processes=1')
    return Settings(None, count, pid, False)
  missing = [name for name, value in (
      (f'--coordinator_address (or {ENV_COORDINATOR})', address),
      (f'--process_id (or {ENV_PROCESS_ID})', pid)) if value is None]
  if missing:
    raise ValueError(f'--num_processes={count} needs ' + ' and '.join(missing))
  if not 0 <= pid < count:
    raise ValueError(f'--process_id={pid} must be in [0, {count}) for '
                     f'--num_processes={count}')
  if ':' not in address:
    raise ValueError(f'--coordinator_address={address!r} must be HOST:PORT '
                     '(process 0 listens on that port)')
  return settings


def initialize(settings: Settings, cpu_devices: Optional[int] = None,
               initialization_timeout: int = 300,
               heartbeat_timeout: int = 100) -> bool:
  """Sets up JAX for this process; call before any other JAX use.

  Args:
    settings: from `resolve`.
    cpu_devices: CPU devices of this process (None: JAX's default, or
      XLA_FLAGS=--xla_force_host_platform_device_count).
    initialization_timeout: seconds to wait for all processes to join.
    heartbeat_timeout: seconds without a heartbeat after which a process
      counts as dead; the runtime then stops the other processes.

  Returns:
    True if jax.distributed was initialised (several processes).
  """
  if cpu_devices is not None:
    if cpu_devices < 1:
      raise ValueError(f'--cpu_devices={cpu_devices} must be >= 1')
    jax.config.update('jax_num_cpu_devices', int(cpu_devices))
  if not settings.multi_process:
    return False
  # Only used by the CPU backend; accelerators bring their own collectives.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(
      coordinator_address=settings.coordinator_address,
      num_processes=settings.num_processes, process_id=settings.process_id,
      initialization_timeout=initialization_timeout,
      heartbeat_timeout_seconds=heartbeat_timeout)
  logging.info('Process %d of %d (coordinator %s): %d local, %d global '
               'devices', jax.process_index(), jax.process_count(),
               settings.coordinator_address or 'auto-detected',
               jax.local_device_count(), jax.device_count())
  return True


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is True on any of them (a collective).

  All processes must call it at the same point (e.g. once per step); with one
  process it is just `flag`.
  """
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  flags = multihost_utils.process_allgather(np.asarray(flag, np.int32))
  return bool(np.any(flags))


def barrier(name: str, timeout_s: Optional[float] = None):
  """Waits until every process reaches the barrier `name` (no-op alone).

  Args:
    name: the barrier's name; every process must use the same.
    timeout_s: with a timeout, the wait goes through the distributed
      runtime's coordination service (no device computation, so a long wait,
      e.g. while process 0 prepares a dataset, cannot time out a collective);
      it raises once the timeout passes.
  """
  if jax.process_count() == 1:
    return
  if timeout_s is not None:
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
    client = jax_distributed.global_state.client
    if client is not None:
      client.wait_at_barrier(name, timeout_in_ms=int(timeout_s * 1000))
      return
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  multihost_utils.sync_global_devices(name)
