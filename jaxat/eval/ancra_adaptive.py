"""Honest evaluation of a reverse-attention (ANCRA) model: the authors' protocol next to an
adaptive one (docs/ancra.md#evaluation).

The test-time model gates its features on its own auxiliary argmax (two passes, no gradient
through the gate). Reported per attack item (e.g. 'pgd20', 'aa'):
  authors         the item on the two-pass model's final logits (the paper's protocol).
  straight_through  the item on the same forward whose gate passes gradients through the
                  soft mask sum_k softmax(a/tau)_k W[:, k] (identical predictions).
  label_enum      for every class k: the item on the model gated by k for every example; the
                  points it finds are then scored on the two-pass model; an example counts as
                  robust only if no k fooled it.
  aux_head        the item on the auxiliary (ungated) head alone: a point that changes the
                  auxiliary prediction changes the gate, which then reinforces the wrong
                  class; its points are scored on the two-pass model.
  adaptive        the point-wise worst case of the four: never above `authors` on the same
                  images. This is the robust accuracy jaxat reports for ANCRA.
Every sub-evaluation runs the gradient-masking checks of jaxat/attacks/checks.py; their
warnings are collected under `warnings[<evaluation>]`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxat.attacks.autoattack import Classifier, predict_logits
from jaxat.eval.robustness import (EvaluationHooks, RobustnessReport, evaluate_robustness,
                                   jaxat_classifier, parse_items)
from jaxat.models.reverse_attention import ReverseAttentionModelFn

EVALUATIONS = ("authors", "straight_through", "label_enum", "aux_head", "adaptive")


@dataclasses.dataclass
class AncraReport:
  """accuracy[evaluation][item] and correct[evaluation][item] ((N,) bool) per evaluation of
  EVALUATIONS; clean accuracy of the two-pass model; warnings per sub-evaluation."""
  clean: float
  accuracy: dict[str, dict[str, float]]
  correct: dict[str, dict[str, np.ndarray]]
  warnings: dict[str, list[str]]

  def to_json(self) -> dict[str, Any]:
    return {"clean": self.clean, "accuracy": self.accuracy, "warnings": self.warnings,
            "robust_accuracy": self.accuracy["adaptive"]}


@dataclasses.dataclass(frozen=True)
class AncraEvalSettings:
  """The attack settings shared by every sub-evaluation (as `evaluate_robustness`'s):
  eps in [0,1] pixel units (or exact text such as '8/255'), norm 'linf' | 'l2', bn_mode
  of the attacked models 'eval' | 'batch_stats'."""
  attacks: str = "pgd20"
  eps: float | str = 8 / 255
  norm: str = "linf"
  batch_size: int = 250
  num_buckets: int = 4
  seed: int = 0
  attack_options: dict | None = None
  run_checks: bool = True
  bn_mode: str = "eval"


@dataclasses.dataclass(frozen=True)
class _LabelGatedLogits:
  """Logits of the model gated by one class for every example. The class is part of the
  variables (params, batch_stats, int32 label), not of this hashable function, so the K
  gates of the label-enumerating attack share each attack's compilation."""

  model: ReverseAttentionModelFn
  bn_mode: str

  def __call__(self, variables, x):
    params, batch_stats, label = variables
    labels = jnp.full((x.shape[0],), label, jnp.int32)
    return self.model.gated(params, batch_stats, x, self.bn_mode, labels).final_logits


@dataclasses.dataclass(frozen=True)
class _AuxiliaryLogits:
  """Logits of the auxiliary head (the ungated features' classifier), whose argmax picks
  the test-time gate; variables = (params, batch_stats)."""

  model: ReverseAttentionModelFn
  bn_mode: str

  def __call__(self, variables, x):
    params, batch_stats = variables
    return self.model.gated(params, batch_stats, x, self.bn_mode).aux_logits


def is_reverse_attention(model: Any) -> bool:
  """True for ANCRA's two-pass model (runs of `ancra`, or of AWP over it)."""
  return isinstance(model, ReverseAttentionModelFn)


def _run(classifier, x, y, items, settings: AncraEvalSettings,
         hooks: EvaluationHooks | None = None):
  return evaluate_robustness(classifier, x, y, attacks=items, eps=settings.eps,
                             norm=settings.norm, batch_size=settings.batch_size,
                             num_buckets=settings.num_buckets, seed=settings.seed,
                             attack_options=settings.attack_options,
                             run_checks=settings.run_checks, hooks=hooks)


def evaluate_ancra(model: ReverseAttentionModelFn, params: Any, batch_stats: Any,
                   x: np.ndarray, y: np.ndarray, settings: AncraEvalSettings = AncraEvalSettings()
                   ) -> AncraReport:
  """The four evaluations of the module docstring on (x (N,H,W,C) in [0,1], y (N,))."""
  items = [i for i in parse_items(settings.attacks) if i != "clean"]
  authors = _run(jaxat_classifier(dataclasses.replace(model, gate="argmax"), params,
                                  batch_stats, settings.bn_mode), x, y, items, settings)
  return adaptive_from_authors(model, params, batch_stats, x, y, authors, settings)


def adaptive_from_authors(model: ReverseAttentionModelFn, params: Any, batch_stats: Any,
                          x: np.ndarray, y: np.ndarray, authors: RobustnessReport,
                          settings: AncraEvalSettings,
                          hooks: EvaluationHooks | None = None) -> AncraReport:
  """The straight-through and label-enumerating evaluations, combined per example with an
  existing authors' report (`evaluate_robustness` of the two-pass model on the same x, y,
  items and settings; `python -m jaxat.evaluate` resumes that one from its partial state).
  `hooks` reach every sub-evaluation (progress; an on_chunk that raises stops them all:
  nothing of this part is kept, a rerun starts it over)."""
  items = [i for i in authors.accuracy if i != "clean"]
  authors_classifier = jaxat_classifier(dataclasses.replace(model, gate="argmax"), params,
                                        batch_stats, settings.bn_mode)

  def two_pass_correct(x_adv):
    return np.argmax(predict_logits(authors_classifier, x_adv, settings.batch_size), -1) == y

  straight = _run(jaxat_classifier(dataclasses.replace(model, gate="straight_through"), params,
                                   batch_stats, settings.bn_mode), x, y, items, settings, hooks)
  correct = {"authors": {i: authors.correct[i] for i in items},
             "straight_through": {i: straight.correct[i] & two_pass_correct(straight.x_adv[i])
                                  for i in items}}
  warnings = {"authors": list(authors.warnings), "straight_through": list(straight.warnings)}
  enum_correct = {i: authors.correct["clean"].copy() for i in items}
  num_classes = int(params["dense"]["bias"].shape[0])
  label_gated = _LabelGatedLogits(dataclasses.replace(model, gate="argmax"), settings.bn_mode)
  for k in range(num_classes):
    gated = _run(Classifier(label_gated, (params, batch_stats, np.int32(k))), x, y, items,
                 settings, hooks)
    warnings[f"label_enum/{k}"] = list(gated.warnings)
    for i in items:
      enum_correct[i] &= two_pass_correct(gated.x_adv[i])
  correct["label_enum"] = enum_correct
  auxiliary = _run(Classifier(_AuxiliaryLogits(dataclasses.replace(model, gate="argmax"),
                                               settings.bn_mode), (params, batch_stats)),
                   x, y, items, settings, hooks)
  warnings["aux_head"] = list(auxiliary.warnings)
  # Where the auxiliary head is already wrong on x, its "adversarial" point is x itself.
  correct["aux_head"] = {i: authors.correct["clean"] & two_pass_correct(auxiliary.x_adv[i])
                         for i in items}
  correct["adaptive"] = {i: np.logical_and.reduce([correct[name][i] for name in EVALUATIONS[:-1]])
                         for i in items}
  accuracy = {name: {i: float(c.mean()) for i, c in per_item.items()}
              for name, per_item in correct.items()}
  return AncraReport(float(authors.correct["clean"].mean()), accuracy, correct, warnings)
