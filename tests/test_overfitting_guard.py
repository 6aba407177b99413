"""The catastrophic-overfitting guard: its decision rule on scripted accuracy sequences,
and the engine's warn / stop behaviour (the probe's verdict scripted, so the test does not
depend on a real collapse; the README shows one on real training)."""

import json
import os

import pytest

from jaxat.train import overfitting_guard
from jaxat.train.train import train_and_evaluate
from tiny_runs import tiny_config


def first_collapse(accuracies, drop):
  """1-based epoch of the first collapse the rule reports over a sequence, or None."""
  previous = None
  for epoch, acc in enumerate(accuracies, start=1):
    if overfitting_guard.collapsed(previous, acc, drop):
      return epoch
    previous = acc
  return None


@pytest.mark.parametrize("accuracies, drop, expected", [
    ([0.40, 0.45, 0.47, 0.02], 0.2, 4),   # FGSM's classic collapse: 47% -> 2%
    ([0.40, 0.45, 0.30, 0.09], 0.2, 4),   # drops of 15 then 21 points: only the second counts
    ([0.50, 0.30], 0.2, None),            # exactly 20 points is not more than 20
    ([0.50, 0.29], 0.2, 2),
    ([0.10, 0.05, 0.01], 0.2, None),      # slow decline, never 20 points at once
    ([0.60, 0.55], 0.04, 2),
    ([0.30], 0.2, None),                  # the first epoch has nothing to compare with
])
def test_decision_rule_on_scripted_sequences(accuracies, drop, expected):
  assert first_collapse(accuracies, drop) == expected


def scripted_verdicts(monkeypatch, collapse_at_probe):
  """Makes the guard report a collapse on the `collapse_at_probe`-th probe (1-based)."""
  calls = []

  def verdict(previous, current, drop):
    calls.append((previous, current))
    return len(calls) == collapse_at_probe

  monkeypatch.setattr(overfitting_guard, "collapsed", verdict)
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
    ("train.guard_examples", 0, "guard_examples"),
])
def test_bad_guard_settings_are_refused_before_anything_is_written(tmp_path, field, value, match):
  config = tiny_config("pgd_at", **{field: value})
  with pytest.raises(ValueError, match=match):
    train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")
