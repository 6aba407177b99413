"""Pure forward passes of a Flax classifier with an explicit BatchNorm mode.

Every forward pass in jaxat names its BatchNorm mode (docs/architecture.md#batchnorm-modes):
  'eval'        running statistics; running averages untouched (PyTorch model.eval()).
  'batch_stats' statistics of the current batch; running averages untouched.
  'train'       statistics of the current batch; running averages updated (PyTorch
                model.train(): every forward pass updates them, attack passes included).
Models without BatchNorm ignore the mode.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax

from jaxat.models.layers import BN_MOMENTUM

BN_MODES = ("eval", "batch_stats", "train")


def validate_bn_mode(mode: str, what: str = "bn_mode") -> None:
  if mode not in BN_MODES:
    raise ValueError(f"unknown {what} {mode!r}; valid choices: {', '.join(BN_MODES)}")


@dataclasses.dataclass(frozen=True)
class ModelFn:
  """A functional view of a Flax classifier.

  `ModelFn(module)(params, batch_stats, x, mode)` returns
  (logits (B,K), features (B,D), batch_stats), where batch_stats is the updated collection
  in 'train' mode and the input collection otherwise. x is (B,H,W,C) in [0,1].
  """

  module: nn.Module

  def __call__(self, params: Any, batch_stats: Any, x: jax.Array, mode: str):
    validate_bn_mode(mode)
    variables = {"params": params}
    has_stats = bool(batch_stats)
    if has_stats:
      variables["batch_stats"] = batch_stats
    if mode == "eval" or not has_stats:
      logits, features = self.module.apply(variables, x, train=(mode != "eval"))
      return logits, features, batch_stats
    (logits, features), updates = self.module.apply(variables, x, train=True, mutable=["batch_stats"])
    return logits, features, (updates["batch_stats"] if mode == "train" else batch_stats)

  def logits(self, params: Any, batch_stats: Any, x: jax.Array, mode: str = "eval") -> jax.Array:
    """Logits only; in 'train' mode the running-statistics update is discarded."""
    return self(params, batch_stats, x, mode)[0]


def replay_running_update(before: Any, after: Any, now: Any, momentum: float = BN_MOMENTUM) -> Any:
  """The running averages a 'train'-mode forward would leave if run again on the same batch,
  without running it.

  BatchNorm updates each running average r ← m·r + (1 − m)·s, with s the batch's statistic
  and m = `momentum` (jaxat's layers: BN_MOMENTUM = 0.9). A forward that turned `before`
  into `after` had (1 − m)·s = after − m·before, so the same batch from `now` gives
  m·now + (after − m·before): equal to running that forward again up to float round-off
  (a few ulps of the averages). The trees are batch_stats collections of one model.
  """
  return jax.tree.map(lambda b, a, n: momentum * n + (a - momentum * b), before, after, now)
