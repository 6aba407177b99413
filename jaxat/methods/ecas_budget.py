"""The ECAS per-example ε rule (Zhang et al., "Adaptive Adversarial Norm Space for Efficient
Adversarial Training", BMVC 2023), as pure functions (docs/ecas.md#the-eps-rule).

Every ε is in [0,1] pixel units (k/255). Shapes: B examples, K classes, O = |E| options.

1. Cyclic base ε of the epoch: ε_cyc(e) = sorted(E)[e mod |E|].
2. Entropy of the clean prediction, H_i = −Σ_k p_ik ln p_ik, p = softmax(logits_i), natural
   log, 0·ln 0 = 0 (xlogy), so a saturated softmax gives H = 0 rather than NaN.
3. ε_i = min(E) if H_i > ρ_high; ε_big if H_i < ρ_low; ε_cyc otherwise, where ε_big is ONE
   value drawn uniformly from the `big` subset per batch (the official code draws it once per
   batch: every low-entropy example of a batch shares it).
4. The PGD step size is α = ε_cyc / 5 (2·ε_cyc/10, from the epoch's cyclic ε, not ε_i).

The official code decides per example (default, `reading='example'`); the paper speaks of
classes, so `reading='class'` applies the rule to the batch's mean entropy of each true class
(every example of class k gets the ε its class's mean entropy selects).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp


class EcasRule(NamedTuple):
  """The static settings of the rule.

  eps_list: the option set E, ascending, [0,1] units (e.g. (3/255, ..., 12/255)).
  big: the subset of E drawn from for low-entropy examples (e.g. (10/255, 11/255, 12/255)).
  rho_high / rho_low: entropy thresholds in nats (ρ_high > ρ_low).
  reading: 'example' (official code) or 'class' (the paper's per-class reading).
  """

  eps_list: Sequence[float]
  big: Sequence[float]
  rho_high: float
  rho_low: float
  reading: str = 'example'


READINGS = ('example', 'class')


def cyclic_eps(epoch, eps_list: Sequence[float]):
  """ε_cyc of the 0-based `epoch` (int or int32 scalar): sorted(E)[epoch mod |E|], float32."""
  table = jnp.asarray(sorted(eps_list), jnp.float32)
  return table[jnp.asarray(epoch, jnp.int32) % len(eps_list)]


def cyclic_step_size(epoch, eps_list: Sequence[float]):
  """The PGD step size α = 2·ε_cyc/10 of the official code (from the cyclic ε, not ε_i)."""
  return 2.0 * cyclic_eps(epoch, eps_list) / 10.0


def prediction_entropy(logits):
  """(B,) entropies in nats of softmax(logits) for (B, K) logits; 0·ln 0 counts as 0."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.sum(jax.scipy.special.xlogy(probs, probs), axis=-1)


def class_mean_entropy(entropy, labels, num_classes: int):
  """(B,) mean entropy of each example's true class over this batch (the per-class reading)."""
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  totals = one_hot.T @ entropy
  counts = jnp.sum(one_hot, axis=0)
  means = totals / jnp.maximum(counts, 1.0)
  return means[labels]


def draw_big_eps(key, big: Sequence[float]):
  """One ε drawn uniformly from `big` (a scalar shared by the whole batch)."""
  table = jnp.asarray(big, jnp.float32)
  return table[jax.random.randint(key, (), 0, len(big))]


def select_eps(entropy, eps_cyc, eps_big, rule: EcasRule):
  """(B,) ε_i from (B,) entropies (per example or per class mean) and scalar ε_cyc, ε_big:
  min(E) where H > ρ_high, ε_big where H < ρ_low, else ε_cyc (strict inequalities, as the
  official code)."""
  eps_min = jnp.float32(min(rule.eps_list))
  eps = jnp.full(entropy.shape, eps_cyc, jnp.float32)
  eps = jnp.where(entropy > rule.rho_high, eps_min, eps)
  return jnp.where(entropy < rule.rho_low, jnp.asarray(eps_big, jnp.float32), eps)


def ecas_eps(logits, labels, epoch, key, rule: EcasRule):
  """(B,) per-example ε for clean `logits` (B, K), int `labels` (B,) at `epoch`; `key`
  draws the batch's ε_big."""
  entropy = prediction_entropy(logits)
  if rule.reading == 'class':
    entropy = class_mean_entropy(entropy, labels, logits.shape[-1])
  eps_big = draw_big_eps(key, rule.big)
  return select_eps(entropy, cyclic_eps(epoch, rule.eps_list), eps_big, rule)


def eps_histogram(eps, labels, eps_list: Sequence[float], num_classes: int):
  """(O, K) int32 count metric: entry [o, k] = number of examples of class k given E[o]
  (the `counts/eps` convention of docs/architecture.md#count-metrics)."""
  table = jnp.asarray(sorted(eps_list), jnp.float32)
  option = jnp.argmin(jnp.abs(eps[:, None] - table[None, :]), axis=1)
  chosen = jax.nn.one_hot(option, len(eps_list), dtype=jnp.int32)
  classes = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32)
  return chosen.T @ classes


def eps_labels(eps_list: Sequence[float]):
  """Option labels 'k/255' of E in ascending order, for count_metric_labels."""
  return tuple(f'{round(e * 255)}/255' for e in sorted(eps_list))


def validate_rule(rule: EcasRule, field: str = 'method.attack.ecas'):
  """One-line ValueError naming the field for a bad rule."""
  if rule.reading not in READINGS:
    raise ValueError(f'{field}.reading={rule.reading!r}; valid: {", ".join(READINGS)}')
  if len(rule.eps_list) == 0:
    raise ValueError(f'{field}.eps_list is empty; give at least one ε (k/255)')
  if not set(rule.big) <= set(rule.eps_list) or not rule.big:
    raise ValueError(f'{field}.big={tuple(rule.big)} must be a non-empty subset of eps_list')
  if not rule.rho_high > rule.rho_low:
    raise ValueError(f'{field}.rho_high={rule.rho_high} must exceed rho_low={rule.rho_low}')
