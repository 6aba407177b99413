"""LAS-AT (Jia et al., CVPR 2022) policy building blocks: pure functions for the strategy
network's REINFORCE update, the reward and the strategy histograms (docs/las_at.md).

The method that uses them is jaxat/methods/las_at.py (docs/las_at.md#composition).
"""
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp


class OptionSet(NamedTuple):
  """Options of one strategy head, in head order (index a of the head picks values[a])."""
  name: str  # 'eps' | 'steps' | 'step_size' | 'beta'
  values: tuple


def _over_255(first: int, last: int) -> tuple:
  return tuple(v / 255 for v in range(first, last + 1))


def _ints(first: int, last: int) -> tuple:
  return tuple(float(v) for v in range(first, last + 1))


# Option sets of the official README commands (the paper setting; docs/las_at.md#option-sets).
# ε and α in [0,1] pixel units, steps and β as numbers. Keys: (variant, dataset).
OPTION_SETS = {
  ('las_pgd_at', 'cifar10'): (OptionSet('eps', _over_255(3, 15)), OptionSet('steps', _ints(3, 14)),
                              OptionSet('step_size', _over_255(1, 5))),
  ('las_pgd_at', 'cifar100'): (OptionSet('eps', _over_255(3, 15)), OptionSet('steps', _ints(3, 12)),
                               OptionSet('step_size', _over_255(1, 5))),
  ('las_trades', 'cifar10'): (OptionSet('eps', _over_255(5, 9)), OptionSet('steps', _ints(7, 14)),
                              OptionSet('step_size', _over_255(2, 4)), OptionSet('beta', _ints(5, 9))),
  ('las_trades', 'cifar100'): (OptionSet('eps', _over_255(5, 10)), OptionSet('steps', _ints(7, 14)),
                               OptionSet('step_size', _over_255(2, 4)), OptionSet('beta', _ints(5, 9))),
  ('las_awp', 'cifar10'): (OptionSet('eps', _over_255(7, 15)), OptionSet('steps', _ints(8, 16)),
                           OptionSet('step_size', _over_255(2, 5))),
  ('las_awp', 'cifar100'): (OptionSet('eps', _over_255(7, 15)), OptionSet('steps', _ints(8, 15)),
                            OptionSet('step_size', _over_255(2, 5))),
}


def reinforce_loss(head_logits: Sequence[jax.Array], actions: Sequence[jax.Array],
                   reward: jax.Array) -> jax.Array:
  """Policy loss Σ_heads mean_i(−log π_head(a_i | x_i) · R) (docs/las_at.md#policy-loss).

  head_logits: one (B, num_options_h) array per head; actions: one (B,) int array per head;
  reward: scalar R for the whole batch (single-step episode, no baseline). The reward is a
  constant of the policy: no gradient flows into it.
  """
  reward = jax.lax.stop_gradient(reward)
  total = jnp.zeros((), jnp.float32)
  for logits, action in zip(head_logits, actions):
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    chosen = jnp.take_along_axis(log_probs, action[:, None], axis=-1)[:, 0]
    total = total + jnp.mean(-chosen * reward)
  return total


class RewardWeights(NamedTuple):
  """R = R1 + c2·acc_adv + c3·acc_clean, each piece clipped (docs/las_at.md#reward)."""
  c2: float
  c3: float
  attack_clip: float = 10.0   # R1 ∈ [0, attack_clip] (20 for LAS-TRADES)
  piece_clip: float = 10.0    # c2·acc, c3·acc ∈ [−piece_clip, piece_clip] (20 for LAS-TRADES)


def total_reward(attack_loss: jax.Array, robust_accuracy: jax.Array,
                 clean_accuracy: jax.Array, weights: RewardWeights) -> jax.Array:
  """Scalar reward of one batch.

  attack_loss: R1 before clipping (CE of the target at x_adv, batch mean; LAS-TRADES: its
  TRADES loss); robust_accuracy / clean_accuracy: fractions in [0,1] of the look-ahead copy
  on PGD-10 examples of the clean batch / on the clean batch.
  """
  r1 = jnp.clip(attack_loss, 0.0, weights.attack_clip)
  r2 = jnp.clip(weights.c2 * robust_accuracy, -weights.piece_clip, weights.piece_clip)
  r3 = jnp.clip(weights.c3 * clean_accuracy, -weights.piece_clip, weights.piece_clip)
  return r1 + r2 + r3


def strategy_counts(actions: jax.Array, labels: jax.Array, num_options: int,
                    num_classes: int) -> jax.Array:
  """Count metric of one head: (num_options, num_classes) int32, entry [o, k] = number of
  examples of class k that got option o (docs/architecture.md#count-metrics).

  actions, labels: (B,) ints.
  """
  flat = actions * num_classes + labels
  return jnp.bincount(flat, length=num_options * num_classes).reshape(
      num_options, num_classes).astype(jnp.int32)


def is_policy_update_step(global_step: jax.Array, interval: int) -> jax.Array:
  """Whether the strategy network trains at this step: global_step % interval == 0 with the
  global step counted from 1 (docs/las_at.md#interval)."""
  return (global_step % interval) == 0


def uniform_start(key: jax.Array, x: jax.Array, radius: float = 8 / 255) -> jax.Array:
  """Start point of the LAS-AT attack: clip(x + U(−radius, radius), 0, 1) for every example
  whatever its own ε_i (docs/las_at.md#masked-attack). Pass it to the PGD driver as `start=`:
  the first gradient is taken at this point and the first projection shrinks it to ε_i.

  x: (B,H,W,C) in [0,1]; radius in pixel units.
  """
  noise = jax.random.uniform(key, x.shape, x.dtype, -radius, radius)
  return jnp.clip(x + noise, 0.0, 1.0)


def lookahead_params(params, grads, learning_rate: jax.Array, weight_decay: float = 5e-4):
  """The look-ahead copy θ′ of the reward (docs/las_at.md#reward): one step of a fresh
  PyTorch SGD optimiser (momentum 0.9 with an empty buffer, so a plain step),
  θ′ = θ − lr·(g + weight_decay·θ), leaf by leaf. params, grads: same pytree."""
  return jax.tree_util.tree_map(lambda p, g: p - learning_rate * (g + weight_decay * p), params, grads)
