"""LAS-AT end to end (jaxat/methods/las_at.py, docs/las_at.md): the three variants train,
the strategy network updates exactly at its interval, the classifier's adversarial examples
stay inside each example's sampled ε, REINFORCE raises the probability of a rewarded
action, a SIGTERM + resume is bit-identical with the strategy learner inside the state, one
and two devices agree, and bad configs fail in one line."""

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxat.config.validate import validate_config
from jaxat.methods.base import Batch, step_info
from jaxat.methods.las_at import Learner, policy_update
from jaxat.models.strategy_net import StrategyNet
from jaxat.train.restore import load_trained_model
from tiny_runs import interrupted_and_straight_runs, load_config, run_cli, tiny_config, train_all_epochs


def _leaves_differ(a, b) -> bool:
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def four_prepares():
  """The method's prepare phase at global steps 0..3 (interval 2: updates at steps 1, 3)."""
  from jaxat.train.experiment import build_experiment, init_state
  config = tiny_config("las_at", "synthetic")
  assert config.method.strategy.interval == 2
  exp = build_experiment(config)
  state = init_state(exp)
  n = config.batch_size
  batch = Batch(jnp.asarray(exp.train.images[:n], jnp.float32) / 255.0,
                jnp.asarray(exp.train.labels[:n], jnp.int32), jnp.arange(n, dtype=jnp.int32))

  @jax.jit
  def prepare(method_state, step):
    info = step_info(step, exp.ctx, 0.05)
    return exp.method.prepare(exp.ctx, state.params, state.batch_stats, method_state, batch,
                              jax.random.fold_in(jax.random.key(0), step), info)

  records, method_state = [], state.method_state
  for step in range(4):
    prepared, _, new_state, metrics = jax.device_get(prepare(method_state, step))
    records.append((jax.device_get(method_state), new_state, prepared, metrics))
    method_state = new_state
  return exp, jax.device_get(batch), records


def test_strategy_net_changes_exactly_at_update_steps(four_prepares):
  _, _, records = four_prepares
  changed = [_leaves_differ(old["strategy"]["params"], new["strategy"]["params"])
             for old, new, _, _ in records]
  assert changed == [False, True, False, True]
  assert [float(m["strategy_updates"]) for *_, m in records] == [0.0, 1.0, 0.0, 1.0]
  # The optimiser state moves with the parameters only (its step count among its leaves).
  assert [_leaves_differ(old["strategy"]["opt_state"], new["strategy"]["opt_state"])
          for old, new, _, _ in records] == [False, True, False, True]


def test_reward_is_attack_effect_plus_weighted_lookahead_accuracies(four_prepares):
  exp, _, records = four_prepares
  r = exp.config.method.strategy.reward
  for _, _, _, m in records[1::2]:
    expected = (np.clip(m["strategy_attack_effect"], 0, r.attack_clip)
                + np.clip(r.c2 * m["strategy_robust_acc"], -r.piece_clip, r.piece_clip)
                + np.clip(r.c3 * m["strategy_clean_acc"], -r.piece_clip, r.piece_clip))
    assert m["strategy_reward"] == pytest.approx(float(expected), rel=1e-5)
    assert m["strategy_reward"] > 0


def test_adversarial_examples_respect_each_sampled_eps(four_prepares):
  exp, batch, records = four_prepares
  options = np.asarray(exp.config.method.strategy.eps, np.float32)
  for _, _, prepared, metrics in records:
    eps = np.asarray(prepared["eps"])
    linf = np.max(np.abs(prepared["x_adv"] - batch.images).reshape(len(eps), -1), axis=1)
    assert np.all(linf <= eps + 1e-6), (linf, eps)
    assert np.all(prepared["x_adv"] >= 0) and np.all(prepared["x_adv"] <= 1)
    assert len(set(eps.tolist())) >= 2      # budgets differ per example
    # Examples whose ε is below the 8/255 start are still moved (not left at x).
    assert np.all(linf > 0)
    # The counted options are the ε the examples were attacked with.
    chosen = np.array([np.argmin(np.abs(options - e)) for e in eps])
    np.testing.assert_allclose(options[chosen], eps, atol=1e-7)
    counts = np.asarray(metrics["counts/eps"])
    np.testing.assert_array_equal(counts.sum(axis=1), np.bincount(chosen, minlength=len(options)))
    np.testing.assert_array_equal(counts.sum(axis=0),
                                  np.bincount(batch.labels, minlength=counts.shape[1]))


@pytest.mark.parametrize("reward", [1.0, -1.0])
def test_reinforce_step_moves_the_sampled_actions_probability_with_the_reward(reward):
  net = StrategyNet(head_sizes=(3, 4), backbone="small")
  x = jax.random.uniform(jax.random.key(1), (16, 8, 8, 1))
  params = net.init(jax.random.key(2), x, train=False)["params"]
  tx = optax.sgd(0.5)
  state = {"params": params, "batch_stats": {}, "opt_state": tx.init(params)}
  new_state, actions, _, _ = policy_update(Learner(net, tx), state, x, jax.random.key(3),
                                           lambda a: (jnp.float32(reward), {}))

  def log_prob(p):   # computed here, not with the module's loss
    logits = net.apply({"params": p}, x, train=False)
    return sum(float(np.mean(np.take_along_axis(np.asarray(jax.nn.log_softmax(l)),
                                                np.asarray(a)[:, None], axis=1)))
               for l, a in zip(logits, actions))

  before, after = log_prob(params), log_prob(new_state["params"])
  assert (after > before) if reward > 0 else (after < before), (before, after)


# LAS-AWP with interval 1 (its CIFAR-10 setting) takes the path without a conditional.
@pytest.mark.parametrize("variant,heads,interval", [
    ("trades", ("eps", "steps", "step_size", "beta"), 2), ("awp", ("eps", "steps", "step_size"), 1)])
def test_variants_train_end_to_end(variant, heads, interval):
  config = tiny_config("las_at", f"synthetic,{variant}", **{"method.strategy.interval": interval})
  exp, _, sums = train_all_epochs(config)
  steps = exp.ctx.steps_per_epoch * exp.ctx.num_epochs
  assert sorted(k for k in sums if k.startswith("counts/")) == sorted(f"counts/{h}" for h in heads)
  for head in heads:
    assert int(np.sum(sums[f"counts/{head}"])) == steps * config.batch_size
  assert sums["strategy_updates"] == steps // config.method.strategy.interval
  assert int(sums["first_nonfinite_step"]) == -1
  assert set(exp.method.count_metric_labels()) == {f"counts/{h}" for h in heads}


ARGS = ["-m", "jaxat.main", "--config=configs/las_at.py:synthetic,smoke", "--config.log.progress=plain",
        "--config.num_epochs=2", "--config.batch_size=16", "--config.eval.pgd_steps=2",
        "--config.eval.every_epochs=2"]
TOTAL_STEPS = 2 * (256 // 16)


@pytest.mark.slow
def test_sigterm_resume_is_bit_identical_with_the_strategy_learner_in_the_state(tmp_path):
  interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
  results = interrupted_and_straight_runs(ARGS, tmp_path, TOTAL_STEPS)
  assert results[0]["fingerprint"] == results[1]["fingerprint"]
  a = jax.device_get(load_trained_model(str(interrupted)).state.method_state)
  b = jax.device_get(load_trained_model(str(straight)).state.method_state)
  assert set(a["strategy"]) == {"params", "batch_stats", "opt_state"}
  jax.tree.map(np.testing.assert_array_equal, a, b)

  # Every epoch's count metrics total the examples trained in it, and the strategy
  # analysis reads them with the method's labels.
  with open(straight / "metrics.jsonl") as f:
    epochs = [r for r in map(json.loads, f) if "counts/eps" in r]
  assert len(epochs) == 2
  for record in epochs:
    for head in ("eps", "steps", "step_size"):
      assert int(np.sum(record[f"counts/{head}"])) == 256
  analysis = run_cli(["-m", "jaxat.analyze", "strategy", f"--workdir={straight}"])
  assert analysis.returncode == 0, analysis.stderr[-3000:]
  assert (straight / "analysis" / "strategy.json").exists()


TWO_DEVICES = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
    import jax, numpy as np
    from tiny_runs import tiny_config, train_all_epochs
    assert jax.device_count() == 2, jax.devices()
    out = {}
    for n in (1, 2):
        config = tiny_config("las_at", **{"num_devices": n, "num_epochs": 1, "batch_size": 32})
        _, state, sums = train_all_epochs(config)
        out[n] = jax.device_get((state.method_state["strategy"]["params"], state.params,
                                 sums["counts/eps"]))
    diff = lambda a, b: max(float(np.max(np.abs(x - y))) for x, y in
                            zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(json.dumps({"strategy_diff": diff(out[1][0], out[2][0]),
                      "classifier_diff": diff(out[1][1], out[2][1]),
                      "counts_equal": bool(np.array_equal(out[1][2], out[2][2]))}))
""")


@pytest.mark.slow
def test_one_and_two_devices_agree():
  proc = run_cli(["-c", TWO_DEVICES], env_extra={
      "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  # Same sampled strategies; parameters equal up to float32 reassociation of the sharded batch.
  assert report["counts_equal"], report
  assert report["strategy_diff"] <= 1e-4, report
  assert report["classifier_diff"] <= 1e-3, report


@pytest.mark.parametrize("arg,overrides,message", [
    ("svhn,smoke", {}, "no preset for dataset 'svhn'; valid choices"),
    ("synthetic,trades,awp", {}, "several LAS-AT variants"),
    ("synthetic,smoke", {"method.strategy.interval": 0}, "method.strategy.interval=0 is invalid"),
    ("synthetic,smoke", {"method.strategy.eps": (0.01, 2.0)}, "method.strategy.eps="),
    ("synthetic,smoke", {"method.strategy.backbone": "vgg"}, "valid choices: resnet18, small"),
    ("synthetic,smoke", {"method.strategy.update_branch": "if"}, "valid choices: cond, where"),
    ("synthetic,smoke", {"method.base.name": "mart"}, "method.base.name='mart' is invalid"),
    ("synthetic,smoke,trades", {"method.strategy.beta": ()}, "method.strategy.beta=()"),
    ("synthetic,smoke", {"method.strategy.reward.measure": "acc"}, "valid choices: accuracy, loss"),
])
def test_bad_config_fails_in_one_line(arg, overrides, message):
  with pytest.raises(ValueError) as err:
    config = load_config("las_at", arg)
    config.update_from_flattened_dict(overrides)
    validate_config(config, 1)
  assert message in str(err.value)
  assert "\n" not in str(err.value)
