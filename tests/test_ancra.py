"""ANCRA: reverse-attention re-weighting and the asymmetric contrast by hand, the full
objective against an independent numpy computation, the wrapper against the official training
forward, and the adaptive evaluation never weaker than the authors' protocol."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.methods.ancra import ANCRA, Heads, ancra_loss, asymmetric_negative_contrast, pick_negatives
from jaxat.models.reverse_attention import ReverseAttentionModelFn
from jaxat.models.small_cnn import SmallCNN


@dataclasses.dataclass(frozen=True)
class IdentityFeatures:
  """A 'network' whose features are its input (B,D) and whose classifier is params['dense']."""

  def apply(self, variables, x, train):
    del train
    dense = variables["params"]["dense"]
    return x @ dense["kernel"] + dense["bias"], x


PARAMS = {"dense": {"kernel": jnp.array([[1.0, 3.0], [2.0, -1.0]]), "bias": jnp.array([0.5, 0.0])}}
Z = jnp.array([[1.0, 2.0]])


def test_reverse_attention_by_hand():
  model = ReverseAttentionModelFn(IdentityFeatures())
  # gate 1: mask W[:,1] = (3,-1), z' = (3,-2), final = (3·1 - 2·2 + .5, 3·3 + 2) = (-.5, 11)
  out = model.gated(PARAMS, {}, Z, "eval", jnp.array([1]))
  np.testing.assert_allclose(out.aux_logits, [[5.5, 1.0]])
  np.testing.assert_allclose(out.gated_features, [[3.0, -2.0]])
  np.testing.assert_allclose(out.final_logits, [[-0.5, 11.0]])
  # predicted gate: argmax(aux) = 0, mask (1,2), z' = (1,4), final = (9.5, -1)
  logits, features, _ = model(PARAMS, {}, Z, "eval")
  np.testing.assert_allclose(logits, [[9.5, -1.0]])
  np.testing.assert_allclose(features, [[1.0, 4.0]])
  # the label-enumerating attack's model, gate 1 for every example (label in the variables)
  from jaxat.eval.ancra_adaptive import _LabelGatedLogits
  np.testing.assert_allclose(_LabelGatedLogits(model, "eval")((PARAMS, {}, np.int32(1)), Z),
                             [[-0.5, 11.0]])
  # the auxiliary-head attack's model: the ungated logits z·W + b = (5.5, 1)
  from jaxat.eval.ancra_adaptive import _AuxiliaryLogits
  np.testing.assert_allclose(_AuxiliaryLogits(model, "eval")((PARAMS, {}), Z), [[5.5, 1.0]])


def test_gate_gradients_argmax_vs_straight_through():
  # The argmax gate passes no gradient through the class choice; straight-through does,
  # with the same forward value.
  hard = ReverseAttentionModelFn(IdentityFeatures())
  st = ReverseAttentionModelFn(IdentityFeatures(), gate="straight_through")
  np.testing.assert_allclose(hard(PARAMS, {}, Z, "eval")[0], st(PARAMS, {}, Z, "eval")[0])
  # d final_0 / dz with the gate fixed at 0: final_0 = sum_j W_j0^2 z_j + b0 -> 2·W[:,0]^2·... = (1, 4)
  g_hard = jax.grad(lambda z: hard(PARAMS, {}, z, "eval")[0][0, 0])(Z)
  np.testing.assert_allclose(g_hard, [[1.0, 4.0]])
  g_st = jax.grad(lambda z: st(PARAMS, {}, z, "eval")[0][0, 0])(Z)
  assert not np.allclose(g_st, g_hard)


def test_asymmetric_contrast_by_hand_and_detached_branch():
  anchor = jnp.log(jnp.array([[0.7, 0.3], [0.8, 0.2]]))
  negative = jnp.log(jnp.array([[0.6, 0.4], [0.1, 0.9]]))   # pair 2 predicts differently -> 0
  expected = math.sqrt(0.7 * 0.6) / 2
  for alpha in (1.0, 0.0, 0.3):
    np.testing.assert_allclose(asymmetric_negative_contrast(anchor, negative, alpha), expected, rtol=1e-6)
  g_anchor, g_negative = jax.grad(asymmetric_negative_contrast, argnums=(0, 1))(anchor, negative, 1.0)
  # alpha = 1: the anchor (natural) branch is detached; the negative gets
  # (1/B)·sqrt(P)/(2 sqrt(Q))·Q(e_0 - q) = 0.5·sqrt(.7)/(2 sqrt(.6))·(.24, -.24)
  np.testing.assert_allclose(g_anchor, 0.0, atol=1e-7)
  c = 0.5 * math.sqrt(0.7) / (2 * math.sqrt(0.6))
  np.testing.assert_allclose(g_negative, [[0.24 * c, -0.24 * c], [0.0, 0.0]], rtol=1e-5, atol=1e-7)
  g_anchor0, g_negative0 = jax.grad(asymmetric_negative_contrast, argnums=(0, 1))(anchor, negative, 0.0)
  np.testing.assert_allclose(g_negative0, 0.0, atol=1e-7)
  c0 = 0.5 * math.sqrt(0.6) / (2 * math.sqrt(0.7))
  np.testing.assert_allclose(g_anchor0, [[0.21 * c0, -0.21 * c0], [0.0, 0.0]], rtol=1e-5, atol=1e-7)


def _np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_ce(z, y):
  return float(np.mean(-np.log(_np_softmax(z)[np.arange(len(y)), y])))


def _np_kl(target, z):
  p, q = _np_softmax(target), _np_softmax(z)
  return float(np.sum(p * (np.log(p) - np.log(q))) / len(target))


def _np_anc(a, n):
  p, q = _np_softmax(a), _np_softmax(n)
  same = p.argmax(-1) == q.argmax(-1)
  return float(np.sum(same * np.sqrt(p.max(-1) * q.max(-1))) / len(a))


def test_full_objective_independent():
  rng = np.random.default_rng(0)
  clean, adv, neg = (Heads(*(rng.normal(size=(4, 3)).astype(np.float32) for _ in range(2)))
                     for _ in range(3))
  neg = Heads(clean.final + 0.1, clean.aux - 0.2)   # same predictions: ANC is active
  y = np.array([0, 1, 2, 1])
  cfg = ANCRA.default_config()
  loss, parts = ancra_loss(Heads(*map(jnp.asarray, (clean.final, clean.aux))),
                           Heads(*map(jnp.asarray, (adv.final, adv.aux))),
                           Heads(*map(jnp.asarray, (neg.final, neg.aux))), jnp.asarray(y), cfg)
  natural = _np_ce(clean.final, y) + 2 * _np_ce(clean.aux, y)
  robust = _np_kl(clean.final, adv.final) + 2 * _np_kl(clean.aux, adv.aux)
  anc = _np_anc(clean.final, neg.final) + 2 * _np_anc(clean.aux, neg.aux)
  assert anc > 0
  np.testing.assert_allclose(loss, natural + 6 * robust + 3 * anc, rtol=1e-5)
  cfg.objective = "pgd_at"
  loss, _ = ancra_loss(Heads(jnp.asarray(clean.final), jnp.asarray(clean.aux)),
                       Heads(jnp.asarray(adv.final), jnp.asarray(adv.aux)),
                       Heads(jnp.asarray(neg.final), jnp.asarray(neg.aux)), jnp.asarray(y), cfg)
  np.testing.assert_allclose(loss, _np_ce(adv.final, y) + 2 * _np_ce(adv.aux, y) + 3 * anc, rtol=1e-5)


def test_negatives_are_of_another_class_present_in_the_batch():
  labels = jnp.array([0, 0, 1, 2, 2, 2])
  pick = jax.jit(jax.vmap(lambda k: pick_negatives(k, labels, 4)))
  j = np.asarray(pick(jax.random.split(jax.random.key(0), 5)))
  assert np.all(np.asarray(labels)[j] != np.asarray(labels)[None, :])
  np.testing.assert_array_equal(pick_negatives(jax.random.key(0), jnp.array([1, 1]), 3), [0, 1])


def _tiny_model():
  module = SmallCNN(num_classes=3, channels=(2, 3), batch_norm=False)
  variables = jax.jit(lambda k: module.init(k, jnp.zeros((1, 8, 8, 1)), train=False))(jax.random.key(0))
  return module, variables["params"]


def test_wrapper_with_true_label_equals_official_training_forward():
  module, params = _tiny_model()
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
  y = jnp.array([0, 1, 2, 1])
  out = ReverseAttentionModelFn(module).gated(params, {}, x, "train", y)
  _, features = module.apply({"params": params}, x, train=True)
  w, b = np.asarray(params["dense"]["kernel"]), np.asarray(params["dense"]["bias"])
  h = np.asarray(features)
  official = np.stack([(h[i] * w[:, int(y[i])]) @ w + b for i in range(4)])
  np.testing.assert_allclose(out.final_logits, official, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.aux_logits, h @ w + b, rtol=1e-5, atol=1e-6)


def test_adaptive_evaluation_never_weaker_than_authors():
  from jaxat.eval.ancra_adaptive import AncraEvalSettings, evaluate_ancra
  module, params = _tiny_model()
  x = np.asarray(jax.random.uniform(jax.random.key(2), (8, 8, 8, 1)))
  model = ReverseAttentionModelFn(module)
  y = np.argmax(np.asarray(model(params, {}, jnp.asarray(x), "eval")[0]), -1)   # all clean-correct
  report = evaluate_ancra(model, params, {}, x, y,
                          AncraEvalSettings(attacks="fgsm", eps=0.1, batch_size=8, run_checks=False))
  assert report.clean == 1.0
  for name in ("straight_through", "label_enum", "aux_head"):
    assert report.accuracy[name]["fgsm"] <= 1.0
    assert np.all(report.correct["adaptive"]["fgsm"] <= report.correct[name]["fgsm"])
  assert np.all(report.correct["adaptive"]["fgsm"] <= report.correct["authors"]["fgsm"])
  assert report.accuracy["adaptive"]["fgsm"] <= report.accuracy["authors"]["fgsm"]


@pytest.mark.parametrize("arg", ["cifar10", "cifar100", "svhn", "cifar10_subset", "digits",
                                 "smoke", "cifar10,pgd_at", "cifar10,mart"])
def test_presets_load_and_validate(arg):
  from tiny_runs import load_config
  c = load_config("ancra", arg)
  ANCRA.validate(c.method, 10)
  if arg == "cifar10":
    assert (c.model.name, c.schedule.lr_max, c.num_epochs, c.optimizer.weight_decay) == ("resnet18", 0.01, 120, 2e-4)
    assert (c.method.objective, c.method.beta, c.method.cr_beta, c.method.zeta, c.method.alpha) == ("trades", 6.0, 2.0, 3.0, 1.0)
  if arg.endswith("mart"):
    assert (c.method.objective, c.method.beta) == ("mart", 5.0)


@pytest.mark.parametrize("field,value,words", [
    ("objective", "trade", ["method.objective", "'trade'", "trades, pgd_at, mart"]),
    ("negatives", "hard", ["method.negatives", "random_adv, random"]),
    ("alpha", 1.5, ["method.alpha", "1.5"]),
])
def test_bad_values_name_the_field(field, value, words):
  cfg = ANCRA.default_config()
  cfg[field] = value
  with pytest.raises(ValueError) as error:
    ANCRA.validate(cfg)
  assert all(w in str(error.value) for w in words)


def test_heads_pgd_ascends_for_x_adv_descends_for_x_neg_and_stays_in_the_ball():
  """The two attacks of `prepare`: the heads objective CE(final) + cr_beta·CE(aux), computed
  here independently of the attack, rises at x_adv (+1) and falls at x_neg (-1)."""
  from types import SimpleNamespace
  from jaxat.methods.ancra import heads_pgd
  module, params = _tiny_model()
  model = ReverseAttentionModelFn(module)
  x = jax.random.uniform(jax.random.key(3), (6, 8, 8, 1))
  y = jnp.array([0, 1, 2, 0, 1, 2])
  attack = SimpleNamespace(eps=0.1, step_size=0.02, num_steps=5)

  def objective(points):
    out = model.gated(params, {}, points, "eval")
    return float(np.mean(_np_ce(np.asarray(out.final_logits), np.asarray(y))
                         + 2.0 * _np_ce(np.asarray(out.aux_logits), np.asarray(y))))

  up = heads_pgd(model, params, {}, x, y, jax.random.key(4), attack, 2.0, +1.0)
  down = heads_pgd(model, params, {}, x, y, jax.random.key(4), attack, 2.0, -1.0)
  assert objective(up) > objective(x) > objective(down)
  for points in (up, down):
    assert float(jnp.max(jnp.abs(points - x))) <= 0.1 + 1e-6
    assert float(jnp.min(points)) >= 0.0 and float(jnp.max(points)) <= 1.0


def test_awp_over_ancra_trains_the_reverse_attention_model():
  """AWP takes its model from its base (Method.wrap_model): over ANCRA it must build the
  reverse-attention wrapper, or ANCRA's gated passes cannot run. One epoch of compiled steps
  runs and the weights move."""
  from tiny_runs import load_config, train_all_epochs
  from jaxat.methods.awp import AWP
  from jaxat.train.experiment import build_experiment, init_state
  config = load_config("awp", "synthetic,ancra,smoke")
  assert config.method.name == AWP.name and config.method.base == ANCRA.name
  with config.unlocked():
    config.update_from_flattened_dict({"log.progress": "none", "num_epochs": 1, "batch_size": 16,
                                       "dataset.max_train": 32, "dataset.num_train": 32,
                                       "dataset.max_test": 16, "dataset.num_test": 16})
  exp, state, _ = train_all_epochs(config)
  assert isinstance(exp.ctx.model, ReverseAttentionModelFn)
  start = init_state(build_experiment(config))
  moved = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                       start.params, state.params)
  assert max(jax.tree.leaves(moved)) > 0
