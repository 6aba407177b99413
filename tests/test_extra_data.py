"""Extra data mixed into every batch (dataset.extra, jaxat/data/extra_arrays.py and
jaxat/train/host_input.py): memory-mapped files, one-line errors for bad files and
settings, the batch composition, and runs (end to end, SIGTERM + resume) bit-identical.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxat.config.validate import validate_config
from jaxat.data.extra_arrays import extra_per_batch, open_extra_data
from jaxat.errors import UsageError
from jaxat.train.experiment import build_experiment, host_batcher, host_permutation_fn
from jaxat.train.host_input import extra_rows
from tiny_runs import interrupted_and_straight_runs, run_cli, tiny_config

NUM_EXTRA = 64


def _write_extra(path, shape=(8, 8, 1), num=NUM_EXTRA, classes=10, image_key="image",
                 label_key="label", dtype=np.uint8, save=np.savez):
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (num, *shape)).astype(dtype)
  labels = rng.integers(0, classes, (num,)).astype(np.int64)
  save(path, **{image_key: images, label_key: labels})
  return images, labels


def _extra_config(path, fraction=0.25, **overrides):
  return tiny_config("pgd_at", **{"dataset.placement": "host", "dataset.extra.path": str(path),
                                  "dataset.extra.fraction": fraction, **overrides})


def test_an_uncompressed_npz_is_memory_mapped_not_loaded(tmp_path):
  path = tmp_path / "ddpm.npz"
  images, labels = _write_extra(path)
  data = open_extra_data(str(path))
  # A view into the file (np.load would have read the member whole).
  assert isinstance(data.images, np.memmap)
  assert os.path.samefile(data.images.filename, path)
  assert data.images.offset > 0 and not data.images.flags.writeable
  np.testing.assert_array_equal(np.asarray(data.images), images)
  np.testing.assert_array_equal(data.labels, labels.astype(np.int32))
  assert data.labels.dtype == np.int32


def test_jaxat_key_names_and_a_folder_of_npy_files_are_accepted(tmp_path):
  path = tmp_path / "xy.npz"
  images, _ = _write_extra(path, image_key="x", label_key="y")
  assert isinstance(open_extra_data(str(path)).images, np.memmap)
  folder = tmp_path / "folder"
  folder.mkdir()
  np.save(folder / "image.npy", images)
  np.save(folder / "label.npy", np.arange(NUM_EXTRA) % 10)
  data = open_extra_data(str(folder))
  assert isinstance(data.images, np.memmap)
  np.testing.assert_array_equal(np.asarray(data.images), images)


def test_a_compressed_npz_is_refused_with_the_command_that_converts_it(tmp_path):
  path = tmp_path / "packed.npz"
  images, _ = _write_extra(path, save=np.savez_compressed)
  with pytest.raises(ValueError) as error:
    open_extra_data(str(path))
  message = str(error.value)
  assert "\n" not in message and "np.savez_compressed" in message
  assert message.startswith(f"dataset.extra.path={str(path)!r}")
  command = message.split("convert it once: ")[1].split("; and set")[0]
  assert command.startswith("python -c ")
  # The command works: it writes an uncompressed copy that maps.
  code = command[len("python -c "):].strip('"')
  subprocess.run([sys.executable, "-c", code], check=True)
  converted = open_extra_data(str(tmp_path / "packed_uncompressed.npz"))
  np.testing.assert_array_equal(np.asarray(converted.images), images)


@pytest.mark.parametrize("overrides,expected", [
    ({"dataset.extra.path": "", "dataset.extra.fraction": 0.25},
     "dataset.extra.fraction=0.25 needs dataset.extra.path"),
    ({"dataset.placement": "device"}, "set dataset.placement='host'"),
    ({"dataset.placement": "disk"}, "unknown dataset.placement 'disk'"),
    ({"dataset.extra.fraction": 1.0}, "dataset.extra.fraction=1.0 is invalid"),
    ({"dataset.extra.fraction": 0.01}, "puts no extra example into a batch of 32"),
])
def test_bad_extra_settings_are_one_line_errors(tmp_path, overrides, expected):
  path = tmp_path / "ddpm.npz"
  _write_extra(path)
  config = _extra_config(path)
  config.update_from_flattened_dict(overrides)
  with pytest.raises(UsageError) as error:
    build_experiment(config)
  assert expected in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_the_extra_share_must_split_over_the_devices(tmp_path):
  config = _extra_config(tmp_path / "unused.npz", fraction=0.28)  # 0.28 x 32 -> 9 extra
  with pytest.raises(ValueError, match=r"gives 9 extra examples per batch of 32, not a "
                                       r"multiple of the device count 2; .* 8/32, 10/32"):
    validate_config(config, num_devices=2)
  validate_config(_extra_config(tmp_path / "unused.npz", fraction=0.3), num_devices=2)  # 10


@pytest.mark.parametrize("writer,expected", [
    (dict(shape=(16, 16, 1)), "images have shape (H, W, C) (16, 16, 1) but the training set's are (8, 8, 1)"),
    (dict(classes=12), "but the dataset has 10 classes"),
    (dict(dtype=np.float32), "images must be uint8"),
    (dict(num=4), "holds 4 examples, fewer than the 8 extra examples of one batch"),
    (dict(image_key="pixels"), "needs exactly one image array named one of ['image', 'x']"),
])
def test_bad_extra_files_are_one_line_errors_naming_the_file(tmp_path, writer, expected):
  path = tmp_path / "bad.npz"
  _write_extra(path, **writer)
  workdir = tmp_path / "run"
  with pytest.raises(UsageError) as error:
    build_experiment(_extra_config(path))
  message = str(error.value)
  assert expected in message and str(path) in message and "\n" not in message, message
  assert not workdir.exists()


def test_each_batch_holds_round_fraction_b_extra_examples_drawn_by_step(tmp_path):
  path = tmp_path / "ddpm.npz"
  _, extra_labels = _write_extra(path)
  exp = build_experiment(_extra_config(path))
  batcher = host_batcher(exp)
  count, num_train = extra_per_batch(0.25, 32), exp.ctx.num_train
  assert count == 8 == exp.extra_per_batch
  # An epoch is a pass over the original part (24 per batch); buffers have rows for extras.
  assert exp.ctx.steps_per_epoch == num_train // 24
  assert exp.ctx.example_rows == num_train + NUM_EXTRA
  permutation_of = host_permutation_fn(exp)
  twin = host_batcher(build_experiment(_extra_config(path)))
  drawn = []
  for step in range(exp.total_steps):
    indices = batcher.indices(step)
    assert (indices >= num_train).sum() == count
    epoch, position = divmod(step, exp.ctx.steps_per_epoch)
    np.testing.assert_array_equal(indices[:24], permutation_of(epoch)[position * 24:(position + 1) * 24])
    extra = indices[24:] - num_train
    np.testing.assert_array_equal(extra, extra_rows(exp.config.seed, step, count, NUM_EXTRA))
    assert len(set(extra.tolist())) == count
    np.testing.assert_array_equal(indices, twin.indices(step))  # deterministic
    drawn.append(tuple(extra))
    images, labels, batch_indices = (np.asarray(a) for a in batcher.build(step).inputs)
    np.testing.assert_array_equal(batch_indices, indices)
    np.testing.assert_array_equal(labels[24:], extra_labels[extra])
    np.testing.assert_array_equal(images[24:], np.asarray(exp.extra.images[extra]))
    np.testing.assert_array_equal(labels[:24], exp.train.labels[indices[:24]])
  assert len(set(drawn)) == exp.total_steps  # a new draw every step
  # Another seed, other rows.
  assert not np.array_equal(extra_rows(1, 0, count, NUM_EXTRA), extra_rows(0, 0, count, NUM_EXTRA))


ARGS = ["-m", "jaxat.main", "--config=configs/uiat.py:synthetic,smoke", "--config.log.progress=plain",
        "--config.num_epochs=2", "--config.batch_size=16", "--config.method.attack.num_steps=2",
        "--config.eval.pgd_steps=1", "--config.eval.every_epochs=2",
        "--config.method.momentum_start=0.5", "--config.dataset.num_train=128",
        "--config.dataset.max_train=128", "--config.dataset.num_test=32",
        "--config.dataset.max_test=32", "--config.eval_batch_size=32",
        "--config.dataset.placement=host", "--config.dataset.extra.fraction=0.25"]
# 4 extra + 12 original examples per batch: 128 // 12 = 10 steps an epoch.
TOTAL_STEPS = 2 * (128 // 12)


@pytest.mark.slow
def test_a_run_with_extra_data_resumes_bit_identically(tmp_path):
  from jaxat.train.restore import load_trained_model
  import jax
  path = tmp_path / "ddpm.npz"
  _write_extra(path)
  args = [*ARGS, f"--config.dataset.extra.path={path}"]
  straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
  resumed, straight_results, saved = interrupted_and_straight_runs(args, tmp_path, TOTAL_STEPS)
  assert resumed["fingerprint"] == straight_results["fingerprint"]
  assert (resumed["clean_acc"], resumed["pgd20_acc"]) == (straight_results["clean_acc"],
                                                          straight_results["pgd20_acc"])
  assert straight_results["host_input"] == {"rows_read_by_process": [16 * TOTAL_STEPS],
                                            "steps": TOTAL_STEPS}
  # The resumed session read the rows of its own steps only (one process: whole batches).
  assert resumed["host_input"] == {"rows_read_by_process": [16 * (TOTAL_STEPS - saved)],
                                   "steps": TOTAL_STEPS - saved}
  with open(straight / "config.json") as f:
    assert json.load(f)["dataset"]["extra"] == {"path": str(path), "fraction": 0.25}
  with open(interrupted / "config.json") as f:
    assert json.load(f)["dataset"]["placement"] == "host"
  # UIAT's momentum buffer has rows for the extra examples, and training wrote some of them.
  a = jax.device_get(load_trained_model(str(interrupted)).state.method_state)
  b = jax.device_get(load_trained_model(str(straight)).state.method_state)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  written = np.asarray(b["target"]["written_epoch"])
  assert written.shape == (128 + NUM_EXTRA,)
  assert (written[:128] >= 0).sum() >= 120 and (written[128:] >= 0).any()


def test_config_json_has_no_extra_section_without_extra_data():
  from jaxat.train.train import config_to_dict
  dumped = config_to_dict(tiny_config("pgd_at"))
  assert "extra" not in dumped["dataset"] and dumped["dataset"]["placement"] == "device"


TWO_DEVICE_LAYOUT = """
import json, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
import jax, numpy as np
from tiny_runs import tiny_config
from jaxat.train.experiment import build_experiment, host_batcher
assert jax.device_count() == 2, jax.devices()
exp = build_experiment(tiny_config("pgd_at", **{
    "num_devices": 2, "dataset.placement": "host", "dataset.extra.path": sys.argv[1],
    "dataset.extra.fraction": 0.25}))
batch = host_batcher(exp).build(3)
print(json.dumps([(np.asarray(s.data) >= exp.ctx.num_train).astype(int).tolist()
                  for s in batch.inputs[2].addressable_shards]))
"""


@pytest.mark.slow
def test_each_device_shard_holds_its_share_of_original_and_extra_examples(tmp_path):
  path = tmp_path / "ddpm.npz"
  _write_extra(path)
  proc = run_cli(["-c", TWO_DEVICE_LAYOUT, str(path)], env_extra={
      "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Batch 32, 8 extra: each of the 2 shards holds 12 original then 4 extra examples.
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[0] * 12 + [1] * 4] * 2
