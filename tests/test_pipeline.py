"""Batches carry the right examples and indices; evaluation sees every example once."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxat.eval.accuracy import PGDSpec, evaluate_split, make_batch_evaluator, put_split
from jaxat.train import step as step_lib
from jaxat.train.experiment import build_experiment, epoch_permutation_fn, put_train_data
from tiny_runs import tiny_config


def test_epoch_permutation_covers_the_training_set_and_batches_match_their_indices():
  exp = build_experiment(tiny_config("standard", **{"augment.crop_padding": 0, "augment.flip": False}))
  images, labels = put_train_data(exp)
  permutation_of = epoch_permutation_fn(exp)
  first, second = np.asarray(permutation_of(0)), np.asarray(permutation_of(1))
  assert sorted(first.tolist()) == list(range(exp.ctx.num_train))
  assert not np.array_equal(first, second)
  assert np.array_equal(first, np.asarray(permutation_of(0)))  # a function of (seed, epoch)
  for step in (0, 1, exp.ctx.steps_per_epoch + 1):
    x, y, idx = step_lib._gather_batch(exp.ctx, jnp.asarray(step), images, labels,
                                       permutation_of(step // exp.ctx.steps_per_epoch), exp.mesh)
    idx = np.asarray(idx)
    position = (step % exp.ctx.steps_per_epoch) * exp.ctx.batch_size
    expected = np.asarray(permutation_of(step // exp.ctx.steps_per_epoch))[position:position + exp.ctx.batch_size]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(np.asarray(y), exp.train.labels[idx])
    np.testing.assert_allclose(np.asarray(x), exp.train.images[idx].astype(np.float32) / 255.0)


def test_evaluation_counts_every_example_exactly_once():
  exp = build_experiment(tiny_config("standard"))
  variables = exp.model.module.init(jax.random.key(0), jnp.zeros((1,) + exp.ctx.image_shape), train=False)
  params, stats = variables["params"], variables.get("batch_stats", {})
  n = 50  # not a multiple of the batch size: the last batch is padded and masked
  images, labels = exp.test.images[:n], exp.test.labels[:n]
  split = put_split(images, labels, 16, exp.mesh)
  assert split.num_batches == 4
  evaluator = make_batch_evaluator(exp.model, PGDSpec(8 / 255, 2 / 255, 1), 16, exp.mesh)
  report = evaluate_split(evaluator, params, stats, split, jax.random.key(1))
  assert report["num_examples"] == n
  direct = np.argmax(np.asarray(exp.model.logits(params, stats, jnp.asarray(images, jnp.float32) / 255.0)), -1)
  np.testing.assert_array_equal(report["clean_correct"], direct == labels)
  assert report["clean_acc"] == float(np.mean(direct == labels))
  assert np.all(report["pgd_correct"] <= report["clean_correct"])
