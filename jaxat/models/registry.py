"""Builds the classifier named by a model config; the only entry point the trainer uses."""

from numbers import Integral
from typing import Any, Sequence

from absl import logging
from flax import linen as nn
import jax
import jax.numpy as jnp

from jaxat.models.activations import ACTIVATION_NAMES
from jaxat.models.input_normalization import check_normalization_stats
from jaxat.models.preact_resnet import PreActResNet18
from jaxat.models.resnet import ResNet18
from jaxat.models.small_cnn import SmallCNN
from jaxat.models.wide_resnet import WideResNet, wide_resnet_blocks_per_group

MODEL_NAMES = ('small_cnn', 'resnet18', 'preact_resnet18', 'wide_resnet')
NORMALIZATION_NAMES = ('dataset', 'none')
# Compute dtype of the classifier (docs/mixed_precision.md); 'auto' is bfloat16 on TPU and
# float32 on every other backend.
MODEL_DTYPES = ('float32', 'bfloat16', 'auto')
# What a model config without `dtype` (a config.json written before the field) means:
# 'auto', i.e. float32 everywhere but on TPU (docs/mixed_precision.md#older-runs).
MODEL_DTYPE_IF_ABSENT = 'auto'
_JNP_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# The widely reported configurations; any depth 6n + 4 with width >= 1 is also built.
NAMED_WIDE_RESNETS = ((28, 10), (34, 10), (34, 20), (70, 16))


def _is_int(value: Any) -> bool:
  return isinstance(value, Integral) and not isinstance(value, bool)


def _require_bool(field: str, value: Any) -> None:
  if not isinstance(value, bool):
    raise ValueError(f'model.{field}={value!r} is invalid; valid choices: (True, False).')


def _require_choice(field: str, value: Any, choices: Sequence[str]) -> None:
  if value not in choices:
    raise ValueError(f'model.{field}={value!r} is invalid; valid choices: {tuple(choices)}.')


def model_dtype_name(cfg) -> str:
  """`cfg.dtype` as configured (one of MODEL_DTYPES once validated); MODEL_DTYPE_IF_ABSENT for
  a config without the field."""
  return cfg.get('dtype', MODEL_DTYPE_IF_ABSENT) if hasattr(cfg, 'get') else getattr(
      cfg, 'dtype', MODEL_DTYPE_IF_ABSENT)


def resolve_model_dtype(name: str, backend: str | None = None) -> str:
  """'float32' or 'bfloat16' for a MODEL_DTYPES name; 'auto' is 'bfloat16' when `backend`
  (default: `jax.default_backend()`) is 'tpu', else 'float32'."""
  _require_choice('dtype', name, MODEL_DTYPES)
  if name != 'auto':
    return name
  backend = jax.default_backend() if backend is None else backend
  return 'bfloat16' if backend == 'tpu' else 'float32'


def validate_model_config(cfg) -> None:
  """Raises ValueError naming the bad value and the valid choices, before compilation.

  Checks `name`, `activation`, `normalization`, `dtype`, and the fields the chosen model uses:
  `final_bn` (preact_resnet18), `depth`/`width` (wide_resnet), `channels`/`batch_norm`
  (small_cnn). Fields of other models are ignored.
  """
  _require_choice('name', cfg.name, MODEL_NAMES)
  _require_choice('activation', cfg.activation, ACTIVATION_NAMES)
  _require_choice('normalization', cfg.normalization, NORMALIZATION_NAMES)
  _require_choice('dtype', model_dtype_name(cfg), MODEL_DTYPES)
  if cfg.name == 'preact_resnet18':
    _require_bool('final_bn', cfg.final_bn)
  elif cfg.name == 'wide_resnet':
    if not _is_int(cfg.depth):
      raise ValueError(f'model.depth={cfg.depth!r} must be an integer 6n + 4; named '
                       f'(depth, width) choices: {NAMED_WIDE_RESNETS}.')
    try:
      wide_resnet_blocks_per_group(cfg.depth)
    except ValueError as error:
      raise ValueError(f'model.depth={cfg.depth!r}: {error} Named (depth, width) '
                       f'choices: {NAMED_WIDE_RESNETS}.') from None
    if not _is_int(cfg.width) or cfg.width < 1:
      raise ValueError(f'model.width={cfg.width!r} must be an integer >= 1; named '
                       f'(depth, width) choices: {NAMED_WIDE_RESNETS}.')
  elif cfg.name == 'small_cnn':
    channels = cfg.channels
    if (not isinstance(channels, (tuple, list)) or len(channels) != 2
        or not all(_is_int(c) and c >= 1 for c in channels)):
      raise ValueError(f'model.channels={channels!r} is invalid; valid: two positive '
                       f'integers (conv1, conv2), e.g. (16, 32).')
    _require_bool('batch_norm', cfg.batch_norm)


def create_model(cfg, num_classes: int, mean: tuple, std: tuple) -> nn.Module:
  """Returns the configured classifier (not yet initialised).

  The module maps (B, H, W, C) float32 pixels in [0, 1] to float32 (logits (B, num_classes),
  features (B, D)) via `model.apply(variables, x, train=...)`. It computes in the dtype
  `cfg.dtype` resolves to (resolve_model_dtype, here and once per build; logged at INFO and
  readable as `module.dtype`), with float32 parameters and BatchNorm statistics.

  Args:
    cfg: model ConfigDict (see validate_model_config).
    num_classes: number of logits, >= 1.
    mean, std: the dataset's per-channel statistics in [0, 1] pixel units; used when
      cfg.normalization == 'dataset', replaced by the identity when 'none'.
  """
  validate_model_config(cfg)
  if not _is_int(num_classes) or num_classes < 1:
    raise ValueError(f'num_classes={num_classes!r} is invalid; must be an integer >= 1.')
  mean = tuple(float(m) for m in mean)
  std = tuple(float(s) for s in std)
  check_normalization_stats(mean, std)
  if cfg.normalization == 'none':
    mean, std = (0.0,) * len(mean), (1.0,) * len(std)
  configured = model_dtype_name(cfg)
  resolved = resolve_model_dtype(configured)
  logging.info('model.dtype=%s: the classifier computes in %s (backend %s)', configured,
               resolved, jax.default_backend())
  common = dict(num_classes=int(num_classes), activation=cfg.activation,
                mean=mean, std=std, dtype=_JNP_DTYPES[resolved])
  if cfg.name == 'small_cnn':
    return SmallCNN(channels=tuple(int(c) for c in cfg.channels),
                    batch_norm=cfg.batch_norm, **common)
  if cfg.name == 'resnet18':
    return ResNet18(**common)
  if cfg.name == 'preact_resnet18':
    return PreActResNet18(final_bn=cfg.final_bn, **common)
  return WideResNet(depth=int(cfg.depth), width=int(cfg.width), **common)
