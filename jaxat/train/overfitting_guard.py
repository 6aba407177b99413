"""Catastrophic-overfitting guard: a per-epoch robustness probe on fixed training images
(docs/fast_adversarial_training.md#catastrophic-overfitting-guard).

Single-step adversarial training can collapse within an epoch: robust accuracy against
multi-step PGD falls to ~0 while FGSM accuracy soars (Wong et al. 2020, "catastrophic
overfitting"). After every epoch the engine runs PGD (`train.guard_pgd_steps` steps of
`eval.step_size` inside `eval.eps`, BatchNorm `eval.bn_mode`) on the first
`train.guard_examples` training images — the same images, unaugmented, every epoch — and
logs the accuracy as `guard_train_pgd_acc` in metrics.jsonl. The decision is
fast_adversarial's `--early-stop` rule: collapse when the accuracy dropped by more than
`train.guard_drop` (absolute, 0.2 = 20 points) since the previous epoch.

`train.overfitting_guard` (validated in jaxat/config/validate.py):
- 'off': no probe.
- 'warn': probe, log, and mark the epoch (`overfitting_guard: "collapse"`), keep training.
- 'stop': as warn, then end training: the previous epoch's checkpoint — the last good one —
  becomes `best` (unless a validation split already selects `best` by validation PGD
  accuracy, which a collapsed epoch cannot win), the collapsed state stays `last`, and the
  final evaluation reports both. A rerun of the same command does not train on.
"""

from __future__ import annotations

COLLAPSE = "collapse"  # the epoch record's `overfitting_guard` value on a collapse


def collapsed(previous_acc: float | None, current_acc: float, drop: float) -> bool:
  """True when robust accuracy fell by more than `drop` since the previous epoch
  (accuracies in [0, 1]); never on the first probed epoch."""
  if previous_acc is None:
    return False
  return current_acc - previous_acc < -drop
