"""Host-streamed input (dataset.placement='host', jaxat/train/host_input.py): each step's
batch is built on the host from the same indices as the device path, so a run trains the
same bits with either placement (1 and 2 devices). SIGTERM + resume with host placement:
tests/test_extra_data.py (1 process) and tests/test_multihost.py (2 processes, where the
resumed device-placement run ends with the bits of the host-placement run; rows per
process).
"""

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.train import step as step_lib
from jaxat.train.experiment import build_experiment, epoch_permutation_fn, host_batcher, put_train_data
from jaxat.train.state import model_fingerprint
from tiny_runs import run_cli, tiny_config, train_all_epochs

UIAT_MOMENTUM = {"method.attack.num_steps": 2, "method.momentum_start": 0.5}


def test_the_host_batch_is_the_device_batch():
  config = tiny_config("standard", **{"dataset.placement": "host"})
  exp = build_experiment(config)
  images, labels = put_train_data(exp)
  permutation_of = epoch_permutation_fn(exp)
  batcher = host_batcher(exp)
  spe = exp.ctx.steps_per_epoch
  for step in (0, 1, spe, spe + 1, 2 * spe - 1):
    x, y, idx = step_lib._gather_batch(exp.ctx, jnp.asarray(step), images, labels,
                                       permutation_of(step // spe), exp.mesh)
    host_images, host_labels, host_indices = batcher.build(step).inputs
    np.testing.assert_array_equal(np.asarray(host_indices), np.asarray(idx))
    np.testing.assert_array_equal(np.asarray(host_labels), np.asarray(y))
    assert host_images.dtype == np.uint8
    # (The device path's scaled images, back in 0..255: numpy's / 255 may round otherwise.)
    np.testing.assert_array_equal(np.asarray(host_images), np.rint(np.asarray(x) * 255))
    assert host_images.sharding == step_lib.sharding.batch_sharded(exp.mesh)


def test_the_prefetched_batch_is_used_only_for_its_own_step():
  exp = build_experiment(tiny_config("standard", **{"dataset.placement": "host"}))
  batcher = host_batcher(exp)
  batcher.prefetch(3)
  np.testing.assert_array_equal(np.asarray(batcher.inputs(2)[2]), batcher.indices(2))
  batcher.prefetch(3)
  np.testing.assert_array_equal(np.asarray(batcher.inputs(3)[2]), batcher.indices(3))
  assert batcher.rows_read == 2 * exp.ctx.batch_size and batcher.steps_taken == 2


@pytest.mark.parametrize("name,overrides", [("pgd_at", {}), ("uiat", UIAT_MOMENTUM)])
def test_host_placement_trains_the_device_bits_on_one_device(name, overrides):
  results = {}
  for placement in ("device", "host"):
    _, state, sums = train_all_epochs(tiny_config(name, **{"dataset.placement": placement,
                                                           **overrides}))
    results[placement] = (model_fingerprint(state), jax.device_get(state.method_state), sums)
  assert results["host"][0] == results["device"][0]
  jax.tree.map(np.testing.assert_array_equal, results["host"][1], results["device"][1])
  jax.tree.map(np.testing.assert_array_equal, results["host"][2], results["device"][2])


TWO_DEVICES = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
    import jax, numpy as np
    from tiny_runs import tiny_config, train_all_epochs
    from jaxat.train.experiment import build_experiment, host_batcher
    from jaxat.train.state import model_fingerprint
    assert jax.device_count() == 2, jax.devices()
    out = {}
    # UIAT with its momentum buffer: per-example state sharded by example as well.
    for placement in ("device", "host"):
        config = tiny_config("uiat", **{"num_devices": 2, "dataset.placement": placement,
                                        "method.attack.num_steps": 2, "method.momentum_start": 0.5})
        _, state, _ = train_all_epochs(config)
        out[f"uiat/{placement}"] = model_fingerprint(state)
    batch = host_batcher(build_experiment(tiny_config("pgd_at", **{
        "num_devices": 2, "dataset.placement": "host"}))).build(0)
    out["shards"] = [list(s.data.shape) for s in batch.inputs[0].addressable_shards]
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_host_placement_trains_the_device_bits_on_two_devices():
  proc = run_cli(["-c", TWO_DEVICES], env_extra={
      "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["uiat/host"] == out["uiat/device"], out
  assert out["shards"] == [[16, 8, 8, 1]] * 2, out  # batch 32 split by example
