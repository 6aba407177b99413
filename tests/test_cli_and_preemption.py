"""The command line, SIGTERM preemption and resume, and 1-vs-8-device agreement.

These run `python -m jaxat.main` (or a short script) in subprocesses, as a user would.
"""

import json
import os
import textwrap

import pytest

from tiny_runs import run_cli, run_until_sigterm

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


def _long_enough_run(workdir):
  # ~10 epochs of a few hundred steps in all, so a SIGTERM lands during training.
  return SMOKE + [f"--workdir={workdir}", "--config.num_epochs=6", "--config.batch_size=16",
                  "--config.method.attack.num_steps=3", "--config.eval.pgd_steps=2"]


def test_sigterm_saves_a_checkpoint_and_the_rerun_matches_an_uninterrupted_run(tmp_path):
  interrupted, uninterrupted = tmp_path / "interrupted", tmp_path / "uninterrupted"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  # The handler is installed before compilation; signal once training has compiled.
  returncode, stderr = run_until_sigterm(_long_enough_run(interrupted), env)
  assert returncode == 143, stderr[-3000:]
  assert "rerun the same command to resume" in stderr
  saved = [int(s) for s in os.listdir(interrupted / "checkpoints" / "last")]
  assert saved and max(saved) < 6 * (256 // 16)
  assert not (interrupted / "results.json").exists()

  resumed = run_cli(_long_enough_run(interrupted))
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from step" in resumed.stderr
  straight = run_cli(_long_enough_run(uninterrupted))
  assert straight.returncode == 0, straight.stderr[-3000:]

  with open(interrupted / "results.json") as f:
    a = json.load(f)
  with open(uninterrupted / "results.json") as f:
    b = json.load(f)
  assert a["fingerprint"] == b["fingerprint"]
  assert a["clean_acc"] == b["clean_acc"] and a["pgd20_acc"] == b["pgd20_acc"]
  # Epoch records agree too (the partial epoch's metric sums were checkpointed).
  strip = lambda rs: [{k: v for k, v in r.items() if k not in ("images_per_sec", "train_seconds")} for r in rs]
  assert strip(read_jsonl(interrupted / "metrics.jsonl")) == strip(read_jsonl(uninterrupted / "metrics.jsonl"))


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
