"""The catalogue of bad inputs: every one refused by the command line with exit status 2 (1
for unusable run files), one line `error: ...` naming the value, no traceback, and the
workdir unchanged (a fresh one never created).

All commands run through tests/cli_driver.py: forked children of one warm interpreter,
each exactly `python -m <module> <args>`, so the exit status and stderr are the real ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tiny_runs import REPO_ROOT

STANDARD = "--config=configs/standard.py:synthetic,smoke"
PGD = "--config=configs/pgd_at.py:synthetic,smoke"
ECAS = "--config=configs/ecas.py:synthetic,smoke"
QUIET = "--config.log.progress=none"


def _case(name, module, args, expect, status=2, workdir="FRESH", env=None):
  """`expect`: substrings of the error line (the bad value, and what is valid where it
  applies). `workdir`: FRESH (must not exist afterwards), or the placeholder of an existing
  directory that must stay byte for byte unchanged (RUN: the finished run; CORRUPT_RUN: an
  unreadable config.json; DAMAGED: an unfinished run whose checkpoints are all cut short).
  `env`: environment of that command only."""
  return pytest.param(module, args, expect, status, workdir, env or {}, id=name)


def _main(name, args, expect, status=2, workdir="FRESH", config=STANDARD, env=None):
  extra = ["--workdir={FRESH}"] if workdir == "FRESH" else []
  return _case(name, "jaxat.main", [config, QUIET, *extra, *args], expect, status, workdir, env)


CASES = [
    # -- flags and config fields -----------------------------------------------------------
    _main("unknown-field", ["--config.schedule.nme=x"], ["config.schedule.nme", "schedule.name"]),
    _main("unknown-section", ["--config.nosuch.field=1"], ["config.nosuch.field", "optimizer"]),
    _main("field-typo-model", ["--config.model.chanels=8"], ["model.chanels", "channels"]),
    _main("not-an-int", ["--config.num_epochs=abc"], ["num_epochs", "abc"]),
    _main("zero-epochs", ["--config.num_epochs=0"], ["num_epochs", "0"]),
    _main("negative-batch", ["--config.batch_size=-4"], ["batch_size", "-4"]),
    _main("batch-over-train-set", ["--config.batch_size=100000"], ["batch_size=100000", "larger"]),
    _main("unknown-schedule", ["--config.schedule.name=warm"], ["'warm'", "onecycle"]),
    _main("negative-decay-factor", ["--config.schedule.decay_factor=-1"],
          ["schedule.decay_factor=-1", "(0, 1]"]),
    _main("nan-weight-decay", ["--config.optimizer.weight_decay=nan"],
          ["optimizer.weight_decay=nan", "finite"]),
    _main("inf-weight-decay", ["--config.optimizer.weight_decay=inf"], ["weight_decay=inf"]),
    _main("negative-grad-clip", ["--config.optimizer.grad_clip_norm=-1"], ["grad_clip_norm=-1"]),
    _main("nan-grad-clip", ["--config.optimizer.grad_clip_norm=nan"], ["grad_clip_norm=nan"]),
    _main("zero-div-factor", ["--config.schedule.div_factor=0"], ["schedule.div_factor=0", "[1, inf)"]),
    _main("nan-final-div-factor", ["--config.schedule.final_div_factor=nan"], ["final_div_factor=nan"]),
    _main("pct-start-one", ["--config.schedule.pct_start=1"], ["schedule.pct_start=1", "(0, 1)"]),
    _main("boundaries-unsorted", ["--config.schedule.boundaries=0.9,0.5"], ["boundaries", "increasing"]),
    _main("momentum-above-one", ["--config.optimizer.momentum=1.5"], ["optimizer.momentum=1.5", "[0, 1)"]),
    _main("nan-lr", ["--config.schedule.lr_max=nan"], ["schedule.lr_max=nan"]),
    _main("ema-decay-one", ["--config.ema.decay=1"], ["ema.decay=1", "[0, 1)"]),
    _main("negative-eval-eps", ["--config.eval.eps=-1"], ["eval.eps=-1", "[0, 1]"]),
    _main("eval-eps-above-one", ["--config.eval.eps=2"], ["eval.eps=2"]),
    _main("zero-denominator", ["--config.eval.eps=8/0"], ["--config.eval.eps=8/0", "denominator"]),
    _main("unknown-final-attack", ["--config.eval.final_attacks=clean,foo"], ["foo", "valid"]),
    _main("unknown-guard", ["--config.train.overfitting_guard=maybe"], ["'maybe'", "stop"]),
    _main("guard-drop-zero", ["--config.train.guard_drop=0"], ["train.guard_drop=0", "(0, 1]"]),
    _main("guard-gap-zero", ["--config.train.guard_gap=0"], ["train.guard_gap=0", "(0, 1]"]),
    _main("unknown-progress", ["--config.log.progress=loud"], ["'loud'", "plain"]),
    _main("unknown-padding", ["--config.augment.padding_mode=mirror"], ["'mirror'", "reflect"]),
    _main("unknown-model", ["--config.model.name=vgg16"], ["vgg16", "small_cnn"]),
    _main("model-dtype-float16", ["--config.model.dtype=float16"],
          ["model.dtype='float16'", "float32", "bfloat16", "auto"]),
    _main("unknown-dataset", ["--config.dataset.name=imagenet"], ["imagenet", "cifar10"]),
    _main("negative-val-size", ["--config.dataset.val_size=-1"], ["dataset.val_size", "-1"]),
    _main("too-many-devices", ["--config.num_devices=64"], ["num_devices=64"]),
    _main("batch-not-divisible", ["--config.num_devices=2", "--config.batch_size=33"],
          ["batch_size=33", "device count 2"],
          env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
    _main("attack-steps-zero", ["--config.method.attack.num_steps=0"], ["num_steps", "0"], config=PGD),
    _main("attack-unknown-budget", ["--config.method.attack.budget=ecs"],
          ["method.attack.budget 'ecs'", "fixed, ecas"], config=PGD),
    _main("ecas-unknown-reading", ["--config.method.attack.ecas.reading=batch"],
          ["ecas.reading='batch'", "example, class"], config=ECAS),
    _main("ecas-thresholds-swapped", ["--config.method.attack.ecas.rho_low=3"],
          ["rho_high=2.274", "rho_low=3"], config=ECAS),
    _main("ecas-eps-in-255ths", ["--config.method.attack.ecas.eps_list=(3,4,5)"],
          ["ecas.eps_list=(3", "(0, 1]"], config=ECAS),
    _main("ecas-big-outside-list", ["--config.method.attack.ecas.big=(0.5,)"],
          ["ecas.big=(0.5,)", "subset of eps_list"], config=ECAS),
    _main("ecas-with-ramp", ["--config.method.attack.ramp_epochs=1"],
          ["ramp_epochs=1", "budget='ecas'"], config=ECAS),
    _main("ecas-on-grad-align", ["--config.method.attack.budget=ecas"],
          ["budget='ecas'", "grad_align", "valid choices: fixed"],
          config="--config=configs/grad_align.py:synthetic,smoke"),
    _main("ecas-under-las-at", ["--config.method.base.attack.budget=ecas"],
          ["method.base.attack.budget='ecas'", "las_at", "valid choices: fixed"],
          config="--config=configs/las_at.py:synthetic,smoke"),
    _main("ecas-svhn", [], ["svhn", "valid datasets"], config="--config=configs/ecas.py:svhn"),
    _main("ecas-unknown-variant", [], ["'mart'", "uiat"], config="--config=configs/ecas.py:mart"),
    _main("unknown-preset", [], ["smokey", "valid choices"], config="--config=configs/standard.py:smokey"),
    _main("missing-config-file", [], ["configs/nope.py", "standard.py"], config="--config=configs/nope.py"),
    _main("positional-argument", ["stray"], ["'stray'"]),
    # -- data files ------------------------------------------------------------------------
    _main("npz-stray-label", ["--config.dataset.name=npz", "--config.dataset.data_dir={STRAY_NPZ}",
                              "--config.dataset.test_size=8"],
          ["stray.npz", "100000", "100001 classes"]),
    _main("npz-corrupt", ["--config.dataset.name=npz", "--config.dataset.data_dir={CORRUPT_NPZ}"],
          ["corrupt.npz", "cannot be read"]),
    _main("npz-negative-label", ["--config.dataset.name=npz", "--config.dataset.data_dir={NEGATIVE_NPZ}",
                                 "--config.dataset.test_size=8"],
          ["negative.npz", "-3"]),
    _main("cifar-corrupt-pickle", ["--config.dataset.name=cifar10", "--config.dataset.source=files",
                                   "--config.dataset.data_dir={CORRUPT_CIFAR}"],
          ["data_batch_1", "cannot be read"]),
    _main("npz-test-size", ["--config.dataset.name=npz", "--config.dataset.data_dir={NEGATIVE_NPZ}",
                            "--config.dataset.test_size=1000"], ["negative.npz", "test_size=1000"]),
    _main("svhn-corrupt-mat", ["--config.dataset.name=svhn", "--config.dataset.source=files",
                               "--config.dataset.data_dir={CORRUPT_SVHN}"],
          ["train_32x32.mat", "cannot be read"]),
    _main("cifar-missing", ["--config.dataset.name=cifar10", "--config.dataset.source=files",
                            "--config.dataset.data_dir={FRESH}_data"], ["not found", "_data"]),
    # -- workdirs holding a run ------------------------------------------------------------
    _main("resume-other-seed", ["--workdir={RUN}", "--config.seed=1"], ["seed: 0 -> 1", "new --workdir"],
          workdir="RUN", config=PGD),
    _main("finished-eval-change", ["--workdir={RUN}", "--config.eval.pgd_steps=3"],
          ["eval.pgd_steps", "jaxat.evaluate"], workdir="RUN", config=PGD),
    _main("hat-helper-not-standard", ["--config.method.helper_workdir={RUN}"],
          ["'pgd_at' run", "'standard'"], config="--config=configs/hat.py:synthetic,smoke"),
    _main("corrupt-config-json", ["--workdir={CORRUPT_RUN}"], ["config.json", "not readable JSON"],
          status=1, workdir="CORRUPT_RUN", config=PGD),
    _main("all-checkpoints-corrupt", ["--workdir={DAMAGED}"], ["checkpoints/last", "move"],
          status=1, workdir="DAMAGED", config=PGD),
    _case("eval-all-checkpoints-corrupt", "jaxat.evaluate", ["--workdir={DAMAGED}", "--attacks=clean"],
          ["checkpoints/last"], status=1, workdir="DAMAGED"),
    # -- evaluation ------------------------------------------------------------------------
    _case("eval-negative-eps", "jaxat.evaluate", ["--workdir={RUN}", "--eps=-1"], ["--eps=", "(0, 1]"],
          workdir="RUN"),
    _case("eval-unknown-attack", "jaxat.evaluate", ["--workdir={RUN}", "--attacks=clean,foo"],
          ["foo", "pgd<k>"], workdir="RUN"),
    _case("eval-no-run", "jaxat.evaluate", ["--workdir={FRESH}"], ["no jaxat run", "config.json"]),
    _case("eval-negative-examples", "jaxat.evaluate", ["--workdir={RUN}", "--n_examples=-1"],
          ["--n_examples", "-1"], workdir="RUN"),
    _case("eval-no-best", "jaxat.evaluate", ["--workdir={RUN}", "--checkpoint=best"],
          ["'best'", "val_size"], workdir="RUN"),
    _case("eval-ema-without-ema", "jaxat.evaluate", ["--workdir={RUN}", "--weights=ema"],
          ["ema", "ema.decay"], workdir="RUN"),
    _case("eval-bad-settings", "jaxat.evaluate", ["--workdir={RUN}", "--attack_settings=junk"],
          ["junk", "attack.setting=value"], workdir="RUN"),
    _case("eval-positional", "jaxat.evaluate", ["--workdir={RUN}", "extra"], ["'extra'"], workdir="RUN"),
    # -- analyses --------------------------------------------------------------------------
    _case("analyze-no-command", "jaxat.analyze", ["--workdir={RUN}"],
          ["inverse_curve, universal_perturbations"], workdir="RUN"),
    _case("analyze-unknown-command", "jaxat.analyze", ["plot", "--workdir={RUN}"], ["'plot'"],
          workdir="RUN"),
    _case("analyze-not-uiat", "jaxat.analyze", ["universal_perturbations", "--workdir={RUN}"],
          ["generation='universal'"], workdir="RUN"),
    _case("analyze-bad-eps", "jaxat.analyze", ["inverse_curve", "--workdir={RUN}", "--eps_max=x"],
          ["'x'"], workdir="RUN"),
    _case("analyze-no-run", "jaxat.analyze", ["inverse_curve", "--workdir={FRESH}"], ["no jaxat run"]),
]


def _tree_digest(path: str) -> str:
  """A hash of every file's relative path and bytes under `path`."""
  digest = hashlib.sha256()
  for root, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    for name in sorted(files):
      full = os.path.join(root, name)
      digest.update(os.path.relpath(full, path).encode())
      with open(full, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()


def _write_data_files(root) -> dict[str, str]:
  images = np.zeros((40, 8, 8, 3), np.uint8)
  stray = np.arange(40) % 4
  stray[7] = 100000
  np.savez(root / "stray.npz", x=images, y=stray)
  negative = np.arange(40) % 4
  negative[3] = -3
  np.savez(root / "negative.npz", x=images, y=negative)
  (root / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
  cifar = root / "cifar" / "cifar-10-batches-py"
  cifar.mkdir(parents=True)
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    (cifar / name).write_bytes(b"\x80\x02truncated")
  with open(cifar / "batches.meta", "wb") as f:
    pickle.dump({b"label_names": [b"c%d" % i for i in range(10)]}, f)
  svhn = root / "svhn"
  svhn.mkdir()
  for name in ("train_32x32.mat", "test_32x32.mat"):
    (svhn / name).write_bytes(b"MATLAB 5.0 MAT-file, truncated")
  return {"CORRUPT_SVHN": str(svhn), "STRAY_NPZ": str(root / "stray.npz"), "NEGATIVE_NPZ": str(root / "negative.npz"),
          "CORRUPT_NPZ": str(root / "corrupt.npz"), "CORRUPT_CIFAR": str(root / "cifar")}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
  """Runs the fixture run and then every case through one cli_driver process; returns
  ({case id: result}, {placeholder: path}, digests of the run before the cases)."""
  root = tmp_path_factory.mktemp("bad_inputs")
  places = _write_data_files(root)
  places["RUN"] = str(root / "run")
  corrupt_run = root / "corrupt_run"
  corrupt_run.mkdir()
  (corrupt_run / "config.json").write_text('{"seed": 0, "method": {"name"')
  places["CORRUPT_RUN"] = str(corrupt_run)
  places["DAMAGED"] = str(root / "damaged")
  setup = {"module": "jaxat.main", "args": [PGD, QUIET, f"--workdir={places['RUN']}"]}
  cases, ids = [setup], []
  for param in CASES:
    module, args, _, _, _, env = param.values
    fresh = str(root / f"fresh_{param.id}")
    filled = [a.replace("{FRESH}", fresh).format(**places) if "{" in a else a for a in args]
    cases.append({"module": module, "args": filled, "env": env})
    ids.append(param.id)
  # The run must be finished before the cases that read it: the driver runs in order, but
  # the digest is taken between, so the setup goes through its own driver call.
  results = _drive(root, [setup])
  assert results[0]["returncode"] == 0, results[0]["stderr"][-3000:]
  _damage_copy(places["RUN"], places["DAMAGED"])
  before = {name: _tree_digest(places[name]) for name in ("RUN", "CORRUPT_RUN", "DAMAGED")}
  results = _drive(root, cases[1:])
  return dict(zip(ids, results)), places, before, root


def _damage_copy(run: str, damaged: str) -> None:
  """A copy of `run` as if stopped before its final evaluation, with the array files of every
  checkpoint cut to 10 bytes (copies cut short)."""
  shutil.copytree(run, damaged)
  os.remove(os.path.join(damaged, "results.json"))
  last = os.path.join(damaged, "checkpoints", "last")
  for step in os.listdir(last):
    data = os.path.join(last, step, "state", "ocdbt.process_0", "d")
    for name in os.listdir(data):
      with open(os.path.join(data, name), "r+b") as f:
        f.truncate(10)


def _drive(root, cases: list[dict]) -> list[dict]:
  cases_path, results_path = root / "cases.json", root / "results.json"
  cases_path.write_text(json.dumps(cases))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tests", "cli_driver.py"),
                         str(cases_path), str(results_path)], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(results_path.read_text())


def test_the_catalogue_has_at_least_forty_cases():
  assert len(CASES) >= 40


@pytest.mark.parametrize("module, args, expect, status, workdir, env", CASES)
def test_bad_input_is_one_line_and_changes_nothing(catalogue, request, module, args, expect,
                                                   status, workdir, env):
  results, places, before, root = catalogue
  result = results[request.node.callspec.id]
  stderr = result["stderr"]
  assert result["returncode"] == status, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), stderr[-3000:]
  for text in expect:
    assert text in last, f"{text!r} not in {last!r}"
  fresh = root / f"fresh_{request.node.callspec.id}"
  assert not fresh.exists(), f"{fresh} was created"
  if workdir in before:
    assert _tree_digest(places[workdir]) == before[workdir], f"{workdir} changed"


CONFIGS = ("standard", "pgd_at", "trades", "mart", "awp", "hat", "uiat", "iat", "uiat_oneoff",
           "fgsm_rs", "n_fgsm", "grad_align", "fgsm_bp", "fgsm_ep", "fgsm_mep", "fgsm_sdi")


def _float_fields(tree, prefix=""):
  for key, value in tree.items():
    if hasattr(value, "items"):
      yield from _float_fields(value, f"{prefix}{key}.")
    elif isinstance(value, float):
      yield f"{prefix}{key}"


@pytest.mark.parametrize("name", CONFIGS)
def test_every_float_field_refuses_nan_and_inf(name):
  """No float field of any method's config lets NaN or inf through (a `value < 0` check
  does); the error names the field."""
  from jaxat.config.validate import validate_config
  from tiny_runs import load_config
  fields = list(_float_fields(load_config(name, "synthetic,smoke")))
  assert len(fields) > 10
  for field in fields:
    for bad in (float("nan"), float("inf")):
      config = load_config(name, "synthetic,smoke")
      config.unlock()
      *parents, leaf = field.split(".")
      node = config
      for part in parents:
        node = node[part]
      node[leaf] = bad
      with pytest.raises(ValueError, match=leaf):
        validate_config(config, 1)


def test_fraction_overrides_keep_integers_integral():
  """`k/255` becomes the float k/255; an integral fraction stays an int (so `4/2` is 2, which
  an integer field accepts, not '2.0'); a zero denominator is a UsageError naming the flag."""
  from jaxat.cli_args import rewrite_fraction_overrides
  from jaxat.errors import UsageError
  out = rewrite_fraction_overrides(["prog", "--config.method.attack.eps=8/255",
                                    "--config.num_epochs=4/2", "--workdir=a/b", "--config.x=-6/4"])
  assert out == ["prog", f"--config.method.attack.eps={8 / 255!r}", "--config.num_epochs=2",
                 "--workdir=a/b", "--config.x=-1.5"]
  with pytest.raises(UsageError, match=r"--config\.eval\.eps=1/0"):
    rewrite_fraction_overrides(["prog", "--config.eval.eps=1/0"])
