"""Epoch phases (docs/architecture.md#epoch-phases): a method names the phase of each epoch
(`Method.epoch_phase`), the engine compiles one step per phase with `ctx.epoch_phase` set,
and that step computes what the step serving every epoch computes in that epoch. UIAT's
one-off variant is the method with phases: before, at and after its epoch T', and frozen
after it once every example's target is written (a phase read from the state)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.methods import uiat
from jaxat.train import sharding
from jaxat.train import train as train_lib
from jaxat.train.experiment import build_experiment, epoch_permutation_fn, init_state, put_train_data
from jaxat.train.step import init_sums, make_train_step, metric_shapes, phase_context
from tiny_runs import tiny_config

# 4 epochs, T' = floor(0.5 * 4) = 2: epochs 0 and 1 before it, 2 at it, 3 after it.
ONEOFF = {"num_epochs": 4, "method.oneoff_start": 0.5}


def test_the_one_off_variant_names_its_phases_and_the_others_have_none():
  exp = build_experiment(tiny_config("uiat_oneoff", **ONEOFF))
  phases = [exp.method.epoch_phase(epoch, exp.ctx) for epoch in range(4)]
  assert phases == [uiat.BEFORE, uiat.BEFORE, uiat.AT, uiat.AFTER] == [0, 0, 1, 2]
  # From the state: after T' FROZEN once no row is unwritten, before it never.
  state = init_state(exp).method_state
  assert [exp.method.epoch_phase(e, exp.ctx, state) for e in range(4)] == [0, 0, 1, 2]
  written = with_targets_written(state)
  assert [exp.method.epoch_phase(e, exp.ctx, written) for e in range(4)] == [0, 0, 1, uiat.FROZEN]
  one_missing = dict(written, target=dict(written["target"], written_epoch=written["target"][
      "written_epoch"].at[5].set(-1)))
  assert exp.method.epoch_phase(3, exp.ctx, one_missing) == uiat.AFTER
  for name in ("uiat", "pgd_at", "fgsm_rs"):
    exp = build_experiment(tiny_config(name))
    assert {exp.method.epoch_phase(epoch, exp.ctx) for epoch in range(2)} == {None}
  # AWP over the one-off variant keeps its phases.
  exp = build_experiment(tiny_config("awp", "synthetic,uiat_oneoff", **ONEOFF))
  assert [exp.method.epoch_phase(e, exp.ctx) for e in range(4)] == [0, 0, 1, 2]


def with_targets_written(method_state, epoch=2):
  """The one-off state with every row written at `epoch` (targets: a fixed distribution
  per row that is not the model's)."""
  target = method_state["target"]
  rows, classes = target["probs"].shape
  probs = jax.nn.softmax(jnp.sin(jnp.arange(rows * classes, dtype=jnp.float32)).reshape(rows, classes))
  return dict(method_state, target={
      "probs": jax.device_put(probs, target["probs"].sharding),
      "written_epoch": jax.device_put(jnp.full((rows,), epoch, jnp.int32),
                                      target["written_epoch"].sharding)})


@pytest.mark.parametrize("epoch,written", [(1, False), (2, False), (3, False), (3, True)])
def test_the_step_of_a_phase_computes_what_the_step_of_every_epoch_computes(epoch, written):
  """One step at the start of `epoch`, from the same state, with the phase's step and with
  the step that branches at run time: the same parameters, buffers and metrics, bit for
  bit. Before T' the buffer is not written; at T' it is; after T' with every row written
  (`written`) the phase is FROZEN, else AFTER."""
  config = tiny_config("uiat_oneoff", **ONEOFF)
  exp = build_experiment(config)
  images, labels = put_train_data(exp)
  permutation = epoch_permutation_fn(exp)(epoch)
  initial = init_state(exp)
  start = initial.replace(step=jax.device_put(np.int32(epoch * exp.ctx.steps_per_epoch),
                                              initial.step.sharding))
  if written:
    start = start.replace(method_state=with_targets_written(start.method_state))
  shardings = sharding.state_sharding(initial, exp.mesh, exp.ctx.example_rows)
  outcomes = {}
  for ctx in (exp.ctx, phase_context(exp.method, exp.ctx, epoch, start.method_state)):
    step, step_fn = make_train_step(exp.method, ctx, exp.tx, config, exp.mesh, exp.schedule,
                                    shardings)
    sums = init_sums(metric_shapes(step_fn, start, images, labels, permutation),
                     start.step.sharding)
    # Donated arguments: each step gets its own copy of the start state.
    state, sums = step(jax.tree.map(lambda a: a.copy(), start), sums, images, labels, permutation)
    outcomes[ctx.epoch_phase] = jax.device_get((state.params, state.method_state, sums))
  phase = exp.method.epoch_phase(epoch, exp.ctx, start.method_state)
  assert phase == (uiat.FROZEN if written else [None, uiat.BEFORE, uiat.AT, uiat.AFTER][epoch])
  assert set(outcomes) == {None, phase}
  jax.tree.map(np.testing.assert_array_equal, outcomes[phase], outcomes[None])
  written = outcomes[phase][1]["target"]["written_epoch"]
  assert (written >= 0).any() == (phase != uiat.BEFORE)


def test_the_engine_compiles_one_step_per_phase_when_its_first_epoch_comes(tmp_path, monkeypatch):
  phases = []
  make = train_lib.make_train_step

  def recording(method, ctx, *args, **kwargs):
    phases.append(ctx.epoch_phase)
    return make(method, ctx, *args, **kwargs)

  monkeypatch.setattr(train_lib, "make_train_step", recording)
  train_lib.train_and_evaluate(tiny_config("uiat_oneoff", **ONEOFF), str(tmp_path / "oneoff"))
  # The step for every epoch (metric names only, never compiled), then one per phase: 128
  # examples in batches of 32 are all written at T', so the epoch after it is FROZEN.
  # (With a row left unwritten the epoch would be AFTER: see the test of the phase names.)
  assert phases == [None, uiat.BEFORE, uiat.AT, uiat.FROZEN]
  phases.clear()
  train_lib.train_and_evaluate(tiny_config("pgd_at"), str(tmp_path / "pgd_at"))
  assert phases == [None, None]


def test_a_phase_is_part_of_the_context_and_changes_its_hash():
  exp = build_experiment(tiny_config("uiat_oneoff", **ONEOFF))
  before = phase_context(exp.method, exp.ctx, 0)
  assert before == dataclasses.replace(exp.ctx, epoch_phase=uiat.BEFORE)
  assert before != phase_context(exp.method, exp.ctx, 2) and exp.ctx.epoch_phase is None
