"""`python -m jaxat.evaluate` on a tiny trained run: outputs, resuming a stopped
evaluation, and bad input refused before anything runs. (That a resumed evaluation ends
exactly where an uninterrupted one does is tested through the API in test_autoattack.py;
each CLI call costs seconds of start-up and compilation.)"""

import json
import os

import numpy as np
import pytest

from jaxat.train.train import train_and_evaluate
from tiny_runs import run_cli, tiny_config

pytestmark = pytest.mark.slow

ATTACKS = "clean,fgsm,pgd3_es,apgd-ce+square"
QUICK = ["--attack_settings=apgd-ce.n_iter=10,square.n_queries=30", "--eps=1/4",
         "--n_examples=24", "--batch_size=24", "--num_buckets=1", "--progress=plain"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = tmp_path_factory.mktemp("evaluate") / "run"
  train_and_evaluate(tiny_config("pgd_at"), str(path))
  return path


def evaluate(workdir, *extra):
  return run_cli(["-m", "jaxat.evaluate", f"--workdir={workdir}", f"--attacks={ATTACKS}",
                  *QUICK, *extra])


def test_a_stopped_evaluation_resumes_and_writes_every_output(workdir):
  stopped = evaluate(workdir, "--tag=resumed", "--stop_after_seconds=0.001")
  assert stopped.returncode == 143, stopped.stderr[-3000:]
  eval_dir = workdir / "eval"
  assert (eval_dir / "resumed.partial.npz").exists()
  assert not (eval_dir / "resumed.json").exists()

  resumed = evaluate(workdir, "--tag=resumed")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "continuing the partial evaluation" in resumed.stderr
  assert not (eval_dir / "resumed.partial.npz").exists()

  with open(eval_dir / "resumed.json") as f:
    report = json.load(f)
  accuracy = report["accuracy"]
  assert set(accuracy) == {"clean", "fgsm", "pgd3_es", "apgd-ce+square"}
  assert 0 <= accuracy["apgd-ce+square"] <= accuracy["clean"] <= 1
  assert report["stages"]["apgd-ce+square"]["square"] == accuracy["apgd-ce+square"]
  assert (report["eps"], report["norm"], report["num_examples"], report["seed"]) == ("1/4", "linf", 24, 0)
  assert report["attack_settings"]["square"]["n_queries"] == 30
  assert report["attack_settings"]["apgd-ce"]["n_iter"] == 10
  assert {"jax", "flax", "numpy", "jaxat"} <= set(report["versions"])
  assert set(report["seconds"]) >= {"clean", "fgsm", "apgd-ce+square/apgd-ce", "apgd-ce+square/square"}
  assert report["weights"] == "raw" and report["checkpoint"] == "last" and report["bn_mode"] == "eval"

  with np.load(eval_dir / "resumed.npz") as arrays:
    assert arrays["correct/clean"].shape == (24,)
    np.testing.assert_array_equal(arrays["labels"].shape, (24,))
    assert arrays["x_adv/apgd-ce+square"].shape[0] == 24
    assert (arrays["x_adv/apgd-ce+square"] >= 0).all() and (arrays["x_adv/apgd-ce+square"] <= 1).all()
    expected = {**accuracy, "apgd-ce+square/apgd-ce": report["stages"]["apgd-ce+square"]["apgd-ce"]}
    for name, value in expected.items():
      assert np.isclose(arrays[f"correct/{name}"].mean(), value)
  assert "worst case" in resumed.stdout


def test_bad_flags_fail_before_evaluating(workdir):
  proc = run_cli(["-m", "jaxat.evaluate", f"--workdir={workdir}", "--tag=bad", "--attacks=clean,pgd"])
  assert proc.returncode != 0
  assert "valid choices" in proc.stderr and "pgd<k>" in proc.stderr
  assert not os.path.exists(workdir / "eval" / "bad.partial.npz")


def test_evaluate_honours_max_test_and_sets_an_unreadable_partial_state_aside(tmp_path):
  """The run's dataset.max_test bounds the evaluated split (64 test images, max_test 16); a
  truncated partial-state file is renamed aside (not deleted, not a traceback) and the
  evaluation starts over."""
  run = tmp_path / "run"
  train_and_evaluate(tiny_config("pgd_at", num_epochs=1, **{"dataset.max_test": 16}), str(run))
  (run / "eval").mkdir()
  (run / "eval" / "bounded.partial.npz").write_bytes(b"PK\x03\x04 cut short")
  proc = run_cli(["-m", "jaxat.evaluate", f"--workdir={run}", "--attacks=clean", "--tag=bounded",
                  "--progress=none"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "bounded.partial.npz is unreadable" in proc.stderr and "Traceback" not in proc.stderr
  with open(run / "eval" / "bounded.json") as f:
    assert json.load(f)["num_examples"] == 16
  assert (run / "eval" / "bounded.partial.npz.corrupt-1").read_bytes() == b"PK\x03\x04 cut short"


def test_adaptive_protocol_is_refused_for_a_model_without_the_gate(workdir):
  proc = run_cli(["-m", "jaxat.evaluate", f"--workdir={workdir}", "--tag=bad_protocol",
                  "--attacks=clean", "--protocol=adaptive"])
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "--protocol=adaptive" in proc.stderr and "'pgd_at'" in proc.stderr
  assert "valid choices here: auto, standard" in proc.stderr and "Traceback" not in proc.stderr
  assert not os.path.exists(workdir / "eval" / "bad_protocol.json")


# `python -m jaxat.evaluate` that sends itself a SIGTERM as the adaptive part starts.
_SIGTERM_AT_THE_ADAPTIVE_PART = """
import os, signal, sys
from jaxat.eval import ancra_adaptive
adaptive_from_authors = ancra_adaptive.adaptive_from_authors
def terminated_first(*args, **kwargs):
  print("adaptive part started", file=sys.stderr, flush=True)
  os.kill(os.getpid(), signal.SIGTERM)
  return adaptive_from_authors(*args, **kwargs)
ancra_adaptive.adaptive_from_authors = terminated_first
from jaxat import evaluate
evaluate.run()
"""


def test_a_reverse_attention_run_is_evaluated_adaptively_by_default(tmp_path):
  """ANCRA's gate is a non-differentiable argmax: by default the CLI reports the per-example
  worst case of the authors' protocol, the straight-through gate, every fixed gate and the
  auxiliary head;
  --protocol=standard reports the authors' protocol alone, the number the default keeps as
  authors_accuracy."""
  run = tmp_path / "ancra"
  train_and_evaluate(tiny_config("ancra", num_epochs=1), str(run))
  flags = [f"--workdir={run}", "--attacks=clean,fgsm", "--eps=1/4", "--n_examples=16",
           "--batch_size=16", "--num_buckets=1", "--progress=none"]
  common = ["-m", "jaxat.evaluate", *flags]
  # A SIGTERM once the authors' part is done stops the adaptive part at its first chunk
  # (status 143, the authors' part kept) instead of after all its sub-evaluations.
  terminated = run_cli(["-c", _SIGTERM_AT_THE_ADAPTIVE_PART, *flags, "--tag=adaptive"])
  assert terminated.returncode == 143, terminated.stderr[-3000:]
  assert "SIGTERM" in terminated.stderr and "adaptive part started" in terminated.stderr
  assert (run / "eval" / "adaptive.partial.npz").exists()
  assert not (run / "eval" / "adaptive.json").exists()
  adaptive = run_cli([*common, "--tag=adaptive"])
  assert adaptive.returncode == 0, adaptive.stderr[-3000:]
  assert "continuing the partial evaluation" in adaptive.stderr
  standard = run_cli([*common, "--tag=standard", "--protocol=standard"])
  assert standard.returncode == 0, standard.stderr[-3000:]
  with open(run / "eval" / "adaptive.json") as f:
    report = json.load(f)
  with open(run / "eval" / "standard.json") as f:
    authors = json.load(f)
  assert report["protocol"] == "adaptive" and authors["protocol"] == "standard"
  assert report["authors_accuracy"] == authors["accuracy"]
  per_evaluation = report["ancra"]["accuracy"]
  assert set(per_evaluation) == {"authors", "straight_through", "label_enum", "aux_head",
                                 "adaptive"}
  assert per_evaluation["authors"]["fgsm"] == authors["accuracy"]["fgsm"]
  assert report["accuracy"]["fgsm"] == per_evaluation["adaptive"]["fgsm"]
  assert report["accuracy"]["fgsm"] <= min(per_evaluation[name]["fgsm"] for name in
                                           ("authors", "straight_through", "label_enum",
                                            "aux_head"))
  num_classes = 10
  assert {f"label_enum/{k}" for k in range(num_classes)} <= set(report["ancra"]["warnings"])
  with np.load(run / "eval" / "adaptive.npz") as arrays:
    assert np.isclose(arrays["adaptive/fgsm"].mean(), report["accuracy"]["fgsm"])
    assert np.all(arrays["adaptive/fgsm"] <= arrays["correct/fgsm"])
  assert "(adaptive; authors' protocol: fgsm=" in adaptive.stdout
