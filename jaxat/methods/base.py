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

Randomness is never state: each phase receives a key derived with fold_in from the seed
and the global step. Phase switches (momentum start, one-off epoch, warm-ups) use the
`epoch` array with jnp.where/lax.cond, so a new epoch never recompiles the step.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
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
  """Static facts every method may need (hashable; closed over by the jitted step)."""

  model: ModelFn
  num_classes: int
  num_train: int
  image_shape: tuple[int, int, int]
  steps_per_epoch: int
  num_epochs: int
  batch_size: int


Metrics = dict[str, jax.Array]


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

  # -- run set-up -------------------------------------------------------------------------
  def setup(self, config: ml_collections.ConfigDict, workdir: str) -> None:
    """Runs once per run after validation and before the state is created: prerequisite
    jobs (HAT trains its helper model in the same workdir) and loading external weights."""
    del config, workdir

  # -- state ------------------------------------------------------------------------------
  def init_state(self, key: jax.Array, ctx: StepContext, params: Any, batch_stats: Any) -> dict:
    """Initial `method_state` pytree (per-example buffers, auxiliary learners)."""
    del key, ctx, params, batch_stats
    return {}

  # -- the step ---------------------------------------------------------------------------
  @abc.abstractmethod
  def prepare(self, ctx: StepContext, params: Any, batch_stats: Any, method_state: dict,
              batch: Batch, key: jax.Array, epoch: jax.Array
              ) -> tuple[dict, Any, dict, Metrics]:
    """Returns (prepared, batch_stats, method_state, metrics); nothing here is
    differentiated with respect to `params`."""

  @abc.abstractmethod
  def loss(self, ctx: StepContext, params: Any, batch_stats: Any, batch: Batch, prepared: dict,
           key: jax.Array, epoch: jax.Array) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """Returns (scalar loss, (batch_stats after the training forward passes, metrics))."""

  def weight_perturbation(self, ctx: StepContext, params: Any, batch_stats: Any, batch: Batch,
                          prepared: dict, key: jax.Array, epoch: jax.Array) -> Any | None:
    """A perturbation pytree v added to the parameters for the gradient (AWP), or None."""
    del ctx, params, batch_stats, batch, prepared, key, epoch
    return None
