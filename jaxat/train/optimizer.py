"""SGD with PyTorch semantics: coupled L2 weight decay on every parameter, momentum or
Nesterov, optional global-norm gradient clipping (docs/baselines.md#optimiser-and-schedules).

PyTorch adds wd * w to the gradient before the momentum buffer and multiplies by the
learning rate after it; optax.chain(add_decayed_weights, sgd(schedule, momentum)) does the
same in the same order. Clipping (torch clip_grad_norm_) acts on the raw gradient, before
the decay term is added.
"""

from __future__ import annotations

import ml_collections
import optax

from jaxat.train.schedules import Schedule


def make_optimizer(cfg: ml_collections.ConfigDict, schedule: Schedule) -> optax.GradientTransformation:
  parts = []
  if cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.weight_decay > 0:
    parts.append(optax.add_decayed_weights(cfg.weight_decay))
  parts.append(optax.sgd(learning_rate=schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
  return optax.chain(*parts)
