"""The contract between training methods and the training engine.

A training step of every method decomposes into two phases (docs/architecture.md#the-method-contract):

1. `prepare` — everything that is *not* differentiated with respect to the classifier's
   parameters: the inner maximisation (adversarial examples), inverse adversaries and
   their targets, updates of per-example buffers and of auxiliary learners (class-wise
   universal perturbations, generators, strategy networks). It may update BatchNorm running
   statistics (methods whose official code attacks in train mode) and `method_state`.
2. `loss` — the outer loss, differentiated with respect to the parameters. It recomputes
   every forward pass through which gradients must flow (e.g. TRADES' clean branch).

Between the two the engine may apply a weight perturbation (AWP) returned by
`weight_perturbation`; the optimiser step is then taken at the perturbed weights and the
perturbation removed afterwards (docs/baselines.md#awp).

Every phase receives a `StepInfo` (global step, epoch, fraction of training done, learning
rate) as arrays, so phase switches (momentum start, one-off epoch, warm-ups, ε ramps) are
jnp.where/lax.cond on them and a new epoch never recompiles the step; a method whose
epochs fall into phases may name them (`Method.epoch_phase`) and get one compiled step per
phase instead (docs/architecture.md#epoch-phases). Randomness is never
state: each phase receives a key derived with fold_in from the seed and the global step.

Runs a method needs finished first (HAT's standard helper model) are declared with
`prerequisites` and handed back, trained and loaded by the engine (jaxat/train/
prerequisites.py), through `attach_prerequisites`: no module under `methods/` imports
`train/`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from jaxat.models.forward import ModelFn


class Batch(NamedTuple):
  """One training batch.

  images: (B,H,W,C) float32 in [0,1], augmented.
  labels: (B,) int32.
  indices: (B,) int32 positions of the examples in the training set (per-example buffers
    are indexed by them; augmentation and shuffling do not change them).
  """

  images: jax.Array
  labels: jax.Array
  indices: jax.Array


@dataclasses.dataclass(frozen=True)
class StepContext:
  """Static facts every method may need (hashable; closed over by the jitted step).

  Per-example buffers in `method_state` have `example_rows` rows (a leading axis indexed by
  `Batch.indices`); the engine shards exactly those leaves over the devices by example.
  """

  model: ModelFn
  num_classes: int
  num_train: int
  image_shape: tuple[int, int, int]
  steps_per_epoch: int
  num_epochs: int
  batch_size: int
  # Rows of a per-example buffer: num_train rounded up to a multiple of the device count,
  # so the engine can shard every buffer by example (0 = num_train, for a single device).
  buffer_rows: int = 0
  # The static phase (`Method.epoch_phase`) shared by every epoch this compiled step runs;
  # None: one step serves every epoch and the method decides by StepInfo.epoch at run time
  # (docs/architecture.md#epoch-phases).
  epoch_phase: Any = None

  @property
  def example_rows(self) -> int:
    """Leading size of a per-example buffer (rows >= num_train are never read)."""
    return self.buffer_rows or self.num_train


Metrics = dict[str, jax.Array]


class StepInfo(NamedTuple):
  """Where training stands at the step being taken; every leaf is a scalar array.

  step: int32 0-based global step (the number of optimiser updates already taken).
  epoch: int32 0-based epoch, step // steps_per_epoch.
  fraction: float32 step / total_steps in [0, 1): how much of training is done (schedules
    and phase switches defined as fractions of training rescale with num_epochs).
  learning_rate: float32 learning rate of this step's optimiser update.
  """

  step: jax.Array
  epoch: jax.Array
  fraction: jax.Array
  learning_rate: jax.Array


def step_info(step, ctx: StepContext, learning_rate) -> StepInfo:
  """The StepInfo of global step `step` (int or int32 array) of a run described by `ctx`."""
  step = jnp.asarray(step, jnp.int32)
  total = ctx.steps_per_epoch * ctx.num_epochs
  return StepInfo(step=step, epoch=step // ctx.steps_per_epoch,
                  fraction=step.astype(jnp.float32) / float(total),
                  learning_rate=jnp.asarray(learning_rate, jnp.float32))


def epoch_start_info(epoch: int, ctx: StepContext, learning_rate: float = 0.0) -> StepInfo:
  """The StepInfo of the first step of 0-based `epoch` (tests and benchmarks)."""
  return step_info(epoch * ctx.steps_per_epoch, ctx, learning_rate)


@dataclasses.dataclass(frozen=True)
class PrerequisiteRun:
  """A run that must be finished before this one starts (HAT's standard helper model).

  name: key under which the trained run is handed to `Method.attach_prerequisites`.
  workdir: where the run lives (or will be trained).
  config: the config to train it with when `workdir` holds no finished run; None when the
    run must already exist (a user-given workdir).
  checkpoint: 'last' | 'best', the checkpoint to load.
  expected_method: the method the run must have been trained with ('' = any).
  """

  name: str
  workdir: str
  config: ml_collections.ConfigDict | None
  checkpoint: str = "last"
  expected_method: str = ""


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A finished run, restored: `model(params, batch_stats, x, 'eval')` gives its logits.

  config: the run's locked config; step: the restored checkpoint's global step; clean_acc:
  the clean test accuracy of its results.json (None when it has none).
  """

  workdir: str
  config: ml_collections.ConfigDict
  model: ModelFn
  params: Any
  batch_stats: Any
  num_classes: int
  image_shape: tuple[int, int, int]
  step: int
  clean_acc: float | None = None


class Method(abc.ABC):
  """A training method: a configuration of the roles of docs/architecture.md#roles.

  Subclasses set `name`, implement `default_config`, `validate`, `prepare` and `loss`, and
  override `init_state` when they keep per-example buffers or auxiliary learners.
  """

  name: ClassVar[str]

  def __init__(self, cfg: ml_collections.ConfigDict):
    self.cfg = cfg

  # -- configuration ----------------------------------------------------------------------
  @classmethod
  @abc.abstractmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    """The method's sub-config (`config.method`) with the official defaults; it includes
    the field `name`."""

  @classmethod
  def validate(cls, cfg: ml_collections.ConfigDict, num_classes: int | None = None) -> None:
    """Raises ValueError naming any invalid value and the valid choices. Called before
    anything is compiled. `num_classes` is known once the dataset is loaded."""

  def epoch_phase(self, epoch: int, ctx: StepContext, method_state: Any = None) -> Any:
    """A hashable value naming the phase of 0-based `epoch` (docs/architecture.md#epoch-phases),
    or None (the default) for a method without epoch phases. The engine compiles one
    training step per distinct phase of the epochs it runs, with `ctx.epoch_phase` set to
    it, so `prepare` and `loss` may leave out the work of the other phases instead of
    branching at run time; with `ctx.epoch_phase` None they must decide from
    `StepInfo.epoch` and the state (the same results). The metrics must not depend on the
    phase.

    `method_state` is the method's state where the engine decides the epoch's step (the
    start of the epoch, or the step a resumed run starts from; device arrays, sharded like
    the training state), or None where the caller has none (benchmarks and tools decide
    from the epoch alone). A phase read from it must give the step's results for every
    state with that phase, including the later states of the same epoch."""
    del epoch, ctx, method_state
    return None

  # -- model hook (docs/architecture.md#model-hook) ----------------------------------------
  @classmethod
  def wrap_model(cls, model: ModelFn, cfg: ml_collections.ConfigDict) -> ModelFn:
    """The model the method trains and is evaluated with, built from the plain classifier
    (e.g. ANCRA's reverse-attention wrapper). The engine builds every run's model through
    this hook; the default is the plain classifier."""
    del cfg
    return model

  # -- run set-up -------------------------------------------------------------------------
  def prerequisites(self, config: ml_collections.ConfigDict, workdir: str
                    ) -> tuple[PrerequisiteRun, ...]:
    """Runs that must be finished before this one (trained by the engine if missing)."""
    del config, workdir
    return ()

  def attach_prerequisites(self, runs: dict[str, TrainedRun]) -> None:
    """Receives the restored prerequisite runs, keyed by `PrerequisiteRun.name`, before
    `init_state` is called."""
    del runs

  # -- state ------------------------------------------------------------------------------
  def init_state(self, key: jax.Array, ctx: StepContext, params: Any, batch_stats: Any) -> dict:
    """Initial `method_state` pytree (per-example buffers, auxiliary learners)."""
    del key, ctx, params, batch_stats
    return {}

  # -- the step ---------------------------------------------------------------------------
  @abc.abstractmethod
  def prepare(self, ctx: StepContext, params: Any, batch_stats: Any, method_state: dict,
              batch: Batch, key: jax.Array, info: StepInfo
              ) -> tuple[dict, Any, dict, Metrics]:
    """Returns (prepared, batch_stats, method_state, metrics); nothing here is
    differentiated with respect to `params`."""

  @abc.abstractmethod
  def loss(self, ctx: StepContext, params: Any, batch_stats: Any, batch: Batch, prepared: dict,
           key: jax.Array, info: StepInfo) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """Returns (scalar loss, (batch_stats after the training forward passes, metrics))."""

  # -- reporting --------------------------------------------------------------------------
  def count_metric_labels(self) -> dict[str, tuple[str, ...]]:
    """For each count metric this method emits ('counts/<name>', an (options, classes)
    array, docs/architecture.md#count-metrics), the labels of its options in order, e.g.
    {'counts/eps': ('3/255', ..., '15/255')}; `python -m jaxat.analyze strategy` uses
    them. Empty for methods that emit none."""
    return {}

  # -- plug-ins (docs/architecture.md#plug-ins) -------------------------------------------
  # True when `loss_and_logits` is implemented: the method trains on adversarial examples
  # prepared['x_adv'] and exposes the logits of that differentiated forward, so a plug-in
  # (UIAT's class-wise inverse term, Eq. 13 of Dong et al.) can add a term on them.
  exposes_adversarial_logits: ClassVar[bool] = False

  def loss_and_logits(self, ctx: StepContext, params: Any, batch_stats: Any, batch: Batch,
                      prepared: dict, key: jax.Array, info: StepInfo
                      ) -> tuple[jax.Array, tuple[Any, Metrics, jax.Array]]:
    """`loss`, plus the logits (B,K) of its training forward at prepared['x_adv'] (the
    same pass, so a plug-in's term costs no second forward). Returns
    (scalar loss, (batch_stats, metrics, logits))."""
    raise NotImplementedError(f"method {self.name!r} does not expose its adversarial logits")

  def weight_perturbation(self, ctx: StepContext, params: Any, batch_stats: Any, batch: Batch,
                          prepared: dict, key: jax.Array, info: StepInfo) -> Any | None:
    """A perturbation pytree v added to the parameters for the gradient (AWP), or None."""
    del ctx, params, batch_stats, batch, prepared, key, info
    return None
