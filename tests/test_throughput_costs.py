"""benchmarks/throughput.py's cost ratios, from fabricated step times (nothing is timed):
with several rounds a cost is the median of the per-round ratios, not the ratio of the
medians, and UIAT plugged into a method is compared with that method; and the state a
method timed at an epoch starts from (a tiny model trained through the epoch before)."""

import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import throughput  # noqa: E402


def result(method, rounds):
  return {"method": method, "dtype": "auto", "round_seconds_per_step": rounds,
          "seconds_per_step": sorted(rounds)[len(rounds) // 2]}


def test_costs_are_medians_of_per_round_ratios_with_quartiles():
  # Round by round, fgsm_rs / pgd_at = 1/2, 4/8, 2/1 -> median 0.5, while the medians
  # (2 and 2) would give 1.0. Quartiles of (0.5, 0.5, 2) ('exclusive' method): 0.5 and 2.
  results = [result("pgd_at", [2.0, 8.0, 1.0]), result("fgsm_rs", [1.0, 4.0, 2.0]),
             result("uiat_oneoff:fgsm_rs", [1.5, 4.0, 2.0])]
  throughput.add_costs(results, ["auto"])
  pgd_at, fgsm_rs, plugged = results
  assert pgd_at["cost_vs_pgd_at"] == 1.0
  assert fgsm_rs["cost_vs_pgd_at"] == pytest.approx(0.5)
  assert fgsm_rs["cost_vs_pgd_at_quartiles"] == pytest.approx([0.5, 2.0])
  # UIAT over FGSM-RS against FGSM-RS: 1.5, 1, 1 -> median 1.
  assert plugged["cost_vs_base"] == pytest.approx(1.0)
  assert plugged["cost_vs_pgd_at"] == pytest.approx(0.75)  # 0.75, 0.5, 2
  assert "cost_vs_base" not in fgsm_rs and "cost_vs_standard" not in fgsm_rs


def test_one_round_divides_the_step_times():
  results = [result("pgd_at", [4.0]), result("fgsm_rs", [1.0])]
  throughput.add_costs(results, ["auto"])
  assert results[1]["cost_vs_pgd_at"] == pytest.approx(0.25)
  assert "cost_vs_pgd_at_quartiles" not in results[1]


def test_torch_fp32_meets_jaxat_float32_and_amp_meets_bfloat16():
  results = [{"method": "pgd_at", "dtype": "float32", "images_per_sec": 300.0},
             {"method": "pgd_at", "dtype": "bfloat16", "images_per_sec": 900.0},
             {"method": "uiat", "dtype": "float32", "images_per_sec": 250.0}]
  torch_result = {"results": [
      {"method": "pgd_at", "precision": "fp32", "images_per_sec": 100.0},
      {"method": "pgd_at", "precision": "amp", "images_per_sec": 600.0},
      {"method": "standard", "precision": "fp32", "images_per_sec": 50.0}]}
  comparison = throughput.compare_with_torch(results, torch_result, ["float32", "bfloat16"])
  assert set(comparison) == {"pgd_at", "pgd_at/amp"}   # no jaxat 'standard' measured
  assert comparison["pgd_at"]["speedup_jaxat_over_torch"] == pytest.approx(3.0)
  assert comparison["pgd_at"]["jaxat_dtype"] == "float32"
  assert comparison["pgd_at/amp"]["speedup_jaxat_over_torch"] == pytest.approx(1.5)
  assert comparison["pgd_at/amp"]["jaxat_dtype"] == "bfloat16"
  # Without a bfloat16 measurement AMP is compared with what was measured.
  only_auto = [dict(r, dtype="auto") for r in results[:1]]
  fallback = throughput.compare_with_torch(only_auto, torch_result, ["auto"])
  assert fallback["pgd_at/amp"]["speedup_jaxat_over_torch"] == pytest.approx(0.5)
  assert throughput.compare_with_torch(results, None, ["float32"]) == {}


def test_one_epoch_holds_every_step_of_every_round():
  """A method timed at its one-off epoch (`uiat_oneoff:fgsm_rs@8`) in 5 rounds of 8 steps
  after 2 warm-up steps runs 42 steps: all of them must fall in epoch 8, so the epoch is
  at least 42 batches long."""
  import argparse
  args = argparse.Namespace(model="small_cnn", batch_size=4, steps=8, warmup=2, rounds=5,
                            image_size=8, num_epochs=10, num_devices=1)
  config = throughput.benchmark_config("uiat_oneoff:fgsm_rs", args)
  assert config.dataset.num_train // config.batch_size == 2 + 8 * 5
  one_round = argparse.Namespace(**{**vars(args), "rounds": 1})
  assert throughput.benchmark_config("pgd_at", one_round).dataset.num_train == 4 * (2 + 8)


def test_temp_bytes_reads_the_memory_analysis_where_there_is_one():
  class Analysis:
    temp_size_in_bytes = 73_190_400

  class Compiled:
    def memory_analysis(self):
      return Analysis()

  assert throughput.temp_bytes(Compiled()) == 73_190_400
  assert throughput.temp_bytes(object()) is None   # a backend without the analysis
  before = throughput.minor_page_faults()
  bytearray(64 * 2**20)   # 64 MiB, written on allocation: at least some fresh pages
  assert throughput.minor_page_faults() > before


def test_a_method_timed_at_an_epoch_has_the_state_of_a_run_at_that_epoch():
  """`uiat_oneoff:fgsm_rs@9` (T' = 8 of 10) is first trained through epoch 8, so every
  target is written at T' and the step timed is the run's after T' (FROZEN), not a fresh
  state's in which every batch would compute its inverse adversary."""
  import argparse
  args = argparse.Namespace(model="small_cnn", batch_size=4, steps=1, warmup=1, rounds=1,
                            image_size=8, num_epochs=10, num_devices=1)
  step = throughput.compile_step(throughput.benchmark_config("uiat_oneoff:fgsm_rs", args),
                                 "test_at_epoch", at_epoch=9)
  assert int(step.state.step) == 9 * step.exp.ctx.steps_per_epoch
  written = np.asarray(step.state.method_state["target"]["written_epoch"])
  assert (written == 8).all()
