"""Learning-rate schedules indexed by the 0-based iteration (optimizer step) count.

The value returned for step s is the learning rate used by the s-th update, i.e. the
PyTorch scheduler value after s calls of `scheduler.step()` (docs/baselines.md#optimiser-and-schedules). Boundaries
are fractions of training so a recipe rescales with num_epochs.

- constant:  lr_max.
- piecewise: Rice/AWP: evaluated at the fractional epoch t = (s + 1) / steps_per_epoch;
             lr = lr_max * decay_factor ** #{b : t / num_epochs >= b}.
- multistep: Jia family (per iteration): lr = lr_max * decay_factor ** #{b : s >= b * total}.
             With per_epoch=True (TRADES/MART/ANCRA, adjusted at epoch starts with 1-based
             epoch numbers e): #{b : e >= b * num_epochs}. Unlike PyTorch's MultiStepLR with
             non-integral milestones (which silently never decays), every boundary fires.
- onecycle:  PyTorch OneCycleLR (cosine, two phases): from lr_max/div_factor up to lr_max at
             step pct_start*total - 1, then down to lr_max/(div_factor*final_div_factor) at
             step total - 1.
- cyclic:    triangular (fast AT): 0 -> lr_max linearly over pct_start of the iterations,
             back to 0 at the end.

Momentum (`make_momentum_schedule`): constant (optimizer.momentum) unless
schedule.cycle_momentum is set with `onecycle`, where it follows PyTorch OneCycleLR's
default cycle_momentum=True: the same two cosine phases in the opposite direction, from
max_momentum down to base_momentum at the learning-rate peak and back up to max_momentum
(docs/baselines.md#one-cycle-momentum).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import ml_collections

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def _two_phase_cosine(start: float, peak: float, end: float, pct_start: float,
                      total: int) -> Schedule:
  """PyTorch OneCycleLR's annealing (anneal_strategy='cos'): start -> peak at step
  pct_start·total − 1, then peak -> end at step total − 1."""
  warm_end = pct_start * total - 1.0
  last = float(total - 1)

  def cosine(a, b, pct):
    return b + (a - b) / 2.0 * (jnp.cos(jnp.pi * pct) + 1.0)

  def schedule(step):
    s = jnp.asarray(step, jnp.float32)
    up = cosine(start, peak, jnp.clip(s / jnp.maximum(warm_end, 1e-9), 0.0, 1.0))
    down = cosine(peak, end, jnp.clip((s - warm_end) / jnp.maximum(last - warm_end, 1e-9), 0.0, 1.0))
    return jnp.where(s <= warm_end, up, down)
  return schedule


def make_momentum_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                           num_epochs: int) -> Schedule | None:
  """The momentum of each update when schedule.cycle_momentum is on (onecycle only):
  max_momentum -> base_momentum at the learning-rate peak -> max_momentum; None when off
  (the optimizer's constant momentum)."""
  if not cfg.cycle_momentum:
    return None
  if cfg.name != "onecycle":
    raise ValueError(f"schedule.cycle_momentum=True needs schedule.name='onecycle', got "
                     f"{cfg.name!r}; valid choices: cycle_momentum=False, or name='onecycle'")
  high, low = float(cfg.max_momentum), float(cfg.base_momentum)
  return _two_phase_cosine(high, low, high, float(cfg.pct_start), steps_per_epoch * num_epochs)


def make_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int) -> Schedule:
  total = steps_per_epoch * num_epochs
  lr_max = float(cfg.lr_max)
  factor = float(cfg.decay_factor)
  bounds = tuple(float(b) for b in cfg.boundaries)

  if cfg.name == "constant":
    return lambda step: jnp.full((), lr_max, jnp.float32)

  if cfg.name == "piecewise":
    def piecewise(step):
      fraction = (jnp.asarray(step, jnp.float32) + 1.0) / steps_per_epoch / num_epochs
      decays = sum((fraction >= b).astype(jnp.float32) for b in bounds) if bounds else 0.0
      return lr_max * jnp.power(factor, decays)
    return piecewise

  if cfg.name == "multistep":
    def multistep(step):
      step = jnp.asarray(step)
      if cfg.per_epoch:
        epoch_1based = (step // steps_per_epoch + 1).astype(jnp.float32)
        decays = sum((epoch_1based >= b * num_epochs).astype(jnp.float32) for b in bounds) if bounds else 0.0
      else:
        decays = sum((step.astype(jnp.float32) >= b * total).astype(jnp.float32) for b in bounds) if bounds else 0.0
      return lr_max * jnp.power(factor, decays)
    return multistep

  if cfg.name == "onecycle":
    initial = lr_max / float(cfg.div_factor)
    return _two_phase_cosine(initial, lr_max, initial / float(cfg.final_div_factor),
                             float(cfg.pct_start), total)

  if cfg.name == "cyclic":
    peak = float(cfg.pct_start) * total

    def cyclic(step):
      s = jnp.asarray(step, jnp.float32)
      return jnp.interp(s, jnp.array([0.0, peak, float(total)]), jnp.array([0.0, lr_max, 0.0]))
    return cyclic

  raise ValueError(f"unknown schedule.name {cfg.name!r}; valid choices: constant, piecewise, "
                   "multistep, onecycle, cyclic")
