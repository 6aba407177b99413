"""APGD / APGD-T: the step-size checkpoint schedule and halving rule of the reference
(docs/evaluation.md#apgd-ce-and-apgd-t), the analytic optimum of affine models, and agreement with the
reference goldens (APGD-CE and APGD-T from an injected start)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxat.attacks import apgd
from jaxat.models import create_model

GOLDEN_PATH = Path(__file__).parents[2] / "shared/goldens/autoattack_smallcnn.npz"


# --- checkpoint schedule (pure arithmetic) -------------------------------------------------


def test_checkpoint_schedule_for_100_iterations_matches_the_reference_table():
  schedule = apgd.checkpoint_schedule(100)
  checks = np.flatnonzero(schedule.is_check)
  np.testing.assert_array_equal(checks, [21, 40, 56, 69, 79, 86, 92, 98])
  np.testing.assert_array_equal(schedule.window[checks], [22, 19, 16, 13, 10, 7, 6, 6])
  # The paper's w_j = ceil(p_j N) with p = .22, .41, .57, .70, .80, .87, .93, .99 (1-based).
  np.testing.assert_array_equal(checks + 1, np.ceil(np.array([.22, .41, .57, .70, .80, .87, .93, .99]) * 100))


@pytest.mark.parametrize("n_iter, expected", [(10, list(range(1, 10))), (50, [10, 20, 29, 37, 44]),
                                              (1, [0])])
def test_checkpoint_schedule_for_other_lengths(n_iter, expected):
  np.testing.assert_array_equal(np.flatnonzero(apgd.checkpoint_schedule(n_iter).is_check), expected)


def test_first_checkpoint_compares_the_first_loss_with_zero():
  """The reference reads loss_steps[-1] (still 0) at the first check instead of the loss
  of the start point: with 16 real increases among the 22 steps, a first loss > 0 makes
  17 > 16.5 (no halving) while a first loss < 0 leaves 16 <= 16.5 (halving)."""
  curve = np.zeros((100, 2), np.float32)
  curve[:22] = np.concatenate([[0.0], np.arange(1.0, 17.0), np.full(5, 16.0)])[:, None]
  curve[0] = [0.5, -0.5]
  flags = apgd.oscillation_flags(jnp.asarray(curve), 21, 22)
  np.testing.assert_array_equal(flags, [False, True])
  steadily_rising = jnp.zeros((100, 1)).at[:22, 0].set(jnp.arange(1.0, 23.0))
  assert not bool(apgd.oscillation_flags(steadily_rising, 21, 22)[0])


def test_oscillation_threshold_is_inclusive():
  """k = 16 gives the threshold 12.0: exactly 12 increases halves, 13 does not."""
  n, i, k = 100, 56, 16
  rises = np.zeros((n, 2), np.float32)
  rises[:41] = 100.0
  window = np.arange(i - k + 1, i + 1)
  for column, count in enumerate((12, 13)):
    values = np.full(k, 50.0)
    values[:count] = 200.0 + np.arange(count)  # the first step up from 100, then rising
    rises[window, column] = values
  np.testing.assert_array_equal(apgd.oscillation_flags(jnp.asarray(rises), i, k), [True, False])


def test_halving_rule_combines_oscillation_and_stalling():
  n = 100
  steady_rise = jnp.zeros((n, 4)).at[:41].set(jnp.arange(1.0, 42.0)[:, None])  # no oscillation
  reduced_last = jnp.array([False, False, True, True])
  best_last = jnp.array([5.0, 5.0, 5.0, 5.0])
  best_now = jnp.array([5.0, 6.0, 5.0, 6.0])
  flags = apgd.halving_flags(steady_rise, 40, 19, True, reduced_last, best_last, best_now)
  # Stalled (best did not improve) and not halved last time -> halve; otherwise not.
  np.testing.assert_array_equal(flags, [True, False, False, False])
  off_check = apgd.halving_flags(steady_rise, 40, 19, False, reduced_last, best_last, best_now)
  assert not bool(jnp.any(off_check))


def test_constant_loss_halves_the_step_at_every_checkpoint():
  """A model with zero input gradient has a constant CE log K > 0: the quirk counts one
  increase at the first check and none later, so every one of the 8 checks halves."""
  logits_fn = lambda x: jnp.zeros((x.shape[0], 4)) + 0.0 * jnp.sum(x)
  x = jnp.full((2, 2, 2, 1), 0.5)
  result = jax.jit(lambda: apgd.apgd(logits_fn, x, jnp.array([0, 1]), jax.random.key(0), eps=0.1,
                                     n_iter=100))()
  np.testing.assert_allclose(result.step_size, 2 * 0.1 / 2 ** 8, rtol=1e-6)


# --- analytic optimum ------------------------------------------------------------------------


def test_apgd_t_reaches_the_affine_optimum_over_all_targets():
  """For an affine model, min_k [m_k(x) - eps ||w_y - w_k||_1] < 0 iff some point of the
  L-inf ball (box inactive) is misclassified. APGD-T (every other class as a target) must
  fool every example whose critical radius is below 0.9 eps, and none above eps can be."""
  dim, num_classes, eps = 16, 5, 0.04
  weights = jax.random.normal(jax.random.key(0), (dim, num_classes))
  logits_fn = lambda x: x.reshape(x.shape[0], -1) @ weights
  x = jax.random.uniform(jax.random.key(1), (64, 2, 4, 2), minval=0.3, maxval=0.7)
  y = jnp.argmax(logits_fn(x), -1)
  logits = logits_fn(x)
  gaps = jnp.take_along_axis(logits, y[:, None], 1) - logits                    # (B,K) m_k
  spreads = jnp.sum(jnp.abs(weights.T[y][:, None, :] - weights.T[None]), -1)     # ||w_y - w_k||_1
  critical = jnp.min(jnp.where(jax.nn.one_hot(y, num_classes, dtype=bool), jnp.inf, gaps / spreads), 1)
  result = jax.jit(lambda: apgd.apgd_targeted(logits_fn, x, y, jax.random.key(2), eps=eps,
                                              n_iter=20, n_target_classes=4))()
  must_fool = np.asarray(critical < 0.9 * eps)
  cannot_fool = np.asarray(critical > eps)
  assert must_fool.sum() >= 5 and cannot_fool.sum() >= 5
  assert not np.asarray(result.robust)[must_fool].any()
  assert np.asarray(result.robust)[cannot_fool].all()


def test_apgd_t_needs_four_classes():
  with pytest.raises(ValueError, match="at least 4 classes"):
    apgd.apgd_targeted(lambda x: x.reshape(x.shape[0], -1)[:, :3], jnp.zeros((1, 1, 1, 3)),
                       jnp.array([0]), jax.random.key(0), eps=0.1)


def test_target_classes_rank_the_clean_logits():
  logits = jnp.array([[0.1, 3.0, 2.0, -1.0, 2.5]])
  assert [int(apgd.target_classes(logits, r)[0]) for r in (1, 2, 3, 4, 5)] == [1, 4, 2, 0, 3]
  assert apgd.num_target_classes(10) == 9 and apgd.num_target_classes(5) == 4


def test_apgd_rejects_unknown_loss_and_norm():
  x = jnp.zeros((1, 1, 1, 2))
  with pytest.raises(ValueError, match="valid choices: ce, dlr, dlr-targeted"):
    apgd.apgd(lambda z: z.reshape(1, -1), x, jnp.array([0]), jax.random.key(0), eps=0.1, loss="kl")
  with pytest.raises(ValueError, match="valid choices: linf, l2"):
    apgd.apgd(lambda z: z.reshape(1, -1), x, jnp.array([0]), jax.random.key(0), eps=0.1, norm="l1")


# --- reference goldens ---------------------------------------------------------------------


@pytest.fixture
def xla_optimizations():
  """Conv nets inside lax loops run ~50x slower without XLA's optimisation passes (the
  conftest default); the tests that attack a CNN turn them back on."""
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="module")
def golden():
  if not GOLDEN_PATH.exists():
    pytest.skip(f"golden file {GOLDEN_PATH} not available")
  data = dict(np.load(GOLDEN_PATH))
  config = ml_collections.ConfigDict(dict(name="small_cnn", activation="relu", normalization="none",
                                          final_bn=True, depth=34, width=10, channels=(16, 32),
                                          batch_norm=False))
  model = create_model(config, 10, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
  params = {layer: {"kernel": data[f"{layer}/kernel"], "bias": data[f"{layer}/bias"]}
            for layer in ("conv1", "conv2", "dense")}
  data["logits_fn"] = lambda x: model.apply({"params": params}, x, train=False)[0]
  return data


@pytest.mark.parametrize("loss", ["ce", "dlr-targeted"])
def test_apgd_from_the_injected_start_matches_the_reference(golden, loss, xla_optimizations):
  """On the clean-correct points (the others are never attacked by AutoAttack)."""
  prefix = "apgd_ce" if loss == "ce" else "apgd_t"
  keep = np.argmax(golden["clean_logits"], -1) == golden["y"]
  golden = {k: v[keep] if isinstance(v, np.ndarray) and v.shape[:1] == keep.shape else v
            for k, v in golden.items()}
  targets = jnp.asarray(golden["apgd_t_target"]) if loss != "ce" else None
  result = jax.jit(lambda: apgd.apgd(golden["logits_fn"], jnp.asarray(golden["x"]),
                                     jnp.asarray(golden["y"]), jax.random.key(0),
                                     eps=float(golden["eps"]), loss=loss, targets=targets,
                                     x_init=jnp.asarray(golden["apgd_ce_x_init"])))()
  robust, expected = np.asarray(result.robust), golden[f"{prefix}_robust"]
  assert expected.sum() >= 10
  assert (robust != expected).sum() <= 1, "robust flags differ beyond a near-tie"
  loss_best, expected_loss = np.asarray(result.loss_best), golden[f"{prefix}_loss_best"]
  close = np.isclose(loss_best, expected_loss, rtol=1e-3, atol=1e-4)
  assert close.mean() >= 0.9, f"loss_best differs for {np.flatnonzero(~close)}"
  # Fooled points: the returned point is the reference's last misclassified iterate.
  fooled = ~expected & ~robust
  distance = np.abs(np.asarray(result.x_adv)[fooled] - golden[f"{prefix}_adv"][fooled]).reshape(fooled.sum(), -1).max(1)
  assert np.mean(distance < 1e-3) >= 0.9
  # And the success test of the reference holds for what we return.
  assert not (np.argmax(golden["logits_fn"](result.x_adv[fooled]), -1) == golden["y"][fooled]).any()

