"""The training loop end to end, in process: outputs, determinism, checkpoints, health."""

import json
import os

import pytest

from jaxat.train.train import NonFiniteLossError, train_and_evaluate
from tiny_runs import tiny_config


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  config = tiny_config("pgd_at", **{"dataset.val_size": 32, "num_epochs": 3, "checkpoint.keep": 2})
  results = train_and_evaluate(config, workdir)
  return config, workdir, results


def test_outputs_of_a_run(finished_run):
  config, workdir, results = finished_run
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["method"]["attack"]["num_steps"] == config.method.attack.num_steps
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["epoch"] for r in records] == [1, 2, 3]
  steps_per_epoch = 96 // 32  # 128 train - 32 validation
  assert [r["step"] for r in records] == [steps_per_epoch * e for e in (1, 2, 3)]
  for record in records:
    for key in ("lr", "loss", "adv_acc", "images_per_sec", "fingerprint", "test_clean_acc",
                "test_pgd2_acc", "val_clean_acc", "val_pgd2_acc"):
      assert key in record, key
    assert 0.0 <= record["test_pgd2_acc"] <= record["test_clean_acc"] <= 1.0
  assert records[-1]["fingerprint"] == results["fingerprint"]
  with open(os.path.join(workdir, "results.json")) as f:
    saved = json.load(f)
  assert saved["fingerprint"] == results["fingerprint"]
  assert 0.0 <= saved["pgd20_acc"] <= saved["clean_acc"] <= 1.0
  assert saved["num_test_examples"] == 64
  assert saved["last"]["raw"]["clean_acc"] == saved["clean_acc"]
  assert saved["best"]["epoch"] in (1, 2, 3)
  assert saved["best"]["val_pgd_acc"] == max(r["val_pgd2_acc"] for r in records)


def test_checkpoints_keep_last_n_and_the_best(finished_run):
  _, workdir, _ = finished_run
  last = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints", "last")))
  assert last == [6, 9]  # keep=2 of the end-of-epoch steps 3, 6, 9
  best = os.listdir(os.path.join(workdir, "checkpoints", "best"))
  assert len(best) == 1


def test_same_seed_same_fingerprint_other_seed_differs(tmp_path, finished_run):
  config, _, results = finished_run
  again = train_and_evaluate(config, str(tmp_path / "again"))
  assert again["fingerprint"] == results["fingerprint"]
  other = config.copy_and_resolve_references()
  other.seed = 1
  assert train_and_evaluate(other, str(tmp_path / "other"))["fingerprint"] != results["fingerprint"]


def test_rerun_of_a_finished_run_resumes_and_reports_the_same(finished_run):
  config, workdir, results = finished_run
  rerun = train_and_evaluate(config, workdir)
  assert rerun["fingerprint"] == results["fingerprint"]
  assert rerun["clean_acc"] == results["clean_acc"]
  assert [r["epoch"] for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))] == [1, 2, 3]


def test_a_different_config_in_the_same_workdir_is_refused(finished_run):
  config, workdir, _ = finished_run
  other = config.copy_and_resolve_references()
  other.optimizer.weight_decay = 0.0
  with pytest.raises(ValueError, match="optimizer"):
    train_and_evaluate(other, workdir)


def test_non_finite_loss_stops_with_the_step(tmp_path):
  config = tiny_config("standard", **{"schedule.name": "constant", "schedule.lr_max": 1e30,
                                      "optimizer.weight_decay": 0.0})
  with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at step \d+"):
    train_and_evaluate(config, str(tmp_path / "nan"))
  assert not os.path.exists(tmp_path / "nan" / "results.json")


def test_ema_weights_are_reported(tmp_path):
  config = tiny_config("standard", **{"ema.decay": 0.9})
  results = train_and_evaluate(config, str(tmp_path / "ema"))
  assert results["weights"] == "ema"
  assert set(results["last"]) == {"step", "raw", "ema"}
  assert results["clean_acc"] == results["last"]["ema"]["clean_acc"]
