"""The PyTorch state_dict key of every jaxat variable, per model family.

The PyTorch side uses the key layouts of the official repositories (and RobustBench's
model zoo), so an exported state_dict loads into their model classes and theirs load here:
  ResNet-18         kuangliu/pytorch-cifar: conv1, bn1, layer{1-4}.{0,1}.{conv1,bn1,conv2,bn2,
                    shortcut.0 (conv), shortcut.1 (BN)}, linear
  PreAct ResNet-18  locuslab/robust_overfitting (final BN `bn`) or kuangliu (no final BN):
                    conv1, layer{1-4}.{0,1}.{bn1,conv1,bn2,conv2,shortcut.0}, [bn], linear
  WideResNet        TRADES / RobustBench: conv1, block{1-3}.layer.{i}.{bn1,conv1,bn2,conv2,
                    convShortcut}, bn1 (final), fc
  small CNN         jaxat's own: conv1, [bn1], conv2, [bn2], dense
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

from flax import linen as nn

from jaxat.models.preact_resnet import PreActResNet18
from jaxat.models.resnet import ResNet18
from jaxat.models.small_cnn import SmallCNN
from jaxat.models.wide_resnet import WideResNet, wide_resnet_blocks_per_group

# Variable kinds; torch_layout.py converts each kind between the two layouts.
CONV_KERNEL = "conv_kernel"      # flax (kh, kw, in, out)  <-> torch (out, in, kh, kw)
DENSE_KERNEL = "dense_kernel"    # flax (in, out)          <-> torch (out, in)
FLATTEN_DENSE_KERNEL = "flatten_dense_kernel"  # dense after an NHWC flatten (small CNN)
VECTOR = "vector"                # biases, BN scale/bias/mean/var: same (C,) in both
BN_COUNT = "bn_count"            # torch-only num_batches_tracked (no jaxat counterpart)

_STAGES_RESNET18 = ((64, 1), (128, 2), (256, 2), (512, 2))


@dataclasses.dataclass(frozen=True)
class Entry:
  """One state_dict key and where its array lives in the jaxat variables.

  collection: 'params' or 'batch_stats' (None for BN_COUNT); path: the nested dict keys
  inside that collection, e.g. ('layer1_0', 'conv1', 'kernel').
  """
  torch_key: str
  collection: str | None
  path: tuple[str, ...]
  kind: str


def _conv(torch_name: str, flax_path: tuple[str, ...], bias: bool = False) -> Iterator[Entry]:
  yield Entry(f"{torch_name}.weight", "params", flax_path + ("kernel",), CONV_KERNEL)
  if bias:
    yield Entry(f"{torch_name}.bias", "params", flax_path + ("bias",), VECTOR)


def _batch_norm(torch_name: str, flax_path: tuple[str, ...]) -> Iterator[Entry]:
  yield Entry(f"{torch_name}.weight", "params", flax_path + ("scale",), VECTOR)
  yield Entry(f"{torch_name}.bias", "params", flax_path + ("bias",), VECTOR)
  yield Entry(f"{torch_name}.running_mean", "batch_stats", flax_path + ("mean",), VECTOR)
  # Flax averages the biased batch variance, PyTorch the unbiased one; at inference both
  # divide by sqrt(running_var + eps), so the stored value carries over as it is.
  yield Entry(f"{torch_name}.running_var", "batch_stats", flax_path + ("var",), VECTOR)
  yield Entry(f"{torch_name}.num_batches_tracked", None, (), BN_COUNT)


def _dense(torch_name: str, kind: str = DENSE_KERNEL) -> Iterator[Entry]:
  yield Entry(f"{torch_name}.weight", "params", ("dense", "kernel"), kind)
  yield Entry(f"{torch_name}.bias", "params", ("dense", "bias"), VECTOR)


def _small_cnn(model: SmallCNN) -> Iterator[Entry]:
  for index in (1, 2):
    yield from _conv(f"conv{index}", (f"conv{index}",), bias=True)
    if model.batch_norm:
      yield from _batch_norm(f"bn{index}", (f"bn{index}",))
  yield from _dense("dense", FLATTEN_DENSE_KERNEL)


def _resnet18(model: ResNet18) -> Iterator[Entry]:
  del model
  yield from _conv("conv1", ("conv1",))
  yield from _batch_norm("bn1", ("bn1",))
  in_channels = 64
  for stage, (features, first_stride) in enumerate(_STAGES_RESNET18, start=1):
    for block in range(2):
      stride = first_stride if block == 0 else 1
      torch_block, flax_block = f"layer{stage}.{block}", f"layer{stage}_{block}"
      yield from _conv(f"{torch_block}.conv1", (flax_block, "conv1"))
      yield from _batch_norm(f"{torch_block}.bn1", (flax_block, "bn1"))
      yield from _conv(f"{torch_block}.conv2", (flax_block, "conv2"))
      yield from _batch_norm(f"{torch_block}.bn2", (flax_block, "bn2"))
      if stride != 1 or in_channels != features:
        yield from _conv(f"{torch_block}.shortcut.0", (flax_block, "shortcut_conv"))
        yield from _batch_norm(f"{torch_block}.shortcut.1", (flax_block, "shortcut_bn"))
      in_channels = features
  yield from _dense("linear")


def _preact_resnet18(model: PreActResNet18) -> Iterator[Entry]:
  yield from _conv("conv1", ("conv1",))
  in_channels = 64
  for stage, (features, first_stride) in enumerate(_STAGES_RESNET18, start=1):
    for block in range(2):
      stride = first_stride if block == 0 else 1
      torch_block, flax_block = f"layer{stage}.{block}", f"layer{stage}_{block}"
      yield from _batch_norm(f"{torch_block}.bn1", (flax_block, "bn1"))
      yield from _conv(f"{torch_block}.conv1", (flax_block, "conv1"))
      yield from _batch_norm(f"{torch_block}.bn2", (flax_block, "bn2"))
      yield from _conv(f"{torch_block}.conv2", (flax_block, "conv2"))
      if stride != 1 or in_channels != features:
        yield from _conv(f"{torch_block}.shortcut.0", (flax_block, "shortcut_conv"))
      in_channels = features
  if model.final_bn:
    yield from _batch_norm("bn", ("bn_final",))
  yield from _dense("linear")


def _wide_resnet(model: WideResNet) -> Iterator[Entry]:
  blocks = wide_resnet_blocks_per_group(model.depth)
  yield from _conv("conv1", ("conv1",))
  in_channels = 16
  widths = (16 * model.width, 32 * model.width, 64 * model.width)
  for group, (features, first_stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
    for block in range(blocks):
      stride = first_stride if block == 0 else 1
      torch_block, flax_block = f"block{group}.layer.{block}", f"block{group}_{block}"
      yield from _batch_norm(f"{torch_block}.bn1", (flax_block, "bn1"))
      yield from _conv(f"{torch_block}.conv1", (flax_block, "conv1"))
      yield from _batch_norm(f"{torch_block}.bn2", (flax_block, "bn2"))
      yield from _conv(f"{torch_block}.conv2", (flax_block, "conv2"))
      if stride != 1 or in_channels != features:
        yield from _conv(f"{torch_block}.convShortcut", (flax_block, "shortcut_conv"))
      in_channels = features
  yield from _batch_norm("bn1", ("bn_final",))
  yield from _dense("fc")


def state_dict_entries(model: nn.Module) -> list[Entry]:
  """Every state_dict entry of `model` (a jaxat SmallCNN, ResNet18, PreActResNet18 or
  WideResNet), in the order PyTorch's `state_dict()` lists them."""
  if isinstance(model, SmallCNN):
    return list(_small_cnn(model))
  if isinstance(model, ResNet18):
    return list(_resnet18(model))
  if isinstance(model, PreActResNet18):
    return list(_preact_resnet18(model))
  if isinstance(model, WideResNet):
    return list(_wide_resnet(model))
  raise ValueError(f"model {type(model).__name__} has no PyTorch layout; valid choices: "
                   "SmallCNN, ResNet18, PreActResNet18, WideResNet")
