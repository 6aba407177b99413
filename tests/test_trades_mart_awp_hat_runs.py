"""TRADES, MART, AWP (over PGD-AT and over TRADES) and HAT train end to end through
`train_and_evaluate` on tiny synthetic data; HAT first trains its own helper."""

import json
import logging
import math
import os

import pytest

from jaxat.methods.hat import HAT
from jaxat.train.train import finish_prerequisites, train_and_evaluate
from tiny_runs import load_config, tiny_config

TINY = {"log.progress": "none", "num_epochs": 1, "batch_size": 32, "eval.pgd_steps": 1,
        "dataset.max_train": 64, "dataset.num_train": 64, "dataset.max_test": 32,
        "dataset.num_test": 32, "eval_batch_size": 32}
# (config file, extra config-arg token, overrides, metrics only this method logs); one
# epoch, so AWP runs without warm-up.
RUNS = {
    "trades": ("trades", "", {}, ("natural_loss", "robust_loss", "clean_acc")),
    "mart": ("mart", "", {}, ("adv_loss", "robust_loss", "clean_acc")),
    "awp_pgd_at": ("awp", "", {}, ()),
    "awp_trades": ("awp", "trades", {"method.weight_perturbation.warmup_epochs": 0},
                   ("natural_loss", "robust_loss")),
    "hat": ("hat", "", {}, ("helper_loss", "helper_acc", "helper_label_agreement")),
}


def tiny(name, token="", **overrides):
  if not token:
    return tiny_config(name, **{**TINY, **overrides})
  config = load_config(name, f"synthetic,smoke,{token}")
  config.update_from_flattened_dict({**TINY, **overrides})
  return config


@pytest.mark.parametrize("run", sorted(RUNS))
def test_method_trains_end_to_end_with_its_own_loss(run, tmp_path, caplog):
  name, token, overrides, own_metrics = RUNS[run]
  workdir = str(tmp_path / run)
  with caplog.at_level(logging.INFO, logger="absl"):
    results = train_and_evaluate(tiny(name, token, **overrides), workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    saved = json.load(f)
  assert saved["fingerprint"] == results["fingerprint"]
  assert 0.0 <= saved["pgd20_acc"] <= saved["clean_acc"] <= 1.0
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    record = json.loads(f.readline())
  assert math.isfinite(record["loss"])
  # The method's own loss terms ran (pgd_at logs only loss and adv_acc) ...
  assert all(key in record for key in own_metrics), sorted(record)
  if run == "awp_pgd_at":
    # ... and AWP over PGD-AT, whose metrics are PGD-AT's, trains other weights than PGD-AT.
    pgd_at = train_and_evaluate(tiny("pgd_at"), str(tmp_path / "pgd_at"))
    assert pgd_at["fingerprint"] != results["fingerprint"]
  if name == "hat":
    # No helper was named: the run trained one first, in its own workdir, and said so.
    helper_dir = os.path.join(workdir, "helper")
    with open(os.path.join(helper_dir, "config.json")) as f:
      helper = json.load(f)
    assert helper["method"]["name"] == "standard"
    with open(os.path.join(workdir, "config.json")) as f:
      assert helper["num_epochs"] == 1 and helper["model"] == json.load(f)["model"]
    assert os.path.exists(os.path.join(helper_dir, "results.json"))
    assert any("not finished: training it first" in r.getMessage() for r in caplog.records)
    assert 0.0 <= record["helper_label_agreement"] <= 1.0
    # Re-entrant: set up again, the finished helper is reused, not retrained.
    stamp = os.path.getmtime(os.path.join(helper_dir, "results.json"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="absl"):
      finish_prerequisites(HAT(tiny("hat").method), tiny("hat"), workdir)
    assert os.path.getmtime(os.path.join(helper_dir, "results.json")) == stamp
    assert any("reusing the helper run" in r.getMessage() for r in caplog.records)
