"""SGD with PyTorch semantics: coupled L2 weight decay on every parameter, momentum or
Nesterov, optional global-norm gradient clipping (docs/baselines.md#optimiser-and-schedules).

PyTorch adds wd * w to the gradient before the momentum buffer and multiplies by the
learning rate after it; optax.chain(add_decayed_weights, sgd(schedule, momentum)) does the
same in the same order. Clipping (torch clip_grad_norm_) acts on the raw gradient, before
the decay term is added. A momentum schedule (schedule.cycle_momentum, OneCycleLR's cycled
momentum) replaces optimizer.momentum by the schedule's value at each update, as PyTorch
writes it into the param group before the step.
"""

from __future__ import annotations

import ml_collections
import optax

from jaxat.train.schedules import Schedule


def make_optimizer(cfg: ml_collections.ConfigDict, schedule: Schedule,
                   momentum_schedule: Schedule | None = None) -> optax.GradientTransformation:
  parts = []
  if cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.weight_decay > 0:
    parts.append(optax.add_decayed_weights(cfg.weight_decay))
  if momentum_schedule is None:
    parts.append(optax.sgd(learning_rate=schedule, momentum=cfg.momentum or None,
                           nesterov=cfg.nesterov))
  else:
    # Both hyperparameters are evaluated at the update count, like optax's own schedules.
    sgd = optax.inject_hyperparams(optax.sgd, static_args=("nesterov",))
    parts.append(sgd(learning_rate=schedule, momentum=momentum_schedule, nesterov=cfg.nesterov))
  return optax.chain(*parts)
