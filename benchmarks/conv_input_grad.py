"""Input-gradient loops on XLA:CPU: `lax.conv_general_dilated` against jaxat's conv op.

  python benchmarks/conv_input_grad.py [--batch_size=250] [--steps=100] [--output=...]

Runs 100 signed input-gradient steps (a PGD loop) of a small CNN (conv3x3 3->16, conv3x3/2
16->32, dense) inside one `lax.fori_loop`, and the same steps as 100 calls of a jitted
step from Python, with Flax's default convolution and with jaxat/models/conv_op.py.
Writes seconds per loop (compilation excluded) and the machine as JSON (default
benchmarks/results/conv_input_grad.json).
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
  parser.add_argument("--output", default=os.path.join(HERE, "results", "conv_input_grad.json"))
  args = parser.parse_args()

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax import lax

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

    loop = jax.jit(lambda params, x, step=step: lax.fori_loop(
        0, args.steps, lambda i, z: step(params, z), x))
    jitted_step = jax.jit(step)
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
  payload = {"benchmark": "PGD-style input-gradient loop, small CNN", "batch_size": args.batch_size,
             "steps": args.steps, "command": shlex.join(["python"] + sys.argv),
             "date": datetime.datetime.now().isoformat(timespec="seconds"),
             "machine": describe_machine(), "results": results,
             "load_average": list(os.getloadavg())}
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  with open(args.output, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"fori_loop speed-up {results['speedup_fori_loop']:.2f}x; wrote {args.output}")


if __name__ == "__main__":
  main()
