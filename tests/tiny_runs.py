"""Tiny end-to-end runs for tests: configs that train in seconds on two CPU cores."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import ml_collections

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str = "") -> ml_collections.ConfigDict:
  """configs/<name>.py:get_config(arg), as the command line would load it (locked)."""
  path = os.path.join(REPO_ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def tiny_config(name: str = "pgd_at", dataset: str = "synthetic", **overrides) -> ml_collections.ConfigDict:
  """A locked config that trains in a few seconds; `overrides` use dotted names
  ('method.attack.num_steps': 2)."""
  config = load_config(name, f"{dataset},smoke")
  config.update_from_flattened_dict({"log.progress": "none", "num_epochs": 2, "batch_size": 32,
                                     "eval.pgd_steps": 2, "dataset.max_train": 128,
                                     "dataset.num_train": 128, "dataset.max_test": 64,
                                     "dataset.num_test": 64, **overrides})
  return config


def run_cli(args: list[str], env_extra: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs `python -m jaxat.main ...` (or another module given as args[0] == '-m')."""
  env = dict(os.environ)
  env.setdefault("JAX_PLATFORMS", "cpu")
  env.update(env_extra or {})
  return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


# A 16-step UIAT command line with momentum from epoch 1 of 2, so a per-example buffer lives
# through the run (and across a resume): 128 synthetic examples / batch 16 = 8 steps an epoch.
UIAT_MOMENTUM_ARGS = ["-m", "jaxat.main", "--config=configs/uiat.py:synthetic,smoke",
                      "--config.log.progress=plain", "--config.num_epochs=2", "--config.batch_size=16",
                      "--config.method.attack.num_steps=2", "--config.eval.pgd_steps=1",
                      "--config.eval.every_epochs=2", "--config.method.momentum_start=0.5",
                      "--config.dataset.num_train=128", "--config.dataset.max_train=128",
                      "--config.dataset.num_test=32", "--config.dataset.max_test=32",
                      "--config.eval_batch_size=32"]


def run_until_sigterm(args: list[str], env: dict) -> tuple[int, str]:
  """Starts `python <args>`, sends SIGTERM once the training step has compiled (the handler
  is installed before compilation) and returns (exit status, stderr)."""
  import signal
  proc = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for line in proc.stderr:
    if "compiled the training step" in line:
      proc.send_signal(signal.SIGTERM)
      break
  _, stderr = proc.communicate(timeout=300)
  return proc.returncode, stderr


def interrupted_and_straight_runs(args: list[str], tmp_path, total_steps: int) -> tuple[dict, dict, int]:
  """Trains `python <args>` twice side by side: straight through in tmp_path/'straight', and
  in tmp_path/'interrupted' stopped by SIGTERM once the step has compiled, then rerun. Asserts the preemption status (143) with its message, a
  checkpoint before the last of `total_steps` and no results.json after the interruption,
  that the rerun resumed from it, that every run succeeded, and that both runs wrote the
  same metrics.jsonl records (timings aside: the partial epoch's sums are checkpointed).
  Returns (the interrupted run's results.json, the straight run's, the step resumed from)."""
  import json
  straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
  env = dict(os.environ)
  uninterrupted = subprocess.Popen([sys.executable, *args, f"--workdir={straight}"], cwd=REPO_ROOT,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  second = [*args, f"--workdir={interrupted}"]
  returncode, stderr = run_until_sigterm(second, env)
  assert returncode == 143, stderr[-3000:]
  assert "rerun the same command to resume" in stderr, stderr[-3000:]
  saved = max(int(s) for s in os.listdir(interrupted / "checkpoints" / "last"))
  assert saved < total_steps, saved
  assert not (interrupted / "results.json").exists()
  resumed = run_cli(second)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from step {saved}" in resumed.stderr
  _, straight_err = uninterrupted.communicate(timeout=300)
  assert uninterrupted.returncode == 0, straight_err[-3000:]
  results, records = [], []
  for workdir in (interrupted, straight):
    with open(workdir / "results.json") as f:
      results.append(json.load(f))
    with open(workdir / "metrics.jsonl") as f:
      records.append([{k: v for k, v in json.loads(line).items()
                       if k not in ("images_per_sec", "train_seconds")} for line in f])
  assert records[0] and records[0] == records[1]
  return results[0], results[1], saved


def train_all_epochs(config: ml_collections.ConfigDict):
  """The engine's compiled step over every epoch (no evaluation, no checkpoints); returns
  (experiment, final state, metric sums on the host). Follows dataset.placement."""
  import jax
  from jaxat.train.experiment import (build_experiment, epoch_permutation_fn, host_batcher,
                                      init_state, put_train_data)
  from jaxat.train import sharding
  from jaxat.train.step import init_sums, make_train_step, metric_shapes
  exp = build_experiment(config)
  state = init_state(exp)
  if exp.placement == "host":
    batcher = host_batcher(exp)
    step, step_fn = make_train_step(
        exp.method, exp.ctx, exp.tx, config, exp.mesh, exp.schedule,
        sharding.state_sharding(state, exp.mesh, exp.ctx.example_rows), placement="host")
    sums = init_sums(metric_shapes(step_fn, state, *batcher.input_specs()), state.step.sharding)
    for t in range(exp.total_steps):
      state, sums = step(state, sums, *batcher.inputs(t))
      if t + 1 < exp.total_steps:
        batcher.prefetch(t + 1)
    return exp, state, jax.device_get(sums)
  images, labels = put_train_data(exp)
  permutation_of = epoch_permutation_fn(exp)
  step, step_fn = make_train_step(
      exp.method, exp.ctx, exp.tx, config, exp.mesh, exp.schedule,
      sharding.state_sharding(state, exp.mesh, exp.ctx.example_rows))
  sums = init_sums(metric_shapes(step_fn, state, images, labels, permutation_of(0)),
                   state.step.sharding)
  for epoch in range(exp.ctx.num_epochs):
    permutation = permutation_of(epoch)
    for _ in range(exp.ctx.steps_per_epoch):
      state, sums = step(state, sums, images, labels, permutation)
  return exp, state, jax.device_get(sums)
