"""Learning-rate schedules at known steps (hand-computed, PyTorch semantics)."""

import math

import ml_collections
import numpy as np
import pytest

from jaxat.train.schedules import make_schedule


def schedule_config(**fields):
  base = dict(name="constant", lr_max=0.1, boundaries=(0.5, 0.75), decay_factor=0.1,
              per_epoch=False, pct_start=0.25, div_factor=25.0, final_div_factor=1e4)
  base.update(fields)
  return ml_collections.ConfigDict(base)


def values(cfg, steps_per_epoch, num_epochs, steps):
  schedule = make_schedule(cfg, steps_per_epoch, num_epochs)
  return np.array([float(schedule(s)) for s in steps])


def test_constant():
  np.testing.assert_allclose(values(schedule_config(), 10, 4, [0, 17, 39]), [0.1] * 3, rtol=1e-6)


def test_piecewise_uses_fractional_epoch_of_the_next_iteration():
  # Rice: lr(t) with t = epoch + (i+1)/iters; 10 iters/epoch, 4 epochs: t/E >= 0.5 from s=19.
  got = values(schedule_config(name="piecewise"), 10, 4, [0, 18, 19, 28, 29, 39])
  np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-5)


def test_multistep_per_iteration_matches_jia_milestones():
  # 110 epochs x 391 iterations, decays at 100/110 and 105/110 of all iterations:
  # iterations 39100 and 41055 (the starts of epochs 100 and 105).
  cfg = schedule_config(name="multistep", boundaries=(100 / 110, 105 / 110))
  got = values(cfg, 391, 110, [0, 39099, 39100, 41054, 41055, 43009])
  np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-5)


def test_multistep_per_epoch_uses_one_based_epochs():
  # TRADES: `if epoch >= 75` with 1-based epochs of 100 -> decayed from 0-based epoch 74,
  # i.e. from step 740 with 10 steps per epoch.
  cfg = schedule_config(name="multistep", boundaries=(0.75, 0.9), per_epoch=True)
  got = values(cfg, 10, 100, [739, 740, 749, 750, 889, 890])
  np.testing.assert_allclose(got, [0.1, 0.01, 0.01, 0.01, 0.01, 0.001], rtol=1e-5)


def test_onecycle_matches_pytorch_formula():
  cfg = schedule_config(name="onecycle", pct_start=0.25)
  # total 100 steps: warm-up ends at step 0.25*100 - 1 = 24, the end is step 99.
  initial, final = 0.1 / 25, 0.1 / 25 / 1e4
  got = values(cfg, 10, 10, [0, 12, 24, 99])
  mid_warm = initial + (0.1 - initial) * (1 - math.cos(math.pi * 12 / 24)) / 2
  np.testing.assert_allclose(got, [initial, mid_warm, 0.1, final], rtol=1e-5)
  # Strictly decreasing after the peak.
  tail = values(cfg, 10, 10, range(24, 100))
  assert np.all(np.diff(tail) < 0)


def test_cyclic_triangle():
  cfg = schedule_config(name="cyclic", lr_max=0.2, pct_start=0.5)
  got = values(cfg, 10, 10, [0, 25, 50, 75, 100])
  np.testing.assert_allclose(got, [0.0, 0.1, 0.2, 0.1, 0.0], atol=1e-7)


def test_unknown_schedule_lists_choices():
  with pytest.raises(ValueError, match="constant, piecewise, multistep, onecycle, cyclic"):
    make_schedule(schedule_config(name="cosine"), 10, 4)
