"""Export a trained run: `python -m jaxat.export --workdir=RUN --format=pytorch --out=DIR
[--checkpoint=last|best] [--weights=raw|ema]`.

Writes DIR/model.pt (PyTorch state_dict, official repositories' key layout), DIR/model.py
(self-contained PyTorch definition: `build_model()`; NCHW input in [0,1], normalisation
inside forward) and DIR/model_info.json (RobustBench-style, from config.json and eval/).
Bad arguments fail with one line naming the field, the value and the valid choices, before
anything is written.
"""

from __future__ import annotations

from absl import flags, logging

from jaxat.cli_args import QuietCheckpointInfo, run_entry_point
from jaxat.errors import usage_errors

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (written by jaxat.main).")
_FORMAT = flags.DEFINE_string("format", "pytorch", "Export format; valid choices: pytorch.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "last", "Checkpoint: last or best.")
_WEIGHTS = flags.DEFINE_string("weights", None, "raw or ema; default ema if the run kept one.")


def main(argv):
  del argv  # run_entry_point refuses positional arguments
  from jaxat.interop import export  # Imported here: --help does not pay for JAX start-up.
  with usage_errors():
    request = export.validate_request(_WORKDIR.value, _FORMAT.value, _OUT.value,
                                      _CHECKPOINT.value, _WEIGHTS.value)
  paths = export.export_run(request)
  print("exported " + ", ".join(paths.values()))


def run() -> None:
  logging.get_absl_handler().addFilter(QuietCheckpointInfo())
  run_entry_point(main)


if __name__ == "__main__":
  run()
