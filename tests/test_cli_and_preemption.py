"""The command line and 1-vs-8-device agreement.

These run `python -m jaxat.main` (or a short script) in subprocesses, as a user would.
SIGTERM preemption and resume: `tiny_runs.interrupted_and_straight_runs`, used by the
methods' resume tests (tests/test_uiat_resume.py, test_prior_init.py, test_las_at_runs.py,
test_extra_data.py), and tests/test_multihost.py for two processes.
"""

import json
import os
import textwrap

import pytest

from tiny_runs import run_cli

pytestmark = pytest.mark.slow

SMOKE = ["-m", "jaxat.main", "--config=configs/pgd_at.py:synthetic,smoke",
         "--config.log.progress=plain"]


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_cli_run_writes_every_output_and_accepts_fraction_overrides(tmp_path):
  workdir = tmp_path / "cli"
  proc = run_cli(SMOKE + [f"--workdir={workdir}", "--config.method.attack.eps=4/255",
                          "--config.num_epochs=1"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(workdir / "config.json") as f:
    config = json.load(f)
  assert config["method"]["attack"]["eps"] == pytest.approx(4 / 255, abs=1e-15)
  assert config["num_epochs"] == 1
  with open(workdir / "results.json") as f:
    results = json.load(f)
  assert 0.0 <= results["pgd20_acc"] <= results["clean_acc"] <= 1.0
  assert "results (raw weights" in proc.stdout
  assert read_jsonl(workdir / "metrics.jsonl")[-1]["fingerprint"] == results["fingerprint"]
  assert os.listdir(workdir / "checkpoints" / "last")


def test_cli_rejects_bad_input_before_writing(tmp_path):
  workdir = tmp_path / "bad"
  proc = run_cli(SMOKE + [f"--workdir={workdir}", "--config.model.name=vgg16"])
  assert proc.returncode != 0
  assert "vgg16" in proc.stderr and "small_cnn" in proc.stderr
  assert not workdir.exists()
  proc = run_cli(SMOKE + [f"--workdir={workdir}", "--config.no_such_field=1"])
  assert proc.returncode != 0 and "no_such_field" in proc.stderr
  assert not workdir.exists()


EIGHT_DEVICES = textwrap.dedent("""
    import os, sys, json
    sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
    import jax, numpy as np
    from jaxat.train.train import train_and_evaluate
    from jaxat.train.restore import load_trained_model
    from tiny_runs import tiny_config
    assert jax.device_count() == 8, jax.devices()
    out = {}
    for n in (1, 8):
        config = tiny_config("pgd_at", **{"num_devices": n, "batch_size": 32, "eval_batch_size": 64})
        workdir = os.path.join(sys.argv[1], f"d{n}")
        results = train_and_evaluate(config, workdir)
        restored = load_trained_model(workdir)
        leaves = jax.tree.leaves({"p": restored.params, "s": restored.batch_stats})
        out[n] = ([np.asarray(l) for l in leaves], results)
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(out[1][0], out[8][0])]
    scale = max(float(np.max(np.abs(a))) for a in out[1][0])
    print(json.dumps({"max_diff": max(diffs), "scale": scale,
                      "clean": [out[1][1]["clean_acc"], out[8][1]["clean_acc"]],
                      "pgd": [out[1][1]["pgd20_acc"], out[8][1]["pgd20_acc"]]}))
""")


def test_one_and_eight_devices_agree(tmp_path):
  proc = run_cli(["-c", EIGHT_DEVICES, str(tmp_path)],
                 env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  # Same math, different reduction order: agreement up to float32 reassociation.
  assert report["max_diff"] <= 1e-4 * max(report["scale"], 1.0), report
  assert abs(report["clean"][0] - report["clean"][1]) <= 2 / 64, report
