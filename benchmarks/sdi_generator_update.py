"""FGSM-SDI's every-k generator update on XLA:CPU: `lax.cond` against computing it every
step and selecting the result.

  python benchmarks/sdi_generator_update.py [--batch_size=64] [--image_size=8] [--channels=1]
      [--generator_width=64] [--every=20] [--rounds=3] [--output=...]

Times FGSM-SDI's `prepare` (clean gradient, generator update when due, initial
perturbation and FGSM step) of the digits small CNN (32, 64 channels, BatchNorm) for one
cycle of k steps (one generator update, k − 1 without), jitted, compilation excluded, with
the update as jaxat runs it (`lax.cond`, jaxat/methods/fgsm_sdi.py `update_if_due`) and as
`jnp.where(due, update(x), x)` (both branches computed every step). The variants alternate
`rounds` times and the fastest cycle of each is kept (the machine may be shared). Writes
seconds per step and the machine as JSON (default benchmarks/results/sdi_generator_update.json).
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
sys.path.insert(0, os.path.dirname(HERE))

from machine import describe_machine  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--image_size", type=int, default=8)
  parser.add_argument("--channels", type=int, default=1)
  parser.add_argument("--generator_width", type=int, default=64)
  parser.add_argument("--every", type=int, default=20)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--output", default=os.path.join(HERE, "results", "sdi_generator_update.json"))
  args = parser.parse_args()

  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxat import xla_cpu
  from jaxat.methods import fgsm_sdi
  from jaxat.methods.base import Batch, StepContext, step_info
  from jaxat.models.forward import ModelFn
  from jaxat.models.small_cnn import SmallCNN

  def select(due, update, operand):
    updated = update(operand)
    return jax.tree.map(lambda new, old: jnp.where(due, new, old), updated, operand)

  shape = (args.image_size, args.image_size, args.channels)
  module = SmallCNN(num_classes=10, channels=(32, 64), batch_norm=True)
  variables = module.init(jax.random.key(0), jnp.zeros((1,) + shape), train=False)
  ctx = StepContext(model=ModelFn(module), num_classes=10, num_train=args.batch_size * args.every,
                    image_shape=shape, steps_per_epoch=args.every, num_epochs=1,
                    batch_size=args.batch_size)
  cfg = fgsm_sdi.FGSMSDI.default_config()
  cfg.update(generator_every=args.every, generator_width=args.generator_width)
  method = fgsm_sdi.FGSMSDI(cfg)
  rng = np.random.default_rng(0)
  batch = Batch(jnp.asarray(rng.random((args.batch_size,) + shape, np.float32)),
                jnp.asarray(rng.integers(0, 10, args.batch_size), jnp.int32),
                jnp.arange(args.batch_size, dtype=jnp.int32))
  state0 = method.init_state(jax.random.key(1), ctx, variables["params"], variables["batch_stats"])

  compiled = {}
  for name, choose in (("cond", fgsm_sdi.update_if_due), ("select", select)):
    fgsm_sdi.update_if_due = choose   # read when the step is traced
    step = xla_cpu.jit(lambda stats, state, s: method.prepare(
        ctx, variables["params"], stats, state, batch, None, step_info(s, ctx, 0.1))[1:3])
    jax.block_until_ready(step(variables["batch_stats"], state0, 0))
    jax.block_until_ready(step(variables["batch_stats"], state0, 1))
    compiled[name] = step

  def cycle(step):
    stats, state = variables["batch_stats"], state0
    started = time.perf_counter()
    for s in range(args.every):
      stats, state = step(stats, state, s)
    jax.block_until_ready(state)
    return (time.perf_counter() - started) / args.every

  best = {name: float("inf") for name in compiled}
  for _ in range(args.rounds):
    for name, step in compiled.items():
      best[name] = min(best[name], cycle(step))
  for name, seconds in best.items():
    print(f"{name}: {1e3 * seconds:.2f} ms per step")
  results = {f"seconds_per_step_{name}": seconds for name, seconds in best.items()}
  results["speedup_cond"] = best["select"] / best["cond"]
  payload = {"benchmark": "FGSM-SDI prepare, generator update every k steps: lax.cond vs select",
             "batch_size": args.batch_size, "image_shape": list(shape),
             "generator_width": args.generator_width, "every": args.every,
             "classifier": "small_cnn (32, 64) with BatchNorm",
             "command": shlex.join(["python"] + sys.argv),
             "date": datetime.datetime.now().isoformat(timespec="seconds"),
             "machine": describe_machine(), "results": results,
             "load_average": list(os.getloadavg())}
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  with open(args.output, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"lax.cond speed-up {results['speedup_cond']:.2f}x; wrote {args.output}")


if __name__ == "__main__":
  main()
