"""Catastrophic-overfitting guard: a per-epoch robustness probe on fixed training images
(docs/fast_adversarial_training.md#catastrophic-overfitting-guard).

Single-step adversarial training can collapse: robust accuracy against multi-step PGD falls
to ~0 while the accuracy on the training attack soars (Wong et al. 2020, "catastrophic
overfitting"). After every epoch the engine runs PGD (`train.guard_pgd_steps` steps of
`eval.step_size` inside `eval.eps`, BatchNorm `eval.bn_mode`) on the first
`train.guard_examples` training images — the same images, unaugmented, every epoch — and
logs the accuracy as `guard_train_pgd_acc` in metrics.jsonl. Two rules decide a collapse:

- drop (fast_adversarial's `--early-stop`): the probe accuracy fell by more than
  `train.guard_drop` (absolute, 0.2 = 20 points) since the previous epoch;
- gap: the epoch's accuracy on the method's own training adversarial examples (`adv_acc`)
  exceeds the probe accuracy by more than `train.guard_gap` (0.1 = 10 points), logged as
  `guard_attack_gap`. The training attack no longer finds the adversarial examples PGD
  finds, which is what catastrophic overfitting is; unlike the drop rule it also fires when
  robust accuracy was low before the collapse (large ε), where a 20-point fall is
  impossible. 1.0 turns it off; methods without `adv_acc` are judged by the drop alone.

`train.overfitting_guard` (validated in jaxat/config/validate.py):
- 'off': no probe.
- 'warn': probe, log, and mark the epoch (`overfitting_guard: "collapse"`, and the rule in
  `overfitting_guard_rule`), keep training.
- 'stop': as warn, then end training: the previous epoch's checkpoint — the last good one —
  becomes `best` (unless a validation split already selects `best` by validation PGD
  accuracy, which a collapsed epoch cannot win), the collapsed state stays `last`, and the
  final evaluation reports both. A rerun of the same command does not train on.
"""

from __future__ import annotations

from typing import NamedTuple

COLLAPSE = "collapse"  # the epoch record's `overfitting_guard` value on a collapse
DROP, GAP = "drop", "gap"  # the rule that fired (`overfitting_guard_rule`)


class Thresholds(NamedTuple):
  """drop: largest allowed fall of the probe accuracy between epochs; gap: largest allowed
  excess of the training-attack accuracy over the probe accuracy (both in [0, 1])."""

  drop: float
  gap: float


def collapse_rule(previous_probe_acc: float | None, probe_acc: float,
                  train_attack_acc: float | None, thresholds: Thresholds) -> str | None:
  """The rule that reports a collapse this epoch (DROP before GAP), or None.

  Accuracies in [0, 1]; previous_probe_acc is None on the first probed epoch (no drop);
  train_attack_acc is None for a method that reports no `adv_acc` (no gap).
  """
  if previous_probe_acc is not None and probe_acc - previous_probe_acc < -thresholds.drop:
    return DROP
  if train_attack_acc is not None and train_attack_acc - probe_acc > thresholds.gap:
    return GAP
  return None


def first_collapse(records: list[dict], thresholds: Thresholds) -> tuple[int, str] | None:
  """(epoch, rule) of the first collapse over metrics.jsonl epoch records that carry
  `guard_train_pgd_acc` (and `adv_acc`), or None: the engine's decision replayed on a
  finished run (benchmarks/guard_replay.py)."""
  previous = None
  for record in records:
    probe = record.get("guard_train_pgd_acc")
    if probe is None:
      continue
    rule = collapse_rule(previous, probe, record.get("adv_acc"), thresholds)
    if rule is not None:
      return record["epoch"], rule
    previous = probe
  return None
