"""AutoAttack 'standard' speed: jaxat against the reference PyTorch `autoattack` package on
the same model, images and machine.

  python benchmarks/autoattack_speed.py --n_images=256 --eps=2/255 \
      [--reference_python=/path/to/python] [--reference_threads=1] [--batch_size=250] \
      [--repeat=2] [--output=...]
  python benchmarks/autoattack_speed.py --workdir=<run> --n_images=1000 --eps=8/255 \
      [--reference_python=...] [--reference_device=cuda]

Model: without --workdir, the small CNN of the AutoAttack goldens (conv3x3 3->16,
conv3x3/2 16->32, dense; weights from ../shared/goldens/autoattack_smallcnn.npz), images:
the first N images of the CIFAR-10 subset ../shared/data/cifar10_train_subset.npz (the
golden model saw all but the first 64 in training). With --workdir, any trained jaxat run
(last checkpoint, raw weights, running BatchNorm statistics) on the first N images of its
own test split; the reference gets the same weights through `python -m jaxat.export`'s
PyTorch export (model.py + model.pt) and the same images. jaxat runs
`evaluate_robustness(attacks='aa')`; the seconds per attack include compilation (reported
separately with --repeat=2: the second run is warm).

The reference: give --reference_python, a Python that can `import torch` and
`import autoattack` (fra31/auto-attack, which is not on PyPI: clone it and put its folder
on PYTHONPATH, or `pip install git+https://github.com/fra31/auto-attack`). This script
runs itself under that Python with --framework=reference (which needs only numpy, torch
and autoattack), on a PyTorch mirror of the same network and the same images (on
--reference_device: cpu or cuda), and
reports the reference's seconds per attack (from its log), the speed-up and the
per-example agreement of the robust flags. Without it, jaxat is benchmarked alone.

Writes one JSON file (default benchmarks/results/autoattack_speed.json) with the machine
described. CPU timings are noisy when the machine is shared: the load average at the start
and end is recorded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")
GOLDEN_PATH = os.path.join(SHARED, "goldens", "autoattack_smallcnn.npz")
IMAGES_PATH = os.path.join(SHARED, "data", "cifar10_train_subset.npz")
sys.path.insert(0, HERE)

from machine import describe_machine  # noqa: E402

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")


def load_problem(n_images: int) -> tuple[dict, np.ndarray, np.ndarray]:
  """Golden weights (Flax layout), images (N,32,32,3) float32 in [0,1] and labels."""
  for path in (GOLDEN_PATH, IMAGES_PATH):
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} is needed for this benchmark")
  golden = np.load(GOLDEN_PATH)
  weights = {key: golden[key] for key in golden.files if "/" in key}
  data = np.load(IMAGES_PATH)
  if n_images > len(data["y"]):
    raise ValueError(f"--n_images={n_images} but the subset has {len(data['y'])} images")
  x = data["x"][:n_images].astype(np.float32) / 255.0
  return weights, x, data["y"][:n_images].astype(np.int64)


def golden_model(weights):
  """The golden small CNN as an (apply_fn, variables) pair."""
  import ml_collections
  from jaxat.models import create_model

  config = ml_collections.ConfigDict(dict(
      name="small_cnn", activation="relu", normalization="none", final_bn=True, depth=34,
      width=10, channels=(16, 32), batch_norm=False))
  module = create_model(config, 10, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
  params = {layer: {"kernel": weights[f"{layer}/kernel"], "bias": weights[f"{layer}/bias"]}
            for layer in ("conv1", "conv2", "dense")}
  return _logits_of(module), {"params": params}


def load_run_problem(workdir: str, n_images: int):
  """(classifier, x, y, description) of a trained run: its last checkpoint's raw weights
  in inference mode and the first n_images of its test split, x (N,H,W,C) in [0,1]."""
  from jaxat.eval.robustness import as_images, jaxat_classifier
  from jaxat.train.restore import load_trained_model
  trained = load_trained_model(workdir, checkpoint="last", weights="raw")
  test = trained.experiment.test
  if n_images > len(test):
    raise ValueError(f"--n_images={n_images} but the run's test split has {len(test)} images")
  x, y = as_images(test.images[:n_images]), np.asarray(test.labels[:n_images], np.int64)
  classifier = jaxat_classifier(trained.model, trained.params, trained.batch_stats, "eval")
  config = trained.config
  description = (f"{config.model.name} trained by jaxat ({config.method.name}, "
                 f"{config.dataset.name}, step {trained.step}), last checkpoint, raw weights")
  return classifier, x, y, description


def write_reference_problem(workdir: str, x: np.ndarray, y: np.ndarray, out_dir: str) -> None:
  """The run exported for PyTorch (model.py, model.pt) and the images (NCHW) in out_dir."""
  from jaxat.interop.export import ExportRequest, export_run
  export_run(ExportRequest(workdir=workdir, out_dir=out_dir, checkpoint="last", weights="raw"))
  np.savez(os.path.join(out_dir, "images.npz"), x=x.transpose(0, 3, 1, 2), y=y)


def run_jaxat(model, x, y, eps: float, batch_size: int, seed: int) -> dict:
  """AutoAttack standard by jaxat on `model` (a Classifier or an (apply_fn, variables) pair)."""
  import jax
  from jaxat.eval.robustness import evaluate_robustness

  started = time.perf_counter()
  report = evaluate_robustness(model, x, y, attacks="aa", eps=eps, batch_size=batch_size,
                               seed=seed)
  total = time.perf_counter() - started
  seconds = {name: report.seconds[f"aa/{name}"] for name in STANDARD}
  return {"framework": "jaxat", "backend": jax.default_backend(),
          "accuracy": {"clean": report.accuracy["clean"],
                       **{name: report.stages["aa"][name] for name in STANDARD}},
          "seconds": {"clean": report.seconds["clean"], **seconds, "total": total},
          "robust": report.correct["aa"].astype(int).tolist(), "warnings": report.warnings}


class _logits_of:  # noqa: N801 (a hashable function object: it keys jaxat's compilations)
  def __init__(self, module):
    self.module = module

  def __call__(self, variables, x):
    return self.module.apply(variables, x, train=False)[0]

  def __hash__(self):
    return hash(self.module)

  def __eq__(self, other):
    return isinstance(other, _logits_of) and other.module == self.module


def golden_torch_model(weights):
  """The golden network in PyTorch: padding (1,1) on both convs, NHWC flattening before dense."""
  import torch
  import torch.nn as tnn
  import torch.nn.functional as F

  class SmallCNN(tnn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1)
      self.conv2 = tnn.Conv2d(16, 32, 3, 2, 1)
      self.dense = tnn.Linear(8192, 10)

    def forward(self, inputs):
      out = F.relu(self.conv2(F.relu(self.conv1(inputs))))
      return self.dense(out.permute(0, 2, 3, 1).reshape(inputs.shape[0], -1))

  model = SmallCNN()
  with torch.no_grad():
    for layer in ("conv1", "conv2"):
      getattr(model, layer).weight.copy_(torch.from_numpy(weights[f"{layer}/kernel"].transpose(3, 2, 0, 1)))
      getattr(model, layer).bias.copy_(torch.from_numpy(weights[f"{layer}/bias"]))
    model.dense.weight.copy_(torch.from_numpy(weights["dense/kernel"].T))
    model.dense.bias.copy_(torch.from_numpy(weights["dense/bias"]))
  return model


def exported_torch_model(problem_dir: str):
  """(model, x NCHW, y) from write_reference_problem's directory; needs only torch."""
  import importlib.util
  import torch

  spec = importlib.util.spec_from_file_location("jaxat_exported_model",
                                                os.path.join(problem_dir, "model.py"))
  source = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(source)
  model = source.build_model()
  model.load_state_dict(torch.load(os.path.join(problem_dir, "model.pt")))
  images = np.load(os.path.join(problem_dir, "images.npz"))
  return model, images["x"], images["y"]


def run_reference(model, x_nchw: np.ndarray, y: np.ndarray, eps: float, batch_size: int,
                  seed: int, threads: int, device: str) -> dict:
  """AutoAttack standard by the reference package on a PyTorch model, x (N,C,H,W) in [0,1]."""
  import torch
  from autoattack import AutoAttack

  if threads > 0:
    torch.set_num_threads(threads)
  model = model.to(device).eval()

  class TimedLog:
    """Receives the reference's log lines and stamps them."""

    def __init__(self):
      self.lines = []

    def log(self, text):
      self.lines.append((time.perf_counter(), str(text)))

  log = TimedLog()
  adversary = AutoAttack(model, norm="Linf", eps=eps, version="standard", device=device,
                         seed=seed, log_path=None)
  adversary.logger = log
  x_all = torch.from_numpy(np.ascontiguousarray(x_nchw)).to(device)
  labels = torch.from_numpy(y).to(device)
  started = time.perf_counter()
  x_adv = adversary.run_standard_evaluation(x_all, labels, bs=batch_size)
  if device.startswith("cuda"):
    torch.cuda.synchronize()
  total = time.perf_counter() - started
  seconds, accuracy, previous = {}, {}, started
  for stamp, text in log.lines:
    if text.startswith("initial accuracy"):
      accuracy["clean"] = float(text.split(":")[1].strip().rstrip("%")) / 100
      seconds["clean"] = stamp - previous
      previous = stamp
    for name in STANDARD:
      if text.startswith(f"robust accuracy after {name.upper()}"):
        accuracy[name] = float(text.split(":")[1].split("%")[0].strip()) / 100
        seconds[name] = stamp - previous
        previous = stamp
  with torch.no_grad():
    robust = torch.cat([model(x_adv[i:i + batch_size]).argmax(1)
                        for i in range(0, len(x_adv), batch_size)]) == labels
  seconds["total"] = total
  return {"framework": "autoattack (PyTorch reference)", "torch": torch.__version__,
          "device": device, "torch_threads": torch.get_num_threads(), "accuracy": accuracy,
          "seconds": seconds, "robust": robust.cpu().numpy().astype(int).tolist()}


def compare(jaxat_result: dict, reference: dict, n_images: int) -> dict:
  ours, theirs = np.array(jaxat_result["robust"], bool), np.array(reference["robust"], bool)
  speedups = {name: reference["seconds"][name] / jaxat_result["seconds"][name]
              for name in STANDARD + ("total",)
              if name in reference["seconds"] and jaxat_result["seconds"].get(name, 0) > 0}
  return {
      "speedup": speedups,
      "robust_accuracy_difference_pp": 100 * (ours.mean() - theirs.mean()),
      "robust_only_jaxat": int((ours & ~theirs).sum()),
      "robust_only_reference": int((~ours & theirs).sum()),
      "images_per_second": {"jaxat": n_images / jaxat_result["seconds"]["total"],
                            "reference": n_images / reference["seconds"]["total"]},
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--n_images", type=int, default=256)
  parser.add_argument("--eps", default="2/255", help="L-inf radius, e.g. 2/255 (the goldens')")
  parser.add_argument("--batch_size", type=int, default=250)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--repeat", type=int, default=1, help="jaxat runs (2: the second is warm)")
  parser.add_argument("--framework", choices=("jaxat", "reference"), default="jaxat",
                      help="'reference' is used internally by --reference_python")
  parser.add_argument("--reference_python", default="",
                      help="a Python with torch and autoattack importable; runs the reference")
  parser.add_argument("--reference_threads", type=int, default=0,
                      help="torch.set_num_threads for the reference; 0 = torch's default. On a "
                      "CPU shared with other jobs, 1 avoids thread oversubscription (the "
                      "reference was >10x slower with 2 threads on 2 busy cores)")
  parser.add_argument("--reference_device", default="cpu", help="cpu or cuda")
  parser.add_argument("--workdir", default="",
                      help="a trained jaxat run to attack instead of the golden small CNN")
  parser.add_argument("--problem_dir", default="", help=argparse.SUPPRESS)  # reference side
  parser.add_argument("--output", default=os.path.join(HERE, "results", "autoattack_speed.json"))
  args = parser.parse_args()
  eps = float(Fraction(args.eps))
  if args.n_images < 1 or args.batch_size < 1:
    parser.error(f"--n_images={args.n_images} --batch_size={args.batch_size}; both must be >= 1")
  if args.reference_device not in ("cpu", "cuda"):
    parser.error(f"--reference_device={args.reference_device!r}; valid choices: cpu, cuda")

  if args.framework == "reference":
    if args.problem_dir:
      model, x_nchw, y = exported_torch_model(args.problem_dir)
    else:
      weights, x, y = load_problem(args.n_images)
      model, x_nchw = golden_torch_model(weights), x.transpose(0, 3, 1, 2)
    print(json.dumps(run_reference(model, x_nchw, y, eps, args.batch_size, args.seed,
                                   args.reference_threads, args.reference_device)))
    return

  sys.path.insert(0, REPO_ROOT)
  if args.workdir:
    if not os.path.isfile(os.path.join(args.workdir, "config.json")):
      parser.error(f"--workdir={args.workdir!r} is not a jaxat run (no config.json)")
    model, x, y, description = load_run_problem(args.workdir, args.n_images)
    images = f"first N of the run's test split ({args.workdir})"
  else:
    weights, x, y = load_problem(args.n_images)
    model = golden_model(weights)
    description = "golden small CNN (conv 3->16, conv/2 16->32, dense 8192->10)"
    images = "first N of ../shared/data/cifar10_train_subset.npz"
  load_start = os.getloadavg()
  runs = [run_jaxat(model, x, y, eps, args.batch_size, args.seed) for _ in range(args.repeat)]
  result = {
      "benchmark": "AutoAttack standard, L-inf", "eps": args.eps, "n_images": args.n_images,
      "batch_size": args.batch_size, "seed": args.seed,
      "reference_threads": args.reference_threads or "torch default",
      "reference_device": args.reference_device, "model": description, "images": images,
      "command": shlex.join([os.path.basename(sys.executable)] + sys.argv),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "machine": describe_machine(), "jaxat": runs[0],
  }
  if len(runs) > 1:
    result["jaxat_warm"] = runs[-1]
  if args.reference_python:
    result["reference"] = reference_subprocess(args, x, y)
    result["comparison"] = compare(runs[0], result["reference"], args.n_images)
    if len(runs) > 1:
      result["comparison_warm"] = compare(runs[-1], result["reference"], args.n_images)
  result["load_average_start_end"] = [load_start, os.getloadavg()]
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
  summary = {k: result[k] for k in ("comparison",) if k in result}
  print(json.dumps({"jaxat_seconds": runs[0]["seconds"], "jaxat_accuracy": runs[0]["accuracy"],
                    **summary, "written": args.output}, indent=2))


def reference_subprocess(args, x: np.ndarray, y: np.ndarray) -> dict:
  """Runs this script as --framework=reference under --reference_python; with --workdir the
  run is exported to PyTorch first, with the images, into a temporary directory."""
  command = [args.reference_python, os.path.abspath(__file__), "--framework=reference",
             f"--n_images={args.n_images}", f"--eps={args.eps}",
             f"--batch_size={args.batch_size}", f"--seed={args.seed}",
             f"--reference_threads={args.reference_threads}",
             f"--reference_device={args.reference_device}"]
  with tempfile.TemporaryDirectory() as problem_dir:
    if args.workdir:
      write_reference_problem(args.workdir, x, y, problem_dir)
      command.append(f"--problem_dir={problem_dir}")
    # As its users run it: the environment this script was started with, before any
    # huge-page restart (jaxat/host_memory.py).
    from jaxat import host_memory
    proc = subprocess.run(command, capture_output=True, text=True, check=False,
                          env=host_memory.environment_before_restart(os.environ))
  if proc.returncode != 0:
    raise RuntimeError(f"the reference run failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
  if "--framework=reference" not in sys.argv:   # the reference runs as its users run it
    from jaxat import host_memory
    host_memory.restart_with_huge_pages()   # as `python -m jaxat.evaluate` runs (jaxat/host_memory.py)
  main()
