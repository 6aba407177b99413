"""Export to PyTorch: every model family gives the same logits in PyTorch as in jaxat, the
layout rules are exact inverses, and `python -m jaxat.export` writes a loadable model,
its state_dict and a RobustBench model_info, or refuses bad input in one line."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxat.interop import model_info, torch_keys, torch_layout, torch_source  # noqa: E402
from jaxat.models import PreActResNet18, ResNet18, SmallCNN, WideResNet  # noqa: E402
from tiny_runs import run_cli, tiny_config  # noqa: E402
from torch_models import (jaxat_logits, load_module_from_file, to_tensors,  # noqa: E402
                          torch_logits, variables_with_random_statistics)

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)

# (model, image shape HWC): every family, tiny; odd sizes check the stride-2 padding.
FAMILIES = {
    "small_cnn_bn_odd": (SmallCNN(5, (4, 6), True, "relu", (0.2, 0.3), (0.5, 0.7)), (7, 9, 2)),
    "small_cnn_silu": (SmallCNN(5, (4, 6), False, "silu"), (8, 8, 1)),
    "resnet18": (ResNet18(3, "relu", CIFAR_MEAN, CIFAR_STD), (8, 8, 3)),
    "preact_resnet18_final_bn_silu": (PreActResNet18(3, True, "silu", CIFAR_MEAN, CIFAR_STD), (8, 8, 3)),
    "preact_resnet18_no_final_bn": (PreActResNet18(3, False, "relu"), (7, 7, 3)),
    "preact_resnet18_input_shortcut": (
        PreActResNet18(3, True, "relu", shortcut_input="input"), (8, 8, 3)),
    "wide_resnet_10_2_relu": (WideResNet(4, 10, 2, "relu", CIFAR_MEAN, CIFAR_STD), (9, 9, 3)),
    "wide_resnet_16_1_silu": (WideResNet(4, 16, 1, "silu"), (8, 8, 3)),
}


def export_in_memory(model, image_shape, tmp_path, seed=0):
  variables = variables_with_random_statistics(model, image_shape, seed)
  feature_map = (torch_source.small_cnn_feature_map(model, image_shape)
                 if isinstance(model, SmallCNN) else None)
  entries = torch_keys.state_dict_entries(model)
  state_dict = torch_layout.variables_to_state_dict(variables, entries, feature_map)
  path = tmp_path / "model.py"
  path.write_text(torch_source.model_source(model, image_shape))
  net = load_module_from_file(str(path), f"exported_{seed}_{id(model)}").build_model()
  return variables, entries, feature_map, state_dict, net


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exported_model_gives_jaxat_logits_in_pytorch(family, tmp_path):
  model, image_shape = FAMILIES[family]
  variables, entries, feature_map, state_dict, net = export_in_memory(model, image_shape, tmp_path)
  # strict=True: the generated module has exactly the table's keys and shapes.
  net.load_state_dict(to_tensors(state_dict), strict=True)
  x = np.random.default_rng(1).uniform(0, 1, (4,) + image_shape).astype(np.float32)
  expected, actual = jaxat_logits(model, variables, x), torch_logits(net, x)
  assert np.abs(expected - actual).max() <= 1e-4
  assert np.abs(expected - expected.mean(0)).max() > 1e-3  # the logits depend on the input
  # The key table covers every jaxat variable, and the conversion inverts exactly.
  assert torch_layout.count_variables(variables) == sum(e.kind != torch_keys.BN_COUNT for e in entries)
  back = torch_layout.state_dict_to_variables(state_dict, entries, variables, feature_map)
  for collection in variables:
    flat_back = dict(_flatten(back[collection]))
    for path, value in _flatten(variables[collection]):
      np.testing.assert_array_equal(flat_back[path], np.asarray(value))


def _flatten(tree, prefix=()):
  for key, value in tree.items():
    if isinstance(value, dict) or hasattr(value, "items"):
      yield from _flatten(value, prefix + (key,))
    else:
      yield prefix + (key,), value


def test_layout_rules_by_hand():
  kernel = np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4)   # HWIO
  weight = torch_layout.conv_kernel_to_torch(kernel)
  assert weight.shape == (4, 2, 3, 3) and weight[3, 1, 2, 0] == kernel[2, 0, 1, 3]
  np.testing.assert_array_equal(torch_layout.conv_kernel_from_torch(weight), kernel)
  # NHWC flatten index (h, w, c) of a (2, 3, 2) map -> NCHW flatten index (c, h, w).
  dense = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
  torch_dense = torch_layout.flatten_dense_kernel_to_torch(dense, (2, 3, 2))
  h, w, c, out = 1, 2, 1, 4
  assert torch_dense[out, c * 6 + h * 3 + w] == dense[h * 6 + w * 2 + c, out]
  np.testing.assert_array_equal(torch_layout.flatten_dense_kernel_from_torch(torch_dense, (2, 3, 2)), dense)


def test_batch_norm_conventions_match_pytorch(tmp_path):
  """The generated BatchNorm2d has PyTorch momentum 0.1 (= 1 - jaxat's Flax 0.9) and eps 1e-5."""
  model, image_shape = FAMILIES["small_cnn_bn_odd"]
  *_, net = export_in_memory(model, image_shape, tmp_path)
  assert net.bn1.momentum == pytest.approx(0.1) and net.bn1.eps == pytest.approx(1e-5)
  from jaxat.models.layers import BN_EPSILON, BN_MOMENTUM
  assert 1 - BN_MOMENTUM == pytest.approx(net.bn1.momentum) and BN_EPSILON == net.bn1.eps


def test_model_info_takes_numbers_from_eval_reports(tmp_path):
  (tmp_path / "eval").mkdir()
  report = {"accuracy": {"clean": 0.8125, "aa": 0.53125}, "eps": "8/255", "norm": "linf",
            "num_examples": 32, "checkpoint": "last", "weights": "raw"}
  (tmp_path / "eval" / "aa.json").write_text(json.dumps(report))
  small = {**report, "accuracy": {"clean": 0.5, "aa": 0.25}, "num_examples": 8}
  (tmp_path / "eval" / "aa_small.json").write_text(json.dumps(small))
  config = {"dataset": {"name": "cifar10"}, "method": {"name": "pgd_at"}, "eval": {"eps": 8 / 255},
            "model": {"name": "wide_resnet", "depth": 34, "width": 10, "activation": "relu"}}
  info = model_info.build_model_info(config, model_info.read_eval_reports(str(tmp_path)),
                                     None, "last", "raw")
  assert set(model_info.ROBUSTBENCH_FIELDS) <= set(info)
  assert info["clean_acc"] == "81.25" and info["autoattack_acc"] == "53.12"  # 53.125 rounds to even
  assert info["eps"] == "8/255" and info["architecture"] == "WideResNet-34-10"
  assert info["dataset"] == "cifar10" and info["jaxat"]["autoattack_acc_from"] == "eval/aa.json"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  from jaxat.train.train import train_and_evaluate
  workdir = tmp_path_factory.mktemp("export") / "run"
  train_and_evaluate(tiny_config("standard", **{"model.channels": (4, 8)}), str(workdir))
  return workdir


@pytest.mark.slow
def test_export_cli_writes_a_model_pytorch_runs_like_jaxat(trained_run, tmp_path):
  out = tmp_path / "exported"
  proc = run_cli(["-m", "jaxat.export", f"--workdir={trained_run}", "--format=pytorch", f"--out={out}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(os.listdir(out)) == ["model.pt", "model.py", "model_info.json"]
  net = load_module_from_file(str(out / "model.py"), "exported_cli").build_model()
  net.load_state_dict(torch.load(out / "model.pt"), strict=True)

  from jaxat.train.restore import load_trained_model
  trained = load_trained_model(str(trained_run))
  x = trained.experiment.test.images[:16].astype(np.float32) / 255.0
  variables = {"params": trained.params, "batch_stats": trained.batch_stats}
  expected = jaxat_logits(trained.model.module, variables, x)
  assert np.abs(expected - torch_logits(net, x)).max() <= 1e-4

  info = json.loads((out / "model_info.json").read_text())
  results = json.loads((trained_run / "results.json").read_text())
  assert set(model_info.ROBUSTBENCH_FIELDS) <= set(info)
  assert info["clean_acc"] == f"{100 * results['clean_acc']:.2f}"
  assert info["autoattack_acc"] is None and info["architecture"] == "SmallCNN-4-8-BN"


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", [
    (["--format=onnx"], "--format='onnx' is invalid; valid choices: pytorch"),
    (["--checkpoint=middle"], "--checkpoint='middle' is invalid; valid choices: last, best"),
])
def test_export_cli_refuses_bad_flags_in_one_line(trained_run, tmp_path, args, expected):
  out = tmp_path / "never_written"
  proc = run_cli(["-m", "jaxat.export", f"--workdir={trained_run}", f"--out={out}", *args])
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == f"error: {expected}"
  assert "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.slow
def test_export_cli_refuses_a_missing_workdir(tmp_path):
  out = tmp_path / "never_written"
  proc = run_cli(["-m", "jaxat.export", f"--workdir={tmp_path / 'nope'}", f"--out={out}"])
  assert proc.returncode == 2 and "Traceback" not in proc.stderr and not out.exists()
  assert "--workdir=" in proc.stderr and "does not exist" in proc.stderr


def test_autoattack_benchmark_hands_the_reference_the_same_model_and_images(trained_run, tmp_path):
  """benchmarks/autoattack_speed.py --workdir: what the reference attacks (the PyTorch export
  and an images file) is what jaxat attacks: same images in NCHW, labels, and logits."""
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "benchmarks"))
  import autoattack_speed
  classifier, x, y, description = autoattack_speed.load_run_problem(str(trained_run), 12)
  assert x.shape[0] == 12 and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
  assert "standard" in description
  autoattack_speed.write_reference_problem(str(trained_run), x, y, str(tmp_path))
  net, x_nchw, labels = autoattack_speed.exported_torch_model(str(tmp_path))
  np.testing.assert_array_equal(x_nchw, x.transpose(0, 3, 1, 2))
  np.testing.assert_array_equal(labels, y)
  from jaxat.train.restore import load_trained_model
  trained = load_trained_model(str(trained_run))
  np.testing.assert_array_equal(y, trained.experiment.test.labels[:12])
  expected = np.asarray(classifier.apply_fn(classifier.variables, x))
  with torch.no_grad():
    actual = net.eval()(torch.from_numpy(x_nchw)).numpy()
  assert np.abs(expected - actual).max() <= 1e-4
