"""What one pass of a classifier costs: the units of the README's pass counts, measured.

  python benchmarks/pass_costs.py --model=small_cnn --batch_size=64 [--rounds=7] [--calls=10] \
      [--processes=5] [--output=benchmarks/results/pass_costs_small_cnn_b64.json]

The README counts a method's step in passes (a forward = 1, an input backward = 1, a weight
backward = 1; PGD-10 training 23, FGSM-RS 5, FGSM-BP/EP/MEP 7, UIAT one-off before T' one
more than its base). This script times the passes themselves, each compiled alone by
`jaxat.xla_cpu.jit` on random inputs in [0, 1] (B, 32, 32, 3) and 10 labels, the same model
settings as `benchmarks/throughput.py`:
- forward_eval: logits with the running statistics;
- forward_train: logits with batch statistics (and the running-average update);
- forward_input_backward: ∇_x of the batch-mean cross-entropy (train mode), i.e. F + I;
- training_gradient: ∇_θ of the same, i.e. F + I + W (no optimiser update).
All four are timed in interleaved rounds (`--calls` calls each per round) and the median
round is reported in seconds per call, with the units derived from them (F, I = (F + I) − F,
W = (F + I + W) − (F + I)) and what they predict for a step by pass count: PGD-10 training
10·(F + I) + (F + I + W), FGSM-RS (F + I) + (F + I + W), FGSM-BP/EP/MEP that plus I + W,
the one-off plug-in over FGSM-RS that plus F (train mode). Compare them with the measured
steps of `benchmarks/throughput.py` (the JSON's `predicted_step_seconds`): a step runs
slower than the sum of its passes where the passes compete for cache and memory.

`--processes=K` measures in K fresh processes one after the other and reports, per pass,
the median over the processes of their median rounds (each process's numbers are kept
under `processes`): on the 2-core development VM some processes ran one pass about 1.5×
slower in every round (the small CNN's training gradient: 37 against 25 ms), so a single
process can mislead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import throughput  # noqa: E402
from run_helpers import provenance, write_json  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

from jaxat import xla_cpu  # noqa: E402
from jaxat.models.forward import ModelFn  # noqa: E402
from jaxat.models.registry import create_model  # noqa: E402

MODELS = ("small_cnn", "preact_resnet18", "resnet18")
NUM_CLASSES = 10


def model_config(name: str) -> ml_collections.ConfigDict:
  """The model settings `benchmarks/throughput.py` times `name` with."""
  setup = argparse.Namespace(model=name, batch_size=1, steps=1, warmup=0, image_size=32,
                             num_epochs=1, num_devices=1)
  return throughput.benchmark_config("standard", setup).model


def pass_functions(model: ModelFn, labels: jax.Array) -> dict:
  """name -> jitted f(params, batch_stats, x) for the four passes of the module docstring."""

  def mean_cross_entropy(logits):
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))

  def train_loss(params, stats, x):
    return mean_cross_entropy(model(params, stats, x, "train")[0])

  return {
      "forward_eval": xla_cpu.jit(lambda p, s, x: model(p, s, x, "eval")[0]),
      "forward_train": xla_cpu.jit(lambda p, s, x: model(p, s, x, "train")[0]),
      "forward_input_backward": xla_cpu.jit(jax.grad(train_loss, argnums=2)),
      "training_gradient": xla_cpu.jit(jax.grad(train_loss, argnums=0)),
  }


def units(seconds: dict) -> dict:
  """F, I and W (seconds) from the timed passes."""
  forward = seconds["forward_train"]
  input_backward = seconds["forward_input_backward"] - forward
  weight_backward = seconds["training_gradient"] - seconds["forward_input_backward"]
  return {"forward": forward, "input_backward": input_backward,
          "weight_backward": weight_backward}


def predicted_steps(seconds: dict) -> dict:
  """Seconds per training step by pass count, from the timed passes."""
  attack = seconds["forward_input_backward"]
  train = seconds["training_gradient"]
  u = units(seconds)
  fgsm_rs = attack + train
  return {"pgd_at": 10 * attack + train, "fgsm_rs": fgsm_rs,
          "fgsm_bp_ep_mep": fgsm_rs + u["input_backward"] + u["weight_backward"],
          "uiat_oneoff_over_fgsm_rs": fgsm_rs + u["forward"]}


def measure(args) -> tuple[dict, dict]:
  """(median seconds per call, seconds per call of every round) of the four passes, in this
  process."""
  module = create_model(model_config(args.model), NUM_CLASSES, (0.5,) * 3, (0.25,) * 3)
  x = jax.random.uniform(jax.random.key(0), (args.batch_size, 32, 32, 3))
  labels = jnp.arange(args.batch_size) % NUM_CLASSES
  variables = module.init(jax.random.key(1), x, train=False)
  params, stats = variables["params"], variables.get("batch_stats", {})
  functions = pass_functions(ModelFn(module), labels)
  for fn in functions.values():
    jax.block_until_ready(fn(params, stats, x))
  rounds = {name: [] for name in functions}
  for _ in range(args.rounds):
    for name, fn in functions.items():
      start = time.perf_counter()
      for _ in range(args.calls):
        out = fn(params, stats, x)
      jax.block_until_ready(out)
      rounds[name].append((time.perf_counter() - start) / args.calls)
  return {name: statistics.median(values) for name, values in rounds.items()}, rounds


def measure_in_processes(args) -> list[dict]:
  """`measure` in `args.processes` fresh processes, one after the other."""
  results = []
  with tempfile.TemporaryDirectory() as scratch:
    for index in range(args.processes):
      path = os.path.join(scratch, f"{index}.json")
      subprocess.run([sys.executable, os.path.abspath(__file__), f"--model={args.model}",
                      f"--batch_size={args.batch_size}", f"--rounds={args.rounds}",
                      f"--calls={args.calls}", "--processes=1", f"--output={path}"],
                     check=True, stdout=subprocess.DEVNULL)
      with open(path) as f:
        one = json.load(f)
      results.append({"seconds_per_call": one["seconds_per_call"],
                      "round_seconds_per_call": one["round_seconds_per_call"]})
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="small_cnn", choices=MODELS)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--calls", type=int, default=10, help="calls of each pass per round")
  parser.add_argument("--processes", type=int, default=1,
                      help="fresh processes to measure in (the median over them is reported)")
  parser.add_argument("--output", default="")
  args = parser.parse_args()
  for field in ("batch_size", "rounds", "calls", "processes"):
    if getattr(args, field) < 1:
      parser.error(f"--{field}={getattr(args, field)} is invalid; valid: an integer >= 1")
  started = time.time()
  output = args.output or os.path.join(
      HERE, "results", f"pass_costs_{args.model}_b{args.batch_size}.json")
  if args.processes == 1:
    seconds, rounds = measure(args)
    extra = {"round_seconds_per_call": rounds}
  else:
    processes = measure_in_processes(args)
    seconds = {name: statistics.median(p["seconds_per_call"][name] for p in processes)
               for name in processes[0]["seconds_per_call"]}
    extra = {"processes": processes}
  for name, value in seconds.items():
    print(f"{name:>24}: {value * 1000:8.2f} ms", flush=True)
  predicted = predicted_steps(seconds)
  for name, value in predicted.items():
    print(f"{'predicted ' + name:>32}: {value:.4f} s/step", flush=True)
  write_json(output, {
      "benchmark": "seconds of one pass (forward, input backward, weight backward)",
      "model": args.model, "batch_size": args.batch_size, "rounds": args.rounds,
      "calls_per_round": args.calls, "processes_measured": args.processes,
      **provenance(started), "seconds_per_call": seconds, **extra,
      "units_seconds": units(seconds), "predicted_step_seconds": predicted})
  print(f"wrote {output}")


if __name__ == "__main__":
  from jaxat import host_memory
  host_memory.restart_with_huge_pages()   # as `python -m jaxat.main` runs (jaxat/host_memory.py)
  main()
