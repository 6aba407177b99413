"""The catastrophic-overfitting guard: its decision rule on scripted accuracy sequences,
and the engine's warn / stop behaviour (the probe's verdict scripted, so the test does not
depend on a real collapse; the README shows one on real training)."""

import json
import os

import pytest

from jaxat.train import overfitting_guard
from jaxat.train.train import train_and_evaluate
from tiny_runs import tiny_config


def first_drop(accuracies, drop):
  """1-based epoch of the first collapse over a sequence of probe accuracies (no training-
  attack accuracy, so the drop rule alone), or None."""
  records = [{"epoch": e, "guard_train_pgd_acc": a} for e, a in enumerate(accuracies, start=1)]
  found = overfitting_guard.first_collapse(records, overfitting_guard.Thresholds(drop, 0.1))
  return found and found[0]


@pytest.mark.parametrize("accuracies, drop, expected", [
    ([0.40, 0.45, 0.47, 0.02], 0.2, 4),   # FGSM's classic collapse: 47% -> 2%
    ([0.40, 0.45, 0.30, 0.09], 0.2, 4),   # drops of 15 then 21 points: only the second counts
    ([0.50, 0.30], 0.2, None),            # exactly 20 points is not more than 20
    ([0.50, 0.29], 0.2, 2),
    ([0.10, 0.05, 0.01], 0.2, None),      # slow decline, never 20 points at once
    ([0.60, 0.55], 0.04, 2),
    ([0.30], 0.2, None),                  # the first epoch has nothing to compare with
])
def test_drop_rule_on_scripted_sequences(accuracies, drop, expected):
  assert first_drop(accuracies, drop) == expected


@pytest.mark.parametrize("pairs, expected", [
    # (training-attack accuracy, probe PGD accuracy) per epoch.
    ([(0.30, 0.28), (0.35, 0.30), (0.50, 0.12)], (3, "gap")),     # 38 points apart, 18 down
    ([(0.20, 0.05), (0.25, 0.15)], (1, "gap")),                   # 15 points on the first epoch
    ([(0.39, 0.30)], None),                                       # 9 points: within
    ([(0.401, 0.30)], (1, "gap")),
    ([(0.10, 0.30), (0.20, 0.35)], None),                         # attack weaker than PGD: fine
    ([(0.50, 0.45), (0.52, 0.20)], (2, "drop")),                  # both fire: drop is named
    ([(None, 0.30), (None, 0.25)], None),                         # no adv_acc: drop rule only
])
def test_gap_rule_on_scripted_sequences(pairs, expected):
  records = [{"epoch": e, "guard_train_pgd_acc": probe, **({} if adv is None else {"adv_acc": adv})}
             for e, (adv, probe) in enumerate(pairs, start=1)]
  assert overfitting_guard.first_collapse(records, overfitting_guard.Thresholds(0.2, 0.1)) == expected


def scripted_verdicts(monkeypatch, collapse_at_probe):
  """Makes the guard report a collapse on the `collapse_at_probe`-th probe (1-based)."""
  calls = []

  def verdict(previous, current, train_attack_acc, thresholds):
    calls.append((previous, current, train_attack_acc))
    return overfitting_guard.GAP if len(calls) == collapse_at_probe else None

  monkeypatch.setattr(overfitting_guard, "collapse_rule", verdict)
  return calls


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_stop_ends_training_and_keeps_the_last_good_epoch_as_best(tmp_path, monkeypatch):
  calls = scripted_verdicts(monkeypatch, collapse_at_probe=2)
  config = tiny_config("pgd_at", **{"num_epochs": 4, "train.overfitting_guard": "stop",
                                    "train.guard_examples": 40, "method.attack.num_steps": 1})
  workdir = str(tmp_path / "run")
  results = train_and_evaluate(config, workdir)
  lines = records(workdir)
  assert [r["epoch"] for r in lines] == [1, 2]          # stopped after the collapsed epoch
  assert all(0.0 <= r["guard_train_pgd_acc"] <= 1.0 for r in lines)
  assert "overfitting_guard" not in lines[0] and lines[1]["overfitting_guard"] == "collapse"
  assert lines[1]["overfitting_guard_rule"] == "gap"
  # The gap is the epoch's training-attack accuracy minus the probe's, and the rule sees both.
  assert lines[1]["guard_attack_gap"] == pytest.approx(lines[1]["adv_acc"] - lines[1]["guard_train_pgd_acc"])
  assert calls[1][2] == lines[1]["adv_acc"]
  # The probe saw the previous epoch's accuracy: the rule compares consecutive epochs.
  assert calls[1][0] == lines[0]["guard_train_pgd_acc"]
  steps_per_epoch = lines[0]["step"]
  assert results["best"]["step"] == steps_per_epoch      # epoch 1, the last good one
  assert results["last"]["step"] == 2 * steps_per_epoch
  # A rerun of the same command does not train on past the stop.
  monkeypatch.undo()
  again = train_and_evaluate(config, workdir)
  assert [r["epoch"] for r in records(workdir)] == [1, 2]
  assert again["last"]["step"] == 2 * steps_per_epoch


def test_warn_marks_the_epoch_and_trains_on(tmp_path, monkeypatch):
  scripted_verdicts(monkeypatch, collapse_at_probe=2)
  config = tiny_config("pgd_at", **{"num_epochs": 3, "train.overfitting_guard": "warn",
                                    "train.guard_examples": 40, "method.attack.num_steps": 1})
  workdir = str(tmp_path / "run")
  train_and_evaluate(config, workdir)
  lines = records(workdir)
  assert [r.get("overfitting_guard") for r in lines] == [None, "collapse", None]


def test_off_runs_no_probe(tmp_path):
  config = tiny_config("pgd_at", **{"num_epochs": 1, "method.attack.num_steps": 1})
  workdir = str(tmp_path / "run")
  train_and_evaluate(config, workdir)
  assert "guard_train_pgd_acc" not in records(workdir)[0]


@pytest.mark.parametrize("field, value, match", [
    ("train.overfitting_guard", "halt", "off, warn, stop"),
    ("train.guard_drop", 0.0, "guard_drop"),
    ("train.guard_drop", 1.5, "guard_drop"),
    ("train.guard_gap", 0.0, "guard_gap"),
    ("train.guard_gap", 1.5, "guard_gap"),
    ("train.guard_examples", 0, "guard_examples"),
])
def test_bad_guard_settings_are_refused_before_anything_is_written(tmp_path, field, value, match):
  config = tiny_config("pgd_at", **{field: value})
  with pytest.raises(ValueError, match=match):
    train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_replay_names_the_epoch_of_each_rule_alone_and_together(tmp_path):
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "benchmarks"))
  import guard_replay
  rows = [(0.30, 0.40), (0.35, 0.42), (0.45, 0.30), (0.60, 0.25), (0.70, 0.02)]  # (adv, probe)
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps({"epoch": e, "adv_acc": a, "guard_train_pgd_acc": p,
                                      "test_pgd10_acc": p / 2}) + "\n"
                          for e, (a, p) in enumerate(rows, start=1)))
  verdict = guard_replay.replay(str(path), drop=0.2, gap=0.1)
  assert verdict["gap_only"] == {"epoch": 3, "rule": "gap"}     # 45 - 30 = 15 points
  assert verdict["drop_only"] == {"epoch": 5, "rule": "drop"}   # 25 -> 2; 42 -> 30 is only 12
  assert verdict["both"] == {"epoch": 3, "rule": "gap"}
  assert verdict["max_gap"] == pytest.approx(0.68)
  assert verdict["last_test_pgd"] == pytest.approx(0.01)


def test_a_gap_of_exactly_the_threshold_is_not_a_collapse():
  thresholds = overfitting_guard.Thresholds(drop=0.5, gap=0.25)   # exact in binary
  assert overfitting_guard.collapse_rule(None, 0.5, 0.75, thresholds) is None
  assert overfitting_guard.collapse_rule(None, 0.5, 0.7500001, thresholds) == "gap"
  assert overfitting_guard.collapse_rule(1.0, 0.5, None, thresholds) is None       # exactly 50 down
  assert overfitting_guard.collapse_rule(1.0, 0.4999999, None, thresholds) == "drop"
