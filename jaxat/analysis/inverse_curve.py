"""Accuracy under attacks of signed strength (UIAT paper, Figures 1 and 4).

For ε in a grid from −ε_max to +ε_max: ε > 0 is L-inf PGD *ascent* on cross-entropy of
radius ε (adversarial), ε < 0 is PGD *descent* of radius |ε| (inverse adversarial: the
likelihood of the true class is increased), ε = 0 is clean accuracy. Both directions use
the same attack: `num_steps` signed steps of |ε|·step_ratio (0.25 gives 2/255 at 8/255,
the usual PGD-20 step), uniform random start in the ball, eval-mode BatchNorm. For ε > 0 a
point wrong on clean input never counts (robust accuracy); for ε < 0 the accuracy of the
inverse adversaries themselves is reported.

The test examples are ranked by their clean true-class probability p_y(x) (descending,
ties by index), which orders them exactly as the per-example clean loss −log p_y(x) the
paper ranks by; the first ⌊n/2⌋ are the "most confident" half, the rest the "least
confident" half.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxat import xla_cpu
from jaxat.attacks import losses as attack_losses
from jaxat.attacks import pgd as pgd_lib
from jaxat.attacks.budget import Budget
from jaxat.models.forward import ModelFn

RANKING = ("true-class probability p_y(x) on clean inputs (eval-mode BatchNorm), descending; "
           "equivalent to ascending clean cross-entropy")


@dataclasses.dataclass(frozen=True)
class CurveSpec:
  """eps_max in [0,1] pixel units; num_points >= 2 values of ε evenly from −eps_max to
  +eps_max (odd counts include 0); each PGD takes num_steps steps of |ε|·step_ratio."""

  eps_max: float
  num_points: int = 9
  num_steps: int = 20
  step_ratio: float = 0.25

  def validate(self) -> None:
    if not 0.0 < self.eps_max <= 1.0:
      raise ValueError(f"eps_max must be in (0, 1] pixel units (8/255 = 0.0314), got {self.eps_max}")
    if self.num_points < 2:
      raise ValueError(f"num_points must be >= 2, got {self.num_points}")
    if self.num_steps < 1:
      raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
    if not self.step_ratio > 0:
      raise ValueError(f"step_ratio must be > 0, got {self.step_ratio}")

  def grid(self) -> np.ndarray:
    """(num_points,) signed radii, float64."""
    return np.linspace(-self.eps_max, self.eps_max, self.num_points)


def confidence_order(true_class_probs: np.ndarray) -> np.ndarray:
  """Indices sorted by descending p_y(x), ties by ascending index (stable)."""
  return np.argsort(-np.asarray(true_class_probs, np.float64), kind="stable")


def split_halves(true_class_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(most-confident indices (⌊n/2⌋,), least-confident indices (n − ⌊n/2⌋,))."""
  order = confidence_order(true_class_probs)
  half = len(order) // 2
  return order[:half], order[half:]


def _batch_fns(model: ModelFn, num_steps: int):
  """jitted (clean true-class probs and correctness) and signed-PGD correctness of a batch."""

  @xla_cpu.jit
  def clean(params, batch_stats, x, y):
    logits = model.logits(params, batch_stats, x, "eval")
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(probs, y[:, None], axis=-1)[:, 0], jnp.argmax(logits, -1) == y

  def attacked(direction: float):
    @xla_cpu.jit
    def run(params, batch_stats, x, y, key, eps, step_size):
      logits_fn = lambda inputs: model.logits(params, batch_stats, inputs, "eval")
      objective = pgd_lib.from_logits_fn(logits_fn, attack_losses.cross_entropy, y)
      result = pgd_lib.pgd(objective, x, y, key, Budget(eps, step_size, num_steps),
                           max_steps=num_steps, init="uniform", norm="linf",
                           direction=direction)
      return result.correct
    return run

  return clean, attacked(1.0), attacked(-1.0)


def _batches(images: np.ndarray, labels: np.ndarray, batch_size: int):
  """Yields (x (batch_size,H,W,C) float32 in [0,1], y, number of real rows); the last batch
  is padded by repeating row 0 so every call has one shape (one compilation)."""
  for start in range(0, len(labels), batch_size):
    x = images[start:start + batch_size]
    y = labels[start:start + batch_size]
    real = len(y)
    if real < batch_size:
      x = np.concatenate([x, np.repeat(x[:1], batch_size - real, axis=0)])
      y = np.concatenate([y, np.repeat(y[:1], batch_size - real)])
    yield jnp.asarray(x, jnp.float32) / 255.0, jnp.asarray(y, jnp.int32), real


def inverse_curve(model: ModelFn, params: Any, batch_stats: Any, images: np.ndarray,
                  labels: np.ndarray, spec: CurveSpec, key: jax.Array,
                  batch_size: int = 256) -> dict[str, Any]:
  """Accuracy against signed ε for the whole set and its two confidence halves.

  images: (N,H,W,C) uint8; labels: (N,) int. Returns a JSON-ready dict with 'eps',
  'eps_255', 'accuracy' {'most_confident', 'least_confident', 'all'} (lists aligned with
  'eps'), 'gap_at_eps_max' (most − least at +eps_max) and the settings.
  """
  spec.validate()
  if len(labels) < 2:
    raise ValueError(f"need at least 2 test examples to form two halves, got {len(labels)}")
  batch_size = min(batch_size, len(labels))
  clean_fn, ascent_fn, descent_fn = _batch_fns(model, spec.num_steps)
  true_probs, clean_correct = [], []
  for x, y, real in _batches(images, labels, batch_size):
    p, c = jax.device_get(clean_fn(params, batch_stats, x, y))
    true_probs.append(p[:real])
    clean_correct.append(c[:real])
  true_probs = np.concatenate(true_probs)
  clean_correct = np.concatenate(clean_correct)
  top, bottom = split_halves(true_probs)

  grid = spec.grid()
  per_eps_correct = []
  for point, eps in enumerate(grid):
    if eps == 0.0:
      per_eps_correct.append(clean_correct)
      continue
    attack = ascent_fn if eps > 0 else descent_fn
    radius = float(abs(eps))
    correct = []
    for index, (x, y, real) in enumerate(_batches(images, labels, batch_size)):
      batch_key = jax.random.fold_in(jax.random.fold_in(key, point), index)
      correct.append(np.asarray(jax.device_get(
          attack(params, batch_stats, x, y, batch_key, radius, radius * spec.step_ratio)))[:real])
    correct = np.concatenate(correct)
    # Robust accuracy convention: a point wrong on clean input never counts as robust. An
    # inverse attack may turn a wrong point right, and that is what it measures.
    per_eps_correct.append(correct & clean_correct if eps > 0 else correct)

  accuracy = {
      "most_confident": [float(c[top].mean()) for c in per_eps_correct],
      "least_confident": [float(c[bottom].mean()) for c in per_eps_correct],
      "all": [float(c.mean()) for c in per_eps_correct],
  }
  return {
      "eps": [float(e) for e in grid],
      "eps_255": [round(float(e) * 255, 6) for e in grid],
      "accuracy": accuracy,
      "gap_at_eps_max": accuracy["most_confident"][-1] - accuracy["least_confident"][-1],
      "n_examples": int(len(labels)),
      "half_sizes": [int(len(top)), int(len(bottom))],
      "ranking": RANKING,
      "attack": {"num_steps": spec.num_steps, "step_size": "|eps| * step_ratio",
                 "step_ratio": spec.step_ratio, "init": "uniform", "norm": "linf",
                 "bn_mode": "eval", "loss": "cross-entropy",
                 "negative_eps": "inverse PGD (descent on cross-entropy)"},
  }


def plot_inverse_curve(curve: dict[str, Any], path: str, title: str = "") -> None:
  """Writes the Fig. 1/4-style plot (accuracy % against ε·255) as a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  eps_255 = curve["eps_255"]
  acc = curve["accuracy"]
  fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=120)
  ax.plot(eps_255, [100 * a for a in acc["most_confident"]], "o-", label="most confident half")
  ax.plot(eps_255, [100 * a for a in acc["least_confident"]], "s-", label="least confident half")
  ax.plot(eps_255, [100 * a for a in acc["all"]], "--", color="grey", label="all")
  ax.axvline(0.0, color="green", linewidth=1.0, alpha=0.6)
  ax.annotate(f"gap {100 * curve['gap_at_eps_max']:.1f}",
              xy=(eps_255[-1], 100 * acc["least_confident"][-1]), xytext=(-60, 10),
              textcoords="offset points", arrowprops=dict(arrowstyle="->"))
  ax.set_xlabel("ε · 255   (negative: inverse adversary)")
  ax.set_ylabel(f"accuracy (%) under PGD-{curve['attack']['num_steps']}")
  ax.set_ylim(-2, 102)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower left", fontsize=8)
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
