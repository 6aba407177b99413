"""ECAS selected by configuration (docs/ecas.md): the per-example ε the attack really uses,
the `counts/eps` metric of real runs of every variant, resume, config.json and the
strategy analysis. Formulas are checked against numpy, not against jaxat's helpers."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxat.methods import maximizer
from jaxat.methods.base import Batch, StepContext, epoch_start_info
from jaxat.train import reporting
from jaxat.train import train as train_lib
from tiny_runs import load_config, tiny_config, train_all_epochs

# A linear classifier on 4x4x1 images: its logits are x·W, so numpy recomputes them.
B, K, SHAPE = 64, 5, (4, 4, 1)
EPS_LIST = (0.01, 0.02, 0.03, 0.04)
BIG = (0.03, 0.04)


def _linear_model(params, batch_stats, x, mode):
  del mode
  flat = x.reshape(x.shape[0], -1)
  return flat @ params["w"], flat, batch_stats


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  # Images in [0.3, 0.7], so the [0,1] box never binds within 0.04 of them.
  x = rng.uniform(0.3, 0.7, size=(B, *SHAPE)).astype(np.float32)
  # Per-example logit scales spread the entropies from nearly 0 to nearly ln K.
  w = rng.normal(size=(int(np.prod(SHAPE)), K)).astype(np.float32) * 3.0
  x = np.clip(0.5 + (x - 0.5) * rng.uniform(0.0, 2.5, size=(B, 1, 1, 1)), 0.3, 0.7).astype(np.float32)
  labels = rng.integers(0, K, size=B).astype(np.int32)
  return x, w, labels


def _numpy_entropy(x, w):
  logits = x.reshape(B, -1).astype(np.float64) @ w.astype(np.float64)
  logits -= logits.max(axis=1, keepdims=True)
  p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)


def _score(entropy, labels, reading):
  """The entropy each example is judged by: its own, or its true class's batch mean."""
  if reading == "example":
    return entropy
  means = {k: entropy[labels == k].mean() for k in np.unique(labels)}
  return np.array([means[k] for k in labels])


def _thresholds(score):
  """ρ_low, ρ_high midway between sorted distinct scores (quartiles), away from any example."""
  s = np.unique(score)
  n = len(s)
  return (s[n // 4 - 1] + s[n // 4]) / 2, (s[3 * n // 4 - 1] + s[3 * n // 4]) / 2


def _attack(num_steps, epoch, reading="example", seed=0):
  x, w, labels = _problem(seed)
  entropy = _numpy_entropy(x, w)
  rho_low, rho_high = _thresholds(_score(entropy, labels, reading))
  cfg = maximizer.attack_config(num_steps=num_steps, init="zero", bn_mode="eval", budget="ecas")
  cfg.ecas.update(eps_list=EPS_LIST, big=BIG, rho_high=float(rho_high), rho_low=float(rho_low),
                  reading=reading, bn_mode="eval")
  maximizer.validate_attack_config(cfg)
  ctx = StepContext(model=_linear_model, num_classes=K, num_train=B, image_shape=SHAPE,
                    steps_per_epoch=1, num_epochs=20, batch_size=B)
  batch = Batch(jnp.asarray(x), jnp.asarray(labels), jnp.arange(B, dtype=jnp.int32))
  out = jax.jit(lambda key: maximizer.maximize(ctx, {"w": jnp.asarray(w)}, {}, batch, key, cfg,
                                               epoch_start_info(epoch, ctx)))(jax.random.key(seed))
  delta = np.abs(np.asarray(out.x_adv) - x).reshape(B, -1).max(axis=1)
  return delta, entropy, labels, (rho_low, rho_high), out.metrics


def _expected_eps(score, rho, eps_cyc, eps_big):
  rho_low, rho_high = rho
  return np.where(score > rho_high, min(EPS_LIST), np.where(score < rho_low, eps_big, eps_cyc))


def test_one_step_moves_by_the_cyclic_step_size_whatever_the_examples_eps():
  # α = 2·ε_cyc/10 with ε_cyc = sorted(E)[epoch mod |E|]; every ε_i >= 0.01 > α, so one
  # sign step from x moves every example by exactly α.
  for epoch, eps_cyc in ((1, 0.02), (6, 0.03)):
    delta, _, _, _, _ = _attack(num_steps=1, epoch=epoch)
    np.testing.assert_allclose(delta, np.full(B, 2 * eps_cyc / 10), rtol=1e-5)


@pytest.mark.parametrize("reading", ["example", "class"])
def test_the_attack_reaches_exactly_the_rule_s_per_example_eps(reading):
  epoch, eps_cyc = 5, 0.02            # 5 mod 4 = 1 -> E[1]; 30 steps of 0.004 reach 0.12
  delta, entropy, labels, rho, metrics = _attack(num_steps=30, epoch=epoch, reading=reading)
  score = _score(entropy, labels, reading)
  low = score < rho[0]
  assert low.any() and (score > rho[1]).any() and (~low & (score <= rho[1])).any()
  # ε_big is drawn once per batch from BIG: every low-entropy example got the same one.
  big = np.unique(np.round(delta[low], 6))
  assert len(big) == 1 and np.isclose(big[0], BIG, atol=1e-6).any(), big
  expected = _expected_eps(score, rho, eps_cyc, big[0])
  np.testing.assert_allclose(delta, expected, atol=1e-6)
  # counts/eps[o, k] = examples of class k that got E[o].
  counts = np.zeros((len(EPS_LIST), K), np.int64)
  for e, k in zip(expected, labels):
    counts[int(np.argmin(np.abs(np.asarray(EPS_LIST) - e))), k] += 1
  np.testing.assert_array_equal(np.asarray(metrics["counts/eps"]), counts)


def test_final_clip_caps_the_perturbation_after_the_attack():
  x, w, labels = _problem()
  cfg = maximizer.attack_config(eps=0.05, step_size=0.05, num_steps=1, init="zero",
                                bn_mode="eval", final_clip_eps=0.02)
  ctx = StepContext(model=_linear_model, num_classes=K, num_train=B, image_shape=SHAPE,
                    steps_per_epoch=1, num_epochs=1, batch_size=B)
  batch = Batch(jnp.asarray(x), jnp.asarray(labels), jnp.arange(B, dtype=jnp.int32))
  out = maximizer.maximize(ctx, {"w": jnp.asarray(w)}, {}, batch, jax.random.key(0), cfg)
  assert out.metrics == {}
  np.testing.assert_allclose(np.abs(np.asarray(out.x_adv) - x).reshape(B, -1).max(axis=1), 0.02,
                             rtol=1e-5)


# -- real runs ------------------------------------------------------------------------------

def _ecas_tiny(variant, **overrides):
  """configs/ecas.py:synthetic,<variant>,smoke shrunk like tiny_runs.tiny_config."""
  config = load_config("ecas", f"synthetic,{variant},smoke")
  config.update_from_flattened_dict({
      "log.progress": "none", "num_epochs": 2, "batch_size": 32, "eval.pgd_steps": 2,
      "dataset.max_train": 96, "dataset.num_train": 96, "dataset.max_test": 32,
      "dataset.num_test": 32, "method.attack.num_steps": 2, "eval.final_attacks": "clean",
      **overrides})
  return config


@pytest.mark.parametrize("variant", ["trades", "awp", "uiat"])
def test_each_variant_trains_with_counts_of_every_example(variant):
  config = _ecas_tiny(variant)
  exp, _, sums = train_all_epochs(config)
  counts = np.asarray(sums["counts/eps"])
  assert counts.shape == (len(config.method.attack.ecas.eps_list), exp.ctx.num_classes)
  # Two epochs: every trained example is counted once per epoch.
  assert counts.sum() == 2 * exp.ctx.steps_per_epoch * config.batch_size
  labels = exp.method.count_metric_labels()["counts/eps"]
  assert len(labels) == counts.shape[0] and labels[0] == {"trades": "5/255", "awp": "6/255",
                                                          "uiat": "3/255"}[variant]


def _interrupt_after(monkeypatch, steps):
  """SIGTERM to this process after `steps` training steps (the engine's preemption path)."""
  advance = reporting.Progress.advance
  seen = {"n": 0}

  def counting(self, *args, **kwargs):
    seen["n"] += 1
    if seen["n"] == steps:
      os.kill(os.getpid(), signal.SIGTERM)
    return advance(self, *args, **kwargs)

  monkeypatch.setattr(reporting.Progress, "advance", counting)


def test_ecas_pgd_at_run_metrics_resume_config_json_and_strategy(tmp_path, monkeypatch):
  config = _ecas_tiny("pgd_at")
  straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
  results = train_lib.train_and_evaluate(config, straight)

  with open(os.path.join(straight, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f if line.strip()]
  assert len(records) == 2
  for record in records:
    counts = np.asarray(record["counts/eps"])
    assert counts.shape == (10, 10) and counts.sum() == 96   # every example of the epoch
  # Epoch 0 and 1 have different cyclic ε (3/255, 4/255): the middle band moves with it.
  assert records[0]["counts/eps"] != records[1]["counts/eps"]

  with open(os.path.join(straight, "config.json")) as f:
    attack = json.load(f)["method"]["attack"]
  assert attack["budget"] == "ecas" and attack["ecas"]["rho_high"] == 2.274

  from jaxat.analysis.workdir_analyses import run_strategy
  run_strategy(straight)
  with open(os.path.join(straight, "analysis", "strategy.json")) as f:
    payload = json.load(f)
  eps = payload["metrics"]["counts/eps"]
  assert eps["labels"][0] == "3/255" and eps["labels"][-1] == "12/255"
  assert len(eps["epochs"]) == 2

  _interrupt_after(monkeypatch, 4)
  with pytest.raises(train_lib.Preempted):
    train_lib.train_and_evaluate(config, interrupted)
  monkeypatch.undo()
  resumed = train_lib.train_and_evaluate(config, interrupted)
  assert resumed["fingerprint"] == results["fingerprint"]


TWO_DEVICES = """
import json, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
import jax, numpy as np
from test_ecas_runs import _ecas_tiny
from tiny_runs import train_all_epochs
assert jax.device_count() == 2, jax.devices()
counts = {}
for n in (1, 2):
    _, _, sums = train_all_epochs(_ecas_tiny("pgd_at", num_devices=n))
    counts[n] = np.asarray(sums["counts/eps"]).tolist()
print(json.dumps(counts))
"""


def test_counts_agree_between_one_and_two_devices():
  from tiny_runs import run_cli
  proc = run_cli(["-c", TWO_DEVICES], env_extra={
      "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  counts = json.loads(proc.stdout.strip().splitlines()[-1])
  one, two = np.asarray(counts["1"]), np.asarray(counts["2"])
  assert one.sum() == two.sum() == 2 * 96
  # The rule sees the whole batch on both (the per-class reading's means too); entropies
  # may differ in the last float32 bits, which moves at most an example or two.
  assert np.abs(one - two).sum() <= 4, (one, two)
