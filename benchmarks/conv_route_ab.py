"""A training step with jaxat's convolution routes, and with one of them switched off.

  python benchmarks/conv_route_ab.py --model=small_cnn --batch_size=64 --methods=standard,pgd_at \
      [--variants=jaxat,transposed_first_layer,one_kernel_gradient_convolution,\
differentiated_routes]

Compiles each method's training step once per variant in one process
(`throughput.Measurement`), then times all of them in interleaved rounds
(`throughput.time_rounds`) and writes the median seconds per step (default
benchmarks/results/conv_route_ab.json). The variants set attributes of
jaxat/models/conv_op.py, which it reads when a step is traced:
- jaxat: conv_op as it is;
- transposed_first_layer: MATMUL_MAX_STRIDE_1_CHANNELS = 0, so stride-1 layers with few
  input channels (an image model's first layer) take the transposed convolution for ∂x
  instead of the matrix product (docs/performance.md#input-gradients-as-a-matrix-product);
- one_kernel_gradient_convolution: KERNEL_GRADIENT_BLOCK = 0, so every kernel gradient is
  XLA's one convolution over the whole batch instead of one per chunk of 8 examples
  (docs/performance.md#kernel-gradients-in-blocks-of-the-batch);
- differentiated_routes: BILINEAR_RULES = False, so a gradient of a gradient (GradAlign)
  differentiates the routes' own arithmetic instead of running on the custom VJPs of the
  input and kernel gradients (docs/performance.md#gradients-of-gradients).
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

# conv_op attributes each variant sets while its steps are traced.
VARIANTS = {
    "jaxat": {},
    "transposed_first_layer": {"MATMUL_MAX_STRIDE_1_CHANNELS": 0},
    "one_kernel_gradient_convolution": {"KERNEL_GRADIENT_BLOCK": 0},
    "differentiated_routes": {"BILINEAR_RULES": False},
}


def traced_with(settings: dict, build):
  """`build()` with conv_op's attributes set to `settings`, restored afterwards."""
  saved = {name: getattr(conv_op, name) for name in settings}
  try:
    for name, value in settings.items():
      setattr(conv_op, name, value)
    return build()
  finally:
    for name, value in saved.items():
      setattr(conv_op, name, value)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="small_cnn")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--methods", default="standard,pgd_at")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=5, help="steps per round")
  parser.add_argument("--variants", default="jaxat,transposed_first_layer",
                      help=f"comma list of {', '.join(VARIANTS)}")
  parser.add_argument("--output", default=os.path.join(HERE, "results", "conv_route_ab.json"))
  args = parser.parse_args()
  chosen = [v for v in args.variants.split(",") if v]
  unknown = [v for v in chosen if v not in VARIANTS]
  if unknown or not chosen:
    parser.error(f"--variants={args.variants!r}; valid choices: {', '.join(VARIANTS)}")
  started = time.time()
  setup = argparse.Namespace(batch_size=args.batch_size, steps=args.steps, warmup=1,
                             rounds=args.rounds, image_size=32, num_epochs=10, at_epoch=0,
                             model=args.model, num_devices=1)
  measurements, variants = [], []
  for method in args.methods.split(","):
    for variant in chosen:
      measurements.append(traced_with(VARIANTS[variant],
                                      lambda: throughput.Measurement(method, setup)))
      variants.append(variant)
  results = [{"variant": variant, **result}
             for variant, result in zip(variants, throughput.time_rounds(measurements, setup))]
  for row in results:
    print(f"{row['method']:>10} {row['variant']:>24}: {row['seconds_per_step']:.4f} s/step "
          f"convs={row['hlo_convolutions']}", flush=True)
  write_json(args.output, {
      "benchmark": "training step: jaxat's convolution routes, and with one switched off",
      "variants": {v: VARIANTS[v] for v in chosen},
      "model": args.model, "batch_size": args.batch_size, "rounds": args.rounds,
      "steps_per_round": args.steps, **provenance(started),
      "load_average": list(os.getloadavg()), "results": results})
  print(f"wrote {args.output}")


if __name__ == "__main__":
  from jaxat import host_memory
  host_memory.restart_with_huge_pages()   # as `python -m jaxat.main` runs (jaxat/host_memory.py)
  main()
