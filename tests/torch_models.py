"""Helpers of the PyTorch interop tests: jaxat models with non-trivial BatchNorm state,
loading a generated model definition, and running both sides on the same images."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np


def variables_with_random_statistics(model, image_shape, seed=0):
  """model.init variables with BatchNorm scale/bias/mean/var drawn at random (so that a
  wrong BatchNorm conversion changes the logits) and conv/dense biases nonzero."""
  rng = np.random.default_rng(seed)
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1,) + tuple(image_shape)), train=False)

  def draw(path, value):
    name = path[-1].key
    if name in ("var", "scale"):
      return jnp.asarray(rng.uniform(0.5, 1.5, value.shape), jnp.float32)
    if name in ("mean", "bias"):
      return jnp.asarray(rng.normal(0.0, 0.2, value.shape), jnp.float32)
    return value

  return jax.tree_util.tree_map_with_path(draw, variables)


def load_module_from_file(path, name="exported_model"):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def jaxat_logits(model, variables, x_nhwc):
  return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False)[0])(variables, x_nhwc))


def torch_logits(net, x_nhwc):
  import torch
  net.eval()
  with torch.no_grad():
    return net(torch.from_numpy(np.ascontiguousarray(np.transpose(x_nhwc, (0, 3, 1, 2))))).numpy()


def to_tensors(state_dict):
  import torch
  return {key: torch.from_numpy(np.array(value)) for key, value in state_dict.items()}
