"""eval.final_attacks beyond clean/PGD-20: results.json reports evaluation-suite items,
computed exactly as the Python API computes them on the same weights."""

import json

import numpy as np

from jaxat.eval import robustness
from jaxat.train.restore import load_trained_model
from jaxat.train.train import train_and_evaluate
from tiny_runs import tiny_config


def test_suite_items_are_reported_and_match_the_api(tmp_path):
  config = tiny_config("pgd_at", **{"eval.final_attacks": "clean,pgd20,fgsm,cw3"})
  workdir = str(tmp_path / "run")
  results = train_and_evaluate(config, workdir)
  with open(f"{workdir}/results.json") as f:
    assert json.load(f)["fgsm_acc"] == results["fgsm_acc"]
  assert 0 <= results["cw3_acc"] <= results["clean_acc"]
  assert results["fgsm_acc"] <= results["clean_acc"]
  assert set(results["last"]["raw"]) == {"clean_acc", "pgd20_acc", "fgsm_acc", "cw3_acc"}

  trained = load_trained_model(workdir, checkpoint="last", weights="raw")
  test = trained.experiment.splits.test
  report = robustness.evaluate_robustness(
      robustness.jaxat_classifier(trained.model, trained.params, trained.batch_stats),
      robustness.as_images(test.images), np.asarray(test.labels), attacks="fgsm,cw3",
      eps=float(config.eval.eps), batch_size=config.eval_batch_size, seed=config.seed)
  assert report.accuracy["fgsm"] == results["fgsm_acc"]
  assert report.accuracy["cw3"] == results["cw3_acc"]
  assert report.accuracy["clean"] == results["clean_acc"]
