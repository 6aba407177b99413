"""Evaluate a trained run: `python -m jaxat.evaluate --workdir=<run>
[--attacks=clean,pgd20,cw20,aa] [--eps=8/255] [--norm=linf|l2] [--n_examples=N]
[--weights=ema|raw] [--checkpoint=last|best] [--seed=S] [--batch_size=B] [--num_buckets=4]
[--bn_mode=eval|batch_stats] [--pgd_step_size=2/255] [--attack_settings=square.n_queries=1000]
[--tag=NAME] [--progress=auto] [--stop_after_seconds=S] [--protocol=auto|standard|adaptive]`.

A PyTorch model instead of a jaxat run: `--torch_checkpoint=FILE --arch=ARCH
[--dataset=cifar10] [--data_dir=DIR] [--normalization=none|dataset] [--activation=relu|silu]`
(jaxat/interop/torch_import.py); --workdir is then the output directory.

Writes `<run>/eval/<tag>.json` (accuracy per item as fractions, the worst case over items,
per-stage accuracies of ensembles, eps as an exact fraction, norm, number of examples,
seed, attack settings, versions, seconds per attack, gradient-masking warnings) and
`<run>/eval/<tag>.npz` (per-example correctness after every item and ensemble stage,
the test indices and labels, and the adversarial examples of every ensemble such as aa).

Resumable: the evaluation state is written atomically to `<run>/eval/<tag>.partial.npz`
after every item and at most every `--checkpoint_seconds` within one; running the same
command again continues from it (a partial file of different settings is ignored with a
warning), and it is deleted when the evaluation is complete.

Attacks (see jaxat/attacks/registry.py): clean, fgsm, pgd<k>[-<restarts>][_es],
cw<k>[-<restarts>][_es], apgd-ce, apgd-dlr, apgd-t, fab-t, square, aa (AutoAttack
standard = apgd-ce+apgd-t+fab-t+square) and custom ensembles a+b+... Each comma item is
evaluated on its own; the model runs in inference mode (running BatchNorm statistics)
unless --bn_mode=batch_stats.

Reverse-attention (ANCRA) runs are evaluated adaptively by default (`--protocol=auto`):
every item runs on the authors' two-pass model (resumable as above), then on the
straight-through gate, on the model gated by each class in turn and on the auxiliary head
that picks the gate (jaxat/eval/ancra_adaptive.py, docs/ancra.md#evaluation); `accuracy`
holds the per-example worst case of the four, the robust accuracy jaxat reports for ANCRA, and
`authors_accuracy` the authors' protocol. `--protocol=standard` gives the authors'
protocol alone; `adaptive` on a model without the gate is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time

from absl import flags, logging

from jaxat.cli_args import QuietCheckpointInfo, one_line, run_entry_point
from jaxat.errors import UsageError, usage_errors

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (written by jaxat.main).")
_ATTACKS = flags.DEFINE_string("attacks", "clean,pgd20,cw20,aa", "Comma list of items.")
_EPS = flags.DEFINE_string("eps", None, "Radius in [0,1] pixel units, e.g. 8/255 or 0.5; "
                           "default: the run's eval.eps for linf, 0.5 for l2.")
_NORM = flags.DEFINE_enum("norm", "linf", ["linf", "l2"], "Threat model.")
_N_EXAMPLES = flags.DEFINE_integer("n_examples", 0, "First N test examples; 0 = all.")
_WEIGHTS = flags.DEFINE_enum("weights", None, ["raw", "ema"],
                             "Weights to evaluate; default ema if the run kept an EMA, else raw.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "last", ["last", "best"], "Checkpoint to restore.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every random draw of the attacks.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Largest attacked batch; 0 = the run's "
                                   "eval_batch_size.")
_NUM_BUCKETS = flags.DEFINE_integer("num_buckets", 4, "Padded batch sizes per attack (batch, /2, "
                                    "/4, ...); 1 = always the full batch (fewest compilations).")
_BN_MODE = flags.DEFINE_enum("bn_mode", "eval", ["eval", "batch_stats"],
                             "BatchNorm mode of the attacked model (eval = running statistics).")
_PGD_STEP_SIZE = flags.DEFINE_string("pgd_step_size", None, "Step of pgd<k>/cw<k>; default eps/4.")
_ATTACK_SETTINGS = flags.DEFINE_string(
    "attack_settings", "", "Overrides of attack settings, comma list of attack.setting=value, "
    "e.g. square.n_queries=1000,apgd-t.n_target_classes=3 (quick sanity runs; the defaults "
    "are AutoAttack's).")
_TAG = flags.DEFINE_string("tag", None, "Output name under <run>/eval/; default from the settings.")
_PROGRESS = flags.DEFINE_enum("progress", "auto", ["auto", "bar", "plain", "none"], "Progress display.")
_PROTOCOL = flags.DEFINE_enum(
    "protocol", "auto", ["auto", "standard", "adaptive"],
    "auto: adaptive for reverse-attention (ANCRA) models, standard otherwise; adaptive adds "
    "the straight-through and label-enumerating attacks and reports the worst case.")
_CHECKPOINT_SECONDS = flags.DEFINE_float("checkpoint_seconds", 60.0,
                                         "Least seconds between partial-state writes within an item.")
_RESTART = flags.DEFINE_bool("restart", False, "Ignore an existing partial evaluation of this tag.")
_STOP_AFTER_SECONDS = flags.DEFINE_float(
    "stop_after_seconds", 0.0, "Stop after this many seconds (at the next chunk boundary), "
    "keeping the partial state, and exit with code 143; 0 = no limit. For wall-time-limited jobs. "
    "An adaptive (ANCRA) evaluation keeps the authors' part only: its adaptive part restarts "
    "on every rerun, so give that part a whole invocation.")
_TORCH_CHECKPOINT = flags.DEFINE_string(
    "torch_checkpoint", None, "Evaluate this PyTorch state_dict file instead of a jaxat run; "
    "--workdir is then where eval/ (and config.json) are written. Needs --arch.")
_ARCH = flags.DEFINE_string(
    "arch", None, "Architecture of --torch_checkpoint: resnet18, preact_resnet18, "
    "preact_resnet18_no_final_bn (either + _input_shortcut), wrn-<depth>-<width> (e.g. "
    "wrn-28-10), small_cnn.")
_ACTIVATION = flags.DEFINE_string("activation", "relu", "With --torch_checkpoint: relu or silu.")
_NORMALIZATION = flags.DEFINE_string(
    "normalization", "none", "With --torch_checkpoint: none (the model takes [0,1] pixels, as "
    "RobustBench's) or dataset (per-channel mean/std of --dataset inside the model).")
_DATASET = flags.DEFINE_string("dataset", "cifar10", "With --torch_checkpoint: test data, a "
                               "preset token (cifar10, cifar100, svhn, cifar10_subset, digits, ...).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "With --torch_checkpoint: dataset.data_dir.")
flags.mark_flags_as_required(["workdir"])

# 128 + SIGTERM, what schedulers expect of a preempted job (as jaxat.main).
STOPPED_EXIT_CODE = 143


class _Stopped(Exception):
  """Raised from the chunk hook to leave the evaluation after its state was saved."""


def parse_attack_settings(text: str) -> dict[str, dict[str, object]]:
  """'square.n_queries=1000,apgd-t.rho=0.5' -> {'square': {'n_queries': 1000}, ...}; values
  are ints, floats, true/false or text (validated by the registry later)."""
  settings: dict[str, dict[str, object]] = {}
  for entry in (part.strip() for part in text.split(",")):
    if not entry:
      continue
    name_setting, separator, value = entry.partition("=")
    attack, dot, setting = name_setting.rpartition(".")
    if not separator or not dot or not attack or not setting:
      raise ValueError(f"--attack_settings entry {entry!r} is not attack.setting=value")
    parsed: object = value
    for convert in (int, float):
      try:
        parsed = convert(value)
        break
      except ValueError:
        continue
    if value.lower() in ("true", "false"):
      parsed = value.lower() == "true"
    settings.setdefault(attack, {})[setting] = parsed
  return settings


def default_tag(items: list[str], norm: str, eps_fraction: str, checkpoint: str, weights: str,
                num_examples: int, seed: int, attack_options: dict) -> str:
  attacks = "-".join(item for item in items if item != "clean") or "clean"
  tag = (f"{attacks}_{norm}_eps{eps_fraction.replace('/', '-')}_{checkpoint}_{weights}"
         f"_n{num_examples}_seed{seed}")
  if attack_options:  # non-default settings never share a file with the defaults
    digest = hashlib.sha1(json.dumps(attack_options, sort_keys=True).encode()).hexdigest()[:8]
    tag += f"_settings{digest}"
  return tag


def _atomic_savez(path: str, arrays: dict) -> None:
  import numpy as np
  tmp = path + ".tmp.npz"  # np.savez appends .npz to names without it
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def main(argv):
  del argv  # run_entry_point refuses positional arguments
  # Imported here so that --help and flag errors do not pay for JAX start-up.
  import numpy as np
  from jaxat.attacks import registry
  from jaxat.cli_args import parse_fraction
  from jaxat.eval import ancra_adaptive, robustness
  from jaxat.eval.progress import EvaluationProgress
  from jaxat.train import reporting
  from jaxat.train.restore import load_run_config, load_trained_model

  # Everything that can be wrong with the flags fails here, before anything compiles.
  with usage_errors():
    items = robustness.parse_items(_ATTACKS.value)
    if _N_EXAMPLES.value < 0:
      raise UsageError(f"--n_examples must be >= 0 (0 = all), got {_N_EXAMPLES.value}")
    if _BATCH_SIZE.value < 0:
      raise UsageError(f"--batch_size must be >= 0 (0 = the run's eval_batch_size), got {_BATCH_SIZE.value}")
    if _NUM_BUCKETS.value < 1:
      raise UsageError(f"--num_buckets must be >= 1, got {_NUM_BUCKETS.value}")
    if _SEED.value < 0:
      raise UsageError(f"--seed must be >= 0, got {_SEED.value}")
    imported = _import_torch_checkpoint() if _TORCH_CHECKPOINT.value else None
    run_config = imported.config if imported else load_run_config(_WORKDIR.value)
    eps = _EPS.value or (float(run_config.eval.eps) if _NORM.value == "linf" else "1/2")
    eps_value, eps_fraction = robustness.parse_eps(eps)
    if not (math.isfinite(eps_value) and 0 < eps_value <= (1 if _NORM.value == "linf" else math.inf)):
      raise UsageError(f"--eps={_EPS.value or eps!r} is invalid: an {_NORM.value} radius must be "
                       + ("in (0, 1] pixel units (8/255 = 0.0314)" if _NORM.value == "linf" else "> 0"))
    weights = "raw" if imported else _WEIGHTS.value or ("ema" if run_config.ema.decay > 0 else "raw")
    checkpoint = "torch" if imported else _CHECKPOINT.value
    batch_size = _BATCH_SIZE.value or int(run_config.eval_batch_size)
    attack_options = parse_attack_settings(_ATTACK_SETTINGS.value)
    if _PGD_STEP_SIZE.value is not None:
      step_size = parse_fraction(_PGD_STEP_SIZE.value)
      pgd_names = {member for item in items[1:] for member in registry.ensemble_members(item)
                   if registry.attack_spec(member).family == "pgd" and member != "fgsm"}
      if not pgd_names:
        raise UsageError("--pgd_step_size given but no pgd<k>/cw<k> attack is evaluated")
      for name in pgd_names:
        attack_options.setdefault(name, {})["step_size"] = step_size
    for name, overrides in attack_options.items():
      registry.attack_spec(name, overrides)  # unknown attacks or settings fail here

    trained = (imported.trained if imported else
               load_trained_model(_WORKDIR.value, checkpoint=checkpoint, weights=weights))
    reverse_attention = ancra_adaptive.is_reverse_attention(trained.model)
    if _PROTOCOL.value == "adaptive" and not reverse_attention:
      raise UsageError(f"--protocol=adaptive applies to reverse-attention (ANCRA) models only; "
                       f"this run's method is {run_config.method.name!r}; valid choices here: "
                       "auto, standard")
    adaptive = reverse_attention and _PROTOCOL.value != "standard"
  test = trained.experiment.test   # the run's test split, dataset.max_test applied
  count = len(test) if _N_EXAMPLES.value == 0 else min(_N_EXAMPLES.value, len(test))
  if _N_EXAMPLES.value > len(test):
    logging.warning("--n_examples=%d but the test split has %d examples; using all",
                    _N_EXAMPLES.value, len(test))
  x, y = robustness.as_images(test.images[:count]), test.labels[:count]
  # The adaptive protocol's first evaluation is the authors' two-pass model (argmax gate).
  model = (dataclasses.replace(trained.model, gate="argmax") if adaptive else trained.model)
  classifier = robustness.jaxat_classifier(model, trained.params, trained.batch_stats,
                                           _BN_MODE.value)

  tag = _TAG.value or default_tag(items, _NORM.value, eps_fraction, checkpoint, weights,
                                  count, _SEED.value, attack_options) + ("_adaptive" if adaptive else "")
  eval_dir = os.path.join(_WORKDIR.value, "eval")
  os.makedirs(eval_dir, exist_ok=True)
  if imported:  # The workdir of an imported model says what was evaluated, at which eps.
    if _NORM.value == "linf":
      run_config.eval.eps = robustness.parse_eps(eps)[0]
    reporting.write_json(os.path.join(_WORKDIR.value, "config.json"),
                         json.loads(run_config.to_json_best_effort()))
  json_path, npz_path = (os.path.join(eval_dir, f"{tag}.{ext}") for ext in ("json", "npz"))
  partial_path = os.path.join(eval_dir, f"{tag}.partial.npz")
  settings = {"items": items, "eps": eps_fraction, "norm": _NORM.value, "num_examples": count,
              "seed": _SEED.value, "weights": weights, "checkpoint": checkpoint,
              "step": trained.step, "bn_mode": _BN_MODE.value, "batch_size": batch_size,
              "num_buckets": _NUM_BUCKETS.value,
              "attack_options": attack_options, "protocol": "adaptive" if adaptive else "standard"}

  state = robustness.EvaluationState()
  if os.path.exists(partial_path) and not _RESTART.value:
    try:
      with np.load(partial_path) as saved:
        if str(saved["settings"]) == json.dumps(settings, sort_keys=True):
          state = robustness.EvaluationState.from_arrays(saved, x)
          logging.info("continuing the partial evaluation in %s (finished: %s)", partial_path,
                       ", ".join(state.finished) or "none")
        else:
          logging.warning("ignoring %s: it was written with different settings", partial_path)
    except Exception as error:   # truncated or foreign file: keep it aside, start over
      aside = reporting.set_aside(partial_path)
      state = robustness.EvaluationState()
      logging.warning("%s is unreadable (%s: %s); moved it to %s and starting this evaluation "
                      "over", partial_path, type(error).__name__, one_line(str(error)), aside)

  progress = EvaluationProgress(_PROGRESS.value)
  last_write = [time.monotonic()]
  invocation_start = time.monotonic()
  terminated = []
  signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))

  def save(current):
    arrays = current.to_arrays(x)
    arrays["settings"] = np.array(json.dumps(settings, sort_keys=True))
    _atomic_savez(partial_path, arrays)
    last_write[0] = time.monotonic()

  def stop_reason() -> str | None:
    if terminated:
      return "SIGTERM"
    if (_STOP_AFTER_SECONDS.value > 0
        and time.monotonic() - invocation_start >= _STOP_AFTER_SECONDS.value):
      return f"--stop_after_seconds={_STOP_AFTER_SECONDS.value}"
    return None

  def on_chunk(item, event, current):
    progress.show(item, event)
    reason = stop_reason()
    if reason or time.monotonic() - last_write[0] >= _CHECKPOINT_SECONDS.value:
      save(current)
    if reason:
      raise _Stopped(reason)

  def on_adaptive_chunk(item, event, current):
    # The adaptive part keeps no partial state (a rerun starts it over after the saved
    # authors' part), so a stop only has to end it between chunks rather than after all of
    # its sub-evaluations (13 AutoAttack runs for aa on 10 classes).
    reason = stop_reason()
    if reason:
      raise _Stopped(reason)

  def on_item_done(item, current):
    progress.close()
    save(current)

  started = time.perf_counter()
  try:
    report = robustness.evaluate_robustness(
        classifier, x, y, attacks=items, eps=eps,
        norm=_NORM.value, batch_size=batch_size, num_buckets=_NUM_BUCKETS.value, seed=_SEED.value,
        attack_options=attack_options,
        state=state, hooks=robustness.EvaluationHooks(on_chunk, on_item_done))
    progress.close()
    payload = report.to_json()
    arrays = report.arrays()
    if adaptive:
      payload.update(_adaptive_results(trained, x, y, report, ancra_adaptive.AncraEvalSettings(
          attacks=",".join(items), eps=eps, norm=_NORM.value, batch_size=batch_size,
          num_buckets=_NUM_BUCKETS.value, seed=_SEED.value, attack_options=attack_options,
          bn_mode=_BN_MODE.value), arrays, robustness.EvaluationHooks(on_adaptive_chunk)))
  except _Stopped as stopped:
    progress.close()
    logging.warning("stopped (%s); the partial evaluation is in %s: run the same command "
                    "again to continue", stopped, partial_path)
    sys.exit(STOPPED_EXIT_CODE)
  if not adaptive:
    payload["protocol"] = "standard"
  payload.update({
      "tag": tag, "workdir": os.path.abspath(_WORKDIR.value), "checkpoint": checkpoint,
      "weights": weights, "step": trained.step, "bn_mode": _BN_MODE.value,
      "dataset": run_config.dataset.name, "model": run_config.model.name,
      "method": run_config.method.name, "command": " ".join(sys.argv),
      "seconds_total_this_invocation": time.perf_counter() - started,
  })
  if imported:
    payload.update({"torch_checkpoint": os.path.abspath(_TORCH_CHECKPOINT.value),
                    "arch": _ARCH.value, "module_overrides": imported.module_overrides})
  arrays.update({"indices": np.arange(count), "labels": y})
  _atomic_savez(npz_path, arrays)
  reporting.write_json(json_path, payload)
  if os.path.exists(partial_path):
    os.remove(partial_path)
  summary = ", ".join(f"{k}={v:.4f}" for k, v in payload["accuracy"].items())
  if adaptive:
    summary += " (adaptive; authors' protocol: " + ", ".join(
        f"{k}={v:.4f}" for k, v in report.accuracy.items() if k != "clean") + ")"
  print(f"{tag}: {summary}; worst case {payload['worst_case_accuracy']:.4f} ({count} examples, eps "
        f"{eps_fraction} {_NORM.value}, {weights} weights); written to {json_path}")
  for warning in payload["warnings"]:
    print(f"WARNING: {warning}")


def _adaptive_results(trained, x, y, authors, settings, arrays, hooks) -> dict:
  """The payload fields of the adaptive protocol (module docstring) after the authors'
  report `authors`; adds the adaptive per-example correctness to `arrays`."""
  import numpy as np
  from jaxat.eval import ancra_adaptive
  ancra = ancra_adaptive.adaptive_from_authors(trained.model, trained.params, trained.batch_stats,
                                               x, y, authors, settings, hooks)
  adaptive = ancra.correct["adaptive"]
  for item, correct in adaptive.items():
    arrays[f"adaptive/{item}"] = correct
  worst = np.logical_and.reduce([authors.correct["clean"], *adaptive.values()])
  return {"protocol": "adaptive",
          "accuracy": {"clean": authors.accuracy["clean"], **ancra.accuracy["adaptive"]},
          "authors_accuracy": authors.accuracy, "worst_case_accuracy": float(worst.mean()),
          "authors_worst_case_accuracy": authors.worst_case,
          "ancra": {"accuracy": ancra.accuracy, "warnings": ancra.warnings},
          "warnings": [f"{name}: {w}" for name, ws in ancra.warnings.items() for w in ws]}


def _import_torch_checkpoint():
  """The PyTorch checkpoint converted to jaxat; a bad flag or file exits with one line."""
  from jaxat.interop import torch_import

  def checked_import():
    if _ARCH.value is None:
      raise ValueError("--torch_checkpoint needs --arch; valid choices: "
                       + ", ".join(torch_import.ARCH_CHOICES))
    if _ACTIVATION.value not in ("relu", "silu"):
      raise ValueError(f"--activation={_ACTIVATION.value!r} is invalid; valid choices: relu, silu")
    return torch_import.import_checkpoint(_TORCH_CHECKPOINT.value, _ARCH.value, _ACTIVATION.value,
                                          _NORMALIZATION.value, _DATASET.value, _DATA_DIR.value)

  with usage_errors():
    return checked_import()


def run() -> None:
  logging.get_absl_handler().addFilter(QuietCheckpointInfo())
  run_entry_point(main)


if __name__ == "__main__":
  run()
