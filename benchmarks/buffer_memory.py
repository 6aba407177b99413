"""Memory of per-example buffers at CIFAR-10 scale: FGSM-MEP's prior buffers η and m.

  python benchmarks/buffer_memory.py [--num_train=50000] [--devices=1,2] [--steps=3]

For each case (method, buffer dtype, number of devices) a fresh process builds the run of
`configs/<method>.py:synthetic` on CIFAR-10-shaped synthetic data (num_train 32×32×3 images,
10 classes, the small CNN, batch 128), takes a few compiled training steps and reports:
- method_state_bytes: the bytes of every `method_state` leaf (the logical arrays);
- per_device_method_state_bytes: the largest sum over one device of the shards it holds
  (per-example buffers are sharded over the devices by example, docs/architecture.md#per-example-buffers,
  so it should be about method_state_bytes / devices);
- live_device_bytes: every live jax array on the devices after the steps (training data,
  parameters, optimiser state, buffers), summed over devices;
- device_peak_bytes: the allocator's peak per device where the backend reports it (GPU/TPU;
  XLA:CPU reports nothing);
- host_rss_bytes: the process's resident memory after the steps (VmRSS; on CPU it includes
  the device memory), and host_peak_rss_bytes its peak (ru_maxrss), which on CPU is set by
  generating the synthetic training set, not by training.
`pgd_at` (no buffers) is the baseline. Several CPU devices are simulated with
--xla_force_host_platform_device_count. Writes benchmarks/results/buffer_memory.json with the
machine described.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)


def resident_bytes() -> int | None:
  """VmRSS of this process (Linux), or None."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def measure(method: str, dtype: str, devices: int, num_train: int, steps: int) -> dict:
  """One case, in this process (called in a fresh subprocess by `main`)."""
  import jax
  import numpy as np
  sys.path.insert(0, HERE)
  sys.path.insert(0, REPO_ROOT)
  from throughput import load_config
  from jaxat.train import sharding
  from jaxat.train.experiment import (build_experiment, epoch_permutation_fn, init_state,
                                      put_train_data)
  from jaxat.train.step import init_sums, make_train_step, metric_shapes

  config = load_config(method)
  config.update_from_flattened_dict({
      "dataset.num_train": num_train, "dataset.num_test": 128, "dataset.image_size": 32,
      "dataset.channels": 3, "dataset.num_classes": 10, "model.name": "small_cnn",
      "batch_size": 128, "num_epochs": 2, "log.progress": "none", "num_devices": devices})
  if "buffer_dtype" in config.method:
    config.method.buffer_dtype = dtype
  exp = build_experiment(config)
  state = init_state(exp)
  images, labels = put_train_data(exp)
  permutation = epoch_permutation_fn(exp)(0)
  train_step, step_fn = make_train_step(
      exp.method, exp.ctx, exp.tx, config, exp.mesh, exp.schedule,
      sharding.state_sharding(state, exp.mesh, exp.ctx.example_rows))
  sums = init_sums(metric_shapes(step_fn, state, images, labels, permutation),
                   state.step.sharding)
  for _ in range(steps):
    state, sums = train_step(state, sums, images, labels, permutation)
  jax.block_until_ready(sums)

  def device_bytes(array) -> dict[str, int]:
    """Bytes of `array` on each device, from its sharding (reading shard.data would
    materialise per-device arrays that jax.live_arrays() then counts again)."""
    shard_bytes = int(np.prod(array.sharding.shard_shape(array.shape))) * array.dtype.itemsize
    return {str(device): shard_bytes for device in array.sharding.device_set}

  leaves = jax.tree.leaves(state.method_state)
  live = sum(sum(device_bytes(a).values()) for a in jax.live_arrays())
  per_device: dict[str, int] = {}
  for leaf in leaves:
    for device, nbytes in device_bytes(leaf).items():
      per_device[device] = per_device.get(device, 0) + nbytes
  peaks = []
  for device in jax.local_devices():
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
      peaks.append(int(stats["peak_bytes_in_use"]))
  return {
      "method": method, "buffer_dtype": dtype if "buffer_dtype" in config.method else None,
      "devices": jax.device_count(), "num_train": num_train, "steps": steps,
      "method_state_bytes": int(sum(np.prod(x.shape) * x.dtype.itemsize for x in leaves)),
      "per_device_method_state_bytes": max(per_device.values()) if per_device else 0,
      "live_device_bytes": int(live),
      "device_peak_bytes": max(peaks) if peaks else None,
      "host_rss_bytes": resident_bytes(),
      "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      "finite": bool(np.isfinite(float(jax.device_get(sums["loss"])))),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_train", type=int, default=50000)
  parser.add_argument("--devices", default="1,2")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--case", default="", help=argparse.SUPPRESS)  # method:dtype:devices
  parser.add_argument("--output", default=os.path.join(HERE, "results", "buffer_memory.json"))
  args = parser.parse_args()
  if args.case:
    method, dtype, devices = args.case.split(":")
    print(json.dumps(measure(method, dtype, int(devices), args.num_train, args.steps)))
    return

  sys.path.insert(0, HERE)
  from machine import describe_machine
  cases = [("pgd_at", "float32")] + [("fgsm_mep", d) for d in ("float32", "bfloat16")]
  results = []
  for devices in [int(d) for d in args.devices.split(",")]:
    for method, dtype in cases:
      env = dict(os.environ)
      env.setdefault("JAX_PLATFORMS", "cpu")
      if env["JAX_PLATFORMS"] == "cpu":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            f" --xla_force_host_platform_device_count={devices}").strip()
      command = [sys.executable, os.path.abspath(__file__), f"--case={method}:{dtype}:{devices}",
                 f"--num_train={args.num_train}", f"--steps={args.steps}"]
      proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
      if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{proc.stderr[-3000:]}")
      result = json.loads(proc.stdout.strip().splitlines()[-1])
      results.append(result)
      mib = lambda b: "-" if b is None else f"{b / 2**20:8.1f}"
      print(f"{method:>9} {str(result['buffer_dtype']):>9} devices={devices}: method_state "
            f"{mib(result['method_state_bytes'])} MiB, per device "
            f"{mib(result['per_device_method_state_bytes'])} MiB, live "
            f"{mib(result['live_device_bytes'])} MiB, device peak {mib(result['device_peak_bytes'])}"
            f" MiB, host RSS {mib(result['host_rss_bytes'])} MiB (peak "
            f"{mib(result['host_peak_rss_bytes'])})", flush=True)
  payload = {"benchmark": "buffer_memory",
             "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "command": shlex.join(["python", "benchmarks/buffer_memory.py", *sys.argv[1:]]),
             "machine": describe_machine(), "results": results}
  os.makedirs(os.path.dirname(args.output), exist_ok=True)
  with open(args.output, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"written to {args.output}")


if __name__ == "__main__":
  main()
