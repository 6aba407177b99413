"""launch/: the Colab notebook is valid nbformat and runs top to bottom on CPU with SMOKE = True."""

import json
import os

import pytest

from tiny_runs import REPO_ROOT

LAUNCH = os.path.join(REPO_ROOT, "launch")


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
