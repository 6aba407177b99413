"""Data-parallel sharding: a 1-D Mesh over the devices with axis 'data'.

The batch is sharded along its leading axis, and so are the per-example buffers of
`method_state` (leaves whose leading axis has `StepContext.example_rows` rows, a multiple of
the device count): each device holds 1/n of e.g. FGSM-MEP's prior buffer. The rest of the
training state and the device-resident dataset are replicated. One jitted step runs under this mesh
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


def state_sharding(state, mesh: Mesh, example_rows: int):
  """A pytree of shardings for a TrainState: leaves of `method_state` with `example_rows`
  leading rows sharded by example over 'data', everything else replicated."""
  whole, by_example = replicated(mesh), batch_sharded(mesh)

  def method_leaf(leaf):
    per_example = (mesh.size > 1 and getattr(leaf, "ndim", 0) >= 1
                   and leaf.shape[0] == example_rows and example_rows % mesh.size == 0)
    return by_example if per_example else whole

  shardings = jax.tree.map(lambda _: whole, state)
  return shardings.replace(method_state=jax.tree.map(method_leaf, state.method_state))
