"""The convolution benchmarks run end to end on tiny layers (their numbers are not checked:
speed belongs in benchmarks/results/, not in tests)."""

import os
import sys

import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))

import conv_input_grad  # noqa: E402
import conv_libraries  # noqa: E402

from jaxat.models import conv_op  # noqa: E402


def test_input_gradient_shapes_times_every_route_and_names_the_chosen_one(monkeypatch):
  # (batch, C_in, C_out, size, stride): 16 channels at stride 1 is the transposed route's.
  monkeypatch.setattr(conv_input_grad, "SHAPES", ((2, 3, 4, 8, 1), (2, 16, 4, 8, 1)))
  rows = conv_input_grad.input_gradient_shapes(loops=1, steps=1)
  assert [row["chosen"] for row in rows] == ["matmul", "transposed"]
  for row in rows:
    assert all(row[f"{way}_ms"] > 0 for way in ("transposed", "subpixel", "matmul"))
    assert row["chosen"] == conv_op.input_gradient_route(
        (row["batch"], row["input_size"], row["input_size"], row["in_channels"]),
        (3, 3, row["in_channels"], row["out_channels"]), jnp.float32,
        (row["stride"],) * 2, ((1, 1), (1, 1)))


def test_conv_libraries_times_forward_and_both_gradients():
  layer = (2, 8, 3, 4, 3, 2)  # batch, size, C_in, C_out, window, stride
  times = conv_libraries.time_xla(layer)
  assert set(times) == {"forward_ms", "input_grad_ms", "kernel_grad_ms"}
  assert all(value > 0 for value in times.values())
  pytest.importorskip("torch")
  assert set(conv_libraries.time_torch(layer)) == set(times)
