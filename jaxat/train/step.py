"""The jitted training step: batch formation, augmentation, the method's two phases, the
optimiser update and on-device metric accumulation, compiled once for the whole run.

Two input placements (`dataset.placement`, docs/scaling.md#host-streamed-input-and-extra-data):

`train_step(state, sums, train_images, train_labels, permutation) -> (state, sums)` ('device')
- train_images: (N,H,W,C) uint8, device-resident and replicated; train_labels (N,) int32.
- permutation: (N,) int32, the epoch's order, from fold_in(seed, epoch).

`train_step(state, sums, images, labels, indices) -> (state, sums)` ('host')
- the step's global batch, built on the host (jaxat/train/host_input.py) and sharded by
  example over 'data': images (B,H,W,C) uint8, labels (B,) int32, indices (B,) int32 (the
  examples' rows in the per-example buffers). The same rows as the device path gathers, so
  both placements train the same bits.
- The epoch and the position in it are derived from state.step, so nothing that changes
  with the epoch is a Python value: a new epoch never recompiles.
- sums: per-metric running sums over the epoch, plus 'count' and 'first_nonfinite_step'
  (-1 while every loss was finite). They stay on device; the host reads them once per
  epoch (or at a log point), so the step has no host synchronisation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxat import xla_cpu
from jaxat.data.augment import augment_batch
from jaxat.methods.base import Batch, Method, StepContext, step_info
from jaxat.train import keys, sharding
from jaxat.train.state import TrainState, ema_update

COUNT = "count"
FIRST_NONFINITE = "first_nonfinite_step"


PLACEMENTS = ("device", "host")


def _scaled(images_uint8, mesh):
  """(B,H,W,C) uint8 -> float32 in [0, 1], sharded by example."""
  images = images_uint8.astype(jnp.float32) / 255.0
  return jax.lax.with_sharding_constraint(images, sharding.batch_sharded(mesh))


def _gather_batch(ctx: StepContext, step, train_images, train_labels, permutation, mesh):
  position = (step % ctx.steps_per_epoch) * ctx.batch_size
  indices = jax.lax.dynamic_slice_in_dim(permutation, position, ctx.batch_size)
  indices = jax.lax.with_sharding_constraint(indices, sharding.batch_sharded(mesh))
  return _scaled(train_images[indices], mesh), train_labels[indices], indices


def _host_batch(images, labels, indices, mesh):
  """The host-built batch (placement 'host'): only scaled, as `_gather_batch` scales."""
  return _scaled(images, mesh), labels, indices


def build_step_fn(method: Method, ctx: StepContext, tx: optax.GradientTransformation,
                  cfg: ml_collections.ConfigDict, mesh, schedule, placement: str = "device"):
  """The un-jitted single step `(state, *inputs) -> (state, metrics)`: inputs are
  `(train_images, train_labels, permutation)` for placement 'device' and the batch
  `(images, labels, indices)` for 'host' (module docstring); see `make_train_step` for the
  compiled, accumulating version. `schedule(step) -> lr` is the optimiser's learning-rate
  schedule; the method phases see its value in `StepInfo.learning_rate`."""
  if placement not in PLACEMENTS:
    raise ValueError(f"unknown placement {placement!r}; valid choices: {', '.join(PLACEMENTS)}")
  step_stream = keys.stream(cfg.seed, keys.STEP)
  ema_decay = float(cfg.ema.decay)
  augment_cfg = cfg.augment

  def step_fn(state: TrainState, *inputs):
    step = state.step
    info = step_info(step, ctx, schedule(step))
    if placement == "device":
      images, labels, indices = _gather_batch(ctx, step, *inputs, mesh)
    else:
      images, labels, indices = _host_batch(*inputs, mesh)
    key_augment, key_prepare, key_perturb, key_loss = jax.random.split(
        jax.random.fold_in(step_stream, step), 4)
    images = augment_batch(key_augment, images, augment_cfg.crop_padding,
                           augment_cfg.padding_mode, augment_cfg.flip)
    batch = Batch(images, labels, indices)

    prepared, batch_stats, method_state, prepare_metrics = method.prepare(
        ctx, state.params, state.batch_stats, state.method_state, batch, key_prepare, info)
    perturbation = method.weight_perturbation(ctx, state.params, batch_stats, batch, prepared,
                                              key_perturb, info)
    params_at = (state.params if perturbation is None
                 else jax.tree.map(jnp.add, state.params, perturbation))

    def loss_fn(params):
      return method.loss(ctx, params, batch_stats, batch, prepared, key_loss, info)

    (loss, (batch_stats, loss_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params_at)
    # The update is taken at the perturbed weights (AWP), then the perturbation is removed.
    updates, opt_state = tx.update(grads, state.opt_state, params_at)
    params = optax.apply_updates(params_at, updates)
    if perturbation is not None:
      params = jax.tree.map(jnp.subtract, params, perturbation)

    ema_params, ema_batch_stats = state.ema_params, state.ema_batch_stats
    if ema_decay > 0:
      ema_params = ema_update(ema_params, params, ema_decay)
      ema_batch_stats = ema_update(ema_batch_stats, batch_stats, ema_decay)

    new_state = TrainState(step=step + 1, params=params, batch_stats=batch_stats,
                           opt_state=opt_state, ema_params=ema_params,
                           ema_batch_stats=ema_batch_stats, method_state=method_state)
    metrics = {**prepare_metrics, **loss_metrics, "loss": loss}
    return new_state, metrics

  return step_fn


COUNTS_PREFIX = "counts/"


def is_count_metric(name: str) -> bool:
  """True for a count metric (docs/architecture.md#count-metrics): an array of event
  counts, e.g. how often each ε option was chosen per class, summed over the epoch and
  written to metrics.jsonl as a nested list of totals. Every other metric is a scalar whose
  epoch mean is written."""
  return name.startswith(COUNTS_PREFIX)


def check_metric_shapes(metric_shapes: dict[str, Any]) -> None:
  """Raises ValueError for an array-valued metric that is not a count metric."""
  for name, shape in metric_shapes.items():
    if tuple(getattr(shape, "shape", ())) != () and not is_count_metric(name):
      raise ValueError(f"training metric {name!r} has shape {tuple(shape.shape)}; a metric is "
                       f"a scalar, or an array of counts named '{COUNTS_PREFIX}...'")


def init_sums(metric_shapes: dict[str, Any], sums_sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Zeroed epoch sums (one per metric, of the metric's shape: a scalar, or a count
  metric's array; the step count; the first non-finite step = -1), placed with `sums_sharding`
  (the step counter's): sums left where `jnp.zeros` puts them would reach the jitted step
  with another sharding than the sums it returns, and the step would compile twice."""
  check_metric_shapes(metric_shapes)
  sums = {name: jnp.zeros(tuple(getattr(shape, "shape", ())), jnp.float32)
          for name, shape in metric_shapes.items()}
  sums[COUNT] = jnp.zeros((), jnp.float32)
  sums[FIRST_NONFINITE] = jnp.full((), -1, jnp.int32)
  return sharding.put(sums, sums_sharding)


def accumulate(sums: dict, metrics: dict, step: jax.Array) -> dict:
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))
  new = {name: sums[name] + jnp.asarray(value, jnp.float32) for name, value in metrics.items()}
  new[COUNT] = sums[COUNT] + 1.0
  first = sums[FIRST_NONFINITE]
  new[FIRST_NONFINITE] = jnp.where((first < 0) & ~finite, step.astype(jnp.int32), first)
  return new


def phase_context(method: Method, ctx: StepContext, epoch: int,
                  method_state: Any = None) -> StepContext:
  """`ctx` with `epoch_phase` set to the method's phase of 0-based `epoch` (given its
  `method_state` where the caller has it): the context of the step compiled for that epoch
  (docs/architecture.md#epoch-phases)."""
  return dataclasses.replace(ctx, epoch_phase=method.epoch_phase(epoch, ctx, method_state))


def make_train_step(method: Method, ctx: StepContext, tx: optax.GradientTransformation,
                    cfg: ml_collections.ConfigDict, mesh, schedule, state_shardings=None,
                    placement: str = "device"):
  """Returns (jitted accumulate-step `(state, sums, *inputs) -> (state, sums)`, the single
  un-jitted step); `inputs` as in `build_step_fn` for `placement`. State and sums are
  donated; the state keeps `state_shardings` (sharding.state_sharding; None = replicated),
  the sums are replicated; the step is compiled once."""
  step_fn = build_step_fn(method, ctx, tx, cfg, mesh, schedule, placement)

  def train_step(state, sums, *inputs):
    new_state, metrics = step_fn(state, *inputs)
    return new_state, accumulate(sums, metrics, state.step)

  replicated = sharding.replicated(mesh)
  state_out = replicated if state_shardings is None else state_shardings
  jitted = xla_cpu.jit(train_step, donate_argnums=(0, 1), out_shardings=(state_out, replicated))
  return jitted, step_fn


def metric_shapes(step_fn, state, *inputs) -> dict:
  """The metric names a method reports, found by abstract evaluation (no compute); `inputs`
  are the step's data inputs (arrays or jax.ShapeDtypeStructs)."""
  _, metrics = jax.eval_shape(step_fn, state, *inputs)
  return metrics
