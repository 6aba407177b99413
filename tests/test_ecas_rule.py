"""ECAS ε rule: thresholds, cyclic schedule, per-class reading and the eps histogram, against
hand-computed answers."""

import math

import jax
import numpy as np
import pytest

from jaxat.methods import ecas_budget as eb

E = tuple(k / 255 for k in range(3, 13))  # ECAS-PGD-AT list
BIG = (10 / 255, 11 / 255, 12 / 255)
RULE = eb.EcasRule(eps_list=E, big=BIG, rho_high=2.274, rho_low=1.3)


def test_cyclic_schedule_by_hand():
  shuffled = tuple(reversed(E))  # the rule sorts E
  got = [float(eb.cyclic_eps(e, shuffled)) * 255 for e in (0, 1, 9, 10, 11, 23)]
  np.testing.assert_allclose(got, [3, 4, 12, 3, 4, 6], rtol=1e-6)
  np.testing.assert_allclose(float(eb.cyclic_step_size(2, E)) * 255, 1.0, rtol=1e-6)


def test_entropy_by_hand():
  logits = np.array([[0., 0., 0., 0.], [0., 0., -1e4, -1e4], [1e4, 0., 0., 0.]], np.float32)
  got = np.asarray(eb.prediction_entropy(logits))
  np.testing.assert_allclose(got, [math.log(4), math.log(2), 0.0], atol=1e-6)


def test_thresholds_by_hand():
  entropy = np.array([2.3, 2.274, 2.0, 1.3, 1.29, np.nan], np.float32)
  eps = np.asarray(eb.select_eps(entropy, 5 / 255, 11 / 255, RULE)) * 255
  # > rho_high -> min(E); == thresholds -> cyclic (strict); < rho_low -> big; NaN -> cyclic
  np.testing.assert_allclose(eps, [3, 5, 5, 5, 11, 5], rtol=1e-6)


def test_big_drawn_once_per_batch_from_subset():
  logits = np.zeros((16, 10), np.float32)
  logits[:, 0] = 50.0  # all confident: every example low entropy
  labels = np.zeros(16, np.int32)
  seen = set()
  for seed in range(20):
    eps = np.asarray(eb.ecas_eps(logits, labels, 0, jax.random.PRNGKey(seed), RULE)) * 255
    assert len(set(np.round(eps, 4))) == 1
    seen.add(int(round(eps[0])))
  assert seen == {10, 11, 12}


def test_class_reading_uses_class_mean():
  # class 0: entropies ln10 (uniform) and 0 -> mean 1.151 < 1.3 -> big for both
  # class 1: one example with entropy ln10 -> min(E); per example the first gets min(E)
  logits = np.zeros((3, 10), np.float32)
  logits[1, 0] = 80.0
  labels = np.array([0, 0, 1], np.int32)
  rule = RULE._replace(reading='class', big=(12 / 255,))
  eps = np.asarray(eb.ecas_eps(logits, labels, 4, jax.random.PRNGKey(0), rule)) * 255
  np.testing.assert_allclose(eps, [12, 12, 3], rtol=1e-6)
  per_example = np.asarray(eb.ecas_eps(logits, labels, 4, jax.random.PRNGKey(0),
                                       rule._replace(reading='example'))) * 255
  np.testing.assert_allclose(per_example, [3, 12, 3], rtol=1e-6)


def test_eps_histogram_by_hand():
  eps = np.array([3, 3, 12, 5], np.float32) / 255
  labels = np.array([1, 0, 1, 1], np.int32)
  hist = np.asarray(eb.eps_histogram(eps, labels, E, 2))
  want = np.zeros((10, 2), np.int64)
  want[0, 1] = 1; want[0, 0] = 1; want[9, 1] = 1; want[2, 1] = 1
  np.testing.assert_array_equal(hist, want)
  assert eb.eps_labels(E)[0] == '3/255' and eb.eps_labels(E)[-1] == '12/255'


@pytest.mark.parametrize('bad, message', [
    (RULE._replace(reading='paper'), "reading='paper'"),
    (RULE._replace(big=(20 / 255,)), 'big='),
    (RULE._replace(rho_high=1.0), 'rho_high=1.0'),
])
def test_bad_rule(bad, message):
  with pytest.raises(ValueError, match=message):
    eb.validate_rule(bad)


class _LinearCtx:
  """A linear classifier logits = x·W whose 'batch_stats' counts train-mode forwards."""

  def __init__(self, weights):
    self.weights = weights

  def model(self, params, batch_stats, x, bn_mode):
    logits = x.reshape(x.shape[0], -1) @ self.weights
    return logits, None, batch_stats + (1 if bn_mode == "train" else 0)


def test_budget_role_on_a_linear_model():
  from jaxat.methods.base import Batch
  from jaxat.methods.budgets import ecas_budget
  weights = np.zeros((2, 10), np.float32)
  weights[0, 3] = 100.0                      # image 0 -> confident class 3; image 1 -> uniform
  images = np.array([[[[1.0, 0.0]]], [[[0.0, 0.0]]], [[[0.0, 0.0]]]], np.float32)  # (3,1,1,2)
  batch = Batch(images=images, labels=np.array([3, 1, 1], np.int32),
                indices=np.arange(3, dtype=np.int32))
  info = eb_info(epoch=12)
  rule = RULE._replace(big=(11 / 255,))
  budget, stats, counts = ecas_budget(_LinearCtx(weights), None, 0, batch, jax.random.PRNGKey(0),
                                      info, rule, bn_mode="train")
  # entropies 0, ln10, ln10 -> eps 11 (big), 3 (min), 3; cyclic eps of epoch 12 is E[2] = 5
  np.testing.assert_allclose(np.asarray(budget.eps) * 255, [11, 3, 3], rtol=1e-6)
  np.testing.assert_allclose(float(budget.step_size) * 255, 1.0, rtol=1e-6)
  assert int(budget.num_steps) == 10 and int(stats) == 1
  counts = np.asarray(counts)
  assert counts.shape == (10, 10) and counts[8, 3] == 1 and counts[0, 1] == 2 and counts.sum() == 3
  _, stats, _ = ecas_budget(_LinearCtx(weights), None, 0, batch, jax.random.PRNGKey(0), info, rule,
                            bn_mode="eval")
  assert int(stats) == 0                     # eval-mode entropy leaves the statistics alone


def eb_info(epoch):
  from jaxat.methods.base import StepInfo
  return StepInfo(step=np.int32(0), epoch=np.int32(epoch), fraction=np.float32(0),
                  learning_rate=np.float32(0.1))
