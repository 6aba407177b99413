"""Replaying a run's first epochs and comparing them with its records: the work behind
`python -m jaxat.audit` (docs/reproducibility.md#auditing-a-run).

Why a child process: a replay must train the run's own config (its `num_epochs`, hence its
learning-rate schedule) but only up to epoch K, and the engine has no such stop. So the
config is trained, unchanged, in a scratch workdir by `python -m jaxat.train.replay RUN
DIR` -- the very code path of the original run -- while the parent watches the child's
metrics.jsonl, compares every epoch record as it is written, and stops the child like a
preempted job (SIGTERM) after epoch K or at the first divergence. No engine change, and
nothing in RUN is written except the report under RUN/audit/.

An epoch matches when its model fingerprint (a hash of the parameters and BatchNorm
statistics after that epoch, jaxat/train/state.py) equals the recorded one.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from jaxat.errors import UsageError
from jaxat.train import environment, reporting

# Epoch-record fields that measure speed, not results: never compared.
TIMING_FIELDS = ("images_per_sec", "train_seconds")
REPORT_DIR = "audit"
# Subdirectories of RUN that are its own outputs, never prerequisite runs to copy.
_OWN_OUTPUTS = ("checkpoints", "eval", "analysis", REPORT_DIR)
_POLL_SECONDS = 0.2
_STOP_GRACE_SECONDS = 60.0
_LOG_TAIL_LINES = 20


# -- what the run recorded -----------------------------------------------------------------

def recorded_epochs(run: str) -> dict[int, dict[str, Any]]:
  """The run's per-epoch records that carry a fingerprint, by epoch (the last line of an
  epoch wins, as after a resume's truncation)."""
  records = reporting.MetricsWriter(run).read()   # a torn last line is dropped
  return {r["epoch"]: r for r in records if "epoch" in r and "fingerprint" in r}


def _read_config(run: str) -> dict[str, Any]:
  path = os.path.join(run, "config.json")
  if not os.path.isfile(path):
    raise UsageError(f"{run!r} is not a jaxat run: {path} does not exist (audit the "
                     "--workdir of a python -m jaxat.main run)")
  return reporting.read_json(path)


def check_request(run: str, epochs: int | None, scratch: str | None) -> int:
  """Validates the audit's input before anything is trained; returns the number of epochs
  to compare. Raises UsageError naming the path or flag."""
  if not os.path.isdir(run):
    raise UsageError(f"{run!r} is not a jaxat run: no such directory")
  _read_config(run)
  recorded = recorded_epochs(run)
  if not recorded:
    raise UsageError(f"{run!r} has no epoch records with a fingerprint in metrics.jsonl: "
                     "nothing to audit (the run has not finished an epoch)")
  last = max(recorded)
  if epochs is None:
    epochs = last
  if not 1 <= epochs <= last:
    raise UsageError(f"--epochs={epochs}: the run in {run!r} recorded epochs 1 to {last}")
  if scratch is not None:
    _check_scratch(run, scratch)
  return epochs


def _check_scratch(run: str, scratch: str) -> None:
  real_run, real_scratch = os.path.realpath(run), os.path.realpath(scratch)
  if os.path.commonpath([real_run, real_scratch]) == real_run:
    raise UsageError(f"--scratch={scratch!r} is inside the audited run {run!r}; the audit "
                     "writes nothing there but its report")
  if os.path.exists(scratch) and (not os.path.isdir(scratch) or os.listdir(scratch)):
    raise UsageError(f"--scratch={scratch!r} exists and is not an empty directory (a "
                     "checkpoint there would be resumed instead of replayed)")


# -- comparison ------------------------------------------------------------------------------

def compare_epoch(original: dict[str, Any], replay: dict[str, Any]) -> dict[str, Any]:
  """One epoch's verdict: `match` iff the fingerprints are equal; `differing_metrics`
  lists every other (non-timing) field whose value differs, {field: [original, replay]}."""
  fields = sorted((set(original) | set(replay)) - set(TIMING_FIELDS) - {"fingerprint"})
  differing = {k: [original.get(k), replay.get(k)] for k in fields
               if original.get(k) != replay.get(k)}
  return {"epoch": original["epoch"], "match": original["fingerprint"] == replay["fingerprint"],
          "original_fingerprint": original["fingerprint"],
          "replay_fingerprint": replay["fingerprint"], "differing_metrics": differing}


def _flatten(environment_: dict[str, Any]) -> dict[str, Any]:
  """{'packages': {'jax': v}} -> {'packages.jax': v}: differences name single packages."""
  flat = {}
  for key, value in environment.comparable(environment_).items():
    if isinstance(value, dict):
      flat.update({f"{key}.{k}": v for k, v in value.items()})
    else:
      flat[key] = value
  return flat


def environment_differences(original: dict[str, Any], replay: dict[str, Any]
                            ) -> dict[str, list[Any]]:
  """{field: [original, replay]} for each differing field (packages.<name>, device_count,
  cpu_flags, variables.<name>, ...); absent fields read None."""
  a, b = _flatten(original), _flatten(replay)
  return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _environment_section(run: str, replay_dir: str) -> dict[str, Any]:
  original = environment.read_sessions(run)
  replay = environment.read_sessions(replay_dir)
  section: dict[str, Any] = {"original": original if original is not None else "not recorded",
                             "replay": replay[0] if replay else "not recorded"}
  if original is not None and replay:
    section["differences"] = [environment_differences(s, replay[0]) for s in original]
  return section


# -- the child -------------------------------------------------------------------------------

def _copy_prerequisites(run: str, replay_dir: str) -> list[str]:
  """Copies the finished runs kept inside RUN (HAT's helper/) into the replay workdir, so
  the replay reuses them as the original did instead of training them again."""
  copied = []
  for name in sorted(os.listdir(run)):
    source = os.path.join(run, name)
    if (name not in _OWN_OUTPUTS and os.path.isdir(source)
        and os.path.exists(os.path.join(source, "results.json"))):
      shutil.copytree(source, os.path.join(replay_dir, name), ignore=shutil.ignore_patterns(REPORT_DIR))
      copied.append(name)
  return copied


def _start_child(run: str, replay_dir: str, log_path: str) -> subprocess.Popen:
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
  with open(log_path, "w") as log:
    return subprocess.Popen([sys.executable, "-m", "jaxat.train.replay", run, replay_dir],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


def _stop_child(proc: subprocess.Popen) -> None:
  """SIGTERM (the engine checkpoints and exits as preempted), SIGKILL after a grace period."""
  if proc.poll() is not None:
    return
  proc.send_signal(signal.SIGTERM)
  try:
    proc.wait(timeout=_STOP_GRACE_SECONDS)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()


class _LineReader:
  """Reads the complete lines appended to a growing file since the last call."""

  def __init__(self, path: str):
    self.path = path
    self.offset = 0

  def new_records(self) -> list[dict[str, Any]]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      f.seek(self.offset)
      text = f.read()
    complete = text[:text.rfind("\n") + 1]
    self.offset += len(complete.encode())
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _watch(proc: subprocess.Popen, replay_dir: str, originals: dict[int, dict[str, Any]],
           epochs: int) -> tuple[list[dict[str, Any]], bool]:
  """Compares the child's epoch records as they appear; returns (comparisons, finished),
  finished = epoch `epochs` was compared or an epoch diverged before the child exited."""
  reader = _LineReader(os.path.join(replay_dir, "metrics.jsonl"))
  comparisons = []
  while True:
    exited = proc.poll() is not None
    for record in reader.new_records():
      epoch = record.get("epoch")
      if epoch not in originals or "fingerprint" not in record:
        continue
      comparisons.append(compare_epoch(originals[epoch], record))
      if not comparisons[-1]["match"] or epoch >= epochs:
        return comparisons, True
    if exited:
      return comparisons, False
    time.sleep(_POLL_SECONDS)


def _log_tail(log_path: str) -> list[str]:
  with open(log_path, errors="replace") as f:
    return f.read().splitlines()[-_LOG_TAIL_LINES:]


# -- the audit -------------------------------------------------------------------------------

def _status(comparisons: list[dict[str, Any]], finished: bool) -> str:
  if not finished:
    return "replay_failed"
  return "match" if all(c["match"] for c in comparisons) else "diverged"


def write_report(run: str, report: dict[str, Any]) -> str:
  """Writes `report` to RUN/audit/<UTC time>.json (`_2`, ... if that name is taken), so
  that the names sort in time order."""
  directory = os.path.join(run, REPORT_DIR)
  os.makedirs(directory, exist_ok=True)
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
  path, n = os.path.join(directory, f"{stamp}.json"), 1
  while os.path.exists(path):
    n += 1
    path = os.path.join(directory, f"{stamp}_{n}.json")  # Sorts after {stamp}.json.
  reporting.write_json(path, report)
  return path


def audit(run: str, epochs: int | None = None, scratch: str | None = None,
          keep_scratch: bool = False) -> dict[str, Any]:
  """Replays the first `epochs` epochs of the run in `run` (default: all it recorded) and
  compares them; returns the report (also written under RUN/audit/, path in
  report['report_path']). report['status']: match | diverged | replay_failed."""
  epochs = check_request(run, epochs, scratch)
  originals = {e: r for e, r in recorded_epochs(run).items() if e <= epochs}
  created = scratch is None or not os.path.exists(scratch)
  scratch = scratch or tempfile.mkdtemp(prefix="jaxat_audit_")
  try:
    report = _replay_and_compare(run, originals, epochs, scratch)
  finally:
    _discard_scratch(scratch, created, keep_scratch)
  report["scratch"] = os.path.abspath(scratch) if keep_scratch else None
  report["report_path"] = write_report(run, report)
  return report


def _replay_and_compare(run: str, originals: dict[int, dict[str, Any]], epochs: int,
                        scratch: str) -> dict[str, Any]:
  replay_dir, log_path = os.path.join(scratch, "replay"), os.path.join(scratch, "replay.log")
  os.makedirs(replay_dir)
  watch = reporting.Stopwatch()
  copied = _copy_prerequisites(run, replay_dir)
  proc = _start_child(os.path.abspath(run), replay_dir, log_path)
  try:
    comparisons, finished = _watch(proc, replay_dir, originals, epochs)
  finally:
    _stop_child(proc)
  report = {
      "workdir": os.path.abspath(run), "status": _status(comparisons, finished),
      "epochs_requested": epochs, "epochs_recorded": max(recorded_epochs(run)),
      "epochs_compared": len(comparisons),
      "first_divergence": next((c for c in comparisons if not c["match"]), None),
      "epochs": comparisons, "copied_prerequisites": copied,
      "environment": _environment_section(run, replay_dir),
      "seconds": watch.elapsed(),
  }
  if not finished:
    report["replay_failure"] = {"exit_code": proc.returncode, "log_tail": _log_tail(log_path)}
  return report


def _discard_scratch(scratch: str, created: bool, keep: bool) -> None:
  """Removes what the audit put in the scratch directory (the directory too if the audit
  created it) unless it is to be kept."""
  if keep:
    return
  if created:
    shutil.rmtree(scratch, ignore_errors=True)
    return
  for name in ("replay", "replay.log"):
    path = os.path.join(scratch, name)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
      os.remove(path)


def _replay_main(argv: list[str]) -> None:
  """The child: trains the config of RUN (argv[1]) in the workdir argv[2], unchanged but
  for plain progress lines (logging does not change training)."""
  from absl import logging

  from jaxat.train.restore import load_run_config
  from jaxat.train.train import Preempted, train_and_evaluate

  run, workdir = argv[1], argv[2]
  config = load_run_config(run)
  with config.unlocked():
    config.log.progress = "plain"
  try:
    train_and_evaluate(config, workdir)
  except Preempted as preempted:
    logging.warning("%s", preempted)
    sys.exit(143)


if __name__ == "__main__":
  from absl import app, logging as absl_logging

  from jaxat.cli_args import QuietCheckpointInfo
  absl_logging.get_absl_handler().addFilter(QuietCheckpointInfo())
  app.run(_replay_main)
