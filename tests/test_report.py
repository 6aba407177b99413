"""`python -m jaxat.report`: plots and a comparison table from metrics files written here
with hand-known numbers; the table functions behind benchmarks/compare_methods.py."""

import json

import pytest

from jaxat.reports import runs as run_files
from jaxat.reports import tables
from tiny_runs import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(path, method, epochs, results, reports=()):
  path.mkdir(parents=True)
  config = {"method": {"name": method}, "eval": {"eps": 8 / 255}, "model": {"name": "small_cnn"},
            "dataset": {"name": "digits"}}
  (path / "config.json").write_text(json.dumps(config))
  (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
  (path / "results.json").write_text(json.dumps(results))
  if reports:
    (path / "eval").mkdir()
    for index, report in enumerate(reports):
      (path / "eval" / f"report{index}.json").write_text(json.dumps(report))


def epoch(n, loss, lr, clean, pgd, seconds):
  return {"epoch": n, "step": 10 * n, "lr": lr, "loss": loss, "test_clean_acc": clean,
          "test_pgd10_acc": pgd, "train_seconds": seconds, "fingerprint": "x"}


@pytest.fixture
def two_runs(tmp_path):
  a, b = tmp_path / "run_a", tmp_path / "run_b"
  write_run(a, "pgd_at", [epoch(1, 2.0, 0.1, 0.5, 0.25, 3.0), epoch(2, 1.0, 0.01, 0.75, 0.5, 5.0),
                          epoch(3, 0.5, 0.001, 0.8, 0.55, 4.0)],
            {"clean_acc": 0.8, "pgd20_acc": 0.5},
            reports=[
                # At the run's eps: overrides results.json's clean and adds aa.
                {"accuracy": {"clean": 0.8125, "aa": 0.4375}, "eps": "8/255", "norm": "linf",
                 "num_examples": 16},
                # A sweep: aa at 4/255, 8/255 (above) and 16/255.
                {"accuracy": {"aa": 0.625}, "eps": "4/255", "norm": "linf", "num_examples": 16},
                {"accuracy": {"aa": 0.125}, "eps": "16/255", "norm": "linf", "num_examples": 16},
                {"accuracy": {"aa": 0.0}, "eps": "1/2", "norm": "l2", "num_examples": 16},
            ])
  write_run(b, "trades", [epoch(1, 1.5, 0.1, 0.6, 0.3, 2.0), epoch(2, 1.25, 0.1, 0.7, 0.4, 2.5)],
            {"clean_acc": 0.7, "pgd20_acc": 0.45})
  return a, b


def test_read_run_collects_accuracies_and_sweeps(two_runs):
  a = run_files.read_run(str(two_runs[0]))
  assert a.accuracy == {"clean": 0.8125, "pgd20": 0.5, "aa": 0.4375}
  assert a.eps_sweep == {"aa": [(4 / 255, 0.625), (8 / 255, 0.4375), (16 / 255, 0.125)]}
  assert a.seconds_per_epoch() == 4.0


def test_tables_by_hand():
  rows = [{"name": "a", "method": "m", "accuracy": {"clean": 0.5, "pgd20": 0.25}, "seconds_per_epoch": 2.0},
          {"name": "b", "method": "m", "accuracy": {"clean": 0.75}, "seconds_per_epoch": None}]
  assert tables.runs_table(rows, ["clean", "pgd20"]).splitlines() == [
      "| run | method | clean | PGD-20 | s/epoch |", "|---|---|---|---|---|",
      "| a | m | 50.00 | 25.00 | 2.00 |", "| b | m | 75.00 | — | — |"]
  assert tables.grouped_table({"m": rows}, ["clean", "pgd20"]).splitlines()[2] == (
      "| m | 62.50 ± 17.68 | 25.00 ± 0.00 | 2.00 |")


@pytest.mark.slow
def test_report_cli_writes_plots_and_table(two_runs, tmp_path):
  out = tmp_path / "report"
  proc = run_cli(["-m", "jaxat.report", str(two_runs[0]), str(two_runs[1]), f"--out={out}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in ("accuracy.png", "loss.png", "lr.png", "robust_vs_eps.png"):
    assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
  table = (out / "report.md").read_text().splitlines()
  assert table[2:] == ["| run | method | clean | PGD-20 | AA | s/epoch |", "|---|---|---|---|---|---|",
                       "| run_a | pgd_at | 81.25 | 50.00 | 43.75 | 4.00 |",
                       "| run_b | trades | 70.00 | 45.00 | — | 2.25 |"]
  assert "| run_a | pgd_at | 81.25 |" in proc.stdout


@pytest.mark.slow
def test_report_cli_refuses_a_directory_that_is_not_a_run(tmp_path):
  out = tmp_path / "report"
  proc = run_cli(["-m", "jaxat.report", str(tmp_path), f"--out={out}"])
  assert proc.returncode == 2 and "Traceback" not in proc.stderr and not out.exists()
  assert proc.stderr.strip().splitlines()[-1].startswith(f"error: run {str(tmp_path)!r} is not a jaxat run")
  proc = run_cli(["-m", "jaxat.report", str(tmp_path), "--group_by=seed", f"--out={out}"])
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --group_by='seed' is invalid; valid choices: none, method")


def test_grouped_table_reproduces_the_benchmark_table_of_the_readme():
  """benchmarks/compare_methods.py prints its table with tables.grouped_table: from the
  stored result it gives the README's digits table line for line."""
  import os
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "benchmarks", "results", "compare_methods_digits.json")) as f:
    result = json.load(f)
  groups = {method: [{"accuracy": {k: r[k] for k in ("clean", "pgd20", "aa")},
                      "seconds_per_epoch": r["seconds_per_epoch"]}
                     for r in result["runs"] if r["method"] == method]
            for method in result["methods"]}
  with open(os.path.join(root, "README.md")) as f:
    readme = f.read()
  for line in tables.grouped_table(groups, ["clean", "pgd20", "aa"]).splitlines():
    assert line in readme


def test_report_grouped_by_method_averages_the_runs(two_runs, tmp_path):
  from jaxat.report import build_report
  c = tmp_path / "run_c"
  write_run(c, "pgd_at", [epoch(1, 1.0, 0.1, 0.5, 0.25, 6.0)], {"clean_acc": 0.6, "pgd20_acc": 0.4})
  runs = [run_files.read_run(str(path)) for path in (*two_runs, c)]
  lines = build_report(runs, "method").splitlines()
  assert lines[2:] == ["| method | clean | PGD-20 | AA | s/epoch |", "|---|---|---|---|---|",
                       "| pgd_at | 70.62 ± 15.03 | 45.00 ± 7.07 | 43.75 ± 0.00 | 5.00 |",
                       "| trades | 70.00 ± 0.00 | 45.00 ± 0.00 | — | 2.25 |"]


def test_a_torn_last_metrics_line_is_dropped_as_a_resume_drops_it(tmp_path):
  """A run killed mid-append leaves a partial last line; the report reads the epochs before
  it (as the training loop's resume does) instead of failing on the JSON."""
  run = tmp_path / "killed"
  write_run(run, "pgd_at", [epoch(1, 2.0, 0.1, 0.5, 0.25, 3.0), epoch(2, 1.0, 0.01, 0.75, 0.5, 5.0)],
            {"clean_acc": 0.75, "pgd20_acc": 0.5})
  with open(run / "metrics.jsonl", "a") as f:
    f.write('{"epoch": 3, "step": 30, "lr": 0.0')
  assert [r["epoch"] for r in run_files.read_metrics(str(run))] == [1, 2]


def test_compare_methods_names_a_variant_with_its_config_tokens():
  """`--methods=ancra:mart` trains configs/ancra.py with the preset and the variant token, so
  variants of one config file (ANCRA's objectives, LAS-AT's and ECAS's bases) get rows."""
  import os
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "benchmarks"))
  import compare_methods
  assert compare_methods.config_argument("pgd_at", "cifar10_subset") == \
      "configs/pgd_at.py:cifar10_subset"
  assert compare_methods.config_argument("ancra:mart", "digits") == "configs/ancra.py:digits,mart"
  assert compare_methods.config_argument("ecas:uiat+smoke", "digits") == \
      "configs/ecas.py:digits,uiat,smoke"
