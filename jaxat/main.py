"""Train a classifier: `python -m jaxat.main --config=configs/<name>.py[:<args>] [--workdir=DIR]
[--config.<field>=<value> ...]`.

`<args>` is a comma list of presets, e.g. `digits`, `cifar10`, `smoke` (see
jaxat/config/presets.py). Overrides accept k/255 fractions (`--config.method.attack.eps=8/255`).
Without --workdir the run goes to runs/<config name>[_<args>].
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from jaxat.cli_args import (QuietCheckpointInfo, config_argument, exit_at_once,
                             rewrite_fraction_overrides, run_entry_point)
from jaxat.errors import RunStateError, UsageError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file path[:args].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (created; resumed if it holds a checkpoint).")
_ALLOW_EVAL_CHANGE = flags.DEFINE_bool(
    "allow_eval_change", False,
    "Resume an unfinished run with changed eval.* settings (recorded in config_changes.jsonl).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "Multi-host: HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "Multi-host: this process's id in [0, num_processes).")
_DISTRIBUTED_AUTO = flags.DEFINE_bool("distributed_auto", False,
                                      "Multi-host on a TPU VM pod: jax.distributed detects everything.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout_seconds", 100,
    "Multi-host: seconds without a heartbeat after which a process is taken for dead and "
    "every other process stops (JAX's default is 100).")
flags.mark_flags_as_required(["config"])

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect of a preempted job.


def default_workdir(config_arg: str) -> str:
  path, _, preset = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  suffix = "_" + preset.replace(",", "_") if preset else ""
  return os.path.join("runs", name + suffix)


def main(argv):
  del argv  # run_entry_point refuses positional arguments
  # Imported here so that --help and flag errors do not pay for JAX start-up.
  from jaxat.train import distributed
  setup = distributed.resolve_setup(
      distributed.DistributedFlags(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                   _DISTRIBUTED_AUTO.value, _HEARTBEAT_TIMEOUT.value), os.environ)
  # Process 0 logs the run; the others speak only to warn (e.g. of a SIGTERM). Set before
  # initialising, which logs too (a TPU pod's process id is known only after it).
  if setup.process_id:
    logging.set_verbosity(logging.WARNING)
  # Before anything touches a device (docs/scaling.md#multi-host-training).
  from jaxat.train import multihost
  multihost.initialize(setup)
  main_process = multihost.is_main_process()
  if not main_process:
    logging.set_verbosity(logging.WARNING)
  from jaxat.train.train import Preempted, train_and_evaluate

  workdir = _WORKDIR.value or default_workdir(config_argument(sys.argv) or "config")
  logging.info("workdir: %s", workdir)
  try:
    results = train_and_evaluate(_CONFIG.value, workdir, _ALLOW_EVAL_CHANGE.value)
  except Preempted as preempted:  # every process agreed on it (multihost.StopAgreement)
    logging.warning("%s", preempted)
    sys.exit(PREEMPTED_EXIT_CODE)
  except Exception as error:  # pylint: disable=broad-except
    # Possibly this process's failure alone: the others must not wait for it forever.
    import jax  # pylint: disable=import-outside-toplevel
    if jax.process_count() > 1:
      # A user error is every process's: they leave together, or process 0's exit would
      # abort the ones still on their way to it (docs/scaling.md#multi-host-training).
      user_error = isinstance(error, (UsageError, RunStateError))
      exit_at_once(error, jax.process_index(), jax.process_count(),
                   before_exit=multihost.leave_together if user_error else None)
    raise
  if not main_process:
    return
  summary = ", ".join(f"{k}={v:.4f}" for k, v in results.items() if k.endswith("_acc"))
  print(f"results ({results['weights']} weights, {results['num_test_examples']} test examples): "
        f"{summary}; fingerprint {results['fingerprint']}; written to {os.path.join(workdir, 'results.json')}")


def run() -> None:
  logging.get_absl_handler().addFilter(QuietCheckpointInfo())
  run_entry_point(main, rewrite_fraction_overrides)


if __name__ == "__main__":
  run()
