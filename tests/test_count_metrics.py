"""Count metrics (docs/architecture.md#count-metrics): array-valued training metrics named
'counts/...' are summed over the epoch and written as totals; scalars are averaged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.train import step as step_lib
from jaxat.train.train import _epoch_record


class _Schedule:
  def __call__(self, step):
    return 0.1


class _Ctx:
  batch_size = 4


class _Exp:
  schedule = _Schedule()
  ctx = _Ctx()


def _shapes():
  return {"loss": jax.ShapeDtypeStruct((), jnp.float32),
          "counts/eps_by_class": jax.ShapeDtypeStruct((3, 2), jnp.float32)}


def test_counts_are_summed_and_scalars_averaged_over_the_epoch():
  sums = step_lib.init_sums(_shapes(), jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  assert sums["counts/eps_by_class"].shape == (3, 2)
  steps = [({"loss": 1.0, "counts/eps_by_class": np.array([[1, 0], [2, 1], [0, 0]])}),
           ({"loss": 3.0, "counts/eps_by_class": np.array([[0, 1], [1, 0], [0, 4]])})]
  for i, metrics in enumerate(steps):
    sums = step_lib.accumulate(sums, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()},
                               jnp.asarray(i))
  record = _epoch_record(_Exp(), epoch=1, step=2, sums=jax.device_get(sums), seconds=1.0,
                         steps_run=2)
  assert record["loss"] == 2.0                      # mean of 1 and 3
  assert record["counts/eps_by_class"] == [[1, 1], [3, 1], [0, 4]]   # totals, as ints
  assert all(isinstance(v, int) for row in record["counts/eps_by_class"] for v in row)


def test_an_array_metric_that_is_not_a_count_is_refused():
  with pytest.raises(ValueError, match="'eps_by_class' has shape \\(3, 2\\)"):
    step_lib.check_metric_shapes({"eps_by_class": jax.ShapeDtypeStruct((3, 2), jnp.float32)})
