"""`python -m jaxat.analyze`: the signed-ε curve (Fig. 1/4) and the z picture (Fig. 6)."""

import json

import numpy as np
import pytest

from jaxat.analysis.inverse_curve import CurveSpec, split_halves
from jaxat.analysis.universal_picture import universal_perturbations
from jaxat.analysis.workdir_analyses import run_inverse_curve, run_universal_perturbations
from jaxat.train.reporting import write_json
from jaxat.train.train import config_to_dict, train_and_evaluate
from tiny_runs import run_cli, tiny_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_halves_are_ranked_by_true_class_probability_with_stable_ties():
  top, bottom = split_halves(np.array([0.2, 0.9, 0.5, 0.9, 0.1]))
  assert top.tolist() == [1, 3] and bottom.tolist() == [2, 0, 4]


def test_signed_grid_and_bad_specs():
  np.testing.assert_allclose(CurveSpec(eps_max=8 / 255, num_points=5).grid() * 255,
                             [-8, -4, 0, 4, 8], atol=1e-9)
  with pytest.raises(ValueError, match="eps_max"):
    CurveSpec(eps_max=8.0).validate()
  with pytest.raises(ValueError, match="num_points"):
    CurveSpec(eps_max=0.1, num_points=1).validate()


def test_runs_without_universal_perturbations_are_refused():
  with pytest.raises(ValueError, match="generation='universal'"):
    universal_perturbations({"target": {}}, "iat")


@pytest.fixture(scope="module")
def uiat_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uiat_run")
  results = train_and_evaluate(tiny_config("uiat", **{"method.attack.num_steps": 2}), str(workdir))
  return str(workdir), results


def test_inverse_curve_writes_json_and_png(uiat_run):
  workdir, results = uiat_run
  run_inverse_curve(workdir, eps_max=8 / 255, num_points=5, num_steps=3)
  with open(f"{workdir}/analysis/inverse_curve.json") as f:
    curve = json.load(f)
  with open(f"{workdir}/analysis/inverse_curve.png", "rb") as f:
    assert f.read(8) == PNG_MAGIC
  assert curve["eps_255"] == pytest.approx([-8, -4, 0, 4, 8])
  acc = curve["accuracy"]
  # ε = 0 is the clean accuracy of the same weights on the same test split.
  assert acc["all"][2] == pytest.approx(results["clean_acc"], abs=1e-12)
  top, bottom = curve["half_sizes"]
  assert top + bottom == curve["n_examples"] == results["num_test_examples"]
  for i in range(5):
    assert acc["all"][i] == pytest.approx((top * acc["most_confident"][i] +
                                           bottom * acc["least_confident"][i]) / (top + bottom))
  # Robust accuracy never exceeds clean accuracy; ranking puts the right answers on top.
  assert max(acc["all"][3:]) <= acc["all"][2]
  assert acc["most_confident"][2] >= acc["least_confident"][2]
  assert curve["gap_at_eps_max"] == pytest.approx(acc["most_confident"][-1] - acc["least_confident"][-1])


def test_universal_perturbation_picture(uiat_run):
  workdir, _ = uiat_run
  json_path, png_path, summary = run_universal_perturbations(workdir)
  with open(png_path, "rb") as f:
    assert f.read(8) == PNG_MAGIC
  with open(json_path) as f:
    assert json.load(f) == summary
  assert summary["shape"][0] == len(summary["classes"]) == 10
  assert all(c["linf"] <= summary["eps"] + 1e-7 for c in summary["classes"])
  assert any(c["fraction_at_bound"] > 0 for c in summary["classes"])   # z has moved


def test_command_line_errors(tmp_path):
  proc = run_cli(["-m", "jaxat.analyze", "curve", f"--workdir={tmp_path}"])
  assert proc.returncode != 0 and "inverse_curve, universal_perturbations" in proc.stderr
  # An instance-wise run has no z: refused from its config, before anything is restored.
  write_json(str(tmp_path / "config.json"), config_to_dict(tiny_config("iat")))
  proc = run_cli(["-m", "jaxat.analyze", "universal_perturbations", f"--workdir={tmp_path}"])
  assert proc.returncode != 0 and "generation='universal'" in proc.stderr
