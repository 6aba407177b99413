"""benchmarks/paper_table.py: the commands of its dry run (rows, readings, run directories),
its tables from fabricated results (mean ± std, published column, ordering check), reuse
of finished runs, and one-line refusals of bad arguments. Nothing is trained here."""

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "paper_table.py")
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import paper_table as pt  # noqa: E402
import uiat_published  # noqa: E402


def dry_run_lines(capsys, *argv):
  pt.main(["--dry_run", *argv])
  return capsys.readouterr().out.splitlines()


def train_lines(lines):
  return [line for line in lines if line.startswith("python -m jaxat.main")]


def flag(line, name):
  """The value of --name=... in a printed command line."""
  match = re.search(rf"(?:^| ){re.escape(name)}=(\S+)", line)
  return match.group(1) if match else None


def config_overrides(line, prefix="--config.method."):
  return {token for token in line.split() if token.startswith(prefix)}


# --- dry run: rows, readings, run directories --------------------------------------------


def test_table1_rows_use_the_table1_token_for_baselines_only(capsys, tmp_path):
  lines = dry_run_lines(capsys, "--table=1", "--preset=cifar100", "--seeds=0,1",
                        f"--root={tmp_path}")
  trains = train_lines(lines)
  configs = sorted(flag(line, "--config") for line in trains)
  assert configs == sorted(2 * ["configs/pgd_at.py:cifar100,table1",
                                "configs/trades.py:cifar100,table1",
                                "configs/mart.py:cifar100,table1",
                                "configs/uiat.py:cifar100", "configs/uiat_oneoff.py:cifar100"])
  # No row changes its method: Table 1 is every method on its own defaults.
  assert all(not config_overrides(line) for line in trains)
  workdirs = [flag(line, "--workdir") for line in trains]
  assert len(set(workdirs)) == 10
  for line in trains:
    seed = flag(line, "--config.seed")
    assert flag(line, "--workdir").endswith(f"_seed{seed}")
    assert flag(line, "--workdir").startswith(str(tmp_path))


def test_every_run_is_evaluated_with_clean_pgd20_cw20_and_aa(capsys, tmp_path):
  lines = dry_run_lines(capsys, "--table=1", "--preset=svhn", "--seeds=3", "--aa_examples=200",
                        f"--root={tmp_path}")
  for workdir in (flag(line, "--workdir") for line in train_lines(lines)):
    evals = [l for l in lines if l.startswith("python -m jaxat.evaluate")
             and flag(l, "--workdir") == workdir]
    settings = sorted((flag(l, "--attacks"), flag(l, "--n_examples"), flag(l, "--seed"))
                      for l in evals)
    assert settings == [("aa", "200", "3"), ("clean,pgd20,cw20", "0", "3")]
    assert len({flag(l, "--tag") for l in evals}) == 2


def docs_ablation():
  """{row label: (config arg, method overrides)} from the docs' Table 6 section."""
  with open(os.path.join(REPO, "docs", "inverse_adversarial_training.md")) as f:
    text = f.read()
  section = text.split("## Ablation (Table 6)")[1].split("\n## ")[0]
  rows = {}
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip("|").split("|")]
    if len(cells) == 2 and cells[1].startswith("`configs/"):
      tokens = cells[1].strip("`").split()
      rows[cells[0]] = (tokens[0], set(tokens[1:]))
  return rows


def test_table6_rows_are_the_docs_ablation(capsys, tmp_path):
  docs = docs_ablation()
  assert len(docs) == 5
  lines = dry_run_lines(capsys, "--table=6", "--preset=cifar10", "--seeds=0",
                        f"--root={tmp_path}")
  trains = train_lines(lines)
  assert len(trains) == 5 and len({flag(l, "--workdir") for l in trains}) == 5
  for row, line in zip(pt.ROWS["6"], trains):
    config, overrides = docs[row.label]
    assert flag(line, "--config") == config
    assert config_overrides(line) == overrides, row.label


def test_published_numbers_match_the_brief_of_the_paper():
  """A few hand-copied cells of each table, so a typo in the data module shows."""
  t1, t6 = uiat_published.TABLE1, uiat_published.TABLE6
  assert t1["cifar10"]["pgd_at"] == {"clean": 83.80, "pgd20": 51.40, "cw20": 50.17, "aa": 47.68}
  assert t1["cifar10"]["uiat_oneoff"]["cw20"] == 51.29
  assert t1["cifar100"]["mart"] == {"clean": 54.78, "aa": 24.58}
  assert t1["svhn"]["trades"] == {"clean": 90.63, "aa": 52.62}
  assert t6["cifar10"]["uag"] == {"clean": 85.19, "pgd20": 53.56, "aa": 47.63}
  assert t6["cifar10"]["uiat"] == {k: t1["cifar10"]["uiat"][k] for k in ("clean", "pgd20", "aa")}
  assert {r.key for r in pt.ROWS["1"]} == set(t1["cifar10"])
  assert {r.key for r in pt.ROWS["6"]} == set(t6["cifar10"])


def runs_by_row_and_reading(capsys, *argv):
  lines = dry_run_lines(capsys, *argv)
  out = {}
  for header, train in zip([l for l in lines if l.startswith("# ") and "readings:" in l],
                           train_lines(lines)):
    row = header.split()[1]
    for reading in header.split("readings: ")[1].rstrip(")").split(", "):
      out[(reading, row)] = train
  return out


def test_a_reading_changes_only_the_rows_it_applies_to(capsys, tmp_path):
  runs = runs_by_row_and_reading(capsys, "--table=6", "--preset=cifar10_subset", "--seeds=0",
                                 "--readings=default,mean_features", f"--root={tmp_path}")
  assert len(runs) == 10 and len(set(runs.values())) == 7  # β = 0 rows: no feature term
  mean = "--config.method.inverse.feature_reduction=mean"
  for row in ("uag_fr", "uiat"):
    assert mean in runs[("mean_features", row)] and mean not in runs[("default", row)]
    assert flag(runs[("mean_features", row)], "--workdir") != flag(runs[("default", row)],
                                                                  "--workdir")
  for row in ("iat", "uag", "uag_iam"):
    assert runs[("mean_features", row)] == runs[("default", row)]


def test_bn_and_schedule_readings(capsys, tmp_path):
  runs = runs_by_row_and_reading(capsys, "--table=1", "--preset=cifar10", "--seeds=0",
                                 "--readings=bn_batch_stats,cycle_momentum,bn_eval+cycle_momentum",
                                 f"--root={tmp_path}")
  bn = {"--config.method.attack.bn_mode=batch_stats", "--config.method.inverse.bn_mode=batch_stats"}
  cycle = "--config.schedule.cycle_momentum=True"
  for row in ("uiat", "uiat_oneoff"):
    assert bn <= set(runs[("bn_batch_stats", row)].split())
    assert "--config.method.attack.bn_mode=eval" in runs[("bn_eval+cycle_momentum", row)]
  for row in ("pgd_at", "trades", "mart"):  # the baselines keep their own BatchNorm mode
    assert "bn_mode" not in runs[("bn_batch_stats", row)]
    assert runs[("bn_eval+cycle_momentum", row)] == runs[("cycle_momentum", row)]
  assert all(cycle in runs[(r, row.key)] for r in ("cycle_momentum", "bn_eval+cycle_momentum")
             for row in pt.ROWS["1"])
  # bn_batch_stats: 3 default baselines + 2; cycle_momentum: 5; bn_eval+cycle: 2 new.
  assert len(runs) == 15 and len(set(runs.values())) == 3 + 2 + 5 + 2


def test_a_changed_setup_gets_other_run_directories(capsys, tmp_path):
  root = f"--root={tmp_path}"
  plain = train_lines(dry_run_lines(capsys, "--table=6", "--seeds=0", root))
  short = train_lines(dry_run_lines(capsys, "--table=6", "--seeds=0", root, "--num_epochs=2",
                                    "--model=small_cnn", "--channels=16,32"))
  assert not {flag(l, "--workdir") for l in plain} & {flag(l, "--workdir") for l in short}
  assert all("--config.num_epochs=2" in l and "--config.model.name=small_cnn" in l
             for l in short)


def load_config(row):
  spec = importlib.util.spec_from_file_location(row.config, os.path.join(REPO, "configs",
                                                                        f"{row.config}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(f"cifar10{row.tokens}")


def apply(config, overrides):
  for override in overrides:
    path, value = override[len("--config."):].split("=", 1)
    *parents, leaf = path.split(".")
    node = config
    for name in parents:
      node = node[name]
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    node[leaf] = value


@pytest.mark.parametrize("table", ["1", "6"])
def test_row_traits_and_readings_match_the_real_configs(table):
  """A row's traits say what its config has, and every reading that applies to a row is a
  valid config of that row's method (the method's own validation accepts it)."""
  from jaxat.methods.registry import get_method_class
  for row in pt.ROWS[table]:
    base = load_config(row)
    apply(base, row.overrides)
    method = base.method
    assert (pt.INVERSE in row.traits) == ("inverse" in method)
    if "inverse" in method:
      assert (pt.FEATURES in row.traits) == (method.inverse.beta > 0)
      assert (pt.UNIVERSAL in row.traits) == (method.generation == "universal")
    for reading in pt.READINGS:
      config = load_config(row)
      apply(config, row.overrides + tuple(pt.reading_overrides(reading, row)))
      get_method_class(config.method.name).validate(config.method, num_classes=10)


# --- the tables from fabricated results --------------------------------------------------


def fabricated_results(rows, readings, values):
  """values[(reading, row)] = list of per-seed (clean, pgd20, cw20, aa) fractions."""
  results = []
  for reading in readings:
    for row in rows:
      for seed, (clean, pgd, cw, aa) in enumerate(values[(reading, row.key)]):
        results.append({"row": row.key, "seed": seed, "readings": [reading], "clean": clean,
                        "pgd20": pgd, "cw20": cw, "aa": aa, "seconds_per_epoch": 2.0 + seed})
  return results


def table_cells(markdown, label):
  for line in markdown.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if cells[0] == label:
      return cells
  raise AssertionError(f"no row {label!r} in\n{markdown}")


def test_mean_std_and_published_column():
  rows = pt.ROWS["1"]
  values = {("default", r.key): [(0.50, 0.30, 0.28, 0.20), (0.52, 0.31, 0.28, 0.22),
                                 (0.54, 0.32, 0.28, 0.24)] for r in rows}
  values[("default", "mart")] = [(0.60, 0.40, 0.30, 0.10)] * 3
  values.update({("kl_mean", r.key): [(0.9, 0.9, 0.9, 0.9)] * 2 for r in rows})
  readings = ["default", "kl_mean"]
  summary = pt.summarize(fabricated_results(rows, readings, values), readings, rows)
  assert summary["kl_mean"]["uiat"]["aa"] == {"mean": pytest.approx(0.9), "std": 0.0}
  assert summary["kl_mean"]["uiat"]["n"] == 2
  assert summary["kl_mean"]["pgd_at"]["run_reading"] == "default"
  assert summary["kl_mean"]["uiat"]["run_reading"] == "kl_mean"
  cell = summary["default"]["pgd_at"]
  assert cell["clean"]["mean"] == pytest.approx(0.52)
  assert cell["clean"]["std"] == pytest.approx(0.02)  # sample std of 50, 52, 54 %
  assert cell["cw20"]["std"] == pytest.approx(0.0)
  assert cell["n"] == 3 and cell["seconds_per_epoch"]["mean"] == pytest.approx(3.0)
  assert summary["default"]["mart"]["aa"]["mean"] == pytest.approx(0.10)

  c10 = pt.comparison_table(summary["default"], uiat_published.TABLE1["cifar10"], rows)
  header = table_cells(c10, "row")
  cells = dict(zip(header[2::2], zip(table_cells(c10, "SAT (PGD-AT)")[2::2],
                                   table_cells(c10, "SAT (PGD-AT)")[3::2])))
  assert cells["clean ours"] == ("52.00 ± 2.00", "83.80")
  assert cells["PGD-20 ours"] == ("31.00 ± 1.00", "51.40")
  assert cells["CW-20 ours"] == ("28.00 ± 0.00", "50.17")
  assert cells["AA ours"] == ("22.00 ± 2.00", "47.68")
  assert table_cells(c10, "MART")[-3:-1] == ["10.00 ± 0.00", "48.04"]

  c100 = pt.comparison_table(summary["default"], uiat_published.TABLE1["cifar100"], rows)
  uiat = table_cells(c100, "UIAT")
  assert uiat[2:4] == ["52.00 ± 2.00", "59.55"]   # clean is published
  assert uiat[5] == "—" and uiat[7] == "—"          # PGD-20 and CW-20 are not
  assert uiat[9] == "25.73"


def test_ranks_and_rank_correlation_on_known_examples():
  assert pt.ranks([10, 30, 20]) == [1, 3, 2]
  assert pt.ranks([5, 5, 1, 7]) == [2.5, 2.5, 1, 4]
  # One adjacent swap among five: ρ = 1 − 6·2 / (5·24) = 0.9, nine pairs agree.
  assert pt.spearman([1, 2, 3, 5, 4], [1, 2, 3, 4, 5]) == pytest.approx(0.9)
  assert pt.pair_agreement([1, 2, 3, 5, 4], [1, 2, 3, 4, 5]) == {"same": 9, "opposite": 1,
                                                                  "tied": 0}
  assert pt.spearman([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)
  assert pt.spearman([1, 1, 1], [1, 2, 3]) is None
  assert pt.pair_agreement([1, 1, 2], [1, 2, 3]) == {"same": 2, "opposite": 0, "tied": 1}


def test_ordering_check_of_table6():
  """Ours ranks IAT and +UAG the other way round from the paper on AA (paper: +UAG is the
  lowest at 47.63, IAT 48.33) and agrees otherwise; PGD-20 is reversed completely."""
  rows = pt.ROWS["6"]
  paper = uiat_published.TABLE6["cifar10"]
  aa = {"iat": 0.10, "uag": 0.15, "uag_fr": 0.20, "uag_iam": 0.25, "uiat": 0.30}
  pgd = {"iat": 0.50, "uag": 0.55, "uag_fr": 0.45, "uag_iam": 0.40, "uiat": 0.35}
  cells = {key: {"clean": {"mean": paper[key]["clean"] / 100}, "pgd20": {"mean": pgd[key]},
                 "cw20": {"mean": 0.3}, "aa": {"mean": aa[key]}} for key in aa}
  order = pt.ordering(cells, paper, rows)
  assert set(order) == {"clean", "pgd20", "aa"}  # Table 6 has no CW column
  assert order["aa"]["spearman"] == pytest.approx(0.9)
  assert (order["aa"]["same"], order["aa"]["opposite"]) == (9, 1)
  assert order["aa"]["paper_best_first"] == "uiat > uag_iam > uag_fr > iat > uag"
  assert order["aa"]["ours_best_first"] == "uiat > uag_iam > uag_fr > uag > iat"
  assert order["pgd20"]["spearman"] == pytest.approx(-1.0)
  assert order["clean"]["spearman"] == pytest.approx(1.0)
  # Ties, also of means that differ only by float rounding, are shown and counted as ties.
  for key, value in (("iat", 0.7 * 0.4), ("uag", 0.28), ("uag_fr", 0.28)):  # 0.27999...97
    cells[key]["aa"]["mean"] = value
  tied = pt.ordering(cells, paper, rows)["aa"]
  assert tied["ours_best_first"] == "uiat > iat = uag = uag_fr > uag_iam"
  assert tied["tied"] == 3


# --- a whole invocation over finished runs: reused, nothing started ----------------------


def write_finished_run(workdir, row_index, seed):
  os.makedirs(os.path.join(workdir, "eval"))
  base = 0.30 + 0.02 * row_index + 0.01 * seed
  files = {
      "results.json": {}, "config.json": {"num_epochs": 2, "model": {"name": "small_cnn"}},
      "eval/paper_table.json": {"accuracy": {"clean": base + 0.2, "pgd20": base,
                                             "cw20": base - 0.02},
                                "num_examples": 1000, "eps": "8/255", "seconds": {}},
      "eval/paper_table_aa_n50.json": {"accuracy": {"clean": base + 0.2, "aa": base - 0.04},
                                       "num_examples": 50, "eps": "8/255",
                                       "seconds": {"aa/apgd-ce": 1.5, "aa/square": 0.5}},
  }
  for name, content in files.items():
    with open(os.path.join(workdir, name), "w") as f:
      json.dump(content, f)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write(json.dumps({"epoch": 1, "train_seconds": 4.0, "loss": 5.123456,
                        "test_top_prediction_share": 0.9}) + "\n")
    f.write(json.dumps({"epoch": 2, "train_seconds": 4.0, "loss": 2.3,
                        "test_top_prediction_share": 0.25 + 0.1 * seed}) + "\n")


def test_finished_runs_are_reused_and_reported(capsys, tmp_path, monkeypatch):
  argv = ["--table=6", "--preset=cifar10_subset", "--seeds=0,1", "--aa_examples=50",
          f"--root={tmp_path / 'runs'}", f"--output={tmp_path / 'out.json'}"]
  args = pt.parse_args(argv)
  for r in pt.plan(args):
    write_finished_run(r.workdir, [row.key for row in pt.ROWS["6"]].index(r.row.key), r.seed)
  dry = dry_run_lines(capsys, *argv)
  assert not [l for l in dry if l.startswith("python")]
  assert len([l for l in dry if l.startswith("# reused: ")]) == 10 * 3

  def refuse(command, log_path):
    raise AssertionError(f"started {command}")
  monkeypatch.setattr(pt, "run", refuse)
  monkeypatch.setattr(pt, "provenance", lambda started: {"machine": "test"})
  pt.main(argv)
  out = capsys.readouterr().out
  with open(tmp_path / "out.json") as f:
    payload = json.load(f)
  assert len(payload["runs"]) == 10
  uiat = payload["summary"]["default"]["uiat"]
  assert uiat["aa"]["mean"] == pytest.approx(0.30 + 0.08 + 0.005 - 0.04)
  assert uiat["aa"]["std"] == pytest.approx(0.01 / 2 ** 0.5)
  assert payload["published"] == uiat_published.TABLE6["cifar10"]
  assert payload["runs"][0]["aa_seconds"] == pytest.approx(2.0)
  # The training trace that shows a collapse: every epoch's loss, the last epoch's share.
  seed1 = [r for r in payload["runs"] if r["seed"] == 1][0]
  assert seed1["loss_per_epoch"] == [5.1235, 2.3]
  assert seed1["test_top_prediction_share"] == pytest.approx(0.35)
  # Our rows rise in table order, as the paper's do on AA except +UAG: ρ = 0.9.
  assert payload["ordering"]["default"]["aa"]["spearman"] == pytest.approx(0.9)
  assert table_cells(out, "+ UAG")[-3:-1] == ["28.50 ± 0.71", "47.63"]
  assert "| AA | +0.90 | 9 / 1 / 0 |" in out


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv,needle", [
    (["--table=2"], "--table"),
    ([], "--table"),
    (["--table=6", "--preset=svhn"], "--preset=svhn"),
    (["--table=1", "--preset=digits"], "--preset=digits"),
    (["--table=1", "--seeds=0,x"], "--seeds"),
    (["--table=1", "--seeds=1,1"], "--seeds"),
    (["--table=1", "--seeds="], "--seeds"),
    (["--table=1", "--readings=default,bn_train"], "bn_train"),
    (["--table=1", "--readings=default,default"], "--readings"),
    (["--table=1", "--readings=kl_mean+kl_mean"], "twice"),
    (["--table=1", "--aa_examples=-1"], "--aa_examples"),
    (["--table=1", "--num_epochs=-3"], "--num_epochs"),
    (["--table=1", "--channels=16,32"], "--channels"),
    (["--table=1", "--extra=--config.seed=4"], "--config.seed"),
    (["--table=6", "--extra=--config.method.momentum=True"], "--config.method.momentum"),
    (["--table=1", "--readings=cycle_momentum",
      "--extra=--config.schedule.cycle_momentum=False"], "cycle_momentum"),
    (["--table=1", "--extra=num_epochs=3"], "--extra"),
    (["--table=1", "--bogus=1"], "--bogus"),
])
def test_bad_arguments_are_refused_in_one_line(argv, needle):
  with pytest.raises(pt.UsageError, match=re.escape(needle)):
    pt.parse_args(argv)


def test_the_command_line_prints_one_line_and_exits_2(tmp_path):
  proc = subprocess.run([sys.executable, SCRIPT, "--table=6", "--preset=cifar100",
                         f"--root={tmp_path}", "--dry_run"],
                        capture_output=True, text=True, cwd=tmp_path)
  assert proc.returncode == 2
  assert proc.stdout == ""
  assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: --preset=cifar100")
  assert not os.listdir(tmp_path)
