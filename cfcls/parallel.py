"""Device mesh, shardings and host -> device transfer for data parallelism.

One 1-D mesh over all devices with the axis 'data'. A global batch is split
along its first dimension over that axis; each host supplies the rows of its
own devices (`host_batch_to_global`), so several hosts can join without
changing the step.
"""

from typing import Any, Dict, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def create_mesh(devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A 1-D mesh ('data',) over `devices` (default: all devices, all hosts)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Batch dimension split over the 'data' axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def local_copy(tree):
  """A replicated pytree as arrays on one local device of this process.

  Code that runs on one process only (summary pictures, matting errors,
  prediction on process 0) must not take global arrays that span other
  processes' devices: a computation on them would wait for processes that
  never join it. Every process holds a full replica of a replicated array.
  """
  def leaf(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return x.addressable_data(0)
    return x
  return jax.tree_util.tree_map(leaf, tree)


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Rows of a global batch that this host supplies."""
  num_devices = mesh.devices.size
  if global_batch_size % num_devices:
    raise ValueError(f'batch size {global_batch_size} is not divisible by the '
                     f'{num_devices} devices of the mesh')
  local_devices = sum(d.process_index == jax.process_index()
                      for d in mesh.devices.flat)
  return global_batch_size // num_devices * local_devices


def host_batch_to_global(batch: Dict[str, Any], mesh: Mesh,
                         keys: Optional[Sequence[str]] = None
                         ) -> Dict[str, Any]:
  """This host's numpy batch -> global jax arrays sharded over 'data'.

  Args:
    batch: dict of numpy arrays `[b, ...]`, b = this host's share of the
      global batch. Non-numeric entries (file names) are dropped.
    mesh: the data mesh.
    keys: the entries to transfer (default: all numeric ones).

  Returns:
    dict of jax.Array `[global_b, ...]` sharded along the first axis.
  """
  sharding = data_sharding(mesh)
  out = {}
  for key, value in batch.items():
    if keys is not None and key not in keys:
      continue
    value = np.asarray(value)
    if value.dtype.kind not in 'biuf':
      continue
    out[key] = jax.make_array_from_process_local_data(sharding, value)
  return out
