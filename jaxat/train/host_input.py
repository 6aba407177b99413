"""Host-streamed input (`dataset.placement='host'`): each step's global batch is built on the
host, each process reading only the rows that land on its own devices.

The training set stays in host memory (or a memory map, jaxat/data/extra_arrays.py for the
extra data); nothing of it is put on a device whole. For step t the global batch is

  original part: the epoch permutation (the device path's: fold_in(seed, PERMUTATION),
      epoch = t // steps_per_epoch, computed by the same jitted function) sliced at
      (t % steps_per_epoch) * B_original, B_original = B - E;
  extra part (dataset.extra, E = extra_per_batch(fraction, B) examples): E distinct rows of
      the extra file drawn from numpy's generator seeded with (seed, keys.EXTRA, t), the same
      on every process and on a resume; their example indices are num_train + row.

Laid out per device: with n devices in the mesh, device k's shard holds B_original / n
original examples followed by E / n extra ones (E = 0: exactly the device path's batch).
The rows each process gathers are those of the shards of its addressable devices (read from
the batch sharding, not assumed), and the global arrays are assembled from those shards
(jax.make_array_from_single_device_arrays). Augmentation happens in the jitted step, keyed
by the step, so the images trained on equal the device path's bit for bit.
See docs/scaling.md#host-streamed-input-and-extra-data.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from jaxat.data.types import ArrayDataset
from jaxat.train import keys, sharding


def extra_rows(seed: int, step: int, count: int, num_extra: int) -> np.ndarray:
  """(count,) int64: distinct rows of the extra data for global step `step`, a function of
  (seed, step) only (numpy's default generator seeded with (seed, keys.EXTRA, step)).
  Rows repeat across steps (drawn with replacement between steps, without within one)."""
  if count == 0:
    return np.zeros((0,), np.int64)
  generator = np.random.default_rng([seed, keys.EXTRA, step])
  return generator.choice(num_extra, size=count, replace=False).astype(np.int64)


@dataclasses.dataclass
class HostBatch:
  """One step's global batch over the mesh, built from this process's rows.

  Attributes:
    step: the global step it is for.
    inputs: (images (B,H,W,C) uint8, labels (B,) int32, indices (B,) int32) global arrays,
      sharded by example.
    rows_read: how many image rows this process gathered from host memory for it.
  """

  step: int
  inputs: tuple[jax.Array, jax.Array, jax.Array]
  rows_read: int


class HostBatcher:
  """Builds the global batch of any step from host arrays (module docstring).

  Args:
    train: the training set (uint8 NHWC images, int32 labels) in host memory or memory-mapped.
    permutation_of: epoch -> (num_train,) int permutation (host values).
    steps_per_epoch: steps of an epoch (num_train // B_original).
    batch_size: B, the global batch.
    mesh: the 1-D 'data' mesh; the batch is sharded by example over it.
    seed: the run's seed (extra rows only).
    extra: the extra data set (memory-mapped images), or None.
    extra_count: E, extra examples per global batch (0 without extra data).
  """

  def __init__(self, train: ArrayDataset, permutation_of: Callable[[int], np.ndarray],
               steps_per_epoch: int, batch_size: int, mesh, seed: int = 0,
               extra: ArrayDataset | None = None, extra_count: int = 0):
    devices = mesh.size
    if extra_count and extra is None:
      raise ValueError("extra_count > 0 needs extra data")
    if batch_size % devices or extra_count % devices:
      raise ValueError(f"batch of {batch_size} with {extra_count} extra examples does not split "
                       f"over {devices} devices")
    self.train, self.extra = train, extra
    self.num_train = len(train)
    self.permutation_of = permutation_of
    self.steps_per_epoch = steps_per_epoch
    self.batch_size, self.extra_count = batch_size, extra_count
    self.original_count = batch_size - extra_count
    self.devices = devices
    self.seed = seed
    self.sharding = sharding.batch_sharded(mesh)
    # Which rows of the global batch each of this process's devices holds.
    self.local_slices = [(device, index[0]) for device, index in
                         self.sharding.addressable_devices_indices_map((batch_size,)).items()]
    self._epoch, self._permutation = None, None
    self._cached: HostBatch | None = None
    self.rows_read = 0      # rows gathered by this process for the batches taken so far
    self.steps_taken = 0

  def _epoch_permutation(self, epoch: int) -> np.ndarray:
    if self._epoch != epoch:
      self._permutation = np.asarray(self.permutation_of(epoch))
      self._epoch = epoch
    return self._permutation

  def indices(self, step: int) -> np.ndarray:
    """(B,) int32: the global batch's example indices for `step`, in batch order (extra
    examples as num_train + row)."""
    epoch, position = divmod(step, self.steps_per_epoch)
    start = position * self.original_count
    original = self._epoch_permutation(epoch)[start:start + self.original_count]
    if not self.extra_count:
      return np.asarray(original, np.int32)
    extra = self.num_train + extra_rows(self.seed, step, self.extra_count, len(self.extra))
    per_device = (original.reshape(self.devices, -1), extra.reshape(self.devices, -1))
    return np.concatenate(per_device, axis=1).reshape(-1).astype(np.int32)

  def _rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images (k,H,W,C) uint8, labels (k,) int32) of example indices (k,)."""
    if self.extra is None:
      return self.train.images[indices], self.train.labels[indices]
    is_extra = indices >= self.num_train
    images = np.empty((len(indices),) + self.train.images.shape[1:], np.uint8)
    labels = np.empty((len(indices),), np.int32)
    images[~is_extra] = self.train.images[indices[~is_extra]]
    labels[~is_extra] = self.train.labels[indices[~is_extra]]
    rows = indices[is_extra] - self.num_train
    images[is_extra] = self.extra.images[rows]
    labels[is_extra] = self.extra.labels[rows]
    return images, labels

  def build(self, step: int) -> HostBatch:
    """The global batch of `step`; this process gathers only its devices' rows."""
    indices = self.indices(step)
    shards: list[tuple] = []
    rows_read = 0
    for device, rows in self.local_slices:
      own = indices[rows]
      images, labels = self._rows(own)
      rows_read += len(own)
      shards.append((device, images, labels, own))

    def global_array(position: int, shape: tuple) -> jax.Array:
      arrays = [jax.device_put(shard[position], shard[0]) for shard in shards]
      return jax.make_array_from_single_device_arrays(shape, self.sharding, arrays)

    image_shape = (self.batch_size,) + self.train.images.shape[1:]
    inputs = (global_array(1, image_shape), global_array(2, (self.batch_size,)),
              global_array(3, (self.batch_size,)))
    return HostBatch(step=step, inputs=inputs, rows_read=rows_read)

  def prefetch(self, step: int) -> None:
    """Builds the batch of `step` now (while the device runs the step before it)."""
    self._cached = self.build(step)

  def inputs(self, step: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The step's inputs: the prefetched batch when it is for `step`, else built now (a
    resumed run, the first step). Counts the rows read for the batches actually taken."""
    batch = self._cached if self._cached is not None and self._cached.step == step else self.build(step)
    self._cached = None
    self.rows_read += batch.rows_read
    self.steps_taken += 1
    return batch.inputs

  def input_specs(self) -> tuple[jax.ShapeDtypeStruct, ...]:
    """Abstract inputs (shape, dtype, sharding) for lowering and eval_shape."""
    image_shape = (self.batch_size,) + self.train.images.shape[1:]
    return (jax.ShapeDtypeStruct(image_shape, np.uint8, sharding=self.sharding),
            jax.ShapeDtypeStruct((self.batch_size,), np.int32, sharding=self.sharding),
            jax.ShapeDtypeStruct((self.batch_size,), np.int32, sharding=self.sharding))
