"""A training step with and without the matrix-product input gradient at stride 1.

  python benchmarks/conv_route_ab.py --model=small_cnn --batch_size=64 --methods=standard,pgd_at

Compiles each method's training step twice in one process (`throughput.Measurement`): with
jaxat/models/conv_op.py as it is (`matmul_pays` takes the matrix-product ∂x for stride-1
layers of at most MATMUL_MAX_STRIDE_1_CHANNELS input channels, i.e. an image model's first
layer) and with that threshold set to 0 (those layers take the transposed convolution).
Then times all of them in interleaved rounds (`throughput.time_rounds`) and writes the
median seconds per step (default benchmarks/results/conv_route_ab.json;
docs/performance.md#input-gradients-as-a-matrix-product).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import throughput  # noqa: E402
from run_helpers import provenance, write_json  # noqa: E402

from jaxat.models import conv_op  # noqa: E402

# The first-layer threshold of each variant; conv_op reads it when a step is traced.
THRESHOLDS = {"matmul_first_layer": conv_op.MATMUL_MAX_STRIDE_1_CHANNELS,
              "transposed_first_layer": 0}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="small_cnn")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--methods", default="standard,pgd_at")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=5, help="steps per round")
  parser.add_argument("--output", default=os.path.join(HERE, "results", "conv_route_ab.json"))
  args = parser.parse_args()
  started = time.time()
  setup = argparse.Namespace(batch_size=args.batch_size, steps=args.steps, warmup=1,
                             rounds=args.rounds, image_size=32, num_epochs=10, at_epoch=0,
                             model=args.model, num_devices=1)
  measurements, variants = [], []
  for method in args.methods.split(","):
    for variant, threshold in THRESHOLDS.items():
      conv_op.MATMUL_MAX_STRIDE_1_CHANNELS = threshold
      measurements.append(throughput.Measurement(method, setup))
      variants.append(variant)
  conv_op.MATMUL_MAX_STRIDE_1_CHANNELS = THRESHOLDS["matmul_first_layer"]
  results = [{"variant": variant, **result}
             for variant, result in zip(variants, throughput.time_rounds(measurements, setup))]
  for row in results:
    print(f"{row['method']:>10} {row['variant']:>24}: {row['seconds_per_step']:.4f} s/step "
          f"convs={row['hlo_convolutions']}", flush=True)
  write_json(args.output, {
      "benchmark": "training step: matrix-product vs transposed ∂x of stride-1 layers "
                   "with few input channels",
      "model": args.model, "batch_size": args.batch_size, "rounds": args.rounds,
      "steps_per_round": args.steps, **provenance(started),
      "load_average": list(os.getloadavg()), "results": results})
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
