"""A workdir keeps the config it was started with: config.json is written once, a finished run
is not evaluated again, a changed config is refused with the differing fields, and changed
evaluation settings on an unfinished run need allow_eval_change and are recorded."""

from __future__ import annotations

import json
import os

import pytest

from jaxat.errors import UsageError
from jaxat.train.train import CONFIG_CHANGES_FILE, train_and_evaluate
from tiny_runs import tiny_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("changes") / "run")
  results = train_and_evaluate(tiny_config("pgd_at", "synthetic", num_epochs=1), workdir)
  return workdir, results


def _read(path):
  with open(path) as f:
    return f.read()


def test_a_finished_run_is_returned_not_evaluated_again(finished_run):
  workdir, results = finished_run
  stamps = {name: os.path.getmtime(os.path.join(workdir, name))
            for name in ("results.json", "config.json", "metrics.jsonl")}
  again = train_and_evaluate(tiny_config("pgd_at", "synthetic", num_epochs=1), workdir)
  assert again == json.loads(_read(os.path.join(workdir, "results.json")))
  assert again["fingerprint"] == results["fingerprint"]
  assert {name: os.path.getmtime(os.path.join(workdir, name)) for name in stamps} == stamps


def test_changed_training_fields_are_refused_by_name(finished_run):
  workdir, _ = finished_run
  before = _read(os.path.join(workdir, "config.json"))
  config = tiny_config("pgd_at", "synthetic", num_epochs=1, seed=3,
                       **{"optimizer.weight_decay": 0.0})
  with pytest.raises(UsageError) as refused:
    train_and_evaluate(config, workdir, allow_eval_change=True)
  message = str(refused.value)
  assert "seed: 0 -> 3" in message and "optimizer.weight_decay: 0.0005 -> 0.0" in message
  assert _read(os.path.join(workdir, "config.json")) == before


def test_eval_changes_on_a_finished_run_point_to_the_evaluator(finished_run):
  workdir, _ = finished_run
  config = tiny_config("pgd_at", "synthetic", num_epochs=1, **{"eval.pgd_steps": 3})
  with pytest.raises(UsageError, match=r"eval\.pgd_steps: 2 -> 3.*python -m jaxat\.evaluate"):
    train_and_evaluate(config, workdir, allow_eval_change=True)


def test_eval_changes_on_an_unfinished_run_need_the_flag_and_are_recorded(tmp_path):
  workdir = str(tmp_path / "run")
  original = tiny_config("pgd_at", "synthetic", num_epochs=1)
  train_and_evaluate(original, workdir)
  os.remove(os.path.join(workdir, "results.json"))   # as if stopped before the final evaluation
  config_json = _read(os.path.join(workdir, "config.json"))
  changed = tiny_config("pgd_at", "synthetic", num_epochs=1, **{"eval.final_attacks": "clean"})
  with pytest.raises(UsageError, match=r"eval\.final_attacks: 'clean,pgd20' -> 'clean'.*--allow_eval_change"):
    train_and_evaluate(changed, workdir)
  assert not os.path.exists(os.path.join(workdir, CONFIG_CHANGES_FILE))

  results = train_and_evaluate(changed, workdir, allow_eval_change=True)
  assert "pgd20_acc" not in results and "clean_acc" in results   # the new settings apply
  assert _read(os.path.join(workdir, "config.json")) == config_json   # the original stays
  with open(os.path.join(workdir, CONFIG_CHANGES_FILE)) as f:
    entries = [json.loads(line) for line in f]
  assert entries == [{"resumed_at_step": 4,
                      "changed": {"eval.final_attacks": ["clean,pgd20", "clean"]}}]
