"""The self-contained PyTorch model definition written next to an exported state_dict.

`model_source(model, image_shape)` returns the text of a Python file that needs only
torch: the PyTorch classes of every jaxat family (state_dict keys as in torch_keys.py),
and `build_model()` returning the exported architecture. Its models take NCHW float
tensors in [0, 1] and normalise inside `forward`, as jaxat's models do.
"""

from __future__ import annotations

import math
import pprint

from flax import linen as nn

import jaxat
from jaxat.models.input_normalization import is_identity_normalization
from jaxat.models.preact_resnet import PreActResNet18
from jaxat.models.resnet import ResNet18
from jaxat.models.small_cnn import SmallCNN
from jaxat.models.wide_resnet import WideResNet

# The PyTorch classes; kept in one string so the written file is one self-contained module.
_CLASSES = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

_ACTIVATIONS = {"relu": F.relu, "silu": F.silu}
# jaxat (Flax) BatchNorm momentum 0.9 weighs the old running value; PyTorch's momentum
# weighs the new batch value: 1 - 0.9 = 0.1. Same epsilon.
BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def _bn(channels):
  return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class Normalize(nn.Module):
  """(x - mean) / std per channel; no parameters and no state_dict entries."""

  def __init__(self, mean, std):
    super().__init__()
    self.identity = all(m == 0 for m in mean) and all(s == 1 for s in std)
    self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                         persistent=False)
    self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                         persistent=False)

  def forward(self, x):
    return x if self.identity else (x - self.mean) / self.std


class SmallCNN(nn.Module):
  """conv3x3(s1) -> [BN] -> act -> conv3x3(s2) -> [BN] -> act -> flatten (NCHW) -> dense."""

  def __init__(self, num_classes, in_channels, channels, batch_norm, activation,
               flat_features, mean, std):
    super().__init__()
    self.normalize = Normalize(mean, std)
    self.act = _ACTIVATIONS[activation]
    self.conv1 = nn.Conv2d(in_channels, channels[0], 3, 1, 1)
    self.bn1 = _bn(channels[0]) if batch_norm else None
    self.conv2 = nn.Conv2d(channels[0], channels[1], 3, 2, 1)
    self.bn2 = _bn(channels[1]) if batch_norm else None
    self.dense = nn.Linear(flat_features, num_classes)

  def forward(self, x):
    x = self.normalize(x)
    for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2)):
      x = conv(x)
      x = self.act(bn(x) if bn is not None else x)
    return self.dense(x.flatten(1))


class BasicBlock(nn.Module):
  def __init__(self, in_planes, planes, stride, act):
    super().__init__()
    self.act = act
    self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
    self.bn1 = _bn(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = _bn(planes)
    self.shortcut = nn.Sequential()
    if stride != 1 or in_planes != planes:
      self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                    _bn(planes))

  def forward(self, x):
    out = self.act(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.act(out + self.shortcut(x))


class ResNet18(nn.Module):
  """kuangliu/pytorch-cifar ResNet-18 (global average pooling)."""

  def __init__(self, num_classes, in_channels, activation, mean, std):
    super().__init__()
    self.normalize = Normalize(mean, std)
    self.act = _ACTIVATIONS[activation]
    self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    self.bn1 = _bn(64)
    in_planes = 64
    for stage, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
      blocks = []
      for block_stride in (stride, 1):
        blocks.append(BasicBlock(in_planes, planes, block_stride, self.act))
        in_planes = planes
      setattr(self, f"layer{stage}", nn.Sequential(*blocks))
    self.linear = nn.Linear(512, num_classes)

  def forward(self, x):
    out = self.act(self.bn1(self.conv1(self.normalize(x))))
    out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
    return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class PreActBlock(nn.Module):
  def __init__(self, in_planes, planes, stride, act, shortcut_input="preactivated"):
    super().__init__()
    self.act = act
    self.shortcut_input = shortcut_input
    self.bn1 = _bn(in_planes)
    self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
    self.bn2 = _bn(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    if stride != 1 or in_planes != planes:
      self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

  def forward(self, x):
    out = self.act(self.bn1(x))
    projected = out if self.shortcut_input == "preactivated" else x
    shortcut = self.shortcut(projected) if hasattr(self, "shortcut") else x
    out = self.conv1(out)
    out = self.conv2(self.act(self.bn2(out)))
    return out + shortcut


class PreActResNet18(nn.Module):
  """PreAct ResNet-18: locuslab/robust_overfitting layout (final_bn) or kuangliu's."""

  def __init__(self, num_classes, in_channels, final_bn, activation, mean, std,
               shortcut_input="preactivated"):
    super().__init__()
    self.normalize = Normalize(mean, std)
    self.act = _ACTIVATIONS[activation]
    self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    in_planes = 64
    for stage, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
      blocks = []
      for block_stride in (stride, 1):
        blocks.append(PreActBlock(in_planes, planes, block_stride, self.act, shortcut_input))
        in_planes = planes
      setattr(self, f"layer{stage}", nn.Sequential(*blocks))
    self.bn = _bn(512) if final_bn else None
    self.linear = nn.Linear(512, num_classes)

  def forward(self, x):
    out = self.conv1(self.normalize(x))
    out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
    if self.bn is not None:
      out = self.act(self.bn(out))
    return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class WideBasicBlock(nn.Module):
  def __init__(self, in_planes, planes, stride, act):
    super().__init__()
    self.act = act
    self.bn1 = _bn(in_planes)
    self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
    self.bn2 = _bn(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.convShortcut = (nn.Conv2d(in_planes, planes, 1, stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

  def forward(self, x):
    pre_activated = self.act(self.bn1(x))
    out = self.conv1(pre_activated)
    out = self.conv2(self.act(self.bn2(out)))
    shortcut = x if self.convShortcut is None else self.convShortcut(pre_activated)
    return out + shortcut


class NetworkBlock(nn.Module):
  def __init__(self, num_blocks, in_planes, planes, stride, act):
    super().__init__()
    self.layer = nn.Sequential(*[
        WideBasicBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1, act)
        for i in range(num_blocks)])

  def forward(self, x):
    return self.layer(x)


class WideResNet(nn.Module):
  """TRADES / RobustBench WideResNet-depth-width (no dropout)."""

  def __init__(self, num_classes, in_channels, depth, width, activation, mean, std):
    super().__init__()
    self.normalize = Normalize(mean, std)
    self.act = _ACTIVATIONS[activation]
    num_blocks = (depth - 4) // 6
    widths = (16, 16 * width, 32 * width, 64 * width)
    self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
    self.block1 = NetworkBlock(num_blocks, widths[0], widths[1], 1, self.act)
    self.block2 = NetworkBlock(num_blocks, widths[1], widths[2], 2, self.act)
    self.block3 = NetworkBlock(num_blocks, widths[2], widths[3], 2, self.act)
    self.bn1 = _bn(widths[3])
    self.fc = nn.Linear(widths[3], num_classes)

  def forward(self, x):
    out = self.conv1(self.normalize(x))
    out = self.block3(self.block2(self.block1(out)))
    out = self.act(self.bn1(out))
    return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
'''


def small_cnn_feature_map(model: SmallCNN, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
  """(H, W, C) of the small CNN's flattened activation: conv2 has stride 2 and padding 1,
  so H_out = ceil(H / 2) (same in jaxat and PyTorch)."""
  height, width, _ = image_shape
  return (math.ceil(height / 2), math.ceil(width / 2), int(model.channels[1]))


def _normalization(model: nn.Module, in_channels: int) -> dict:
  mean, std = tuple(model.mean), tuple(model.std)
  if is_identity_normalization(mean, std):
    mean, std = (0.0,) * in_channels, (1.0,) * in_channels
  return {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}


def model_constructor(model: nn.Module, image_shape: tuple[int, int, int]) -> tuple[str, dict]:
  """(PyTorch class name, constructor keyword arguments) of a jaxat model.

  Args:
    model: a jaxat SmallCNN, ResNet18, PreActResNet18 or WideResNet.
    image_shape: (H, W, C) of the inputs it was trained on.
  """
  in_channels = int(image_shape[2])
  common = {"num_classes": int(model.num_classes), "in_channels": in_channels,
            "activation": model.activation, **_normalization(model, in_channels)}
  if isinstance(model, SmallCNN):
    height, width, channels = small_cnn_feature_map(model, image_shape)
    return "SmallCNN", {**common, "channels": [int(c) for c in model.channels],
                        "batch_norm": bool(model.batch_norm),
                        "flat_features": height * width * channels}
  if isinstance(model, ResNet18):
    return "ResNet18", common
  if isinstance(model, PreActResNet18):
    return "PreActResNet18", {**common, "final_bn": bool(model.final_bn),
                              "shortcut_input": model.shortcut_input}
  if isinstance(model, WideResNet):
    return "WideResNet", {**common, "depth": int(model.depth), "width": int(model.width)}
  raise ValueError(f"model {type(model).__name__} has no PyTorch definition; valid choices: "
                   "SmallCNN, ResNet18, PreActResNet18, WideResNet")


def model_source(model: nn.Module, image_shape: tuple[int, int, int], description: str = "") -> str:
  """Text of a Python module defining the PyTorch model and `build_model()`.

  The module needs only torch. Usage:
      model = build_model(); model.load_state_dict(torch.load("model.pt")); model.eval()
      logits = model(x)   # x: (B, C, H, W) float32 in [0, 1]
  """
  class_name, kwargs = model_constructor(model, image_shape)
  header = (f'"""PyTorch {class_name} exported by jaxat {jaxat.__version__} '
            f'(python -m jaxat.export).\n\n'
            + (f"{description}\n\n" if description else "")
            + f"Input: (B, {image_shape[2]}, {image_shape[0]}, {image_shape[1]}) float32 "
            "NCHW pixels in [0, 1]; normalisation happens inside forward.\n\n"
            "    import torch, model as m\n"
            "    net = m.build_model()\n"
            "    net.load_state_dict(torch.load('model.pt'))\n"
            "    net.eval()\n"
            '"""\n')
  builder = (f"\n\nMODEL_KWARGS = {pprint.pformat(kwargs, width=88, sort_dicts=False)}\n\n\n"
             "def build_model():\n"
             f'  """The exported architecture ({class_name}); load the state_dict into it."""\n'
             f"  return {class_name}(**MODEL_KWARGS)\n")
  return header + _CLASSES + builder
