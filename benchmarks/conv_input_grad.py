"""Input-gradient loops on XLA:CPU: `lax.conv_general_dilated` against jaxat's conv op.

  python benchmarks/conv_input_grad.py [--batch_size=250] [--steps=100] [--output=...]

Runs 100 signed input-gradient steps (a PGD loop) of a small CNN (conv3x3 3->16, conv3x3/2
16->32, dense) inside one `lax.fori_loop`, and the same steps as 100 calls of a jitted
step from Python, with Flax's default convolution and with jaxat/models/conv_op.py.
Writes seconds per loop (compilation excluded) and the machine as JSON (default
benchmarks/results/conv_input_grad.json).

  python benchmarks/conv_input_grad.py --shapes [--output=...]

times, instead, the three ways jaxat/models/conv_op.py computes the input gradient of one
3x3 convolution (the transposed convolution of the HWOI kernel, the sub-pixel convolution,
the matrix product with col2im) for a grid of batch sizes and layers, 10 gradients in a
`lax.fori_loop` (median of 5 loops), together with the way `input_gradient_route` picks
for each shape (default benchmarks/results/conv_input_grad_shapes.json;
docs/performance.md#input-gradients-as-a-matrix-product). Compiled as jaxat compiles
(`jaxat.xla_cpu.jit`).
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
  parser.add_argument("--batch_size", type=int, default=250)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--output", default="")
  parser.add_argument("--shapes", action="store_true",
                      help="time the three input gradients over a grid of shapes")
  args = parser.parse_args()
  if args.shapes:
    write(input_gradient_shapes(), args, "conv_input_grad_shapes.json",
          "input gradient of one 3x3 convolution in a fori_loop: transposed, sub-pixel, "
          "matrix product")
    return

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax import lax

  from jaxat import xla_cpu
  from jaxat.models.conv_op import conv_general_dilated as jaxat_conv

  class SmallCNN(nn.Module):
    conv_op: object

    @nn.compact
    def __call__(self, x):
      pad = ((1, 1), (1, 1))
      x = nn.relu(nn.Conv(16, (3, 3), padding=pad, conv_general_dilated=self.conv_op)(x))
      x = nn.relu(nn.Conv(32, (3, 3), strides=2, padding=pad,
                          conv_general_dilated=self.conv_op)(x))
      return nn.Dense(10)(x.reshape(x.shape[0], -1))

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((args.batch_size, 32, 32, 3), np.float32))
  y = jnp.asarray(rng.integers(0, 10, args.batch_size))
  results = {}
  for name, op in (("lax", lax.conv_general_dilated), ("jaxat", jaxat_conv)):
    model = SmallCNN(op)
    params = model.init(jax.random.key(0), x)

    def step(params, x, model=model):
      def loss(x):
        logits = model.apply(params, x)
        return -jnp.sum(jax.nn.log_softmax(logits)[jnp.arange(x.shape[0]), y])
      return jnp.clip(x + 0.001 * jnp.sign(jax.grad(loss)(x)), 0.0, 1.0)

    loop = xla_cpu.jit(lambda params, x, step=step: lax.fori_loop(
        0, args.steps, lambda i, z: step(params, z), x))
    jitted_step = xla_cpu.jit(step)
    loop(params, x).block_until_ready()
    started = time.perf_counter()
    loop(params, x).block_until_ready()
    in_loop = time.perf_counter() - started
    z = jitted_step(params, x).block_until_ready()
    started = time.perf_counter()
    z = x
    for _ in range(args.steps):
      z = jitted_step(params, z)
    z.block_until_ready()
    from_python = time.perf_counter() - started
    results[name] = {"seconds_fori_loop": in_loop, "seconds_python_loop": from_python}
    print(f"{name}: fori_loop {in_loop:.2f} s, python loop {from_python:.2f} s")
  results["speedup_fori_loop"] = results["lax"]["seconds_fori_loop"] / results["jaxat"]["seconds_fori_loop"]
  print(f"fori_loop speed-up {results['speedup_fori_loop']:.2f}x")
  write(results, args, "conv_input_grad.json", "PGD-style input-gradient loop, small CNN")


# (batch, input channels, output channels, input height = width, stride) of a 3x3 layer:
# the strided layers of the small CNN and (PreAct) ResNet-18, and stride-1 layers with few
# to many input channels (an image model's first layer has 3).
SHAPES = tuple((batch, cin, cout, size, 2) for batch in (64, 128, 250)
               for cin, cout, size in ((16, 32, 32), (32, 64, 32), (64, 128, 32),
                                       (128, 256, 16), (256, 512, 8))) + tuple(
    (batch, cin, cout, 32, 1) for batch in (64, 128, 250)
    for cin, cout in ((3, 32), (8, 32), (16, 32), (64, 64)))


def input_gradient_shapes(loops: int = 5, steps: int = 10) -> list[dict]:
  """Milliseconds per input gradient of each SHAPES layer, every way jaxat/models/conv_op.py
  has, and the way its dispatch (`input_gradient_route`) picks."""
  import jax
  import jax.numpy as jnp
  from jax import lax

  from jaxat import xla_cpu
  from jaxat.models import conv_op

  rows = []
  for batch, cin, cout, size, stride in SHAPES:
    input_shape = (batch, size, size, cin)
    padding = ((1, 1), (1, 1))
    key_g, key_w = jax.random.split(jax.random.key(0))
    cotangent = jax.random.normal(key_g, (batch, size // stride, size // stride, cout))
    kernel = jax.random.normal(key_w, (3, 3, cin, cout))
    inputs = jnp.zeros(input_shape)
    ways = {
        "transposed": lambda g, w: conv_op.transposed_input_gradient(
            g, w, inputs, window_strides=(stride, stride), padding=padding,
            lhs_dilation=None, rhs_dilation=None, precision=None),
        "subpixel": lambda g, w: conv_op.subpixel_input_gradient(
            g, w, input_shape, (stride, stride), padding),
        "matmul": lambda g, w: conv_op.matmul_input_gradient(
            g, w, input_shape, (stride, stride), padding),
    }
    row = {"batch": batch, "in_channels": cin, "out_channels": cout, "input_size": size,
           "stride": stride,
           "chosen": conv_op.input_gradient_route(input_shape, kernel.shape, jnp.float32,
                                                  (stride, stride), padding)}
    for name, gradient in ways.items():
      # The carry feeds each gradient back into the next, so XLA cannot hoist it.
      loop = xla_cpu.jit(lambda g, w, gradient=gradient: lax.fori_loop(
          0, steps, lambda i, c: c + 1e-6 * jnp.mean(gradient(c, w)), g))
      loop(cotangent, kernel).block_until_ready()
      times = []
      for _ in range(loops):
        started = time.perf_counter()
        loop(cotangent, kernel).block_until_ready()
        times.append((time.perf_counter() - started) / steps)
      row[f"{name}_ms"] = 1e3 * sorted(times)[loops // 2]
    print(f"batch {batch:4d} {cin:4d}->{cout:4d} stride {stride} at {size}x{size}: "
          + ", ".join(f"{name} {row[name + '_ms']:7.2f} ms" for name in ways)
          + f" (chosen: {row['chosen']})", flush=True)
    rows.append(row)
  return rows


def write(results, args, default_name: str, benchmark: str) -> None:
  output = args.output or os.path.join(HERE, "results", default_name)
  payload = {"benchmark": benchmark, "batch_size": args.batch_size, "steps": args.steps,
             "command": shlex.join(["python"] + sys.argv),
             "date": datetime.datetime.now().isoformat(timespec="seconds"),
             "machine": describe_machine(), "results": results,
             "load_average": list(os.getloadavg())}
  if args.shapes:
    del payload["batch_size"], payload["steps"]
  os.makedirs(os.path.dirname(output), exist_ok=True)
  with open(output, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"wrote {output}")


if __name__ == "__main__":
  main()
