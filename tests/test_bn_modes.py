"""BatchNorm modes of forward passes and of training-time attacks are explicit."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxat.methods import maximizer
from jaxat.methods.base import Batch, StepContext
from jaxat.models.forward import ModelFn, replay_running_update
from jaxat.models.registry import create_model


def small_model():
  cfg = ml_collections.ConfigDict(dict(name="small_cnn", activation="relu", normalization="none",
                                       final_bn=True, depth=28, width=10, channels=(4, 8),
                                       batch_norm=True))
  module = create_model(cfg, 3, (0.0,), (1.0,))
  variables = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
  return ModelFn(module), variables["params"], variables["batch_stats"]


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_modes_differ_as_documented():
  model, params, stats = small_model()
  x = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1))
  eval_logits, _, eval_stats = model(params, stats, x, "eval")
  batch_logits, _, batch_stats = model(params, stats, x, "batch_stats")
  train_logits, _, train_stats = model(params, stats, x, "train")
  assert leaves_equal(eval_stats, stats) and leaves_equal(batch_stats, stats)
  assert not leaves_equal(train_stats, stats)
  np.testing.assert_allclose(batch_logits, train_logits, rtol=1e-6)  # same batch statistics
  assert not np.allclose(eval_logits, batch_logits)  # fresh running stats differ from the batch's
  with pytest.raises(ValueError, match="eval, batch_stats, train"):
    model(params, stats, x, "inference")


def test_replayed_running_update_is_the_forward_run_again():
  # By hand: r ← 0.9·r + 0.1·s. A forward took 1 to 1.4 (s = 5); from 2 it gives 2.3.
  replayed = replay_running_update({"m": jnp.float32(1.0)}, {"m": jnp.float32(1.4)},
                                   {"m": jnp.float32(2.0)})
  np.testing.assert_allclose(replayed["m"], 2.3, rtol=1e-6)
  # On a model: the same batch forwarded again from other running averages.
  model, params, stats = small_model()
  x = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1))
  other = jax.tree.map(lambda a: a + 0.5, stats)
  after = model(params, stats, x, "train")[2]
  again = model(params, other, x, "train")[2]
  for a, b in zip(jax.tree.leaves(replay_running_update(stats, after, other)), jax.tree.leaves(again)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode,updates", [("eval", False), ("batch_stats", False), ("train", True)])
def test_training_attack_threads_running_statistics_only_in_train_mode(mode, updates):
  model, params, stats = small_model()
  ctx = StepContext(model=model, num_classes=3, num_train=6, image_shape=(8, 8, 1),
                    steps_per_epoch=1, num_epochs=1, batch_size=6)
  x = jax.random.uniform(jax.random.key(2), (6, 8, 8, 1))
  batch = Batch(x, jnp.array([0, 1, 2, 0, 1, 2]), jnp.arange(6))
  cfg = maximizer.attack_config(eps=8 / 255, step_size=2 / 255, num_steps=3, bn_mode=mode)
  x_adv, new_stats = maximizer.adversarial_examples(ctx, params, stats, batch, jax.random.key(3), cfg)
  assert np.max(np.abs(np.asarray(x_adv - x))) <= 8 / 255 + 1e-6
  assert leaves_equal(new_stats, stats) != updates
  if updates:
    # Every attack pass updated the statistics, not just one of them.
    _, _, one_pass = model(params, stats, x, "train")
    assert not leaves_equal(new_stats, one_pass)
