"""Cost of the adaptive attack strategies against their base methods, side by side in one run.

  python benchmarks/adaptive_cost.py --model=small_cnn --batch_size=64 --bases=pgd_at,trades,awp \
      [--interval=20] [--strategy_backbone=small|resnet18] [--steps=5] [--out=...]

For each base method b (configs/<b>.py:synthetic, CIFAR-shaped synthetic data, the model
and batch size of the flags) this compiles and times, in one process, the training step of
- b itself,
- ECAS over b (configs/ecas.py:synthetic,<b>): the entropy-guided per-example ε budget,
  and the same ECAS recipe with `method.attack.budget='fixed'` (the official ECAS recipe
  also changes the attack, e.g. eval-mode BatchNorm or a CE attack for TRADES, so this pair
  isolates what the budget role itself costs),
- LAS-AT over b (configs/las_at.py:synthetic,<b>) with `method.strategy.interval` =
  --interval and `method.strategy.backbone` = --strategy_backbone, timed separately at steps
  that skip the policy update and at an update step (the step counter is an array, so both
  are the same compiled function),
- the strategy network's evaluation-mode forward and action sampling on its own.

LAS-AT's cost per step, amortised over one interval, is
  t_skip + (t_update − t_skip) / interval,
and it is split into components (seconds per step, amortised):
  strategy forward   = t_strategy_forward                      (every step),
  masked attack      = t_skip − t_strategy_forward − t_base     (the per-example-budget attack
                       of max(steps) iterations, minus the base's own fixed-budget attack),
  look-ahead reward  = (t_update − t_skip) / interval           (policy's attack, R1, the
                       look-ahead SGD step, the reward PGD and the REINFORCE step).
The training steps are timed in --steps rounds that call each of them once in turn (after
--warmup calls each, compilation excluded) and each time is the median over the rounds, so
the ratios hold up on a shared, noisy machine; the strategy forward is a mean over --steps
calls. The
JSON result (default benchmarks/results/adaptive_cost_<model>_b<batch>.json) describes the
machine; the ratios are what the README quotes (ECAS ≤ 1.05× and LAS-AT ≤ 1.6× its base is
the goal of the method issue).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import time

import jax

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from machine import describe_machine  # noqa: E402
from run_helpers import write_json  # noqa: E402
from throughput import benchmark_config, compile_step, with_step  # noqa: E402

from jaxat import xla_cpu  # noqa: E402
from jaxat.methods import las_at  # noqa: E402
from jaxat.models.strategy_net import sample_actions  # noqa: E402

BASES = ("pgd_at", "trades", "awp")
BACKBONES = las_at.BACKBONES


def seconds_per_call(call, warmup: int, steps: int) -> float:
  """Mean wall seconds of `call()` (which returns arrays to wait for) over `steps` calls."""
  for _ in range(warmup):
    jax.block_until_ready(call())
  start = time.perf_counter()
  for _ in range(steps):
    jax.block_until_ready(call())
  return (time.perf_counter() - start) / steps


class Stepper:
  """Calls a compiled training step repeatedly, threading its (donated) state and sums."""

  def __init__(self, step):
    self.step = step
    self.state, self.sums = step.state, step.sums

  def call(self, at_step=None):
    """A function running one training step; with `at_step`, every call starts from that
    global step (so a LAS-AT step is timed as an update step or as a skipping one)."""
    images, labels, permutation = self.step.data

    def call():
      state = self.state if at_step is None else with_step(self.state, at_step)
      self.state, self.sums = self.step.compiled(state, self.sums, images, labels, permutation)
      return self.sums

    return call


def strategy_forward_seconds(stepper: Stepper, args) -> float:
  """The strategy network's eval-mode forward on one batch plus the per-head sampling."""
  exp = stepper.step.exp
  learner = exp.method.learner(exp.ctx)
  strategy_state = jax.device_get(stepper.state.method_state["strategy"])
  images = jax.device_get(stepper.step.data[0])[:args.batch_size]
  key = jax.random.key(0)

  @xla_cpu.jit
  def forward(state, x):
    logits, _ = las_at.strategy_logits(learner, state, x, train=False)
    return sample_actions(key, logits)

  return seconds_per_call(lambda: forward(strategy_state, images), args.warmup, args.steps)


def max_option(options, name: str) -> int:
  return int(max(jax.device_get(options.values[options.names.index(name)])))


def interleaved_seconds(calls: dict, warmup: int, rounds: int) -> dict:
  """Median wall seconds per call of each named `call()`, timed in `rounds` rounds that call
  each once in turn, so that a slow spell of this shared machine hits all of them alike."""
  for call in calls.values():
    for _ in range(warmup):
      jax.block_until_ready(call())
  times = {name: [] for name in calls}
  for _ in range(rounds):
    for name, call in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(call())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def measure_base(base: str, args) -> dict:
  base_step = compile_step(benchmark_config(base, args), base)
  ecas_step = compile_step(benchmark_config(f"ecas:{base}", args), f"ecas_{base}")
  # The ECAS recipe with the fixed budget: the same attack (objective, BatchNorm mode,
  # steps) and losses, so the ratio isolates the budget role.
  fixed_config = benchmark_config(f"ecas:{base}", args)
  fixed_config.method.attack.budget = "fixed"
  fixed_step = compile_step(fixed_config, f"ecas_fixed_{base}")
  las_config = benchmark_config(f"las_at:{base}", args)
  las_config.method.strategy.interval = args.interval
  las_config.method.strategy.backbone = args.strategy_backbone
  las_step = compile_step(las_config, f"las_{base}")
  interval = args.interval
  las = Stepper(las_step)
  # Global step s (0-based) updates the policy when (s + 1) % interval == 0; with interval
  # 1 every step updates and there is no skipping step.
  calls = {"base": Stepper(base_step).call(), "ecas": Stepper(ecas_step).call(),
           "ecas_recipe_fixed_budget": Stepper(fixed_step).call(),
           "las_at_update_step": las.call(at_step=interval - 1)}
  if interval > 1:
    calls["las_at_skip_step"] = las.call(at_step=0)
  t = interleaved_seconds(calls, args.warmup, args.steps)
  t.setdefault("las_at_skip_step", t["las_at_update_step"])
  t_base, t_skip, t_update = t["base"], t["las_at_skip_step"], t["las_at_update_step"]
  t_forward = strategy_forward_seconds(las, args)
  t["las_at"] = t_skip + (t_update - t_skip) / interval
  components = {"strategy_forward": t_forward,
                "masked_attack_minus_base_attack": t_skip - t_forward - t_base,
                "lookahead_reward": (t_update - t_skip) / interval}
  return {
      "base": base,
      "median_seconds_per_step": t,
      "ecas_over_base": t["ecas"] / t_base,
      "ecas_over_fixed_budget": t["ecas"] / t["ecas_recipe_fixed_budget"],
      "las_at_over_base": t["las_at"] / t_base,
      "las_at_components_seconds_per_step": components,
      "las_at_components_over_base": {k: v / t_base for k, v in components.items()},
      "las_at_max_steps": max_option(las_step.exp.method.options, "steps"),
      "base_attack_steps": int(base_step.exp.config.method.attack.num_steps),
      "compile_seconds": {"base": base_step.compile_seconds, "ecas": ecas_step.compile_seconds,
                          "las_at": las_step.compile_seconds},
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="small_cnn")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--bases", default=",".join(BASES))
  parser.add_argument("--interval", type=int, default=20,
                      help="LAS-AT policy-update interval (official LAS-PGD-AT on CIFAR-10: 20)")
  parser.add_argument("--strategy_backbone", default="small", help=", ".join(BACKBONES))
  parser.add_argument("--steps", type=int, default=12, help="timing rounds")
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  bases = [b for b in args.bases.split(",") if b]
  bad = [b for b in bases if b not in BASES]
  if bad or not bases:
    parser.error(f"--bases={args.bases!r}; valid choices: {', '.join(BASES)}")
  if args.strategy_backbone not in BACKBONES:
    parser.error(f"--strategy_backbone={args.strategy_backbone!r}; valid choices: "
                 f"{', '.join(BACKBONES)}")
  if args.interval < 1:
    parser.error(f"--interval={args.interval}; valid choices: an integer >= 1")
  # benchmark_config's fields: one epoch of (warmup + steps) batches is all a step needs.
  args.image_size, args.num_epochs, args.num_devices = 32, 10, 0
  results = [measure_base(b, args) for b in bases]
  payload = {
      "benchmark": "adaptive_cost",
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": "python benchmarks/adaptive_cost.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
      "model": args.model, "batch_size": args.batch_size, "interval": args.interval,
      "strategy_backbone": args.strategy_backbone, "steps": args.steps, "warmup": args.warmup,
      "machine": describe_machine(),
      "results": results,
  }
  out = args.out or os.path.join(HERE, "results",
                                 f"adaptive_cost_{args.model}_b{args.batch_size}.json")
  write_json(out, payload)
  print(f"| base | ECAS / base | ECAS / fixed budget | LAS-AT / base | strategy fwd | masked attack − base attack "
        f"| look-ahead reward |")
  print("|---|---|---|---|---|---|---|")
  for r in results:
    c = r["las_at_components_over_base"]
    print(f"| {r['base']} | {r['ecas_over_base']:.3f}× | {r['ecas_over_fixed_budget']:.3f}× | "
          f"{r['las_at_over_base']:.3f}× | "
          f"{c['strategy_forward']:+.3f}× | {c['masked_attack_minus_base_attack']:+.3f}× | "
          f"{c['lookahead_reward']:+.3f}× |")
  print(f"wrote {out}")


if __name__ == "__main__":
  from jaxat import host_memory
  host_memory.restart_with_huge_pages()   # as `python -m jaxat.main` runs (jaxat/host_memory.py)
  main()
