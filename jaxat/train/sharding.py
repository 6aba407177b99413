"""Data-parallel sharding: a 1-D Mesh over the devices with axis 'data'.

The batch is sharded along its leading axis; the training state, the device-resident
dataset and the per-example buffers are replicated. One jitted step runs under this mesh
(jax.jit with NamedSharding; pmap is legacy). With the global-batch semantics of jit,
BatchNorm statistics are those of the whole batch, so 1 and 8 devices agree up to
floating-point reassociation.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
  """Mesh over the first `num_devices` devices (0 = all)."""
  devices = jax.devices()
  if num_devices > len(devices):
    raise ValueError(f"num_devices={num_devices} but only {len(devices)} device(s) are available: "
                     f"{[str(d) for d in devices]}")
  chosen = devices[:num_devices] if num_devices else devices
  return Mesh(np.array(chosen), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data'; other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))
