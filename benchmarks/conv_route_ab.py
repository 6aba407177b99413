"""A training step with and without the matrix-product input gradient at stride 1.

  python benchmarks/conv_route_ab.py --model=small_cnn --batch_size=64 --methods=standard,pgd_at

Compiles each method's training step (as `benchmarks/throughput.py` does) twice in one
process: with jaxat/models/conv_op.py as it is (`matmul_pays` takes the matrix-product ∂x
for stride-1 layers of at most MATMUL_MAX_STRIDE_1_CHANNELS input channels, i.e. an image
model's first layer) and with that threshold set to 0 (those layers take the transposed
convolution). Then times both in interleaved rounds and writes the median seconds per step
(default benchmarks/results/conv_route_ab.json; docs/performance.md#input-gradients-as-a-matrix-product).
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


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="small_cnn")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--methods", default="standard,pgd_at")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=5, help="steps per round")
  parser.add_argument("--output", default=os.path.join(HERE, "results", "conv_route_ab.json"))
  args = parser.parse_args()

  import jax

  import throughput
  from jaxat.models import conv_op

  setup = argparse.Namespace(batch_size=args.batch_size, steps=1, warmup=1, image_size=32,
                             num_epochs=10, model=args.model, num_devices=1)
  thresholds = {"matmul_first_layer": conv_op.MATMUL_MAX_STRIDE_1_CHANNELS,
                "transposed_first_layer": 0}
  results = []
  for method in args.methods.split(","):
    compiled = {}
    for variant, threshold in thresholds.items():
      conv_op.MATMUL_MAX_STRIDE_1_CHANNELS = threshold  # read when the step is traced
      compiled[variant] = throughput.compile_step(
          throughput.benchmark_config(method, setup), method)
    conv_op.MATMUL_MAX_STRIDE_1_CHANNELS = thresholds["matmul_first_layer"]
    carried = {name: (step.state, step.sums) for name, step in compiled.items()}
    times = {name: [] for name in compiled}
    for _ in range(args.rounds):
      for name, step in compiled.items():
        state, sums = step.compiled(*carried[name], *step.data)  # one untimed warm-up
        jax.block_until_ready(state)
        started = time.perf_counter()
        for _ in range(args.steps):
          state, sums = step.compiled(state, sums, *step.data)
        jax.block_until_ready(state)
        times[name].append((time.perf_counter() - started) / args.steps)
        carried[name] = (state, sums)
    row = {"method": method}
    for name, values in times.items():
      row[f"{name}_seconds_per_step"] = sorted(values)[len(values) // 2]
      row[f"{name}_rounds"] = values
    results.append(row)
    print(method, {k: round(v, 4) for k, v in row.items() if k.endswith("per_step")}, flush=True)
  payload = {"benchmark": "training step: matrix-product vs transposed ∂x of stride-1 layers "
                          "with few input channels",
             "command": shlex.join(["python"] + sys.argv), "model": args.model,
             "batch_size": args.batch_size,
             "date": datetime.datetime.now().isoformat(timespec="seconds"),
             "machine": describe_machine(), "load_average": list(os.getloadavg()),
             "results": results}
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  with open(args.output, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
