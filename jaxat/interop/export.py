"""Export a trained jaxat run to PyTorch: `export_run(workdir, out_dir, ...)`.

Writes into out_dir:
  model.pt          the PyTorch state_dict (torch.save of {key: tensor})
  model.py          self-contained PyTorch definition; `build_model()` returns the module
  model_info.json   RobustBench-style model_info (model_info.py)
Everything is validated (format, run, checkpoint, PyTorch installed) before anything is
written.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

from jaxat.interop import model_info, torch_keys, torch_layout, torch_source

FORMATS = ("pytorch",)


@dataclasses.dataclass(frozen=True)
class ExportRequest:
  """A validated export: where from, what, and where to."""
  workdir: str
  out_dir: str
  checkpoint: str
  weights: str


def require_torch():
  """The torch module, or a one-line ValueError saying how to install it."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ValueError('PyTorch is not installed; install it with pip install -e ".[torch]"') from None
  return torch


def validate_request(workdir: str | None, fmt: str, out_dir: str | None, checkpoint: str,
                     weights: str | None) -> ExportRequest:
  """Checks the export arguments; raises ValueError naming the field, value and valid choices.

  weights=None means 'ema' when the run kept an EMA of the weights, else 'raw' (as
  jaxat.evaluate).
  """
  from jaxat.train.restore import CHECKPOINTS, WEIGHTS, load_run_config
  if fmt not in FORMATS:
    raise ValueError(f"--format={fmt!r} is invalid; valid choices: {', '.join(FORMATS)}")
  if not workdir:
    raise ValueError("--workdir is required (a run directory written by python -m jaxat.main)")
  if not out_dir:
    raise ValueError("--out is required (the directory to write model.pt, model.py and "
                     "model_info.json into)")
  if checkpoint not in CHECKPOINTS:
    raise ValueError(f"--checkpoint={checkpoint!r} is invalid; valid choices: {', '.join(CHECKPOINTS)}")
  if weights is not None and weights not in WEIGHTS:
    raise ValueError(f"--weights={weights!r} is invalid; valid choices: {', '.join(WEIGHTS)}")
  if not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir!r} does not exist")
  try:
    config = load_run_config(workdir)
  except FileNotFoundError as error:
    raise ValueError(f"--workdir={workdir!r}: {error}") from None
  if not os.path.isdir(os.path.join(workdir, "checkpoints", checkpoint)):
    raise ValueError(f"--workdir={workdir!r} has no {checkpoint!r} checkpoint "
                     f"({os.path.join(workdir, 'checkpoints', checkpoint)} does not exist)")
  if weights is None:
    weights = "ema" if config.ema.decay > 0 else "raw"
  if weights == "ema" and config.ema.decay <= 0:
    raise ValueError(f"--weights='ema' but the run in {workdir!r} trained without EMA; "
                     "valid choices: raw")
  require_torch()
  return ExportRequest(workdir=workdir, out_dir=out_dir, checkpoint=checkpoint, weights=weights)


def _read_json(path: str):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def export_run(request: ExportRequest) -> dict[str, str]:
  """Restores the run's checkpoint and writes model.pt, model.py and model_info.json.

  Returns {'state_dict': path, 'source': path, 'model_info': path}.
  """
  from jaxat.train.restore import load_trained_model
  torch = require_torch()
  trained = load_trained_model(request.workdir, checkpoint=request.checkpoint,
                               weights=request.weights)
  module = trained.model.module
  image_shape = trained.experiment.ctx.image_shape
  variables = {"params": jax.device_get(trained.params),
               "batch_stats": jax.device_get(trained.batch_stats)}
  feature_map = (torch_source.small_cnn_feature_map(module, image_shape)
                 if isinstance(module, torch_source.SmallCNN) else None)
  state_dict = torch_layout.variables_to_state_dict(
      variables, torch_keys.state_dict_entries(module), feature_map)
  config = _read_json(os.path.join(request.workdir, "config.json"))
  info = model_info.build_model_info(
      config, model_info.read_eval_reports(request.workdir),
      _read_json(os.path.join(request.workdir, "results.json")), request.checkpoint,
      request.weights)
  description = (f"Run {os.path.abspath(request.workdir)} ({config['method']['name']}, "
                 f"{config['dataset']['name']}), {request.checkpoint} checkpoint (step "
                 f"{trained.step}), {request.weights} weights.")

  os.makedirs(request.out_dir, exist_ok=True)
  paths = {name: os.path.join(request.out_dir, file) for name, file in
           (("state_dict", "model.pt"), ("source", "model.py"), ("model_info", "model_info.json"))}
  torch.save({key: torch.from_numpy(np.array(value)) for key, value in state_dict.items()},
             paths["state_dict"])
  with open(paths["source"], "w") as f:
    f.write(torch_source.model_source(module, image_shape, description))
  with open(paths["model_info"], "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
  return paths
