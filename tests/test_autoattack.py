"""The ensemble evaluator and its Python API: worst case per example, monotonicity in eps
and in the attack list, compile-once shapes, resumable state, rejection of invalid points,
gradient-masking checks, the registry and input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.attacks import autoattack, checks, registry
from jaxat.eval import robustness
from jaxat.train import multihost

NUM_CLASSES = 10
SHAPE = (5, 5, 1)  # L2 Square needs H >= 5
FAST = {"apgd-ce": {"n_iter": 10}, "apgd-t": {"n_iter": 10},
        "fab-t": {"n_iter": 10, "n_target_classes": 3}, "square": {"n_queries": 40}}
EPS = 0.1


def affine_apply(variables, x):
  weights, bias = variables
  return x.reshape(x.shape[0], -1) @ weights + bias


def probability_apply(variables, x):
  return jax.nn.softmax(affine_apply(variables, x))


def batch_dependent_apply(variables, x):
  logits = affine_apply(variables, x)
  return logits - jnp.mean(logits, axis=0)  # like BatchNorm on batch statistics


def quantised_apply(variables, x):
  return affine_apply(variables, jnp.round(x * 4) / 4 + jax.lax.stop_gradient(0.0 * x))


def toy_problem(n=40, seed=0, scale=4.0):
  keys = jax.random.split(jax.random.key(seed), 3)
  dim = int(np.prod(SHAPE))
  variables = (scale * jax.random.normal(keys[0], (dim, NUM_CLASSES)) / np.sqrt(dim),
               0.1 * jax.random.normal(keys[1], (NUM_CLASSES,)))
  x = np.asarray(jax.random.uniform(keys[2], (n,) + SHAPE, minval=0.3, maxval=0.7))
  y = np.array(jnp.argmax(affine_apply(variables, jnp.asarray(x)), -1))
  y[:3] = (y[:3] + 1) % NUM_CLASSES  # a few clean errors
  return variables, x, y


def evaluate(attacks, eps=EPS, batch_size=64, num_buckets=1, model=affine_apply, problem=None,
             **kwargs):
  """One padded batch and one bucket by default: every attack compiles once for the file
  (compilation, not attacking, dominates these tests)."""
  variables, x, y = problem or toy_problem()
  return robustness.evaluate_robustness((model, variables), x, y, attacks=attacks, eps=eps,
                                        batch_size=batch_size, num_buckets=num_buckets, seed=0,
                                        **kwargs)


# --- registry ------------------------------------------------------------------------------


def test_registry_parses_names_and_settings():
  spec = registry.attack_spec("pgd50-10_es")
  assert spec.family == "pgd"
  assert (spec.option("num_steps"), spec.option("restarts"), spec.option("early_stop")) == (50, 10, True)
  assert registry.attack_spec("cw20").option("loss") == "cw"
  assert registry.attack_spec("fgsm").option("num_steps") == 1
  assert registry.attack_spec("apgd-t").num_passes(10) == 9
  assert registry.attack_spec("apgd-t").num_passes(5) == 4
  assert registry.ensemble_members("aa") == ("apgd-ce", "apgd-t", "fab-t", "square")
  assert registry.ensemble_members("pgd3+square") == ("pgd3", "square")
  assert registry.attack_spec("square", {"n_queries": 7}).option("n_queries") == 7


@pytest.mark.parametrize("name, message", [("pgd", "valid choices"), ("apgd", "valid choices"),
                                           ("pgd0", ">= 1"), ("apgd-ce+apgd-ce", "twice")])
def test_registry_rejects_bad_names(name, message):
  with pytest.raises(ValueError, match=message):
    robustness.parse_items(name)


def test_registry_rejects_unknown_settings():
  with pytest.raises(ValueError, match="valid settings: n_queries, p_init"):
    registry.attack_spec("square", {"n_iter": 3})
  with pytest.raises(ValueError, match="n_iter must be an integer >= 1"):
    registry.attack_spec("apgd-ce", {"n_iter": 0})


def test_bucket_sizes():
  assert autoattack.bucket_sizes(250) == (250, 125, 63, 32)
  assert autoattack.bucket_sizes(3) == (3, 2, 1)
  assert autoattack.bucket_for(33, (250, 125, 63, 32)) == 63
  assert autoattack.bucket_for(32, (250, 125, 63, 32)) == 32
  assert autoattack.chunk_sizes(80, (250, 125, 63, 32)) == [48, 32]  # 95 rows, not 125
  assert autoattack.chunk_sizes(600, (250, 125, 63, 32)) == [250, 250, 100]
  assert autoattack.chunk_sizes(0, (8, 4)) == []


# --- the ensemble --------------------------------------------------------------------------


def test_aa_keeps_the_worst_case_per_example_and_only_valid_points():
  report = evaluate("aa", attack_options=FAST)
  variables, x, y = toy_problem()
  stages = report.stages["aa"]
  values = [report.accuracy["clean"]] + [stages[name] for name in registry.STANDARD_ENSEMBLE]
  assert values == sorted(values, reverse=True)  # never rises when attacks are added
  assert report.accuracy["aa"] == stages["square"] < report.accuracy["clean"]
  robust, x_adv = report.correct["aa"], report.x_adv["aa"]
  np.testing.assert_array_equal(x_adv[robust], x[robust])
  fooled = report.correct["clean"] & ~robust
  predictions = np.argmax(affine_apply(variables, jnp.asarray(x_adv)), -1)
  assert (predictions[fooled] != y[fooled]).all()
  assert bool(jnp.all(autoattack.within_threat_model(jnp.asarray(x_adv), jnp.asarray(x), EPS, "linf")))
  assert (x_adv >= 0).all() and (x_adv <= 1).all()
  assert report.perturbation["aa"]["max_norm"] <= EPS * (1 + 1e-6) + 1e-7
  # Once fooled, always fooled: the stage flags only ever lose points.
  previous = report.correct["clean"]
  for name in registry.STANDARD_ENSEMBLE:
    current = report.correct[f"aa/{name}"]
    assert not (current & ~previous).any()
    previous = current


def test_adding_attacks_never_raises_robust_accuracy():
  report = evaluate("apgd-ce,apgd-ce+pgd5,pgd5", attack_options={"apgd-ce": {"n_iter": 10}})
  # The first stage of the ensemble is the stand-alone attack, point for point.
  np.testing.assert_array_equal(report.correct["apgd-ce+pgd5/apgd-ce"], report.correct["apgd-ce"])
  assert not (report.correct["apgd-ce+pgd5"] & ~report.correct["apgd-ce"]).any()
  assert report.worst_case == float(np.mean(report.correct["apgd-ce+pgd5"] & report.correct["pgd5"]))


def test_robust_accuracy_never_rises_with_eps():
  variables, x, y = toy_problem()
  reports = robustness.evaluate_robustness_curve(
      (affine_apply, variables), x, y, ["1/255", "4/255", "12/255", "24/255"],
      attacks="pgd5,apgd-ce+square", batch_size=64, num_buckets=1, attack_options=FAST)
  for item in ("pgd5", "apgd-ce+square"):
    accuracies = [r.accuracy[item] for r in reports]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[0] > accuracies[-1]
    for smaller, larger in zip(reports, reports[1:]):
      assert not (larger.correct[item] & ~smaller.correct[item]).any()
  assert [r.eps_fraction for r in reports] == ["1/255", "4/255", "4/85", "8/85"]


def test_affine_model_aa_matches_the_analytic_robustness():
  """Fooled iff min_k m_k / ||w_y - w_k||_1 < eps (box inactive): every point below 0.9 eps
  must be fooled, none above eps can be."""
  variables, x, y = toy_problem()
  y = np.asarray(jnp.argmax(affine_apply(variables, jnp.asarray(x)), -1))
  eps = 0.13  # the box [0,1] stays inactive: x is in [0.3, 0.7]
  report = evaluate("aa", eps=eps, problem=(variables, x, y), attack_options=FAST)
  weights = np.asarray(variables[0])
  logits = np.asarray(affine_apply(variables, jnp.asarray(x)))
  gaps = logits[np.arange(len(y)), y][:, None] - logits
  spreads = np.abs(weights.T[y][:, None, :] - weights.T[None]).sum(-1)
  ratios = gaps / np.where(spreads > 0, spreads, 1.0)
  ratios[np.arange(len(y)), y] = np.inf  # the true class is not an alternative
  critical = ratios.min(axis=1)
  must_fool, cannot_fool = critical < 0.9 * eps, critical > eps
  assert must_fool.sum() >= 5 and cannot_fool.sum() >= 5
  assert not report.correct["aa"][must_fool].any()
  assert report.correct["aa"][cannot_fool].all()


def test_results_do_not_depend_on_the_batch_size_and_nothing_recompiles_per_batch():
  autoattack.COMPILATIONS.clear()
  small = evaluate("apgd-t", batch_size=16, num_buckets=2, attack_options=FAST)
  large = evaluate("apgd-t", attack_options=FAST)
  np.testing.assert_array_equal(small.correct["apgd-t"], large.correct["apgd-t"])
  np.testing.assert_array_equal(small.x_adv["apgd-t"], large.x_adv["apgd-t"])
  # 40 points: 3 batches x 9 target passes with batch 16 (buckets 16, 8), then 9 passes of
  # one batch of 40: at most one compilation per bucket, none per batch or per pass.
  shapes = [shape for attack, _, shape in autoattack.COMPILATIONS if attack == "apgd-t"]
  assert len(shapes) == len(set(shapes))
  assert {s[0] for s in shapes} <= {16, 8, 40}


def test_a_share_with_its_index_offset_draws_what_the_whole_set_draws():
  """One process's share of the test set in a multi-process final evaluation
  (multihost.batch_shares): with index_offset each example gets the whole set's random
  start, so the joined shares equal one evaluation of the whole set, point for point."""
  variables, x, y = toy_problem()
  shares = multihost.batch_shares(len(x), 16, 2)
  assert shares == [(0, 32), (32, 40)]
  assert multihost.batch_shares(8, 16, 2) == [(0, 8), (8, 8)]  # the second process: nothing
  whole = evaluate("pgd5", batch_size=16, num_buckets=2)
  parts = [evaluate("pgd5", batch_size=16, num_buckets=2, problem=(variables, x[a:b], y[a:b]),
                    index_offset=a) for a, b in shares]
  correct = multihost.gather_shares(np.stack([p.correct["pgd5"] for p in parts[:1]]), shares[:1])
  np.testing.assert_array_equal(correct[0], whole.correct["pgd5"][:32])  # one process: a join
  np.testing.assert_array_equal(np.concatenate([p.correct["pgd5"] for p in parts]),
                                whole.correct["pgd5"])
  np.testing.assert_array_equal(np.concatenate([p.x_adv["pgd5"] for p in parts]),
                                whole.x_adv["pgd5"])
  # Without the offset the second share would restart from other random points.
  unshifted = evaluate("pgd5", batch_size=16, num_buckets=2, problem=(variables, x[32:], y[32:]))
  assert not np.array_equal(unshifted.x_adv["pgd5"], whole.x_adv["pgd5"][32:])


class _Interrupt(Exception):
  pass


def test_an_interrupted_evaluation_continues_to_the_same_result():
  attacks = "apgd-t,apgd-ce+apgd-t"
  complete = evaluate(attacks, batch_size=16, attack_options=FAST)
  chunks = []

  def stop_mid_stage(item, event, state):
    chunks.append((item, event.attack))
    if item == "apgd-ce+apgd-t" and event.attack == "apgd-t" and event.points_done < event.points_total:
      raise _Interrupt

  state = robustness.EvaluationState()
  with pytest.raises(_Interrupt):
    evaluate(attacks, batch_size=16, attack_options=FAST, state=state,
             hooks=robustness.EvaluationHooks(on_chunk=stop_mid_stage))
  # Through the on-disk format, in the middle of a target pass.
  x = robustness.as_images(toy_problem()[1])
  restored = robustness.EvaluationState.from_arrays(state.to_arrays(x), x)
  assert restored.finished == ["apgd-t"] and restored.items["apgd-ce+apgd-t"].chunk > 0
  resumed = evaluate(attacks, batch_size=16, attack_options=FAST, state=restored)
  for name, flags in complete.correct.items():
    np.testing.assert_array_equal(resumed.correct[name], flags)
  np.testing.assert_array_equal(resumed.x_adv["apgd-ce+apgd-t"], complete.x_adv["apgd-ce+apgd-t"])


def test_points_outside_the_ball_are_rejected_not_counted(monkeypatch):
  def overshooting(spec, logits_fn, x, y, *, eps, norm, active, example_keys, batch_key, pass_index):
    grad = jax.grad(lambda z: jnp.sum(logits_fn(z)[jnp.arange(len(y)), y]))(x)
    return jnp.clip(x - 3 * eps * jnp.sign(grad), 0, 1)  # 3 eps: outside the ball

  monkeypatch.setitem(registry._FAMILIES, "pgd", overshooting)
  autoattack._stage_function.cache_clear()
  try:
    report = evaluate("pgd9", eps=0.05)
  finally:
    autoattack._stage_function.cache_clear()
  np.testing.assert_array_equal(report.correct["pgd9"], report.correct["clean"])
  assert report.rejected["pgd9/pgd9"] > 0
  assert any("outside the eps-ball" in w for w in report.warnings)


# --- checks --------------------------------------------------------------------------------


def test_probability_outputs_and_batch_dependence_are_reported():
  assert any("probabilities" in w for w in evaluate("clean", model=probability_apply).warnings)
  assert any("other images of its batch" in w
             for w in evaluate("clean", model=batch_dependent_apply).warnings)
  assert evaluate("clean").warnings == []


def test_zero_gradients_are_reported():
  warnings = evaluate("clean", model=quantised_apply).warnings
  assert any("zero CE input gradient" in w for w in warnings)
  assert any("zero DLR input gradient" in w for w in warnings)


def test_square_beating_white_box_attacks_is_reported():
  families = {"apgd-ce": "apgd", "apgd-t": "apgd-t", "square": "square"}
  assert checks.square_warnings({"apgd-ce": 0.50, "apgd-t": 0.48, "square": 0.47}, families, "aa")
  assert not checks.square_warnings({"apgd-ce": 0.50, "apgd-t": 0.48, "square": 0.479}, families, "aa")


def test_attacks_that_cannot_run_refuse_before_attacking():
  variables, x, y = toy_problem()
  hooks = robustness.EvaluationHooks(on_chunk=lambda *args: pytest.fail("attacked first"))
  with pytest.raises(ValueError, match="at least 5 rows"):
    robustness.evaluate_robustness((affine_apply, (variables[0][:16], variables[1])), x[:, :4, :4],
                                   y, attacks="pgd3,square", eps=0.5, norm="l2", hooks=hooks)


def test_few_classes_are_refused_before_compiling():
  variables, x, y = toy_problem()
  three = (variables[0][:, :3], variables[1][:3])
  with pytest.raises(ValueError, match="at least 4 classes"):
    robustness.evaluate_robustness((affine_apply, three), x, y % 3, attacks="apgd-t", eps=0.1)


@pytest.mark.parametrize("change, message", [
    (dict(x_scale=2.0), r"x must be in \[0,1\]"), (dict(eps=0.0), "eps must be > 0"),
    (dict(norm="l1"), "valid choices: linf, l2"), (dict(labels_offset=NUM_CLASSES), "labels must be in"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(attack_options={"squre": {"n_queries": 5}}), "unknown attack 'squre'")])
def test_bad_input_raises(change, message):
  variables, x, y = toy_problem()
  with pytest.raises(ValueError, match=message):
    robustness.evaluate_robustness(
        (affine_apply, variables), x * change.get("x_scale", 1.0), y + change.get("labels_offset", 0),
        attacks="fgsm", eps=change.get("eps", 0.1), norm=change.get("norm", "linf"),
        batch_size=change.get("batch_size", 8), attack_options=change.get("attack_options"))


def test_l2_ensemble_stays_in_the_ball():
  variables, x, y = toy_problem()
  report = evaluate("apgd-ce+square", eps=0.3, norm="l2", attack_options=FAST)
  assert report.accuracy["apgd-ce+square"] < report.accuracy["clean"]
  delta = (report.x_adv["apgd-ce+square"] - x).reshape(len(x), -1)
  assert np.sqrt((delta.astype(np.float64) ** 2).sum(1)).max() <= 0.3 * (1 + 1e-5) + 1e-7


def test_stages_after_every_point_is_fooled_have_nothing_to_attack():
  # eps 0.5 fools every point at the first stage; the later stage must run on no point
  # (a regression: it used to index an empty chunk) and report zero seconds of attacking.
  report = evaluate("pgd3+square", eps=0.5, attack_options=FAST)
  assert report.accuracy["pgd3+square"] == 0.0
  assert report.stages["pgd3+square"]["square"] == 0.0
  assert report.seconds["pgd3+square/square"] == 0.0
