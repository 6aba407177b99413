"""Mixed precision (`model.dtype`, docs/mixed_precision.md): bfloat16 compute with float32
parameters, optimiser state, BatchNorm statistics, logits and attack perturbations; `auto`;
bad input; older runs without the field."""

from __future__ import annotations

import json

import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxat.attacks import losses as attack_losses
from jaxat.attacks import pgd as pgd_lib
from jaxat.attacks.budget import Budget
from jaxat.config.base import base_config
from jaxat.errors import UsageError
from jaxat.methods import maximizer
from jaxat.methods.base import Batch, epoch_start_info
from jaxat.models import conv_op
from jaxat.models.registry import MODEL_NAMES, create_model, resolve_model_dtype
from jaxat.train.experiment import build_experiment, init_state
from tiny_runs import tiny_config, train_all_epochs

TOL = 1e-7  # float32 slack of the ε-ball check


def _model_cfg(name: str, dtype: str) -> ml_collections.ConfigDict:
  """The default model section with tiny widths, `name` and `dtype` (unlocked)."""
  cfg = base_config("pgd_at").model
  cfg.update(dict(name=name, dtype=dtype, channels=(2, 3), depth=10, width=1))
  return cfg


def _eqns(jaxpr):
  """Every equation of a closed jaxpr, sub-jaxprs (custom VJPs, pjit, loops) included."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (tuple, list)) else (value,)):
        inner = getattr(sub, "jaxpr", None)
        if inner is not None:
          yield from _eqns(inner if hasattr(inner, "eqns") else inner.jaxpr)


def _leaf_dtypes(tree) -> set[str]:
  return {jnp.dtype(leaf.dtype).name for leaf in jax.tree.leaves(tree)}


def _float_dtypes(tree) -> set[str]:
  """Dtype names of the floating-point leaves (optimiser step counts are int32)."""
  return {name for name in _leaf_dtypes(tree) if "float" in name}


def _conv_dtypes(module, variables, x, train: bool) -> list[tuple[str, str, str]]:
  """(input, kernel, output) dtype names of every convolution of the forward pass."""
  def forward(variables, x):
    if train:
      return module.apply(variables, x, train=True, mutable=["batch_stats"])
    return module.apply(variables, x, train=False)
  closed = jax.make_jaxpr(forward)(variables, x)
  return [tuple(jnp.dtype(v.aval.dtype).name for v in (*e.invars[:2], e.outvars[0]))
          for e in _eqns(closed.jaxpr) if e.primitive.name == "conv_general_dilated"]


# -- (a) what computes in bfloat16 and what stays float32 --------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bfloat16_models_compute_in_bf16_with_float32_variables_and_outputs(name):
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  for dtype, compute in (("bfloat16", "bfloat16"), ("float32", "float32")):
    module = create_model(_model_cfg(name, dtype), 4, (0.5,) * 3, (0.25,) * 3)
    variables = jax.eval_shape(lambda k: module.init(k, jnp.zeros(x.shape), train=False),
                               jax.random.PRNGKey(0))
    assert _leaf_dtypes(variables) == {"float32"}, (name, dtype)  # params and batch stats
    for train in (False, True):
      convs = _conv_dtypes(module, variables, x, train)
      assert convs, name
      assert set(convs) == {(compute, compute, compute)}, (name, dtype, train, set(convs))
    (logits, features), updates = jax.eval_shape(
        lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
    assert (logits.dtype, features.dtype) == (jnp.float32, jnp.float32)
    assert logits.shape == (2, 4)
    assert _leaf_dtypes(updates) <= {"float32"}


def test_bfloat16_input_gradient_is_float32_and_close_to_float32_model():
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 8, 8, 3))
  grads = {}
  for dtype in ("float32", "bfloat16"):
    module = create_model(_model_cfg("small_cnn", dtype), 4, (0.5,) * 3, (0.25,) * 3)
    # jit: eager Flax compiles every primitive on its own (seconds on a busy CPU).
    variables = jax.jit(lambda x: module.init(jax.random.PRNGKey(0), x, train=False))(x)
    grads[dtype] = jax.jit(jax.grad(
        lambda x: module.apply(variables, x, train=False)[0][:, 0].sum()))(x)
  assert grads["bfloat16"].dtype == jnp.float32
  assert not np.array_equal(grads["bfloat16"], grads["float32"])
  scale = float(jnp.max(jnp.abs(grads["float32"])))
  np.testing.assert_allclose(grads["bfloat16"], grads["float32"], atol=0.05 * scale)


def test_custom_conv_vjp_with_bfloat16_inputs_matches_lax():
  kx, kk, kc = jax.random.split(jax.random.PRNGKey(2), 3)
  x = jax.random.normal(kx, (2, 6, 6, 3)).astype(jnp.bfloat16)
  kernel = jax.random.normal(kk, (3, 3, 3, 5)).astype(jnp.bfloat16)
  settings = dict(window_strides=(2, 2), padding=((1, 1), (1, 1)),
                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours, ours_vjp = jax.vjp(lambda a, b: conv_op.conv_general_dilated(a, b, **settings), x, kernel)
  ref, ref_vjp = jax.vjp(lambda a, b: lax.conv_general_dilated(a, b, **settings), x, kernel)
  cotangent = jax.random.normal(kc, ours.shape).astype(jnp.bfloat16)
  assert ours.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(ours), np.float32(ref), rtol=2e-2, atol=2e-2)
  for got, want in zip(ours_vjp(cotangent), ref_vjp(cotangent)):
    assert got.dtype == want.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.float32(got), np.float32(want), rtol=3e-2, atol=5e-2)


# -- (b) training in bfloat16; the attacks stay float32 --------------------------------------

def _assert_in_ball(points, x, eps):
  points, x = np.asarray(points), np.asarray(x)
  assert points.dtype == np.float32
  assert points.min() >= 0.0 and points.max() <= 1.0
  assert np.max(np.abs(points - x)) <= eps + TOL
  assert np.max(np.abs(points - x)) > 0.5 * eps  # the attack moved


@pytest.fixture(scope="module")
def bf16_pgd_at():
  """A 1-epoch bfloat16 PGD-AT run on synthetic data (BatchNorm small CNN)."""
  return train_all_epochs(tiny_config("pgd_at", **{"model.dtype": "bfloat16", "num_epochs": 1}))


def test_bfloat16_training_keeps_float32_state(bf16_pgd_at):
  exp, state, sums = bf16_pgd_at
  assert exp.model.module.dtype == jnp.bfloat16
  assert int(state.step) == exp.ctx.steps_per_epoch
  for part in (state.params, state.batch_stats, state.opt_state):
    assert _float_dtypes(part) == {"float32"}
  assert np.all(np.isfinite(jax.tree.leaves(jax.tree.map(np.asarray, state.params))[0]))
  assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(sums))


def test_bfloat16_attacks_keep_perturbation_float32_inside_the_ball(bf16_pgd_at):
  exp, state, _ = bf16_pgd_at
  ctx, attack = exp.ctx, exp.config.method.attack
  images = jnp.asarray(exp.train.images[:16], jnp.float32) / 255.0
  labels = jnp.asarray(exp.train.labels[:16], jnp.int32)
  batch = Batch(images, labels, jnp.arange(16, dtype=jnp.int32))
  # The shared maximiser (every method's training attack), train-mode BatchNorm.
  maximized = jax.jit(lambda p, s, k: maximizer.maximize(
      ctx, p, s, batch, k, attack, epoch_start_info(0, ctx)))(
          state.params, state.batch_stats, jax.random.PRNGKey(3))
  _assert_in_ball(maximized.x_adv, images, attack.eps)
  assert _leaf_dtypes(maximized.batch_stats) == {"float32"}
  # The PGD primitive on the bf16 model, with restarts and the final evaluation.
  objective = maximizer.model_objective(ctx, state.params, labels, "eval",
                                        attack_losses.cross_entropy)
  eps = 8 / 255
  result = jax.jit(lambda k: pgd_lib.pgd(objective, images, labels, k,
                                         Budget(eps, 2 / 255, 5), max_steps=5, restarts=2,
                                         aux=state.batch_stats))(jax.random.PRNGKey(4))
  _assert_in_ball(result.x_adv, images, eps)
  assert result.objective.dtype == jnp.float32


def test_bfloat16_uiat_trains_and_its_prepare_phase_stays_float32():
  # target_gradient exposes the inverse examples x̃ in `prepared`.
  exp, state, sums = train_all_epochs(tiny_config(
      "uiat", **{"model.dtype": "bfloat16", "num_epochs": 1, "method.target_gradient": True}))
  assert _leaf_dtypes(state.params) == _float_dtypes(state.opt_state) == {"float32"}
  assert _leaf_dtypes(state.method_state) <= {"float32", "int32"}
  assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(sums))
  ctx, cfg = exp.ctx, exp.config.method
  images = jnp.asarray(exp.train.images[:16], jnp.float32) / 255.0
  batch = Batch(images, jnp.asarray(exp.train.labels[:16], jnp.int32),
                jnp.arange(16, dtype=jnp.int32))
  prepared, batch_stats, method_state, _ = jax.jit(
      lambda s, k: exp.method.prepare(ctx, s.params, s.batch_stats, s.method_state, batch, k,
                                      epoch_start_info(0, ctx)))(state, jax.random.PRNGKey(5))
  _assert_in_ball(prepared["x_adv"], images, cfg.attack.eps)
  _assert_in_ball(prepared["target_input"], images, cfg.inverse.eps)
  assert _leaf_dtypes(batch_stats) == {"float32"}
  assert _leaf_dtypes(method_state) <= {"float32", "int32"}
  assert np.max(np.abs(np.asarray(method_state["universal"]))) <= cfg.inverse.eps + TOL


# -- (c) the flag does something; auto ---------------------------------------------------------

def test_float32_and_bfloat16_runs_differ_but_stay_close():
  params = {}
  for dtype in ("float32", "bfloat16"):
    _, state, _ = train_all_epochs(tiny_config(
        "standard", **{"model.dtype": dtype, "num_epochs": 1}))
    params[dtype] = np.concatenate([np.ravel(p) for p in jax.tree.leaves(state.params)])
  assert params["float32"].dtype == params["bfloat16"].dtype == np.float32
  difference = np.linalg.norm(params["bfloat16"] - params["float32"])
  assert difference > 0  # the flag changes the computation
  assert difference < 0.05 * np.linalg.norm(params["float32"])  # the same training


def test_auto_resolves_per_backend():
  assert resolve_model_dtype("auto", "cpu") == "float32"
  assert resolve_model_dtype("auto", "gpu") == "float32"
  assert resolve_model_dtype("auto", "tpu") == "bfloat16"
  assert resolve_model_dtype("bfloat16", "cpu") == "bfloat16"
  assert base_config("pgd_at").model.dtype == "auto"
  if jax.default_backend() == "cpu":
    module = create_model(_model_cfg("small_cnn", "auto"), 4, (0.5,) * 3, (0.25,) * 3)
    assert module.dtype == jnp.float32


def test_config_json_keeps_auto_and_older_runs_without_the_field_resume(tmp_path):
  from jaxat.train import train as train_lib
  from jaxat.train.restore import load_run_config
  config = tiny_config("pgd_at")
  written = train_lib.config_to_dict(config)
  assert written["model"]["dtype"] == "auto"
  del written["model"]["dtype"]  # a config.json written before the field existed
  (tmp_path / "config.json").write_text(json.dumps(written))
  assert train_lib._config_differences(str(tmp_path), config) == {}
  old = load_run_config(str(tmp_path))
  assert "dtype" not in old.model
  exp = build_experiment(old)
  assert jnp.dtype(exp.model.module.dtype) == jnp.dtype(resolve_model_dtype("auto"))
  assert _leaf_dtypes(init_state(exp).params) == {"float32"}


# -- (d) bad input -------------------------------------------------------------------------------

def test_float16_is_refused_in_validation_before_anything_is_written(tmp_path):
  from jaxat.train.train import train_and_evaluate
  config = tiny_config("pgd_at", **{"model.dtype": "float16"})
  workdir = tmp_path / "run"
  with pytest.raises(UsageError) as caught:
    train_and_evaluate(config, str(workdir))
  message = str(caught.value)
  assert "\n" not in message
  for part in ("model.dtype", "'float16'", "float32", "bfloat16", "auto"):
    assert part in message, message
  assert not workdir.exists()
