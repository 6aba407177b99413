"""Training throughput of jaxat methods, side by side, optionally against PyTorch.

Measures the compiled training step (batch gather + augmentation + the method's attack and
update, exactly what `python -m jaxat.main` runs) on synthetic CIFAR-shaped data, after
compilation and warm-up, and writes a JSON result with the machine described:

  python benchmarks/throughput.py --model=preact_resnet18 --batch_size=64 --steps=5 \
      --methods=standard,pgd_at [--torch_python=/path/to/python-with-torch]

Reported per method: seconds per step, images/s, seconds per CIFAR-10 epoch
(50000 / images/s) and the cost relative to `standard` and `pgd_at`. With
--torch_python, benchmarks/torch_reference.py runs the same model and methods in PyTorch
in the same invocation and the speed-up jaxat/PyTorch is reported.

--conv=lax swaps the models' convolution (jaxat/models/conv_op.py, whose custom VJP keeps
the input gradient fast inside attack loops) for plain `lax.conv_general_dilated`, to
measure what that VJP costs or saves per method.

Methods whose step depends on the training phase (e.g. uiat_oneoff) are measured at the
epoch given by --at_epoch out of --num_epochs, or at their own epoch with `@<epoch>`. A
method measured at an epoch E > 0 first trains through epoch E - 1 (every batch of the
synthetic epoch, with that epoch's step), so its state, and a phase read from it
(uiat_oneoff after T': FROZEN once T' wrote every target), are those a run has at E.
A method is a config file of configs/ (so `ecas`, `las_at` count as methods) and may carry
a config token after a colon: `uiat_oneoff:fgsm_mep` is
configs/uiat_oneoff.py:synthetic,fgsm_mep (UIAT plugged into FGSM-MEP), e.g.

  python benchmarks/throughput.py --model=small_cnn --methods=pgd_at,fgsm_mep,uiat_oneoff:fgsm_mep,uiat_oneoff:fgsm_mep@8

On a machine whose speed drifts, --rounds=R compiles every method first and then times
them in turn, R rounds of --steps steps, reporting each method's median round; ratios
between methods are then measured under the same conditions: each `cost_vs_*` is the median
over the rounds of the per-round ratio, with its quartiles (`cost_vs_*_quartiles`).
`cost_vs_base` compares `<method>:<base>` (UIAT plugged into <base>) with <base> when both
are measured. --recompute=JSON re-derives these fields from a result file's stored times.

Each result also counts the convolutions of the optimised step (`hlo_convolutions`), which
shows the passes XLA actually runs: e.g. FGSM-MEP's forward at x + η, written twice (attack
and regulariser), is computed once.

--dtypes=float32,bfloat16 measures every method once per `model.dtype` (the classifier's
compute dtype, docs/mixed_precision.md), same seed and data; each result names its dtype
and, with both, `bfloat16_speedup` = bfloat16 images/s over float32 images/s.
--torch_precisions=fp32,amp runs the PyTorch reference in float32 and with automatic mixed
precision; `comparison` sets PyTorch fp32 against jaxat float32 and PyTorch AMP against jaxat
bfloat16 (`<method>/amp`).

--timing_lock=FILE compiles every step first and times (jaxat, then PyTorch) while holding
an exclusive lock on FILE, so that several benchmark processes on one GPU compile in
parallel on the host's cores yet time one at a time (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from typing import Callable, NamedTuple

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from machine import describe_machine  # noqa: E402

from jaxat import host_memory  # noqa: E402
from jaxat.train.experiment import (build_experiment, epoch_permutation_fn, init_state,  # noqa: E402
                                    put_train_data)
from jaxat.train import sharding  # noqa: E402
from jaxat.train.step import init_sums, make_train_step, metric_shapes, phase_context  # noqa: E402
from jaxat.train.train import finish_prerequisites  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR10_TRAIN_SIZE = 50000


def parse_method(spec: str) -> tuple[str, str, int | None]:
  """'name[:token][@epoch]' -> (config name, extra config token, epoch or None)."""
  spec, _, epoch = spec.partition("@")
  name, _, token = spec.partition(":")
  return name, token, int(epoch) if epoch else None


def load_config(method: str):
  import importlib.util
  name, token, _ = parse_method(method)
  path = os.path.join(REPO_ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(",".join(["synthetic"] + ([token] if token else [])))


def benchmark_config(method: str, args):
  config = load_config(method)
  # One epoch holds every step the method runs (warm-up and all timed rounds), so a method
  # measured at an epoch (`@<epoch>`, --at_epoch) stays in that epoch throughout.
  steps = args.warmup + args.steps * getattr(args, "rounds", 1)
  examples = args.batch_size * steps
  config.update_from_flattened_dict({
      "dataset.num_train": max(examples, args.batch_size * 2), "dataset.num_test": args.batch_size,
      "dataset.image_size": args.image_size, "dataset.channels": 3, "dataset.num_classes": 10,
      "model.name": args.model, "model.normalization": "dataset" if args.model != "small_cnn" else "none",
      "model.final_bn": True, "batch_size": args.batch_size, "num_epochs": args.num_epochs,
      "augment.crop_padding": 4, "augment.flip": True, "log.progress": "none", "num_devices": args.num_devices,
  })
  if args.model == "small_cnn":
    config.model.channels = (32, 64)
  return config


class CompiledStep(NamedTuple):
  """A method's compiled training step and the arguments it is called with."""
  compiled: Callable
  state: object
  sums: object
  data: tuple
  exp: object
  compile_seconds: float


def compile_step(config, scratch_name: str, at_epoch: int = 0) -> CompiledStep:
  """Builds the experiment of `config`, trains its prerequisites (in /tmp), and compiles
  its training step for epoch `at_epoch`, the state's step counter set to the start of
  that epoch (the counter is an array: `with_step` moves it without recompiling). For
  `at_epoch` > 0 the state is first trained through epoch `at_epoch` - 1."""
  exp = build_experiment(config)
  finish_prerequisites(exp.method, config, os.path.join("/tmp", f"jaxat_benchmark_{scratch_name}"))
  state = init_state(exp)
  images, labels = put_train_data(exp)
  permutation = epoch_permutation_fn(exp)(0)
  state_shardings = sharding.state_sharding(state, exp.mesh, exp.ctx.example_rows)

  def step_for(epoch, state):
    # The step jaxat.main compiles for that epoch (its epoch phase, read from the state;
    # docs/architecture.md#epoch-phases).
    return make_train_step(exp.method, phase_context(exp.method, exp.ctx, epoch, state.method_state),
                           exp.tx, config, exp.mesh, exp.schedule, state_shardings)

  shapes = metric_shapes(step_for(0, state)[1], state, images, labels, permutation)
  sums = init_sums(shapes, state.step.sharding)
  if at_epoch:
    state = with_step(state, (at_epoch - 1) * exp.ctx.steps_per_epoch)
    previous = step_for(at_epoch - 1, state)[0]
    for _ in range(exp.ctx.steps_per_epoch):
      state, sums = previous(state, sums, images, labels, permutation)
    sums = init_sums(shapes, state.step.sharding)
  train_step = step_for(at_epoch, state)[0]
  start = time.perf_counter()
  compiled = train_step.lower(state, sums, images, labels, permutation).compile()
  return CompiledStep(compiled, state, sums, (images, labels, permutation), exp,
                      time.perf_counter() - start)


def with_step(state, step: int):
  """`state` with its global step counter set to `step` (what the method's StepInfo sees)."""
  return state.replace(step=jax.device_put(jax.numpy.asarray(step, jax.numpy.int32),
                                           state.step.sharding))


class Measurement:
  """A method's compiled step and its evolving state, timed in one or more rounds."""

  def __init__(self, method: str, args, dtype: str = "auto"):
    config = benchmark_config(method, args)
    config.model.dtype = dtype
    at_epoch = parse_method(method)[2]
    at_epoch = args.at_epoch if at_epoch is None else at_epoch
    self.method, self.dtype, self.batch_size = method, dtype, args.batch_size
    self.step = compile_step(config, parse_method(method)[0], at_epoch)
    self.state, self.sums = self.step.state, self.step.sums
    self.round_seconds: list[float] = []
    self.round_page_faults: list[float] = []
    self.run(args.warmup)

  def run(self, steps: int) -> None:
    for _ in range(steps):
      self.state, self.sums = self.step.compiled(self.state, self.sums, *self.step.data)
    jax.block_until_ready(self.sums)

  def time_round(self, steps: int) -> None:
    faults = minor_page_faults()
    start = time.perf_counter()
    self.run(steps)
    self.round_seconds.append((time.perf_counter() - start) / steps)
    self.round_page_faults.append((minor_page_faults() - faults) / steps)

  def result(self) -> dict:
    seconds = statistics.median(self.round_seconds)
    return {"method": self.method, "dtype": self.dtype,
            "resolved_dtype": jax.numpy.dtype(self.step.exp.model.module.dtype).name,
            "seconds_per_step": seconds, "round_seconds_per_step": self.round_seconds,
            "images_per_sec": self.batch_size / seconds, "compile_seconds": self.step.compile_seconds,
            "seconds_per_cifar10_epoch": CIFAR10_TRAIN_SIZE / (self.batch_size / seconds),
            "hlo_convolutions": count_convolutions(self.step.compiled),
            # Host memory (docs/performance.md#huge-pages): the step's temporary buffer and
            # the process's minor page faults per step (all threads; median round).
            "temp_bytes": temp_bytes(self.step.compiled),
            "minor_page_faults_per_step": statistics.median(self.round_page_faults)}


def minor_page_faults() -> int:
  """The process's minor page faults so far (all threads), 0 where not reported."""
  try:
    import resource
  except ImportError:   # not POSIX
    return 0
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def temp_bytes(compiled) -> int | None:
  """Bytes of the compiled step's temporary buffer, where the backend reports it."""
  try:
    return int(compiled.memory_analysis().temp_size_in_bytes)
  except (AttributeError, NotImplementedError, TypeError):
    return None


def measure_all(specs: list[tuple[str, str]], args) -> list[dict]:
  """Times every (method, dtype). One round: each is compiled, warmed up and timed in turn.
  Several rounds: all are compiled and warmed up first, then timed `steps` steps each, in
  turn, once per round, and the median round is reported, so a machine whose speed drifts
  (a shared 2-core VM) slows every method alike instead of whichever ran at the wrong time."""
  if args.rounds == 1:
    results = []
    for method, dtype in specs:
      m = Measurement(method, args, dtype)
      m.time_round(args.steps)
      results.append(m.result())
    return results
  return time_rounds([Measurement(method, args, dtype) for method, dtype in specs], args)


def time_rounds(measurements: list[Measurement], args) -> list[dict]:
  for _ in range(args.rounds):
    for m in measurements:
      m.time_round(args.steps)
  return [m.result() for m in measurements]


@contextlib.contextmanager
def exclusive(path: str):
  """Holds an exclusive lock on the file `path` (created if missing) while inside."""
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def measure_under_lock(specs: list[tuple[str, str]], methods: list[str], args):
  """(jaxat results, PyTorch result) with every step compiled first, outside the lock
  --timing_lock, and everything timed (jaxat, then PyTorch) inside it: several benchmark
  processes can then compile at once on a many-core host and still time one at a time on
  the accelerator they share."""
  measurements = [Measurement(method, args, dtype) for method, dtype in specs]
  with exclusive(args.timing_lock):
    for m in measurements:   # the device may have run another process's work meanwhile
      m.run(args.warmup)
    return time_rounds(measurements, args), run_torch(args, methods)


def cost(result: dict, reference: dict) -> tuple[float, list[float] | None]:
  """(seconds per step of `result` over `reference`, quartiles or None). With several
  rounds: the median over the rounds of the per-round ratio, and its quartiles, so a round
  in which the machine ran slow slows both sides of its ratio alike."""
  mine, theirs = result.get("round_seconds_per_step"), reference.get("round_seconds_per_step")
  if mine and theirs and len(mine) == len(theirs) and len(mine) > 1:
    ratios = [a / b for a, b in zip(mine, theirs)]
    return statistics.median(ratios), statistics.quantiles(ratios, n=4)[::2]
  return result["seconds_per_step"] / reference["seconds_per_step"], None


def add_costs(results: list[dict], dtypes: list[str]) -> None:
  """Adds `cost_vs_standard`, `cost_vs_pgd_at` and, for `<method>:<base>` when the base was
  measured too (UIAT plugged into it), `cost_vs_base`, each with `_quartiles` after several
  rounds; among methods of the same dtype."""
  for dtype in dtypes:
    of_dtype = [r for r in results if r["dtype"] == dtype]
    by_name = {r["method"]: r for r in of_dtype}
    for r in of_dtype:
      references = {"standard": "standard", "pgd_at": "pgd_at", "base": parse_method(r["method"])[1]}
      for label, reference in references.items():
        if reference in by_name:
          r[f"cost_vs_{label}"], quartiles = cost(r, by_name[reference])
          if quartiles:
            r[f"cost_vs_{label}_quartiles"] = quartiles


def recompute(path: str) -> None:
  """Re-derives the cost fields of a result file from its stored times (no timing)."""
  with open(path) as f:
    payload = json.load(f)
  add_costs(payload["jaxat"], payload["dtypes"])
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
  print_results(payload["jaxat"])


def print_results(results: list[dict]) -> None:
  for r in results:
    extras = " ".join(f"{k}={r[k]:.2f}" for k in ("cost_vs_standard", "cost_vs_pgd_at", "cost_vs_base",
                                                   "bfloat16_speedup") if k in r)
    print(f"{r['method']:>14} {r['resolved_dtype']:>8}: {r['images_per_sec']:9.1f} img/s  "
          f"{r['seconds_per_step']:.4f} s/step  convs={r.get('hlo_convolutions')}  "
          f"faults/step={r.get('minor_page_faults_per_step', float('nan')):.0f}  {extras}")


def count_convolutions(compiled) -> int:
  """Convolution instructions in the optimised program of a compiled step: forward,
  input-backward and weight-backward passes of every conv layer that XLA kept after
  merging identical computations. A while-loop body (PGD's attack step) counts once, and
  every branch of a lax.switch counts, run or not (UIAT one-off's three targets)."""
  return len(re.findall(r" convolution\(", compiled.as_text()))


def run_torch(args, methods, same_host_memory: bool = False) -> dict | None:
  """The PyTorch reference's result, run in a subprocess: by default as its users run it
  (the environment this script was started with, before any huge-page restart); with
  `same_host_memory`, under jaxat's host-memory settings (jaxat/host_memory.py):
  `MALLOC_TOP_PAD_=<TOP_PAD_BYTES>` and this process's `GLIBC_TUNABLES`. Both are recorded
  in the result (`malloc_top_pad`, `glibc_tunables`)."""
  torch_methods = [m for m in methods if m in ("standard", "pgd_at", "trades")]
  if not args.torch_python or not torch_methods:
    return None
  env = host_memory.environment_before_restart(os.environ)
  if same_host_memory:
    env = dict(os.environ, **{host_memory.ENVIRONMENT_VARIABLE: str(host_memory.TOP_PAD_BYTES)})
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
  proc = subprocess.run([args.torch_python, script, f"--model={args.model}",
                         f"--methods={','.join(torch_methods)}", f"--batch_size={args.batch_size}",
                         f"--steps={args.steps}", f"--warmup={args.warmup}",
                         f"--image_size={args.image_size}", f"--device={args.torch_device}",
                         f"--precisions={args.torch_precisions}"],
                        capture_output=True, text=True, check=True, env=env)
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  result["malloc_top_pad"] = env.get(host_memory.ENVIRONMENT_VARIABLE, host_memory.UNSET)
  result["glibc_tunables"] = env.get(host_memory.TUNABLES_VARIABLE, host_memory.UNSET)
  return result


def compare_with_torch(results: list[dict], torch_result: dict | None,
                       dtypes: list[str]) -> dict:
  """{key: jaxat and PyTorch images/s and their ratio}. PyTorch fp32 is compared with
  jaxat float32 when measured, else jaxat's first dtype (key: the method); PyTorch AMP with
  jaxat bfloat16 when measured, else the same (key: '<method>/amp')."""
  if not torch_result:
    return {}
  full = "float32" if "float32" in dtypes else dtypes[0]
  jaxat_of = {"fp32": {r["method"]: r for r in results if r["dtype"] == full}}
  jaxat_of["amp"] = ({r["method"]: r for r in results if r["dtype"] == "bfloat16"}
                     if "bfloat16" in dtypes else jaxat_of["fp32"])
  comparison = {}
  for t in torch_result["results"]:
    precision = t.get("precision", "fp32")
    ours = jaxat_of[precision].get(t["method"])
    if ours is None:
      continue
    key = t["method"] if precision == "fp32" else f"{t['method']}/{precision}"
    comparison[key] = {"jaxat_dtype": ours["dtype"], "torch_precision": precision,
                       "jaxat_images_per_sec": ours["images_per_sec"],
                       "torch_images_per_sec": t["images_per_sec"],
                       "speedup_jaxat_over_torch": ours["images_per_sec"] / t["images_per_sec"]}
  return comparison


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="preact_resnet18")
  parser.add_argument("--methods", default="standard,pgd_at")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--rounds", type=int, default=1,
                      help="timing rounds of --steps steps each, methods interleaved; the median "
                           "round is reported (all steps compiled and held in memory at once)")
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--num_epochs", type=int, default=10)
  parser.add_argument("--at_epoch", type=int, default=0)
  parser.add_argument("--num_devices", type=int, default=0)
  parser.add_argument("--torch_python", default="", help="python with torch installed (optional)")
  parser.add_argument("--torch_device", default="cpu", help="device of the PyTorch reference: "
                      "cpu, cuda, or auto")
  parser.add_argument("--torch_precisions", default="fp32",
                      help="precisions of the PyTorch reference: comma list of fp32, amp "
                           "(torch.autocast; float16 + GradScaler on CUDA)")
  parser.add_argument("--torch_malloc_top_pad", action="store_true",
                      help="also run the PyTorch reference under the host-memory settings "
                           "jaxat makes in its own process (jaxat/host_memory.py: "
                           "MALLOC_TOP_PAD_ and, where this script restarted with huge pages, "
                           "GLIBC_TUNABLES); reported as torch_same_host_memory and "
                           "comparison_same_host_memory")
  parser.add_argument("--timing_lock", default="", metavar="FILE",
                      help="compile first, then time (jaxat and PyTorch) while holding an "
                           "exclusive lock on FILE: benchmark processes sharing a GPU compile "
                           "in parallel and time one at a time")
  parser.add_argument("--out", default="", help="JSON path (default benchmarks/results/...)")
  parser.add_argument("--dtypes", default="auto",
                      help="comma-separated model.dtype values to measure each method with: "
                           "float32, bfloat16, auto (docs/mixed_precision.md)")
  parser.add_argument("--conv", default="jaxat", choices=("jaxat", "lax"),
                      help="jaxat: the models' convolution (jaxat/models/conv_op.py, custom input-"
                           "gradient VJP); lax: plain lax.conv_general_dilated, to measure that VJP")
  parser.add_argument("--recompute", default="", metavar="JSON",
                      help="re-derive the cost fields of an earlier result file from its stored "
                           "times and rewrite it; nothing is timed")
  args = parser.parse_args()
  if args.recompute:
    recompute(args.recompute)
    return
  if args.conv == "lax":
    from jax import lax
    from jaxat.models import layers
    layers.conv_general_dilated = lax.conv_general_dilated
  methods = [m for m in args.methods.split(",") if m]
  config_names = sorted(f[:-3] for f in os.listdir(os.path.join(REPO_ROOT, "configs"))
                        if f.endswith(".py") and not f.startswith("_"))
  unknown = [m for m in methods if parse_method(m)[0] not in config_names]
  if unknown:
    parser.error(f"unknown methods {unknown}; valid choices: {', '.join(config_names)}")

  dtypes = [d for d in args.dtypes.split(",") if d]
  bad = [d for d in dtypes if d not in ("float32", "bfloat16", "auto")]
  if bad or not dtypes:
    parser.error(f"--dtypes={args.dtypes!r}; valid choices: float32, bfloat16, auto")
  if args.rounds < 1 or args.steps < 1:
    parser.error(f"--rounds={args.rounds} --steps={args.steps}; both must be >= 1")
  specs = [(m, d) for d in dtypes for m in methods]
  if args.timing_lock:
    results, torch_result = measure_under_lock(specs, methods, args)
  else:
    results = measure_all(specs, args)
    torch_result = run_torch(args, methods)
  torch_same = (run_torch(args, methods, same_host_memory=True)
                if args.torch_malloc_top_pad else None)
  add_costs(results, dtypes)
  if {"float32", "bfloat16"} <= set(dtypes):
    float32 = {r["method"]: r for r in results if r["dtype"] == "float32"}
    for r in results:
      if r["dtype"] == "bfloat16":
        r["bfloat16_speedup"] = r["images_per_sec"] / float32[r["method"]]["images_per_sec"]
  comparison = compare_with_torch(results, torch_result, dtypes)
  payload = {
      "benchmark": "throughput",
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
      "model": args.model, "batch_size": args.batch_size, "image_size": args.image_size,
      "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds, "at_epoch": args.at_epoch, "conv": args.conv,
      "dtypes": dtypes,
      "machine": describe_machine(), "jaxat": results, "torch": torch_result,
      "comparison": comparison,
  }
  if torch_same:
    payload["torch_same_host_memory"] = torch_same
    payload["comparison_same_host_memory"] = compare_with_torch(results, torch_same, dtypes)
  out = args.out or os.path.join(REPO_ROOT, "benchmarks", "results",
                                 f"throughput_{jax.default_backend()}_{args.model}_b{args.batch_size}"
                                 + ("" if dtypes == ["auto"] else "_" + "_".join(dtypes)) + ".json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump(payload, f, indent=2)
  print_results(results)
  for method, c in comparison.items():
    print(f"{method:>14}: jaxat/torch speed-up {c['speedup_jaxat_over_torch']:.2f}x")
  for method, c in payload.get("comparison_same_host_memory", {}).items():
    print(f"{method:>14}: jaxat/torch speed-up {c['speedup_jaxat_over_torch']:.2f}x "
          "(PyTorch with the same host-memory settings)")
  print(f"written to {out}")


if __name__ == "__main__":
  host_memory.restart_with_huge_pages()   # as `python -m jaxat.main` runs (jaxat/host_memory.py)
  main()
