"""UIAT's persistent state across preemption and devices: the class-wise perturbations z and
the per-example momentum buffers survive SIGTERM + resume bit for bit, and agree between one
and two devices. (What every resume test asserts of the engine, messages and metrics.jsonl
included: tiny_runs.interrupted_and_straight_runs.)
"""

import json
import textwrap

import jax
import numpy as np
import pytest

from jaxat.train.restore import load_trained_model
from tiny_runs import interrupted_and_straight_runs, run_cli

pytestmark = pytest.mark.slow

# Momentum from epoch 1 of 2 (T = floor(0.5 · 2) = 1), so the resumed part updates p̄ with γ.
ARGS = ["-m", "jaxat.main", "--config=configs/uiat.py:synthetic,smoke", "--config.log.progress=plain",
        "--config.num_epochs=2", "--config.batch_size=16", "--config.method.attack.num_steps=2",
        "--config.eval.pgd_steps=2", "--config.eval.every_epochs=2",
        "--config.method.momentum_start=0.5"]
TOTAL_STEPS = 2 * (256 // 16)
# Tiny models: compilation dominates, so every run (all three alike) skips most of it.


def test_sigterm_resume_keeps_universal_perturbations_and_momentum_buffers(tmp_path):
  interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
  results = interrupted_and_straight_runs(ARGS, tmp_path, TOTAL_STEPS)
  assert results[0]["fingerprint"] == results[1]["fingerprint"]
  a = jax.device_get(load_trained_model(str(interrupted)).state.method_state)
  b = jax.device_get(load_trained_model(str(straight)).state.method_state)
  assert set(a) == {"universal", "target"}
  jax.tree.map(np.testing.assert_array_equal, a, b)
  # The buffers are live: every example was written, the last time in the last epoch.
  written = np.asarray(a["target"]["written_epoch"])
  assert written.min() >= 0 and written.max() == 1


TWO_DEVICES = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
    import jax, numpy as np
    from tiny_runs import tiny_config, train_all_epochs
    assert jax.device_count() == 2, jax.devices()
    out = {}
    for n in (1, 2):
        config = tiny_config("uiat", **{"num_devices": n, "num_epochs": 2, "batch_size": 48,
                                        "method.attack.num_steps": 2, "method.momentum_start": 0.5})
        _, state, _ = train_all_epochs(config)
        if n == 2:
            probs = state.method_state["target"]["probs"]
            shards = [tuple(shard.data.shape) for shard in probs.addressable_shards]
            universal_shards = [tuple(sh.data.shape) for sh in state.method_state["universal"].addressable_shards]
        out[n] = jax.device_get(state.method_state)
    a, b = out[1], out[2]
    print(json.dumps({
        "written_equal": bool(np.array_equal(a["target"]["written_epoch"], b["target"]["written_epoch"])),
        "probs_max_diff": float(np.max(np.abs(a["target"]["probs"] - b["target"]["probs"]))),
        "universal_equal_fraction": float(np.mean(a["universal"] == b["universal"])),
        "rows": list(a["target"]["probs"].shape), "probs_shards": shards,
        "universal_shards": universal_shards,
    }))
""")


def test_buffers_agree_between_one_and_two_devices():
  proc = run_cli(["-c", TWO_DEVICES], env_extra={
      "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  # Index bookkeeping is exact; values agree up to float32 reassociation of the sharded
  # batch (a sign step of z may flip where its gradient is within rounding of zero).
  assert report["written_equal"], report
  assert report["probs_max_diff"] <= 1e-4, report
  assert report["universal_equal_fraction"] >= 0.99, report
  # The per-example buffer is sharded by example: each device holds half of its rows; the
  # class-wise perturbations (not per example) are whole on each device.
  rows, classes = report["rows"]
  assert report["probs_shards"] == [[rows // 2, classes]] * 2, report
  assert len({tuple(s) for s in report["universal_shards"]}) == 1
  assert report["universal_shards"][0][0] == classes
