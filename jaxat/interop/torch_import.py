"""Evaluate a PyTorch checkpoint with jaxat: state_dict file + architecture -> jaxat model.

Architectures (`--arch`) and the key layouts they read (torch_keys.py):
  resnet18                     kuangliu / RobustBench ResNet-18
  preact_resnet18              locuslab/robust_overfitting, AWP (final BN `bn`); RobustBench's
                               PreActResNet(bn_before_fc=True) with PreActBlockV2 or
                               out_shortcut=True
  preact_resnet18_no_final_bn  kuangliu PreAct ResNet-18
  ..._input_shortcut           either PreAct layout whose projection shortcut reads the block
                               input instead of the pre-activated one: RobustBench's
                               PreActBlock with its default out_shortcut=False (Wong2020Fast,
                               Andriushchenko2020Understanding); same keys, other logits
  wrn-<depth>-<width>          TRADES / RobustBench WideResNet (e.g. wrn-28-10, wrn-34-10)
  small_cnn                    jaxat's own export (channels and BatchNorm read from the file)
The file may be a bare state_dict or a dict holding it under 'state_dict',
'model_state_dict', 'model' or 'net'; a DataParallel 'module.' prefix is removed.
RobustBench's normalisation buffers `mu` and `sigma` ((1, C, 1, 1), in [0, 1] pixel units)
become the jaxat model's per-channel mean and std.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import numpy as np

from jaxat.interop import torch_keys, torch_layout, torch_source

ARCH_CHOICES = ("resnet18", "preact_resnet18", "preact_resnet18_no_final_bn",
                "preact_resnet18_input_shortcut", "preact_resnet18_no_final_bn_input_shortcut",
                "wrn-<depth>-<width> (e.g. wrn-28-10, wrn-34-10, wrn-70-16)", "small_cnn")
_INPUT_SHORTCUT = "_input_shortcut"
_NORMALIZATION_BUFFERS = ("mu", "sigma")
NORMALIZATIONS = ("none", "dataset")
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net")
# TRADES' WideResNet may carry an unused second first block.
_IGNORED_PREFIXES = ("sub_block1.",)
_DENSE_NAMES = {"resnet18": "linear", "preact_resnet18": "linear", "wide_resnet": "fc",
                "small_cnn": "dense"}


def parse_arch(arch: str) -> dict[str, Any]:
  """'wrn-34-10' -> {'name': 'wide_resnet', 'depth': 34, 'width': 10}; ValueError naming the
  valid choices otherwise. PreAct names ending in _input_shortcut add
  {'shortcut_input': 'input'} (a module attribute, not a config field)."""
  if arch and arch.startswith("preact_resnet18") and arch.endswith(_INPUT_SHORTCUT):
    return {**parse_arch(arch[:-len(_INPUT_SHORTCUT)]), "shortcut_input": "input"}
  if arch == "resnet18":
    return {"name": "resnet18"}
  if arch == "preact_resnet18":
    return {"name": "preact_resnet18", "final_bn": True}
  if arch == "preact_resnet18_no_final_bn":
    return {"name": "preact_resnet18", "final_bn": False}
  if arch == "small_cnn":
    return {"name": "small_cnn"}
  match = re.fullmatch(r"wrn-(\d+)-(\d+)", arch or "")
  if match and (int(match[1]) - 4) % 6 == 0 and int(match[1]) >= 10 and int(match[2]) >= 1:
    return {"name": "wide_resnet", "depth": int(match[1]), "width": int(match[2])}
  raise ValueError(f"--arch={arch!r} is invalid; valid choices: {', '.join(ARCH_CHOICES)} "
                   "(WideResNet depth 6n+4, width >= 1)")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """{key: float/int numpy array} of a PyTorch checkpoint file (loaded on the CPU, tensors
  only: torch.load(weights_only=True))."""
  from jaxat.interop.export import require_torch
  torch = require_torch()
  if not path or not os.path.isfile(path):
    raise ValueError(f"--torch_checkpoint={path!r} does not exist")
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # noqa: BLE001  (any unreadable file is a user error here)
    raise ValueError(f"--torch_checkpoint={path!r} is not a readable PyTorch file: "
                     f"{type(error).__name__}: {str(error).splitlines()[0]}") from None
  for key in _CONTAINER_KEYS:
    if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
      loaded = loaded[key]
      break
  if not isinstance(loaded, dict) or not all(hasattr(v, "shape") for v in loaded.values()):
    raise ValueError(f"--torch_checkpoint={path!r} holds no state_dict (a dict of tensors, "
                     f"possibly under one of {', '.join(_CONTAINER_KEYS)})")
  return {(key[len("module."):] if key.startswith("module.") else key): value.detach().cpu().numpy()
          for key, value in loaded.items()}


def small_cnn_fields(state_dict: dict[str, np.ndarray]) -> dict[str, Any]:
  """channels and batch_norm of a jaxat small CNN, read from its exported state_dict."""
  if "conv1.weight" not in state_dict or "conv2.weight" not in state_dict:
    raise ValueError("--arch='small_cnn' but the state_dict has no conv1.weight/conv2.weight")
  return {"channels": (int(state_dict["conv1.weight"].shape[0]),
                       int(state_dict["conv2.weight"].shape[0])),
          "batch_norm": "bn1.weight" in state_dict}


def pop_normalization(state_dict: dict[str, np.ndarray]) -> dict[str, tuple[float, ...]]:
  """Removes RobustBench's `mu`/`sigma` buffers from the state_dict and returns them as
  {'mean': (C,), 'std': (C,)}; {} when the model has none."""
  present = [name for name in _NORMALIZATION_BUFFERS if name in state_dict]
  if not present:
    return {}
  if len(present) != 2:
    raise ValueError(f"the state_dict has {present[0]!r} but not its partner; normalisation "
                     f"buffers come as the pair {_NORMALIZATION_BUFFERS}")
  mean, std = (tuple(float(v) for v in np.ravel(state_dict.pop(name))) for name in _NORMALIZATION_BUFFERS)
  return {"mean": mean, "std": std}


def imported_config(model_fields: dict[str, Any], activation: str, normalization: str,
                    dataset: str, data_dir: str):
  """A locked jaxat config for evaluating the imported model: the data set preset's data
  and eval defaults, the architecture's model fields, standard training (never run)."""
  from jaxat.config import base, presets
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"--normalization={normalization!r} is invalid; valid choices: "
                     f"{', '.join(NORMALIZATIONS)}")
  if dataset not in presets.DATASET_TOKENS:
    raise ValueError(f"--dataset={dataset!r} is invalid; valid choices: "
                     f"{', '.join(presets.DATASET_TOKENS)}")
  config = base.base_config("standard")
  presets.apply_dataset(config, dataset)
  if data_dir:
    config.dataset.data_dir = data_dir
  config.model.update({**model_fields, "activation": activation, "normalization": normalization})
  config.lock()
  return config


@dataclasses.dataclass
class ImportedModel:
  """config: what config.json records; trained: the model ready for evaluation
  (jaxat.train.restore.TrainedModel with state None and step 0); module_overrides: module
  attributes outside the config (shortcut_input, mean/std from mu/sigma buffers)."""
  config: Any
  trained: Any
  module_overrides: dict[str, Any]


def import_checkpoint(path: str, arch: str, activation: str = "relu", normalization: str = "none",
                      dataset: str = "cifar10", data_dir: str = "") -> ImportedModel:
  """Reads, checks and converts a PyTorch checkpoint; every error is a ValueError naming the
  flag, the value and the valid choices (or the mismatching keys and shapes)."""
  import jax
  import jax.numpy as jnp
  from jaxat.models.forward import ModelFn
  from jaxat.train.experiment import build_experiment
  from jaxat.train.restore import TrainedModel

  model_fields = parse_arch(arch)
  module_overrides = {"shortcut_input": model_fields.pop("shortcut_input")} if (
      "shortcut_input" in model_fields) else {}
  state_dict = read_state_dict(path)
  buffers = pop_normalization(state_dict)
  if buffers and normalization != "none":
    raise ValueError(f"--normalization={normalization!r} but the checkpoint normalises its "
                     f"inputs itself (mu={buffers['mean']}, sigma={buffers['std']}); valid "
                     "choice here: none")
  module_overrides.update(buffers)
  if model_fields["name"] == "small_cnn":
    model_fields.update(small_cnn_fields(state_dict))
  config = imported_config(model_fields, activation, normalization, dataset, data_dir)
  try:
    experiment = build_experiment(config)
  except FileNotFoundError as error:
    raise ValueError(f"--dataset={dataset!r}: {error}") from None
  module = experiment.model.module.clone(**module_overrides)
  experiment.model = ModelFn(module)
  image_shape = experiment.ctx.image_shape
  dense = _DENSE_NAMES[model_fields["name"]]
  if f"{dense}.weight" in state_dict and f"{dense}.bias" not in state_dict:
    # RobustBench's WideResNet(bias_last=False): a zero bias is the same classifier.
    state_dict[f"{dense}.bias"] = np.zeros(state_dict[f"{dense}.weight"].shape[0], np.float32)
  like = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0),
                                            jnp.zeros((1,) + image_shape), train=False))
  feature_map = (torch_source.small_cnn_feature_map(module, image_shape)
                 if model_fields["name"] == "small_cnn" else None)
  try:
    variables = torch_layout.state_dict_to_variables(
        state_dict, torch_keys.state_dict_entries(module), like, feature_map, _IGNORED_PREFIXES)
  except torch_layout.StateDictMismatch as error:
    raise ValueError(f"--torch_checkpoint={path!r} does not fit --arch={arch!r} "
                     f"({experiment.splits.num_classes} classes of --dataset={dataset!r}, "
                     f"input {image_shape}): {error}") from None
  trained = TrainedModel(config=config, experiment=experiment, model=experiment.model,
                         params=jax.tree.map(jnp.asarray, variables["params"]),
                         batch_stats=jax.tree.map(jnp.asarray, variables.get("batch_stats", {})),
                         state=None, step=0)
  return ImportedModel(config=config, trained=trained, module_overrides=module_overrides)
