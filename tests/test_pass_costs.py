"""benchmarks/pass_costs.py: the pass-count arithmetic by hand, and its four passes on a
tiny model against an independent computation (the timings are not checked)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))

import pass_costs  # noqa: E402

from jaxat.models.forward import ModelFn  # noqa: E402
from jaxat.models.registry import create_model  # noqa: E402


def test_units_and_predicted_steps_by_hand():
  # F = 2, F + I = 5 (I = 3), F + I + W = 9 (W = 4).
  seconds = {"forward_eval": 1.0, "forward_train": 2.0, "forward_input_backward": 5.0,
             "training_gradient": 9.0}
  assert pass_costs.units(seconds) == {"forward": 2.0, "input_backward": 3.0,
                                       "weight_backward": 4.0}
  assert pass_costs.predicted_steps(seconds) == {
      "pgd_at": 10 * 5 + 9,                 # ten attack passes and the training pass
      "fgsm_rs": 5 + 9,
      "fgsm_bp_ep_mep": 5 + 9 + 3 + 4,      # the regulariser's backward through x + η
      "uiat_oneoff_over_fgsm_rs": 5 + 9 + 2}  # the clean forward of the target


def test_the_passes_compute_what_they_are_named_for():
  module = create_model(pass_costs.model_config("small_cnn"), 10, (0.5,) * 3, (0.25,) * 3)
  x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
  labels = jnp.array([0, 3, 9, 3])
  # jit: eager Flax compiles every primitive on its own (seconds on a busy CPU).
  variables = jax.jit(lambda x: module.init(jax.random.key(1), x, train=False))(x)
  params, stats = variables["params"], variables["batch_stats"]
  functions = pass_costs.pass_functions(ModelFn(module), labels)

  def loss(p, inputs):  # the batch-mean cross-entropy, written independently
    logits = module.apply({"params": p, "batch_stats": stats}, inputs, train=True,
                          mutable=["batch_stats"])[0][0]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

  eval_logits = jax.jit(lambda p, x: module.apply({"params": p, "batch_stats": stats}, x,
                                                  train=False)[0])(params, x)
  np.testing.assert_allclose(functions["forward_eval"](params, stats, x), eval_logits,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(functions["forward_input_backward"](params, stats, x),
                             jax.jit(jax.grad(loss, argnums=1))(params, x), rtol=1e-4, atol=1e-7)
  for ours, reference in zip(jax.tree.leaves(functions["training_gradient"](params, stats, x)),
                             jax.tree.leaves(jax.jit(jax.grad(loss))(params, x))):
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6)


def test_bad_counts_are_one_line(capsys, monkeypatch):
  monkeypatch.setattr(sys, "argv", ["pass_costs.py", "--rounds=0"])
  with pytest.raises(SystemExit) as exit_info:
    pass_costs.main()
  assert exit_info.value.code == 2
  assert "--rounds=0 is invalid; valid: an integer >= 1" in capsys.readouterr().err
