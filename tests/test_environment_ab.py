"""benchmarks/environment_ab.py: its settings syntax and its summary arithmetic by hand
(the timings themselves are not checked)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))

import environment_ab  # noqa: E402


def test_settings_are_a_label_and_variables():
  assert environment_ab.parse_setting("on:") == ("on", {})
  assert environment_ab.parse_setting("off:GLIBC_TUNABLES=glibc.malloc.hugetlb=0,X=") == (
      "off", {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "X": ""})


@pytest.mark.parametrize("text", [":X=1", "off:X", "off:=1"])
def test_a_bad_setting_names_itself(text):
  with pytest.raises(ValueError, match="--setting="):
    environment_ab.parse_setting(text)


def _run(**seconds):
  return {"jaxat": [{"method": m, "seconds_per_step": s} for m, s in seconds.items()]}


def test_summary_takes_medians_over_processes_and_compares_with_the_first_setting():
  runs = {"off": [_run(pgd_at=2.0, fgsm_rs=0.6), _run(pgd_at=4.0, fgsm_rs=1.0),
                  _run(pgd_at=3.0, fgsm_rs=0.9)],
          "on": [_run(pgd_at=1.0, fgsm_rs=0.2), _run(pgd_at=2.0, fgsm_rs=0.6)]}
  summary = environment_ab.summarise(runs)
  off, on = summary["off"], summary["on"]
  assert off["pgd_at"]["seconds_per_step"] == 3.0 and off["fgsm_rs"]["seconds_per_step"] == 0.9
  # cost vs pgd_at per process (0.3, 0.25, 0.3), then the median
  assert off["fgsm_rs"]["cost_vs_pgd_at"] == pytest.approx(0.3)
  assert on["pgd_at"]["seconds_per_step"] == 1.5          # median of two: their mean
  assert on["fgsm_rs"]["cost_vs_pgd_at"] == pytest.approx((0.2 + 0.3) / 2)
  assert on["pgd_at"]["speedup_over_off"] == pytest.approx(3.0 / 1.5)
  assert on["fgsm_rs"]["speedup_over_off"] == pytest.approx(0.9 / 0.4)
  assert off["pgd_at"]["speedup_over_off"] == 1.0
