"""Idiomatic PyTorch baseline for the throughput comparison (not part of jaxat).

The same models and methods as `benchmarks/throughput.py`, written the way the official
PyTorch codes write them (locuslab/robust_overfitting style): NCHW tensors, model.train()
during the attack, `delta.requires_grad_()` + `loss.backward()` per attack step, SGD with
momentum 0.9 and coupled weight decay 5e-4, per-batch random crop (zero padding 4) and
flip on tensors already on the device.

  python benchmarks/torch_reference.py --model=preact_resnet18 --batch_size=64 --steps=5

--precisions=fp32,amp measures each method once per precision: fp32, or automatic mixed
precision as the official codes that use it do (`torch.autocast` around every forward of
the attack and the update, float16 with a GradScaler on CUDA, bfloat16 on CPU). Each result
names its precision.

Prints one JSON object (images/s per method). Needs only torch and numpy
(`pip install torch==2.13.0` here; any recent torch elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class PreActBlock(nn.Module):
  def __init__(self, in_planes, planes, stride):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(in_planes)
    self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.shortcut = (nn.Conv2d(in_planes, planes, 1, stride, bias=False)
                     if stride != 1 or in_planes != planes else None)

  def forward(self, x):
    out = F.relu(self.bn1(x))
    shortcut = self.shortcut(out) if self.shortcut is not None else x
    out = self.conv1(out)
    out = self.conv2(F.relu(self.bn2(out)))
    return out + shortcut


class PreActResNet18(nn.Module):
  """locuslab/AWP variant: final BN + ReLU before pooling; normalisation inside."""

  def __init__(self, num_classes=10, mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616)):
    super().__init__()
    self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
    self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
    self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    layers, in_planes = [], 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
      for s in (stride, 1):
        layers.append(PreActBlock(in_planes, planes, s))
        in_planes = planes
    self.layers = nn.Sequential(*layers)
    self.bn = nn.BatchNorm2d(512)
    self.linear = nn.Linear(512, num_classes)

  def forward(self, x):
    out = self.conv1((x - self.mean) / self.std)
    out = F.relu(self.bn(self.layers(out)))
    return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class ResNetBasicBlock(nn.Module):
  def __init__(self, in_planes, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.shortcut = nn.Sequential()
    if stride != 1 or in_planes != planes:
      self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                    nn.BatchNorm2d(planes))

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
  """kuangliu CIFAR ResNet-18 (3x3 stem, no max-pool), inputs in [0,1]."""

  def __init__(self, num_classes=10):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    layers, in_planes = [], 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
      for s in (stride, 1):
        layers.append(ResNetBasicBlock(in_planes, planes, s))
        in_planes = planes
    self.layers = nn.Sequential(*layers)
    self.linear = nn.Linear(512, num_classes)

  def forward(self, x):
    out = self.layers(F.relu(self.bn1(self.conv1(x))))
    return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class SmallCNN(nn.Module):
  """The jaxat small_cnn: conv(c0) s1 + BN + ReLU, conv(c1) s2 + BN + ReLU, dense."""

  def __init__(self, channels=(32, 64), image_size=32, in_channels=3, num_classes=10):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, channels[0], 3, 1, 1)
    self.bn1 = nn.BatchNorm2d(channels[0])
    self.conv2 = nn.Conv2d(channels[0], channels[1], 3, 2, 1)
    self.bn2 = nn.BatchNorm2d(channels[1])
    self.dense = nn.Linear(channels[1] * (image_size // 2) ** 2, num_classes)

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = F.relu(self.bn2(self.conv2(out)))
    return self.dense(out.flatten(1))


MODELS = {"preact_resnet18": PreActResNet18, "resnet18": ResNet18, "small_cnn": SmallCNN}


def augment(images_uint8, padding=4):
  """Random crop with zero padding and horizontal flip, per example, on device."""
  x = images_uint8.float().div_(255.0)
  n, _, h, w = x.shape
  padded = F.pad(x, (padding,) * 4)
  device = x.device
  dx = torch.randint(0, 2 * padding + 1, (n,), device=device)
  dy = torch.randint(0, 2 * padding + 1, (n,), device=device)
  rows = (dy.view(n, 1) + torch.arange(h, device=device).view(1, h))
  cols = (dx.view(n, 1) + torch.arange(w, device=device).view(1, w))
  batch_index = torch.arange(n, device=device).view(n, 1, 1, 1)
  channel_index = torch.arange(x.shape[1], device=device).view(1, -1, 1, 1)
  out = padded[batch_index, channel_index, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
  flip = torch.rand(n, device=device) < 0.5
  out[flip] = out[flip].flip(3)
  return out


def pgd_attack(model, x, y, eps=8 / 255, alpha=2 / 255, steps=10):
  """Rice et al.: uniform start, CE, model left in train mode."""
  delta = torch.empty_like(x).uniform_(-eps, eps)
  delta = (x + delta).clamp_(0, 1) - x
  for _ in range(steps):
    delta.requires_grad_(True)
    loss = F.cross_entropy(model(x + delta), y)
    grad, = torch.autograd.grad(loss, delta)
    delta = (delta.detach() + alpha * grad.sign()).clamp_(-eps, eps)
    delta = (x + delta).clamp_(0, 1) - x
  return (x + delta).detach()


def trades_attack(model, x, eps=8 / 255, alpha=2 / 255, steps=10):
  """TRADES (yaodongyu/TRADES): model.eval() during the attack, start x + 0.001·N(0,1),
  ascent on KL(p(x) || p(x')) (sum reduction), sign steps, projection, clip."""
  model.eval()
  with torch.no_grad():
    p_natural = F.softmax(model(x), dim=1)
  x_adv = x + 0.001 * torch.randn_like(x)
  for _ in range(steps):
    x_adv.requires_grad_(True)
    loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_natural, reduction="sum")
    grad, = torch.autograd.grad(loss_kl, x_adv)
    x_adv = x_adv.detach() + alpha * grad.sign()
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)
  model.train()
  return x_adv.detach()


def trades_loss(model, x, x_adv, y, beta=6.0):
  """CE on x plus beta times the batch-mean KL(p(x) || p(x_adv)), both forwards in train mode."""
  logits = model(x)
  loss_robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1),
                         reduction="batchmean")
  return F.cross_entropy(logits, y) + beta * loss_robust


METHODS = ("standard", "pgd_at", "trades")
PRECISIONS = ("fp32", "amp")


def autocast_of(precision, device):
  """A context manager factory: nothing for fp32; for amp, torch.autocast in float16 on
  CUDA (what AMP means there) and bfloat16 on CPU (CPU autocast's only fast type)."""
  if precision == "fp32":
    return contextlib.nullcontext
  device_type = torch.device(device).type
  dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
  return lambda: torch.autocast(device_type=device_type, dtype=dtype)


def benchmark(model_name, method, batch_size, steps, warmup, image_size=32, seed=0,
              device="cpu", precision="fp32"):
  torch.manual_seed(seed)
  autocast = autocast_of(precision, device)
  # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
  scaler = (torch.amp.GradScaler("cuda")
            if precision == "amp" and torch.device(device).type == "cuda" else None)
  kwargs = {"image_size": image_size} if model_name == "small_cnn" else {}
  model = MODELS[model_name](**kwargs).to(device)
  model.train()
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
  rng = np.random.default_rng(seed)
  data = torch.from_numpy(rng.integers(0, 256, (batch_size * (steps + warmup), 3, image_size, image_size),
                                       dtype=np.uint8)).to(device)
  labels = torch.from_numpy(rng.integers(0, 10, (batch_size * (steps + warmup),))).long().to(device)

  def step(i):
    x = augment(data[i * batch_size:(i + 1) * batch_size])
    y = labels[i * batch_size:(i + 1) * batch_size]
    with autocast():
      if method == "pgd_at":
        x = pgd_attack(model, x, y)
      if method == "trades":
        loss = trades_loss(model, x, trades_attack(model, x), y)
      else:
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
      loss.backward()
      optimizer.step()
    else:
      scaler.scale(loss).backward()
      scaler.step(optimizer)
      scaler.update()
    return loss

  for i in range(warmup):
    loss = step(i)
  if warmup:
    loss.item()   # waits for the device (CUDA runs asynchronously)
  start = time.perf_counter()
  for i in range(warmup, warmup + steps):
    loss = step(i)
  loss.item()
  seconds = time.perf_counter() - start
  return {"method": method, "precision": precision, "seconds_per_step": seconds / steps,
          "images_per_sec": steps * batch_size / seconds}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="preact_resnet18", choices=sorted(MODELS))
  parser.add_argument("--methods", default="standard,pgd_at")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda when available)")
  parser.add_argument("--precisions", default="fp32", help="comma list of fp32, amp")
  args = parser.parse_args()
  device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
  methods = [m for m in args.methods.split(",") if m]
  bad = [m for m in methods if m not in METHODS]
  if bad:
    parser.error(f"unknown methods {bad}; valid choices: {', '.join(METHODS)}")
  precisions = [p for p in args.precisions.split(",") if p]
  if not precisions or any(p not in PRECISIONS for p in precisions):
    parser.error(f"--precisions={args.precisions!r}; valid choices: {', '.join(PRECISIONS)}")
  results = [benchmark(args.model, m, args.batch_size, args.steps, args.warmup, args.image_size,
                       device=device, precision=p) for p in precisions for m in methods]
  print(json.dumps({"framework": "pytorch", "torch": torch.__version__, "device": device,
                    "threads": torch.get_num_threads(), "model": args.model,
                    "batch_size": args.batch_size, "results": results}))


if __name__ == "__main__":
  main()
