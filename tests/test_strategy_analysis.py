"""`python -m jaxat.analyze strategy`: distributions of count metrics from a metrics.jsonl
written by hand, against hand-computed fractions and means."""

import json

import pytest

from jaxat.analysis.strategy import label_value, strategy_summary
from jaxat.analysis.workdir_analyses import run_strategy
from jaxat.errors import UsageError
from jaxat.methods.pgd_at import PGDAT
from jaxat.train.reporting import write_json
from jaxat.train.train import config_to_dict
from tiny_runs import tiny_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = {"counts/eps": ("3/255", "6/255"), "counts/steps": ("5", "10", "20")}
RECORDS = [
    {"epoch": 1, "step": 4, "loss": 1.0,
     # eps: class 0 got 3/255 once and 6/255 three times; class 1 got 3/255 twice
     "counts/eps": [[1, 2], [3, 0]],
     # steps: class 0: 4x5; class 1: 1x10, 1x20
     "counts/steps": [[4, 0], [0, 1], [0, 1]]},
    {"epoch": 2, "step": 8, "loss": 0.5, "counts/eps": [[0, 0], [4, 2]],
     "counts/steps": [[0, 0], [4, 2], [0, 0]]},
    {"epoch": 2, "eval/pgd_acc": 0.3},   # a record without count metrics is skipped
]


def test_summary_by_hand():
  summary = strategy_summary(RECORDS, LABELS)
  eps = summary["counts/eps"]["epochs"]
  assert [e["epoch"] for e in eps] == [1, 2]
  assert eps[0]["total"] == 6
  assert eps[0]["overall"] == pytest.approx([3 / 6, 3 / 6])
  assert eps[0]["per_class"] == [pytest.approx([1 / 4, 3 / 4]), pytest.approx([1.0, 0.0])]
  assert eps[0]["mean_value_per_class"] == pytest.approx([(3 + 18) / 4 / 255, 3 / 255])
  steps = summary["counts/steps"]["epochs"]
  assert steps[0]["mean_value_per_class"] == pytest.approx([5.0, 15.0])
  assert steps[1]["overall"] == pytest.approx([0.0, 1.0, 0.0])


def test_labels_and_bad_shapes():
  assert label_value("8/255") == pytest.approx(8 / 255) and label_value("beta") is None
  summary = strategy_summary([{"epoch": 1, "counts/x": [[1], [1]]}], {"counts/x": ("a", "b")})
  assert summary["counts/x"]["epochs"][0]["mean_value_per_class"] is None
  with pytest.raises(ValueError, match="counts/eps has 2 options but the method labels 3"):
    strategy_summary(RECORDS[:1], {"counts/eps": ("1", "2", "3")})
  with pytest.raises(UsageError, match="no count metrics"):
    strategy_summary([{"epoch": 1, "loss": 1.0}], {})


def test_run_strategy_writes_json_and_png(tmp_path, monkeypatch):
  write_json(str(tmp_path / "config.json"), config_to_dict(tiny_config("pgd_at")))
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in RECORDS)
  monkeypatch.setattr(PGDAT, "count_metric_labels", lambda self: LABELS)
  run_strategy(str(tmp_path))
  with open(tmp_path / "analysis" / "strategy.json") as f:
    payload = json.load(f)
  assert payload["metrics"]["counts/steps"]["labels"] == ["5", "10", "20"]
  assert payload["metrics"]["counts/eps"]["epochs"][1]["per_class"][1] == [0.0, 1.0]
  with open(tmp_path / "analysis" / "strategy.png", "rb") as f:
    assert f.read(8) == PNG_MAGIC


def test_run_without_count_metrics_is_refused(tmp_path):
  write_json(str(tmp_path / "config.json"), config_to_dict(tiny_config("pgd_at")))
  (tmp_path / "metrics.jsonl").write_text(json.dumps(RECORDS[2]) + "\n")
  with pytest.raises(UsageError, match="no count metrics"):
    run_strategy(str(tmp_path))
