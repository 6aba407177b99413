"""Signs of gradient masking and misuse, modelled on AutoAttack's `checks.py`
(docs/evaluation.md#gradient-masking-checks): each check returns warning strings (empty
when all is well); nothing raises. The evaluator writes them to the report's JSON and to the log.

  probability outputs   max < 1+1e-5, min > -1e-5 and rows summing to 1 within 1e-5: the
                        model returns probabilities, not logits (CE/DLR then saturate).
  randomness            two forward passes on the same input differ, or the outputs of
                        an image depend on the other images of the batch (BatchNorm in
                        batch-statistics mode): deterministic attacks then mislead.
  zero gradients        points whose CE or DLR input gradient is exactly 0 (quantisation,
                        gradient-killing layers): gradient attacks are blind there.
  Square beats white-box  the black-box Square attack lowers robust accuracy by more than
                        0.2 percentage points below every white-box attack: a classic sign
                        of masked gradients.
The reference's `sys.settrace` check for autograd calls inside forward has no JAX analogue
and is not ported.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxat.attacks import losses

PROBABILITY_TOLERANCE = 1e-5
RANDOMNESS_TOLERANCE = 1e-4
SQUARE_MARGIN = 0.002  # 0.2 percentage points, as the reference
WHITE_BOX_FAMILIES = ("pgd", "apgd", "apgd-t", "fab-t")


def probability_output_warnings(logits: np.ndarray) -> list[str]:
  """logits (B,K) of clean inputs."""
  logits = np.asarray(logits, np.float64)
  if (logits.max() < 1 + PROBABILITY_TOLERANCE and logits.min() > -PROBABILITY_TOLERANCE
      and np.all(np.abs(logits.sum(-1) - 1) < PROBABILITY_TOLERANCE)):
    return ["the model's outputs look like probabilities (non-negative rows summing to 1); "
            "attacks need logits, so robust accuracy may be overestimated"]
  return []


def _normalised(logits: np.ndarray) -> np.ndarray:
  logits = np.asarray(logits, np.float64)
  return logits / (np.linalg.norm(logits, axis=-1, keepdims=True) + 1e-10)


def randomness_warnings(logits_a: np.ndarray, logits_b: np.ndarray,
                        logits_half_alone: np.ndarray) -> list[str]:
  """logits_a, logits_b: two passes over the same batch (B,K); logits_half_alone: the
  first B//2 images passed on their own."""
  out = []
  if np.max(np.linalg.norm(_normalised(logits_a) - _normalised(logits_b), axis=-1)) > RANDOMNESS_TOLERANCE:
    out.append("two forward passes on the same images differ: the model looks randomised; "
               "a single-pass evaluation overestimates robustness (use EOT)")
  half = len(logits_half_alone)
  if half and np.max(np.linalg.norm(_normalised(logits_a[:half]) - _normalised(logits_half_alone),
                                    axis=-1)) > RANDOMNESS_TOLERANCE:
    out.append("an image's outputs depend on the other images of its batch (BatchNorm in "
               "batch-statistics mode?); evaluate in inference mode (bn_mode='eval')")
  return out


def zero_gradient_flags(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                        labels: jax.Array) -> dict[str, jax.Array]:
  """loss name -> (B,) bool, True where the input gradient of that loss is exactly zero
  (||grad||_1 = 0, the reference's test) for x (B,H,W,C): CE always, DLR when the model
  has >= 3 classes. Pure; jit it."""
  num_classes = jax.eval_shape(logits_fn, x).shape[-1]
  named = {"ce": losses.cross_entropy}
  if num_classes >= 3:
    named["dlr"] = losses.dlr_loss
  flags = {}
  for name, loss_fn in named.items():
    grad = jax.grad(lambda z, fn=loss_fn: jnp.sum(fn(logits_fn(z), labels)))(x)
    flags[name] = jnp.sum(jnp.abs(grad.reshape(x.shape[0], -1)), axis=1) == 0
  return flags


def zero_gradient_warnings(counts: Mapping[str, int], num_points: int) -> list[str]:
  return [f"{count} of {num_points} correctly classified points have a zero {name.upper()} "
          "input gradient; gradient-based attacks cannot move them (gradient masking?)"
          for name, count in counts.items() if count > 0]


def square_warnings(accuracy_after: Mapping[str, float], families: Mapping[str, str],
                    where: str) -> list[str]:
  """accuracy_after: attack name -> robust accuracy (fraction); families: attack name ->
  family. Warns if Square's accuracy is more than 0.2 pp below every white-box one."""
  square = [name for name, family in families.items() if family == "square" and name in accuracy_after]
  white = [accuracy_after[name] for name, family in families.items()
           if family in WHITE_BOX_FAMILIES and name in accuracy_after]
  if not square or not white:
    return []
  best_white = min(white)
  gap = best_white - accuracy_after[square[0]]
  if gap > SQUARE_MARGIN:
    return [f"{where}: the black-box Square attack lowers robust accuracy {100 * gap:.2f} pp "
            "below the white-box attacks; the gradients may be masked and the evaluation "
            "unreliable"]
  return []


def perturbation_summary(x_adv: np.ndarray, x: np.ndarray, norm: str) -> dict[str, float]:
  """The reference's final log line as numbers: the largest perturbation norm, the NaN
  count and the range of x_adv (N,H,W,C)."""
  delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
  if len(delta) == 0:
    return {"max_norm": 0.0, "nan_count": 0, "min": 0.0, "max": 0.0}
  norms = np.abs(delta).max(1) if norm == "linf" else np.sqrt((delta ** 2).sum(1))
  return {"max_norm": float(np.nanmax(norms)), "nan_count": int(np.isnan(x_adv).sum()),
          "min": float(np.nanmin(x_adv)), "max": float(np.nanmax(x_adv))}
