"""Everything a run is built from, assembled (and validated) before anything is compiled.

`build_experiment(config)` loads and splits the data, validates the whole config, and
creates the model, method, schedule, optimiser and mesh. `init_state` then creates the
replicated initial TrainState. The evaluation CLI rebuilds the same pieces from a run's
`config.json` to restore its checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxat import xla_cpu
from jaxat.config.validate import extra_settings, input_placement, validate_config
from jaxat.data.extra_arrays import check_extra_matches, extra_per_batch, open_extra_data
from jaxat.data.registry import load_dataset
from jaxat.data.types import ArrayDataset, DatasetSplits
from jaxat.data.validation import split_validation
from jaxat.errors import usage_errors
from jaxat.methods.base import Method, StepContext
from jaxat.methods.registry import create_method, get_method_class
from jaxat.models.forward import ModelFn
from jaxat.models.registry import create_model
from jaxat.train import keys, sharding
from jaxat.train.optimizer import make_optimizer
from jaxat.train.schedules import Schedule, make_momentum_schedule, make_schedule
from jaxat.train.state import TrainState


@dataclasses.dataclass
class Experiment:
  config: ml_collections.ConfigDict
  splits: DatasetSplits
  train: ArrayDataset
  validation: ArrayDataset | None
  test: ArrayDataset
  model: ModelFn
  method: Method
  ctx: StepContext
  schedule: Schedule
  tx: optax.GradientTransformation
  mesh: Any
  # dataset.extra: the memory-mapped extra examples and how many of them each global batch
  # holds (None, 0 without extra data); their example indices follow the training set's.
  extra: ArrayDataset | None = None
  extra_per_batch: int = 0

  @property
  def placement(self) -> str:
    return input_placement(self.config.dataset)

  @property
  def total_steps(self) -> int:
    return self.ctx.steps_per_epoch * self.ctx.num_epochs


def _truncate(dataset: ArrayDataset, limit: int) -> ArrayDataset:
  if limit <= 0 or limit >= len(dataset):
    return dataset
  return ArrayDataset(dataset.images[:limit], dataset.labels[:limit])


def resolve_num_devices(config: ml_collections.ConfigDict) -> int:
  available = jax.device_count()
  if jax.process_count() > 1 and config.num_devices not in (0, available):
    # A mesh over some devices only would leave a process without a share of the work.
    raise ValueError(f"num_devices={config.num_devices}: with {jax.process_count()} processes "
                     f"the mesh spans all {available} devices; set num_devices=0 (or {available})")
  if config.num_devices > available:
    raise ValueError(f"num_devices={config.num_devices} but only {available} device(s) are "
                     f"available: {[str(d) for d in jax.devices()]}")
  return config.num_devices or available


def _validated_inputs(config: ml_collections.ConfigDict):
  """(device count, splits, train, validation, test): every check of the config and the data,
  before anything is built; a bad value raises ValueError/FileNotFoundError."""
  num_devices = resolve_num_devices(config)
  validate_config(config, num_devices)
  splits = load_dataset(config.dataset)
  train, validation = split_validation(splits.train, config.dataset.val_size, config.seed)
  train = _truncate(train, config.dataset.max_train)
  test = _truncate(splits.test, config.dataset.max_test)
  get_method_class(config.method.name).validate(config.method, splits.num_classes)
  extra, extra_count = _extra_data(config, splits)
  if len(train) < config.batch_size - extra_count:
    raise ValueError(f"batch_size={config.batch_size} is larger than the training set "
                     f"({len(train)} examples after the validation split"
                     + (f", {config.batch_size - extra_count} original per batch" if extra_count else "")
                     + "); lower batch_size")
  return num_devices, splits, train, validation, test, extra, extra_count


def _extra_data(config: ml_collections.ConfigDict, splits: DatasetSplits):
  """(memory-mapped extra data, extra examples per batch), or (None, 0) without
  dataset.extra.path; the file is checked against the training set (ValueError)."""
  path, fraction = extra_settings(config.dataset)
  if not path:
    return None, 0
  count = extra_per_batch(fraction, config.batch_size)
  extra = open_extra_data(path)
  check_extra_matches(extra, path, splits.image_shape, splits.num_classes, count)
  return extra, count


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  """Validates `config` and builds the run's pieces, before any compilation. Bad input (a
  config value, a data file) raises `UsageError` (jaxat/errors.py) naming the field or file,
  the value and the valid choices."""
  with usage_errors():
    num_devices, splits, train, validation, test, extra, extra_count = _validated_inputs(config)
  # An epoch is a pass over the original examples; the extra ones fill the rest of a batch.
  steps_per_epoch = len(train) // (config.batch_size - extra_count)
  # Per-example buffers have a row for every example index: the training set's, then the
  # extra data's (host_input: num_train + row).
  example_count = len(train) + (0 if extra is None else len(extra))

  module = create_model(config.model, splits.num_classes, tuple(splits.mean), tuple(splits.std))
  # The method may wrap the classifier (Method.wrap_model, docs/architecture.md#model-hook).
  model = get_method_class(config.method.name).wrap_model(ModelFn(module), config.method)
  ctx = StepContext(model=model, num_classes=splits.num_classes, num_train=len(train),
                    image_shape=tuple(int(s) for s in train.images.shape[1:]),
                    steps_per_epoch=steps_per_epoch, num_epochs=config.num_epochs,
                    batch_size=config.batch_size,
                    buffer_rows=-(-example_count // num_devices) * num_devices)
  schedule = make_schedule(config.schedule, steps_per_epoch, config.num_epochs)
  tx = make_optimizer(config.optimizer, schedule,
                      make_momentum_schedule(config.schedule, steps_per_epoch, config.num_epochs))
  mesh = sharding.make_mesh(num_devices)
  return Experiment(config=config, splits=splits, train=train, validation=validation, test=test,
                    model=model, method=create_method(config.method), ctx=ctx, schedule=schedule,
                    tx=tx, mesh=mesh, extra=extra, extra_per_batch=extra_count)


def init_state(exp: Experiment) -> TrainState:
  """The initial TrainState over the mesh: per-example buffers sharded by example, the
  rest replicated (sharding.state_sharding)."""
  init_key = keys.stream(exp.config.seed, keys.INIT)
  model_key, method_key = jax.random.split(init_key)
  dummy = jnp.zeros((1,) + exp.ctx.image_shape, jnp.float32)
  variables = exp.model.module.init(model_key, dummy, train=False)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  method_state = exp.method.init_state(method_key, exp.ctx, params, batch_stats)
  with_ema = exp.config.ema.decay > 0
  state = TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
      opt_state=exp.tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params) if with_ema else {},
      ema_batch_stats=jax.tree.map(jnp.copy, batch_stats) if with_ema else {},
      method_state=method_state)
  return sharding.put(state, sharding.state_sharding(state, exp.mesh, exp.ctx.example_rows))


def put_train_data(exp: Experiment) -> tuple[jax.Array, jax.Array]:
  """The training images (uint8) and labels, stored once on device, replicated (with
  several processes, each process fills its own devices from its own copy)."""
  replicated = sharding.replicated(exp.mesh)
  return (sharding.put(np.ascontiguousarray(exp.train.images), replicated),
          sharding.put(exp.train.labels.astype(np.int32), replicated))


def epoch_permutation_fn(exp: Experiment):
  """jitted epoch -> permutation of the training indices, from fold_in(seed, epoch)."""
  permutation_stream = keys.stream(exp.config.seed, keys.PERMUTATION)
  num_train = exp.ctx.num_train

  def permutation(epoch):
    return jax.random.permutation(jax.random.fold_in(permutation_stream, epoch), num_train).astype(jnp.int32)

  replicated = sharding.replicated(exp.mesh)
  if jax.process_count() == 1:
    jitted = xla_cpu.jit(permutation)
    return lambda epoch: jax.device_put(jitted(epoch), replicated)
  # Several processes: computed on the global mesh, replicated (the same on every device).
  return xla_cpu.jit(permutation, out_shardings=replicated)


def host_permutation_fn(exp: Experiment):
  """epoch -> (num_train,) int32 numpy permutation: the device path's permutation (the same
  function of fold_in(seed, epoch), jitted on this process's default device), read back."""
  permutation_stream = keys.stream(exp.config.seed, keys.PERMUTATION)
  num_train = exp.ctx.num_train
  jitted = xla_cpu.jit(lambda epoch: jax.random.permutation(
      jax.random.fold_in(permutation_stream, epoch), num_train).astype(jnp.int32))
  return lambda epoch: np.asarray(jitted(epoch))


def host_batcher(exp: Experiment):
  """The HostBatcher of a placement='host' run (jaxat/train/host_input.py)."""
  from jaxat.train.host_input import HostBatcher
  return HostBatcher(exp.train, host_permutation_fn(exp), exp.ctx.steps_per_epoch,
                     exp.ctx.batch_size, exp.mesh, seed=exp.config.seed, extra=exp.extra,
                     extra_count=exp.extra_per_batch)
