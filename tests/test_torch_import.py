"""Import from PyTorch: state_dicts in the official key layouts (RobustBench containers,
DataParallel prefixes, TRADES' unused sub_block1, a bias-free last layer) give the same
logits in jaxat as in PyTorch; export -> import is the identity; `python -m jaxat.evaluate
--torch_checkpoint=...` evaluates them and refuses bad input in one line."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxat.interop import torch_import, torch_keys, torch_layout, torch_source  # noqa: E402
from jaxat.models import PreActResNet18, ResNet18, SmallCNN, WideResNet  # noqa: E402
from tiny_runs import run_cli  # noqa: E402
from torch_models import (jaxat_logits, load_module_from_file, to_tensors,  # noqa: E402
                          torch_logits, variables_with_random_statistics)

# The synthetic preset: 8x8x1 images, 10 classes; models built as the import builds them.
IMAGE_SHAPE = (8, 8, 1)
ARCHS = {
    "resnet18": ResNet18(10, "relu"),
    "preact_resnet18": PreActResNet18(10, True, "relu"),
    "preact_resnet18_no_final_bn": PreActResNet18(10, False, "relu"),
    # RobustBench's PreActBlock (out_shortcut=False) with its mu/sigma buffers (Wong2020Fast).
    "preact_resnet18_no_final_bn_input_shortcut": PreActResNet18(
        10, False, "relu", (0.4,), (0.25,), shortcut_input="input"),
    "wrn-10-2": WideResNet(10, 10, 2, "relu"),
    "small_cnn": SmallCNN(10, (3, 5), True, "relu"),
}
# A key of each official layout that must be in the file (RobustBench / TRADES / kuangliu).
OFFICIAL_KEYS = {
    "resnet18": ["layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_var", "linear.bias"],
    "preact_resnet18": ["layer3.0.shortcut.0.weight", "bn.running_mean", "linear.weight"],
    "preact_resnet18_no_final_bn": ["layer4.1.bn2.weight", "linear.weight"],
    "preact_resnet18_no_final_bn_input_shortcut": ["layer2.0.shortcut.0.weight"],
    "wrn-10-2": ["block1.layer.0.convShortcut.weight", "block3.layer.0.bn1.num_batches_tracked",
                 "bn1.running_var", "fc.weight"],
    "small_cnn": ["conv2.bias", "bn2.running_var", "dense.weight"],
}


def write_torch_checkpoint(arch, path, tmp_path, seed=0):
  """The jaxat model of `arch` with random BatchNorm state, saved the way RobustBench and
  the official repositories ship it: {'state_dict': {'module.<key>': tensor}}. Returns
  (jaxat variables, PyTorch module with the same weights)."""
  model = ARCHS[arch]
  variables = variables_with_random_statistics(model, IMAGE_SHAPE, seed)
  feature_map = (torch_source.small_cnn_feature_map(model, IMAGE_SHAPE)
                 if isinstance(model, SmallCNN) else None)
  state_dict = torch_layout.variables_to_state_dict(
      variables, torch_keys.state_dict_entries(model), feature_map)
  source = tmp_path / f"model_{arch.replace('-', '_')}_{seed}.py"
  source.write_text(torch_source.model_source(model, IMAGE_SHAPE))
  net = load_module_from_file(str(source), source.stem).build_model()
  net.load_state_dict(to_tensors(state_dict), strict=True)
  saved = {f"module.{key}": value for key, value in net.state_dict().items()}
  for key in OFFICIAL_KEYS[arch]:
    assert f"module.{key}" in saved, key
  if tuple(model.mean) != (0.0,):
    # RobustBench keeps the input normalisation as persistent buffers mu and sigma.
    saved["module.mu"] = torch.tensor(model.mean).view(1, -1, 1, 1)
    saved["module.sigma"] = torch.tensor(model.std).view(1, -1, 1, 1)
  if arch.startswith("wrn"):
    # TRADES' unused sub_block1, and RobustBench's bias_last=False (a zero bias).
    saved["module.sub_block1.layer.0.bn1.weight"] = torch.ones(16)
    with torch.no_grad():
      net.fc.bias.zero_()
    del saved["module.fc.bias"]
    variables["params"]["dense"]["bias"] = np.zeros(10, np.float32)
  torch.save({"state_dict": saved, "epoch": 3}, path)
  return variables, net


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_imported_state_dict_gives_pytorch_logits_in_jaxat(arch, tmp_path):
  path = tmp_path / "checkpoint.pt"
  variables, net = write_torch_checkpoint(arch, path, tmp_path)
  imported = torch_import.import_checkpoint(str(path), arch, dataset="synthetic")
  trained = imported.trained
  x = trained.experiment.test.images[:8].astype(np.float32) / 255.0
  logits = np.asarray(trained.model.logits(trained.params, trained.batch_stats, x))
  assert np.abs(logits - torch_logits(net, x)).max() <= 1e-4
  # Round trip: jaxat -> PyTorch file -> jaxat changes no weight.
  np.testing.assert_allclose(logits, jaxat_logits(ARCHS[arch], variables, x), atol=1e-6)


def test_import_errors_name_the_flag_value_and_choices(tmp_path):
  path = tmp_path / "wrn.pt"
  write_torch_checkpoint("wrn-10-2", path, tmp_path)
  with pytest.raises(ValueError, match=r"--arch='vgg16' is invalid; valid choices: resnet18, "):
    torch_import.import_checkpoint(str(path), "vgg16", dataset="synthetic")
  with pytest.raises(ValueError, match=r"--arch='wrn-11-2' is invalid"):
    torch_import.import_checkpoint(str(path), "wrn-11-2", dataset="synthetic")
  with pytest.raises(ValueError, match=r"--torch_checkpoint='.*nope.pt' does not exist"):
    torch_import.import_checkpoint(str(tmp_path / "nope.pt"), "wrn-10-2", dataset="synthetic")
  with pytest.raises(ValueError, match=r"state_dict key 'block1.layer.0.conv1.weight' has shape "
                     r"\(32, 16, 3, 3\); the architecture needs \(64, 16, 3, 3\)"):
    torch_import.import_checkpoint(str(path), "wrn-10-4", dataset="synthetic")
  with pytest.raises(ValueError, match=r"missing keys \[block1.layer.1.bn1.bias, .*\] \(30\)$"):
    torch_import.import_checkpoint(str(path), "wrn-16-2", dataset="synthetic")
  with pytest.raises(ValueError, match=r"missing keys \[bn1.bias, .*unexpected keys \[bn1.bias"
                     r"|missing keys .*; unexpected keys \[block1.layer.0.bn1.bias, "):
    torch_import.import_checkpoint(str(path), "resnet18", dataset="synthetic")
  with pytest.raises(ValueError, match=r"--dataset='imagenet' is invalid; valid choices: digits, "):
    torch_import.import_checkpoint(str(path), "wrn-10-2", dataset="imagenet")
  normalised = tmp_path / "normalised.pt"
  write_torch_checkpoint("preact_resnet18_no_final_bn_input_shortcut", normalised, tmp_path)
  with pytest.raises(ValueError, match=r"--normalization='dataset' but the checkpoint normalises "
                     r"its inputs itself \(mu=\(0.4.*; valid choice here: none"):
    torch_import.import_checkpoint(str(normalised), "preact_resnet18_no_final_bn_input_shortcut",
                                   normalization="dataset", dataset="synthetic")


@pytest.mark.slow
def test_evaluate_cli_on_a_torch_checkpoint(tmp_path):
  path = tmp_path / "wrn.pt"
  _, net = write_torch_checkpoint("wrn-10-2", path, tmp_path)
  workdir = tmp_path / "imported"
  proc = run_cli(["-m", "jaxat.evaluate", f"--torch_checkpoint={path}", "--arch=wrn-10-2",
                  "--dataset=synthetic", f"--workdir={workdir}", "--attacks=clean,pgd2",
                  "--n_examples=32", "--batch_size=32", "--num_buckets=1", "--progress=none",
                  "--tag=torch"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((workdir / "eval" / "torch.json").read_text())
  imported = torch_import.import_checkpoint(str(path), "wrn-10-2", dataset="synthetic")
  test = imported.trained.experiment.test
  x, y = test.images[:32].astype(np.float32) / 255.0, test.labels[:32]
  assert report["accuracy"]["clean"] == pytest.approx(float(np.mean(torch_logits(net, x).argmax(1) == y)))
  assert report["arch"] == "wrn-10-2" and report["checkpoint"] == "torch"
  assert json.loads((workdir / "config.json").read_text())["model"]["depth"] == 10

  # Bad input: one line, no traceback, nothing written.
  bad = tmp_path / "bad"
  for args, line in [
      (["--arch=wrn-10-4"], "state_dict key 'block1.layer.0.conv1.weight' has shape (32, 16, 3, 3); "
                            "the architecture needs (64, 16, 3, 3)"),
      ([], "error: --torch_checkpoint needs --arch; valid choices: resnet18, preact_resnet18, "),
  ]:
    proc = run_cli(["-m", "jaxat.evaluate", f"--torch_checkpoint={path}", "--dataset=synthetic",
                    f"--workdir={bad}", *args])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and not bad.exists()
    assert line in proc.stderr.strip().splitlines()[-1]
