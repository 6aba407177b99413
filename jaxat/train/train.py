"""`train_and_evaluate(config, workdir)`: the training loop, importable (Flax-examples style).

Outputs in `workdir`: config.json, metrics.jsonl, TensorBoard events.out.tfevents.*,
checkpoints/{last,best}, results.json.
Rerunning with the same config in a workdir that has a checkpoint resumes from it; a
SIGTERM (preemption) saves a checkpoint at the next step boundary and raises `Preempted`.
A resumed run is bit-identical to an uninterrupted one: every random draw is a function of
(seed, stream, epoch or step), and the epoch's partial metric sums are checkpointed. After
any interruption (a kill -9 included) metrics.jsonl keeps exactly one line per epoch, and
a damaged newest checkpoint falls back to the previous one
(docs/architecture.md#run-directories-resume-and-crash-safety).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxat.config.applicable import applicable_fields
from jaxat.config.validate import FINAL_ATTACKS
from jaxat.errors import UsageError
from jaxat.eval.accuracy import PGDSpec, evaluate_split, make_batch_evaluator, put_split
from jaxat.train import keys, multihost, reporting, sharding
from jaxat.train import overfitting_guard
from jaxat.train.checkpoint import Checkpointer
from jaxat.train.environment import write_environment
from jaxat.train.restore import attach_prerequisites
from jaxat.train.experiment import (Experiment, build_experiment, epoch_permutation_fn,
                                    host_batcher, init_state, put_train_data)
from jaxat.train.state import TrainState, model_fingerprint
from jaxat.train.step import (COUNT, FIRST_NONFINITE, init_sums, is_count_metric, make_train_step,
                              metric_shapes, phase_context)
from jaxat.train.tensorboard_events import EpochEventWriter

# Fields that may differ between a run and its resumption: they change neither what is
# trained nor what is reported (logging, checkpoint retention, the device count: the
# fingerprint does not depend on it; where the training set is kept: both placements train
# the same bits). A section name covers its fields; a dotted name one field.
RESUME_INSENSITIVE = ("log", "checkpoint", "num_devices", "dataset.placement")


def _resume_insensitive(field: str) -> bool:
  return any(field == name or field.startswith(name + ".") for name in RESUME_INSENSITIVE)
# Fields that change only what is reported; a resumption may change them with
# allow_eval_change=True (recorded in config_changes.jsonl), a finished run never.
EVALUATION_ONLY = ("eval",)
CONFIG_CHANGES_FILE = "config_changes.jsonl"


class Preempted(Exception):
  """Raised after a SIGTERM once the checkpoint of the current step is saved."""


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite; the run stops without saving that state."""


class _SigtermFlag:
  """Records SIGTERM instead of dying, so the loop can checkpoint at a step boundary."""

  def __init__(self):
    self.raised = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """The content of config.json: the fields that apply to this run's dataset and model."""
  return applicable_fields(json.loads(config.to_json_best_effort()))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  out: dict[str, Any] = {}
  for key, value in tree.items():
    out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
  return out


def _config_differences(workdir: str, config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """{dotted field: (value in the workdir's config.json, value now)} for every field that
  differs, except the RESUME_INSENSITIVE ones; {} when the workdir holds no run yet."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return {}
  # Pruned too: config.json written before pruning existed still matches on resume.
  previous = _flatten(applicable_fields(reporting.read_json(path)))
  current = _flatten(config_to_dict(config))
  return {k: (previous.get(k), current.get(k)) for k in sorted(set(previous) | set(current))
          if not _resume_insensitive(k) and previous.get(k) != current.get(k)}


def _check_same_run(workdir: str, config: ml_collections.ConfigDict,
                    allow_eval_change: bool = False) -> dict[str, tuple]:
  """Refuses a config that differs from the run already in `workdir` (UsageError listing the
  fields). Evaluation-only differences (eval.*) pass when `allow_eval_change` and the run is
  not finished; they are returned so the caller can record them."""
  differing = _config_differences(workdir, config)
  if not differing:
    return {}
  shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in differing.items())
  finished = os.path.exists(os.path.join(workdir, "results.json"))
  evaluation_only = all(k.split(".")[0] in EVALUATION_ONLY for k in differing)
  if evaluation_only and finished:
    raise UsageError(
        f"workdir {workdir!r} holds a finished run; only evaluation settings differ ({shown}): "
        f"evaluate it with python -m jaxat.evaluate --workdir={workdir} (new files under "
        "eval/, nothing overwritten), or train into a new --workdir")
  if evaluation_only and not allow_eval_change:
    raise UsageError(
        f"workdir {workdir!r} holds a run with other evaluation settings ({shown}); pass "
        "--allow_eval_change to resume with them (recorded in "
        f"{CONFIG_CHANGES_FILE}), or use the original config")
  if not evaluation_only:
    raise UsageError(f"workdir {workdir!r} holds a run with a different config ({shown}); "
                     "use a new --workdir or the original config")
  return differing


def _record_config_change(workdir: str, step: int, differing: dict[str, tuple]) -> None:
  """Appends the accepted evaluation-setting changes of a resumption: config.json keeps the
  settings the run started with, this file says from which step the new ones applied."""
  entry = {"resumed_at_step": step, "changed": {k: list(v) for k, v in differing.items()}}
  with open(os.path.join(workdir, CONFIG_CHANGES_FILE), "a") as f:
    f.write(json.dumps(entry) + "\n")


def _read_results(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, "results.json")
  return reporting.read_json(path) if os.path.exists(path) else None


def _epoch_record(exp: Experiment, epoch: int, step: int, sums: dict, seconds: float,
                  steps_run: int) -> dict[str, Any]:
  count = max(float(sums[COUNT]), 1.0)
  record = {"epoch": epoch, "step": step,
            "lr": float(exp.schedule(max(step - 1, 0)))}
  for name, total in sorted(sums.items()):
    if name in (COUNT, FIRST_NONFINITE):
      continue
    # A count metric's epoch total, as nested lists of whole numbers (step.is_count_metric).
    record[name] = (np.rint(np.asarray(total)).astype(np.int64).tolist() if is_count_metric(name)
                    else float(total) / count)
  record["images_per_sec"] = steps_run * exp.ctx.batch_size / seconds if seconds > 0 and steps_run else None
  # Training seconds of the epoch's steps (compilation and evaluation excluded).
  record["train_seconds"] = seconds if steps_run else None
  return record


class _Evaluators:
  """Compiled evaluators and device-resident splits, built once per run."""

  def __init__(self, exp: Experiment):
    e = exp.config.eval
    self.exp = exp
    batch = exp.config.eval_batch_size
    self.monitor = make_batch_evaluator(exp.model, PGDSpec(e.eps, e.step_size, e.pgd_steps, e.bn_mode),
                                        batch, exp.mesh)
    self.final = make_batch_evaluator(exp.model, PGDSpec(e.eps, e.step_size, 20, e.bn_mode), batch,
                                      exp.mesh)
    monitor_test = exp.test
    if e.num_test_examples:
      monitor_test = type(exp.test)(exp.test.images[:e.num_test_examples], exp.test.labels[:e.num_test_examples])
    self.monitor_test = put_split(monitor_test.images, monitor_test.labels, batch, exp.mesh)
    self.test = put_split(exp.test.images, exp.test.labels, batch, exp.mesh)
    self.validation = (None if exp.validation is None else
                       put_split(exp.validation.images, exp.validation.labels, batch, exp.mesh))
    t = exp.config.train
    self.guard = self.guard_split = None
    if t.overfitting_guard != "off":
      self.guard = make_batch_evaluator(
          exp.model, PGDSpec(e.eps, e.step_size, t.guard_pgd_steps, e.bn_mode), batch, exp.mesh)
      count = min(t.guard_examples, len(exp.train))
      self.guard_split = put_split(exp.train.images[:count], exp.train.labels[:count], batch,
                                   exp.mesh)


def _weights(state: TrainState, which: str):
  if which == "ema":
    return state.ema_params, state.ema_batch_stats
  return state.params, state.batch_stats


def _suite_accuracy(exp: Experiment, params, batch_stats, items: list[str],
                    seed: int) -> dict[str, float]:
  """Test accuracy under the evaluation-suite items (cw20, aa, ...) of eval.final_attacks:
  {'<item>_acc': fraction}, at eval.eps (L-inf) with eval.bn_mode, the suite's default
  settings (AutoAttack's for aa) and the run's seed.

  With several processes each one attacks its own share of the test set (whole eval
  batches, `multihost.batch_shares`) on its own devices, with the per-example draws of the
  whole set (index_offset), and the per-example results are joined on every process;
  process 0 logs the warnings of its share (docs/scaling.md#multi-host-training)."""
  from jaxat.eval import robustness  # Imported on use: most runs report clean/PGD-20 only.
  e = exp.config.eval
  batch = exp.config.eval_batch_size
  if jax.process_count() > 1:
    # The weights are global arrays over every process's devices; the suite's jitted
    # attacks must run on this process's devices alone, so they get a host copy.
    params, batch_stats = multihost.local_copy((params, batch_stats))
  shares = multihost.batch_shares(len(exp.test), batch, jax.process_count())
  start, stop = shares[jax.process_index()]
  correct = np.zeros((len(items), 0), bool)  # a process beyond the last batch attacks nothing
  if stop > start:
    classifier = robustness.jaxat_classifier(exp.model, params, batch_stats,
                                             "eval" if e.bn_mode == "eval" else "batch_stats")
    report = robustness.evaluate_robustness(
        classifier, robustness.as_images(exp.test.images[start:stop]),
        np.asarray(exp.test.labels[start:stop]), attacks=items, eps=float(e.eps),
        batch_size=batch, seed=seed, index_offset=start)
    correct = np.stack([report.correct[item] for item in items])
    if multihost.is_main_process():
      where = ("" if jax.process_count() == 1 else
               f" (process 0's share, test examples {start}..{stop - 1})")
      for warning in report.warnings:
        logging.warning("final evaluation%s: %s", where, warning)
  correct = multihost.gather_shares(correct, shares)  # (items, test examples) on every process
  return {f"{item}_acc": float(flags.mean()) for item, flags in zip(items, correct)}


def _final_report(exp: Experiment, evaluators: _Evaluators, last: TrainState,
                  best: TrainState | None, best_meta: dict | None) -> dict[str, Any]:
  seed = exp.config.seed
  attacks = [a.strip() for a in exp.config.eval.final_attacks.split(",") if a.strip()]
  weight_kinds = ["raw"] + (["ema"] if exp.config.ema.decay > 0 else [])
  suite_items = [a for a in attacks if a not in FINAL_ATTACKS]

  def evaluate(state: TrainState) -> dict[str, dict[str, float]]:
    out = {}
    for kind in weight_kinds:
      params, batch_stats = _weights(state, kind)
      r = evaluate_split(evaluators.final, params, batch_stats, evaluators.test,
                         keys.stream(seed, keys.FINAL_EVAL))
      out[kind] = {"clean_acc": r["clean_acc"]}
      if "pgd20" in attacks:
        out[kind]["pgd20_acc"] = r["pgd_acc"]
      if suite_items:
        out[kind].update(_suite_accuracy(exp, params, batch_stats, suite_items, seed))
    return out

  reported = "ema" if "ema" in weight_kinds else "raw"
  last_eval = evaluate(last)
  e = exp.config.eval
  results: dict[str, Any] = {
      **last_eval[reported],
      "weights": reported,
      "checkpoint": "last",
      "fingerprint": model_fingerprint(last),
      "num_test_examples": evaluators.test.num_examples,
      "eps": e.eps, "eps_255": round(e.eps * 255, 6), "pgd_step_size": e.step_size,
      "pgd_restarts": 1, "pgd_bn_mode": e.bn_mode,
      "last": {"step": int(last.step), **last_eval},
  }
  if best is not None:
    results["best"] = {"step": int(best.step), "epoch": best_meta.get("epoch"),
                       "val_pgd_acc": best_meta.get("best_val_pgd_acc"), **evaluate(best)}
  return results


# A model that puts this share of the monitor images into one class has collapsed (on
# balanced test data a working classifier is far below it; chance is 1 / num_classes).
CONSTANT_PREDICTION_SHARE = 0.9


def _warn_on_constant_predictions(monitor: dict, num_classes: int, epoch: int) -> None:
  """Logs a warning when the model predicts (almost) one class for every test image: the
  symptom of a collapsed run (dead features), which accuracy alone reads as 'near chance'."""
  share = monitor["top_prediction_share"]
  if num_classes > 1 and share >= CONSTANT_PREDICTION_SHARE:
    logging.warning("epoch %d: the model predicts class %d for %.0f%% of the monitor test "
                    "images; training has collapsed (docs/architecture.md#when-a-run-collapses: "
                    "attacks against stale running statistics, or a learning rate too high "
                    "for the model)",
                    epoch, monitor["top_prediction"], 100 * share)


def _probe_overfitting(exp: Experiment, evaluators: _Evaluators, state: TrainState, epoch: int,
                       record: dict, meta: dict) -> bool:
  """The overfitting guard after 0-based `epoch` (module overfitting_guard): adds the probe's
  accuracy (and a collapse mark) to `record`, remembers it in `meta`; True = stop now."""
  t = exp.config.train
  probe = evaluate_split(evaluators.guard, state.params, state.batch_stats, evaluators.guard_split,
                         jax.random.fold_in(keys.stream(exp.config.seed, keys.GUARD), epoch))
  record["guard_train_pgd_acc"] = probe["pgd_acc"]
  train_attack_acc = record.get("adv_acc")
  if train_attack_acc is not None:
    record["guard_attack_gap"] = train_attack_acc - probe["pgd_acc"]
  previous = meta.get("guard_previous_acc")
  meta["guard_previous_acc"] = probe["pgd_acc"]
  rule = overfitting_guard.collapse_rule(previous, probe["pgd_acc"], train_attack_acc,
                                         overfitting_guard.Thresholds(t.guard_drop, t.guard_gap))
  if rule is None:
    return False
  record["overfitting_guard"] = overfitting_guard.COLLAPSE
  record["overfitting_guard_rule"] = rule
  stop = t.overfitting_guard == "stop"
  if rule == overfitting_guard.DROP:
    why = f"fell from {previous:.3f} to {probe['pgd_acc']:.3f}"
  else:
    why = (f"is {probe['pgd_acc']:.3f} while the training attack's accuracy is "
           f"{train_attack_acc:.3f} (gap above train.guard_gap={t.guard_gap})")
  logging.warning("catastrophic overfitting after epoch %d: PGD-%d accuracy on %d training "
                  "images %s%s", epoch + 1, t.guard_pgd_steps, probe["num_examples"], why,
                  "; stopping (train.overfitting_guard=stop)" if stop else "")
  return stop


def _keep_last_good_as_best(checkpointer: Checkpointer, state: TrainState, sums,
                            has_validation: bool) -> None:
  """On a guarded stop: the last saved checkpoint (the epoch before the collapse) becomes
  `best`, unless a validation split already selects `best` (module overfitting_guard)."""
  if has_validation or checkpointer.latest_step() is None:
    return
  good_state, good_sums, good_meta = checkpointer.restore_last(state, sums)
  checkpointer.save_best(int(good_state.step), good_state, good_sums, good_meta)


class _DeviceFeed:
  """placement='device': the replicated training set and the epoch's permutation."""

  def __init__(self, exp: Experiment):
    self.images, self.labels = put_train_data(exp)
    self.permutation_of = epoch_permutation_fn(exp)
    self.spe = exp.ctx.steps_per_epoch
    self._epoch, self._permutation = None, None

  def inputs(self, step: int) -> tuple:
    epoch = step // self.spe
    if self._epoch != epoch:
      self._permutation, self._epoch = self.permutation_of(epoch), epoch
    return self.images, self.labels, self._permutation

  def specs(self) -> tuple:
    return self.images, self.labels, self.permutation_of(0)

  def prefetch(self, step: int) -> None:
    del step  # nothing to prepare: the data is on the devices

  def report(self) -> dict | None:
    return None


class _HostFeed:
  """placement='host': each step's batch built on the host (host_input.HostBatcher), the
  next one while the device computes the current one."""

  def __init__(self, exp: Experiment):
    self.batcher = host_batcher(exp)

  def inputs(self, step: int) -> tuple:
    return self.batcher.inputs(step)

  def specs(self) -> tuple:
    return self.batcher.input_specs()

  def prefetch(self, step: int) -> None:
    self.batcher.prefetch(step)

  def report(self) -> dict:
    """{'rows_read_by_process': [rows per process], 'steps': steps} over this session's
    steps (a collective with several processes: every process calls it)."""
    rows = multihost.from_every_process(np.asarray(self.batcher.rows_read, np.int64))
    logging.info("host input: process %d read %d rows for %d steps", jax.process_index(),
                 self.batcher.rows_read, self.batcher.steps_taken)
    return {"rows_read_by_process": [int(r) for r in rows], "steps": self.batcher.steps_taken}


def _has_checkpoint(workdir: str) -> bool:
  last = os.path.join(workdir, "checkpoints", "last")
  return os.path.isdir(last) and any(entry.isdigit() for entry in os.listdir(last))


def finish_prerequisites(method, config: ml_collections.ConfigDict, workdir: str) -> None:
  """Trains the prerequisite runs `method` declares that are not finished yet (a run with
  results.json is reused; one with a checkpoint resumes), then attaches them all restored.

  A prerequisite without a config (a user-given workdir) is never trained. A run that has
  checkpoints of its own but lost its prerequisite is refused rather than continued with a
  different one.
  """
  for request in method.prerequisites(config, workdir):
    if request.config is None or os.path.exists(os.path.join(request.workdir, "results.json")):
      logging.info("reusing the %s run in %s", request.name, request.workdir)
      continue
    if _has_checkpoint(workdir) and not _has_checkpoint(request.workdir):
      raise FileNotFoundError(
          f"the run in {workdir!r} has checkpoints but its {request.name} run "
          f"{request.workdir!r} is missing; restore it, or point the method at another one")
    logging.info("the %s run in %s is not finished: training it first (%s, %d epochs)",
                 request.name, request.workdir, request.config.method.name,
                 request.config.num_epochs)
    train_and_evaluate(request.config, request.workdir)
  attach_prerequisites(method, config, workdir)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       allow_eval_change: bool = False) -> dict[str, Any]:
  """Trains, checkpoints, evaluates; returns the content of results.json.

  From the first line on, SIGTERM is caught and honoured at the next step boundary (or
  before the final evaluation), so a preemption at any point never loses a finished
  checkpoint and never leaves a half-written one.

  A workdir that already holds a run must be given the same config (UsageError listing the
  differing fields otherwise; `allow_eval_change` admits changed eval.* settings on an
  unfinished run). A finished run (results.json) is not trained or evaluated again: its
  results are returned as they are. config.json is written once, when the run starts.
  """
  with _SigtermFlag() as sigterm:
    return _train_and_evaluate(config, workdir, sigterm, allow_eval_change)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        sigterm: _SigtermFlag, allow_eval_change: bool) -> dict[str, Any]:
  exp = build_experiment(config)   # Every validation error is raised here, before writing.
  eval_changes = _check_same_run(workdir, config, allow_eval_change)
  finished = _read_results(workdir)
  if finished is not None:
    logging.info("the run in %s is finished; returning its results.json", workdir)
    return finished
  # With several processes, process 0 alone writes the run's files; every process takes
  # part in the checkpoints (orbax coordinates them) and in every computation.
  main = multihost.is_main_process()
  os.makedirs(workdir, exist_ok=True)
  config_path = os.path.join(workdir, "config.json")
  if main and not os.path.exists(config_path):
    reporting.write_json(config_path, config_to_dict(config))
  write_environment(workdir)  # environment.json; a resume elsewhere appends a session.
  writer = reporting.MetricsWriter(workdir, enabled=main)
  checkpointer = Checkpointer(workdir, config.checkpoint.keep)
  spe, num_epochs = exp.ctx.steps_per_epoch, exp.ctx.num_epochs
  logging.info("method=%s model=%s dataset=%s train=%d val=%d test=%d steps/epoch=%d devices=%d",
               config.method.name, config.model.name, exp.splits.name, len(exp.train),
               0 if exp.validation is None else len(exp.validation), len(exp.test), spe,
               exp.mesh.size)

  finish_prerequisites(exp.method, config, workdir)
  state = init_state(exp)
  feed = _HostFeed(exp) if exp.placement == "host" else _DeviceFeed(exp)
  state_shardings = sharding.state_sharding(state, exp.mesh, exp.ctx.example_rows)
  # The metric names do not depend on the epoch phase (Method.epoch_phase), so the step
  # that serves every epoch gives them.
  _, step_fn = make_train_step(exp.method, exp.ctx, exp.tx, config, exp.mesh, exp.schedule,
                               state_shardings, placement=exp.placement)
  shapes = metric_shapes(step_fn, state, *feed.specs())
  sums = init_sums(shapes, state.step.sharding)
  meta: dict[str, Any] = {"epoch": 0, "best_val_pgd_acc": None, "best_epoch": None}

  if checkpointer.latest_step() is not None:
    try:
      state, sums, meta = checkpointer.restore_last(state, sums)
    except Exception:
      checkpointer.close()
      raise
    logging.info("resumed from step %d (epoch %d done)", int(state.step), meta["epoch"])
  # Epoch lines past the checkpoint actually restored (every epoch line when there is none
  # yet) come from an attempt killed before its checkpoint was final; they are dropped (and
  # a torn last line with them) so that the rerun leaves exactly one line per epoch.
  writer.truncate_after(meta["epoch"])
  if eval_changes and main:
    _record_config_change(workdir, int(state.step), eval_changes)

  # TensorBoard scalars mirror metrics.jsonl (replayed after a resume's truncation); one
  # writer per run, on process 0.
  events = None
  if jax.process_index() == 0:
    events = EpochEventWriter(workdir)
    for kept_record in writer.read():
      events.write(kept_record)

  evaluators = _Evaluators(exp)
  start_step = int(state.step)
  # One compiled step per epoch phase, compiled when its first epoch comes
  # (docs/architecture.md#epoch-phases); a method without phases has one.
  compiled_steps: dict[Any, Any] = {}

  def compiled_step_for(epoch: int, method_state):
    ctx = phase_context(exp.method, exp.ctx, epoch, method_state)
    if ctx.epoch_phase not in compiled_steps:
      compile_watch = reporting.Stopwatch()
      train_step, _ = make_train_step(exp.method, ctx, exp.tx, config, exp.mesh, exp.schedule,
                                      state_shardings, placement=exp.placement)
      compiled_steps[ctx.epoch_phase] = train_step.lower(state, sums, *feed.specs()).compile()
      phase = "" if ctx.epoch_phase is None else f" for epoch phase {ctx.epoch_phase!r}"
      logging.info("compiled the training step%s in %.1fs", phase, compile_watch.elapsed())
    return compiled_steps[ctx.epoch_phase]

  if start_step < exp.total_steps:
    compiled_step_for(start_step // spe, state.method_state)

  progress = reporting.Progress(config.log.progress if main else "none", exp.total_steps,
                                start_step, config.batch_size)
  stop = multihost.StopAgreement(sigterm)
  run_watch = reporting.Stopwatch()
  step = start_step
  first_epoch = num_epochs if meta.get("guard_stopped_epoch") else step // spe
  for epoch in range(first_epoch, num_epochs):
    compiled_step = compiled_step_for(epoch, state.method_state)
    epoch_watch = reporting.Stopwatch()
    steps_run = 0
    while step < (epoch + 1) * spe:
      state, sums = compiled_step(state, sums, *feed.inputs(step))
      step += 1
      if step < exp.total_steps:
        # Dispatch is asynchronous: the host builds the next batch (placement 'host')
        # while the device computes this step. The batch is a function of the step alone,
        # so a stop here (SIGTERM) loses nothing: the resumed run builds it again.
        feed.prefetch(step)
      steps_run += 1
      progress.advance(epoch + 1)
      if stop.stop_now(step, epoch_end=step == (epoch + 1) * spe):
        checkpointer.save_last(step, state, sums, {**meta, "epoch": epoch})
        progress.close()
        checkpointer.close()
        logging.warning("SIGTERM: saved a checkpoint at step %d; rerun the same command to resume", step)
        raise Preempted(f"preempted at step {step}; checkpoint saved in {workdir}")
    host_sums = jax.device_get(sums)
    seconds = epoch_watch.elapsed()
    if host_sums[FIRST_NONFINITE] >= 0:
      progress.close()
      checkpointer.close()
      raise NonFiniteLossError(
          f"non-finite training loss at step {int(host_sums[FIRST_NONFINITE])} (epoch {epoch + 1}); "
          f"the last good checkpoint is step {checkpointer.latest_step()}")
    record = _epoch_record(exp, epoch + 1, step, host_sums, seconds, steps_run)
    record["fingerprint"] = model_fingerprint(state)
    if (epoch + 1) % config.eval.every_epochs == 0 or epoch + 1 == num_epochs:
      eval_key = jax.random.fold_in(keys.stream(config.seed, keys.EVAL), epoch)
      monitor = evaluate_split(evaluators.monitor, state.params, state.batch_stats,
                               evaluators.monitor_test, eval_key)
      steps_tag = f"pgd{config.eval.pgd_steps}"
      record.update({"test_clean_acc": monitor["clean_acc"], f"test_{steps_tag}_acc": monitor["pgd_acc"],
                     "test_top_prediction_share": monitor["top_prediction_share"]})
      _warn_on_constant_predictions(monitor, exp.ctx.num_classes, epoch + 1)
      if evaluators.validation is not None:
        val = evaluate_split(evaluators.monitor, state.params, state.batch_stats,
                             evaluators.validation,
                             jax.random.fold_in(keys.stream(config.seed, keys.VALIDATION), epoch))
        record.update({"val_clean_acc": val["clean_acc"], f"val_{steps_tag}_acc": val["pgd_acc"]})
        if meta["best_val_pgd_acc"] is None or val["pgd_acc"] > meta["best_val_pgd_acc"]:
          meta.update(best_val_pgd_acc=val["pgd_acc"], best_epoch=epoch + 1)
          checkpointer.save_best(step, state, sums, {**meta, "epoch": epoch + 1})
    guard_stop = evaluators.guard is not None and _probe_overfitting(
        exp, evaluators, state, epoch, record, meta)
    if guard_stop:
      _keep_last_good_as_best(checkpointer, state, sums, evaluators.validation is not None)
      meta["guard_stopped_epoch"] = epoch + 1
    elapsed = run_watch.elapsed()
    done = step - start_step
    seconds_left = elapsed / done * (exp.total_steps - step) if done else None
    writer.write(record)
    if events is not None:
      events.write(record)
    progress.epoch_line(record, seconds_left)
    sums = init_sums(shapes, state.step.sharding)
    meta["epoch"] = epoch + 1
    checkpointer.save_last(step, state, sums, dict(meta))
    if guard_stop:
      break
  progress.close()
  if stop.stop_now(step, epoch_end=True):
    checkpointer.close()
    raise Preempted(f"preempted before the final evaluation; checkpoint of step {step} is in {workdir}")

  best_state, best_meta = None, None
  if checkpointer.best_step() is not None:
    best_state, _, best_meta = checkpointer.restore_best(state, sums)
  results = _final_report(exp, evaluators, state, best_state, best_meta)
  results["seconds"] = run_watch.elapsed()
  host_report = feed.report()
  if host_report is not None:
    results["host_input"] = host_report
  if main:
    reporting.write_json(os.path.join(workdir, "results.json"), results)
  checkpointer.close()
  logging.info("results: %s", {k: v for k, v in results.items() if k.endswith("_acc")})
  return results
