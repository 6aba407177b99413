"""Per-layer convolution times on XLA:CPU under the process's compiler setting, and PyTorch's.

  python benchmarks/conv_libraries.py --label=jaxat
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+individual_convolution \
      python benchmarks/conv_libraries.py --label=xla_default
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/conv_libraries.py --label=no_ynnpack

For each layer of LAYERS (the small CNN's and PreAct ResNet-18's 3x3 and 1x1 convolutions at
their training batch sizes) times, in milliseconds, the forward convolution, its input
gradient and its kernel gradient as XLA computes them (`lax.conv_general_dilated` and its
own VJP, compiled by `jaxat.xla_cpu.jit`, so without `XLA_FLAGS` the setting jaxat uses:
convolutions run by Eigen; an `XLA_FLAGS` choice of the YNNPACK fusion types replaces it),
median of 5 runs of 10 calls, and the same three with PyTorch (`torch.nn.functional.conv2d`,
`torch.nn.grad.conv2d_input`, `conv2d_weight`, default threads) where torch is installed.
Results are merged under `--label` into one JSON file (default
benchmarks/results/conv_libraries.json), so runs with different settings sit side by side;
docs/performance.md#which-library-runs-cpu-convolutions reads them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import describe_machine  # noqa: E402

# (batch, input size, input channels, output channels, window, stride)
LAYERS = (
    (64, 32, 3, 32, 3, 1), (64, 32, 32, 64, 3, 2),           # small CNN (32, 64), batch 64
    (32, 32, 3, 64, 3, 1), (32, 32, 64, 64, 3, 1),           # PreAct ResNet-18, batch 32
    (32, 32, 64, 128, 3, 2), (32, 16, 128, 128, 3, 1), (32, 16, 128, 256, 3, 2),
    (32, 8, 256, 256, 3, 1), (32, 8, 256, 512, 3, 2), (32, 4, 512, 512, 3, 1),
    (32, 32, 64, 128, 1, 2),                                  # a 1x1 stride-2 shortcut
)


def _median_ms(fn, *args, calls: int = 10, runs: int = 5) -> float:
  out = fn(*args)
  getattr(out, "block_until_ready", lambda: None)()
  times = []
  for _ in range(runs):
    started = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    getattr(out, "block_until_ready", lambda: None)()
    times.append((time.perf_counter() - started) / calls)
  return 1e3 * sorted(times)[runs // 2]


def time_xla(layer) -> dict:
  import jax
  from jax import lax
  import numpy as np

  from jaxat import xla_cpu

  batch, size, cin, cout, window, stride = layer
  pad = window // 2
  out_size = (size + 2 * pad - window) // stride + 1
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, size, size, cin), np.float32)
  w = rng.standard_normal((window, window, cin, cout), np.float32)
  g = rng.standard_normal((batch, out_size, out_size, cout), np.float32)

  def forward(x, w):
    return lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))

  input_grad = lambda x, w, g: jax.vjp(lambda z: forward(z, w), x)[1](g)[0]
  kernel_grad = lambda x, w, g: jax.vjp(lambda k: forward(x, k), w)[1](g)[0]
  return {"forward_ms": _median_ms(xla_cpu.jit(forward), x, w),
          "input_grad_ms": _median_ms(xla_cpu.jit(input_grad), x, w, g),
          "kernel_grad_ms": _median_ms(xla_cpu.jit(kernel_grad), x, w, g)}


def time_torch(layer) -> dict | None:
  try:
    import torch
  except ImportError:
    return None
  batch, size, cin, cout, window, stride = layer
  pad = window // 2
  out_size = (size + 2 * pad - window) // stride + 1
  generator = torch.Generator().manual_seed(0)
  x = torch.randn(batch, cin, size, size, generator=generator)
  w = torch.randn(cout, cin, window, window, generator=generator)
  g = torch.randn(batch, cout, out_size, out_size, generator=generator)
  with torch.no_grad():
    return {
        "forward_ms": _median_ms(lambda: torch.nn.functional.conv2d(x, w, stride=stride,
                                                                    padding=pad)),
        "input_grad_ms": _median_ms(lambda: torch.nn.grad.conv2d_input(
            x.shape, w, g, stride=stride, padding=pad)),
        "kernel_grad_ms": _median_ms(lambda: torch.nn.grad.conv2d_weight(
            x, w.shape, g, stride=stride, padding=pad)),
    }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--label", required=True, help="name of this setting in the JSON")
  parser.add_argument("--output", default=os.path.join(HERE, "results", "conv_libraries.json"))
  parser.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
  args = parser.parse_args()
  rows = []
  for layer in LAYERS:
    row = dict(zip(("batch", "input_size", "in_channels", "out_channels", "window", "stride"),
                   layer))
    row["xla"] = time_xla(layer)
    if args.torch:
      row["torch"] = time_torch(layer)
    rows.append(row)
    print(layer, json.dumps({k: {n: round(v, 2) for n, v in row[k].items()}
                             for k in ("xla", "torch") if row.get(k)}), flush=True)
  payload = {}
  if os.path.exists(args.output):
    with open(args.output) as f:
      payload = json.load(f)
  payload.setdefault("benchmark", "per-layer convolution times: forward, input and kernel "
                     "gradients, XLA:CPU under several compiler settings and PyTorch")
  payload.setdefault("settings", {})[args.label] = {
      "command": shlex.join(["python"] + sys.argv),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "machine": describe_machine(), "load_average": list(os.getloadavg()), "layers": rows}
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  with open(args.output, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"wrote {args.output} [{args.label}]")


if __name__ == "__main__":
  main()
