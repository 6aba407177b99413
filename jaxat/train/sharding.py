"""Data-parallel sharding: a 1-D Mesh over the devices with axis 'data'.

The batch is sharded along its leading axis, and so are the per-example buffers of
`method_state` (leaves whose leading axis has `StepContext.example_rows` rows, a multiple of
the device count): each device holds 1/n of e.g. FGSM-MEP's prior buffer. The rest of the
training state and the device-resident dataset are replicated. One jitted step runs under this mesh
(jax.jit with NamedSharding; pmap is legacy). With the global-batch semantics of jit,
BatchNorm statistics are those of the whole batch, so 1 and 8 devices agree up to
floating-point reassociation.

With several processes (docs/scaling.md#multi-host-training) the mesh spans the devices of
every process; `put` builds such global arrays from each process's own copy of the values.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
  """Mesh over the first `num_devices` devices (0 = all; with several processes, all of
  every process's devices, in jax.devices() order: process 0's first)."""
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


def put(tree, shardings):
  """Places host values (or one process's arrays) on the mesh: `shardings` is one sharding
  or a matching pytree of them. One process: jax.device_put, as always. Several processes:
  each fills only its own devices' shards from its own copy of the values, which every
  process holds identically (same data, same seed), so nothing crosses hosts here
  (jax.device_put would compare the copies through a collective per leaf)."""
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree.map(lambda _: shardings, tree)
  return jax.tree.map(_global_array, tree, shardings)


def _global_array(leaf, sharding_of_leaf) -> jax.Array:
  host = np.asarray(leaf)
  return jax.make_array_from_callback(host.shape, sharding_of_leaf, lambda index: host[index])
