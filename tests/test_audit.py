"""environment.json and `python -m jaxat.audit` (docs/reproducibility.md).

One tiny 3-epoch run is trained once; the audits run the command line in subprocesses,
as a user would, on that run or on copies of it with one file edited.
"""

import hashlib
import json
import os
import shutil

import pytest

from tiny_runs import run_cli, tiny_config

pytestmark = pytest.mark.slow

EPOCHS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  from jaxat.train.train import train_and_evaluate
  workdir = str(tmp_path_factory.mktemp("audit") / "run")
  # Monitor evaluation after the last epoch only: replays stopped earlier compile no evaluator.
  config = tiny_config("pgd_at", num_epochs=EPOCHS, **{"eval.every_epochs": EPOCHS})
  train_and_evaluate(config, workdir)
  return workdir


def audit_cli(*args):
  return run_cli(["-m", "jaxat.audit", *args])


def tree_state(root):
  """{relative path: (sha256, mtime)} of every file under `root` except audit/."""
  state = {}
  for folder, dirs, files in os.walk(root):
    if folder == root:
      dirs[:] = [d for d in dirs if d != "audit"]
    for name in files + [d + "/" for d in dirs]:
      path = os.path.join(folder, name.rstrip("/"))
      digest = "dir" if name.endswith("/") else hashlib.sha256(open(path, "rb").read()).hexdigest()
      state[os.path.relpath(path, root) + ("/" if name.endswith("/") else "")] = (
          digest, os.stat(path).st_mtime_ns)
  return state


def reports(workdir):
  folder = os.path.join(workdir, "audit")
  return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def load_report(workdir, name):
  with open(os.path.join(workdir, "audit", name)) as f:
    return json.load(f)


def copy_run(run, tmp_path):
  copy = str(tmp_path / "copy")
  shutil.copytree(run, copy, ignore=shutil.ignore_patterns("audit"))
  return copy


def edit_json(path, change):
  with open(path) as f:
    payload = json.load(f)
  change(payload)
  with open(path, "w") as f:
    json.dump(payload, f)


def edit_epoch_record(workdir, epoch, **fields):
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path) as f:
    records = [json.loads(line) for line in f]
  for record in records:
    if record["epoch"] == epoch:
      record.update(fields)
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)


# -- environment.json ------------------------------------------------------------------------

def test_training_writes_environment_json_with_versions_devices_and_cpu(run):
  with open(os.path.join(run, "environment.json")) as f:
    sessions = json.load(f)["sessions"]
  assert len(sessions) == 1
  env = sessions[0]
  for package in ("python", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
    assert env["packages"][package] not in ("", None, "not installed"), package
  assert env["backend"] == "cpu" and env["device_count"] == 1 and env["process_count"] == 1
  assert env["device_kind"] and env["recorded_at"]
  if os.path.exists("/proc/cpuinfo"):
    assert env["cpu_model"] and isinstance(env["cpu_flags"], list)
  # conftest.py sets it: a numerics-relevant variable is recorded.
  assert env["variables"]["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "1"


def test_a_resume_keeps_the_first_environment_and_appends_only_a_different_one(run, tmp_path):
  from jaxat.train.environment import write_environment
  workdir = str(tmp_path)
  path = os.path.join(workdir, "environment.json")
  shutil.copy(os.path.join(run, "environment.json"), path)
  before = open(path).read()
  write_environment(workdir)  # A resume on the same installation: nothing added.
  assert open(path).read() == before

  edit_json(path, lambda p: p["sessions"][0]["packages"].update(jax="0.0.1"))
  write_environment(workdir)  # A resume elsewhere: the first session is kept, this one added.
  with open(path) as f:
    sessions = json.load(f)["sessions"]
  assert [s["packages"]["jax"] for s in sessions] == ["0.0.1", sessions[1]["packages"]["jax"]]
  assert sessions[1]["packages"]["jax"] != "0.0.1"
  write_environment(workdir)  # Same as the last session: nothing added.
  with open(path) as f:
    assert len(json.load(f)["sessions"]) == 2


# -- the audit -------------------------------------------------------------------------------

def test_audit_of_the_run_matches_every_epoch_and_writes_only_its_report(run):
  before, old_reports = tree_state(run), reports(run)
  proc = audit_cli(f"--workdir={run}")
  assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
  assert f"all {EPOCHS} compared epochs match" in proc.stdout
  assert "environment: same as the original's" in proc.stdout
  assert tree_state(run) == before
  [name] = set(reports(run)) - set(old_reports)
  report = load_report(run, name)
  assert report["status"] == "match" and report["first_divergence"] is None
  assert [e["epoch"] for e in report["epochs"]] == list(range(1, EPOCHS + 1))
  with open(os.path.join(run, "metrics.jsonl")) as f:
    recorded = [json.loads(line)["fingerprint"] for line in f]
  assert [e["replay_fingerprint"] for e in report["epochs"]] == recorded
  assert all(e["match"] and e["differing_metrics"] == {} for e in report["epochs"])
  assert report["environment"]["differences"] == [{}]
  assert report["scratch"] is None


def test_an_altered_epoch_record_is_the_first_divergence_and_the_replay_stops_there(run, tmp_path):
  copy = copy_run(run, tmp_path)
  edit_epoch_record(copy, 2, fingerprint="0123456789abcdef", loss=123.0)
  before = tree_state(copy)
  proc = audit_cli(f"--workdir={copy}")
  assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
  assert "first divergence at epoch 2" in proc.stdout
  assert "loss: original 123, replay" in proc.stdout
  assert tree_state(copy) == before
  report = load_report(copy, reports(copy)[0])
  assert report["status"] == "diverged" and report["epochs_requested"] == EPOCHS
  assert [(e["epoch"], e["match"]) for e in report["epochs"]] == [(1, True), (2, False)]
  divergence = report["first_divergence"]
  assert divergence["epoch"] == 2 and divergence["original_fingerprint"] == "0123456789abcdef"
  assert list(divergence["differing_metrics"]) == ["loss"]
  assert divergence["differing_metrics"]["loss"][0] == 123.0


def test_an_edited_seed_really_trains_differently_and_environment_changes_are_named(run, tmp_path):
  copy = copy_run(run, tmp_path)
  edit_json(os.path.join(copy, "config.json"), lambda c: c.update(seed=c["seed"] + 1))
  edit_json(os.path.join(copy, "environment.json"),
            lambda e: e["sessions"][0]["packages"].update(jax="0.0.1"))
  proc = audit_cli(f"--workdir={copy}", "--epochs=2")
  assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
  report = load_report(copy, reports(copy)[0])
  divergence = report["first_divergence"]
  assert divergence["epoch"] == 1 and report["epochs_requested"] == 2
  assert divergence["replay_fingerprint"] != divergence["original_fingerprint"]
  assert "loss" in divergence["differing_metrics"]
  [differences] = report["environment"]["differences"]
  assert list(differences) == ["packages.jax"] and differences["packages.jax"][0] == "0.0.1"
  assert "packages.jax: original 0.0.1" in proc.stdout


class _Training:
  """A child process as the watcher sees it: training for a few polls, then exited."""

  def __init__(self):
    self.polls = 0

  def poll(self):
    self.polls += 1
    return None if self.polls < 3 else 0


def test_the_watcher_stops_at_epoch_k_and_before_a_later_divergence(run, tmp_path):
  from jaxat.train.replay import _watch, recorded_epochs
  originals = recorded_epochs(run)
  shutil.copy(os.path.join(run, "metrics.jsonl"), tmp_path / "metrics.jsonl")
  edit_epoch_record(str(tmp_path), 2, fingerprint="0123456789abcdef")
  comparisons, finished = _watch(_Training(), str(tmp_path), {1: originals[1]}, epochs=1)
  assert finished and [(c["epoch"], c["match"]) for c in comparisons] == [(1, True)]
  comparisons, finished = _watch(_Training(), str(tmp_path), originals, epochs=EPOCHS)
  assert finished and [(c["epoch"], c["match"]) for c in comparisons] == [(1, True), (2, False)]


def test_a_replay_that_cannot_train_is_a_failure_with_its_log_and_a_kept_scratch(run, tmp_path):
  copy = copy_run(run, tmp_path)
  edit_json(os.path.join(copy, "config.json"), lambda c: c["model"].update(name="no_such_model"))
  scratch = tmp_path / "scratch"
  proc = audit_cli(f"--workdir={copy}", f"--scratch={scratch}", "--keep_scratch")
  assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
  assert "the replay stopped" in proc.stdout and f"scratch kept: {scratch}" in proc.stdout
  report = load_report(copy, reports(copy)[0])
  assert report["status"] == "replay_failed" and report["epochs"] == []
  assert report["replay_failure"]["exit_code"] not in (0, None)
  assert any("no_such_model" in line for line in report["replay_failure"]["log_tail"])
  assert "no_such_model" in (scratch / "replay.log").read_text()


def test_a_run_without_environment_json_says_not_recorded():
  from jaxat.audit import _environment_lines
  assert "not recorded" in _environment_lines({"original": "not recorded", "replay": {}})[0]


@pytest.mark.parametrize("problem", ["empty_dir", "missing_dir", "epochs_out_of_range",
                                     "scratch_not_empty", "no_workdir"])
def test_usage_errors_are_one_line_with_exit_status_2(run, tmp_path, problem):
  empty = tmp_path / "not_a_run"
  empty.mkdir()
  (tmp_path / "busy").mkdir()
  (tmp_path / "busy" / "file").write_text("x")
  args, named = {
      "empty_dir": ([f"--workdir={empty}"], str(empty)),
      "missing_dir": ([f"--workdir={tmp_path / 'nowhere'}"], str(tmp_path / "nowhere")),
      "epochs_out_of_range": ([f"--workdir={run}", f"--epochs={EPOCHS + 1}"], f"--epochs={EPOCHS + 1}"),
      "scratch_not_empty": ([f"--workdir={run}", f"--scratch={tmp_path / 'busy'}"], "busy"),
      "no_workdir": ([], "--workdir"),
  }[problem]
  before = tree_state(run), reports(run)
  proc = audit_cli(*args)
  assert proc.returncode == 2, proc.stdout + proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], proc.stderr
  assert "Traceback" not in proc.stderr
  assert (tree_state(run), reports(run)) == before
  assert os.listdir(empty) == []
