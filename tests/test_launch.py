"""launch/: the Colab notebook runs top to bottom on CPU with SMOKE = True, and the TPU-pod and
SLURM scripts print the plan they would carry out with --dry-run."""

import json
import os
import subprocess

import pytest

from tiny_runs import REPO_ROOT

LAUNCH = os.path.join(REPO_ROOT, "launch")


def _dry_run(script, *args):
  done = subprocess.run(["bash", os.path.join(LAUNCH, script), "--dry-run", *args], capture_output=True,
                        text=True, timeout=30)
  assert done.returncode == 0, done.stderr
  return done.stdout


def test_tpu_pod_dry_run_plan():
  lines = _dry_run("tpu_pod.sh", "--name=p1", "--type=v4-16", "--workdir=runs/x").splitlines()
  assert len(lines) == 4 and all(line.startswith("+ gcloud compute tpus tpu-vm ") for line in lines)
  assert "create p1" in lines[0] and "--accelerator-type=v4-16" in lines[0]
  assert "--worker=all" in lines[1] and "pip install" in lines[1]
  assert "--worker=all" in lines[2] and "python -m jaxat.main" in lines[2] and "--workdir=runs/x" in lines[2]
  assert "scp" in lines[3] and "--worker=0" in lines[3] and lines[3].endswith("./x")


def test_slurm_dry_run_plan():
  out = _dry_run("slurm.sh", "--nodes=3", "--gpus_per_node=2", "--config=configs/pgd_at.py:cifar10")
  assert "6 processes" in out
  assert "#SBATCH --nodes=3" in out and "#SBATCH --ntasks-per-node=2" in out
  assert "srun python -m jaxat.main --config=configs/pgd_at.py:cifar10" in out


def test_scripts_refuse_unknown_arguments():
  for script in ("tpu_pod.sh", "slurm.sh"):
    done = subprocess.run(["bash", os.path.join(LAUNCH, script), "--dry-run", "--bogus=1"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown argument --bogus=1" in done.stderr


def test_notebook_is_valid_nbformat_v4():
  notebook = json.load(open(os.path.join(LAUNCH, "colab_tpu.ipynb")))
  assert notebook["nbformat"] == 4
  for cell in notebook["cells"]:
    assert cell["cell_type"] in ("code", "markdown") and isinstance(cell["source"], list)
    if cell["cell_type"] == "code":
      assert cell["outputs"] == [] and "execution_count" in cell


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_in_smoke_mode(tmp_path, monkeypatch):
  """Executes the code cells in order, as Colab would, with the notebook's own SMOKE = True; the
  Colab-only steps are guarded by `if IN_COLAB:` (False here)."""
  monkeypatch.chdir(REPO_ROOT)
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("PYTHONPATH", REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  notebook = json.load(open(os.path.join(LAUNCH, "colab_tpu.ipynb")))
  namespace = {}
  for cell in notebook["cells"]:
    if cell["cell_type"] != "code":
      continue
    source = "".join(cell["source"])
    if source.lstrip().startswith("SMOKE = True"):
      source = source.replace("'/tmp/jaxat_colab_smoke'", repr(str(tmp_path / "run")), 1)
    exec(compile(source, "colab_tpu.ipynb", "exec"), namespace)
  assert namespace["SMOKE"] is True and namespace["IN_COLAB"] is False
  run = tmp_path / "run"
  assert (run / "curves.png").stat().st_size > 0
  evaluation = json.load(open(run / "eval" / "colab.json"))
  assert set(evaluation["accuracy"]) == {"clean", "fgsm"}
