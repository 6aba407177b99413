"""Array conversions between jaxat (Flax, NHWC) variables and PyTorch (NCHW) state_dicts.

Pure numpy: `variables_to_state_dict` and `state_dict_to_variables` map whole models with
the key table of torch_keys.py; the per-kind functions below are the layout rules:
  conv kernels   Flax HWIO (kh, kw, in, out)   <-> PyTorch OIHW (out, in, kh, kw)
  dense kernels  Flax (in, out)                <-> PyTorch (out, in)
  flatten order  the small CNN flattens NHWC activations (index (h, w, c)); PyTorch's
                 `flatten(1)` of NCHW activations indexes (c, h, w), so the dense kernel's
                 input axis is permuted accordingly
  BatchNorm      scale/bias/mean/var are (C,) vectors in both; PyTorch's extra
                 num_batches_tracked is written as 0 and ignored when read
Padding needs no conversion: every jaxat conv pads explicitly as PyTorch does ((1, 1) for
3x3, 0 for 1x1), never Flax 'SAME' (which pads (0, 1) at stride 2 on even sizes).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jaxat.interop.torch_keys import (BN_COUNT, CONV_KERNEL, DENSE_KERNEL,
                                      FLATTEN_DENSE_KERNEL, Entry)


class StateDictMismatch(ValueError):
  """A state_dict does not fit the architecture (missing, unexpected or misshaped keys)."""


def conv_kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
  """(kh, kw, in, out) -> (out, in, kh, kw)."""
  return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))


def conv_kernel_from_torch(weight: np.ndarray) -> np.ndarray:
  """(out, in, kh, kw) -> (kh, kw, in, out)."""
  return np.ascontiguousarray(np.transpose(weight, (2, 3, 1, 0)))


def dense_kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
  """(in, out) -> (out, in)."""
  return np.ascontiguousarray(kernel.T)


def dense_kernel_from_torch(weight: np.ndarray) -> np.ndarray:
  """(out, in) -> (in, out)."""
  return np.ascontiguousarray(weight.T)


def flatten_dense_kernel_to_torch(kernel: np.ndarray, feature_map: tuple[int, int, int]) -> np.ndarray:
  """Dense kernel over NHWC-flattened features -> PyTorch weight over NCHW-flattened ones.

  Args:
    kernel: (H*W*C, out), rows in (h, w, c) order.
    feature_map: (H, W, C) of the activation that was flattened.

  Returns:
    (out, C*H*W), columns in (c, h, w) order.
  """
  height, width, channels = feature_map
  out = kernel.shape[1]
  hwc = kernel.reshape(height, width, channels, out)
  return np.ascontiguousarray(np.transpose(hwc, (3, 2, 0, 1)).reshape(out, -1))


def flatten_dense_kernel_from_torch(weight: np.ndarray, feature_map: tuple[int, int, int]) -> np.ndarray:
  """Inverse of flatten_dense_kernel_to_torch: (out, C*H*W) -> (H*W*C, out)."""
  height, width, channels = feature_map
  out = weight.shape[0]
  chw = weight.reshape(out, channels, height, width)
  return np.ascontiguousarray(np.transpose(chw, (2, 3, 1, 0)).reshape(-1, out))


def _lookup(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
  for name in path:
    tree = tree[name]
  return tree


def _insert(tree: dict, path: tuple[str, ...], value: Any) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def to_torch_array(entry: Entry, value: np.ndarray, feature_map: tuple[int, int, int] | None) -> np.ndarray:
  """The PyTorch layout of one jaxat array of kind `entry.kind`."""
  value = np.asarray(value, np.float32)
  if entry.kind == CONV_KERNEL:
    return conv_kernel_to_torch(value)
  if entry.kind == DENSE_KERNEL:
    return dense_kernel_to_torch(value)
  if entry.kind == FLATTEN_DENSE_KERNEL:
    return flatten_dense_kernel_to_torch(value, feature_map)
  return value


def from_torch_array(entry: Entry, value: np.ndarray, feature_map: tuple[int, int, int] | None) -> np.ndarray:
  """The jaxat layout of one PyTorch array of kind `entry.kind`."""
  value = np.asarray(value, np.float32)
  if entry.kind == CONV_KERNEL:
    return conv_kernel_from_torch(value)
  if entry.kind == DENSE_KERNEL:
    return dense_kernel_from_torch(value)
  if entry.kind == FLATTEN_DENSE_KERNEL:
    return flatten_dense_kernel_from_torch(value, feature_map)
  return value


def variables_to_state_dict(variables: Mapping[str, Any], entries: list[Entry],
                            feature_map: tuple[int, int, int] | None = None) -> dict[str, np.ndarray]:
  """jaxat variables {'params': ..., 'batch_stats': ...} -> {torch key: numpy array}.

  `feature_map` (H, W, C) is the flattened activation of models with a FLATTEN_DENSE_KERNEL
  entry (small CNN: (ceil(H_in/2), ceil(W_in/2), channels[1])). num_batches_tracked is 0
  (jaxat does not count BatchNorm updates; PyTorch uses it only when momentum=None).
  """
  state_dict = {}
  for entry in entries:
    if entry.kind == BN_COUNT:
      state_dict[entry.torch_key] = np.zeros((), np.int64)
    else:
      value = np.asarray(_lookup(variables[entry.collection], entry.path))
      state_dict[entry.torch_key] = to_torch_array(entry, value, feature_map)
  return state_dict


def _expected_torch_shape(entry: Entry, like: Mapping[str, Any],
                          feature_map: tuple[int, int, int] | None) -> tuple[int, ...]:
  if entry.kind == BN_COUNT:
    return ()
  template = np.zeros(np.shape(_lookup(like[entry.collection], entry.path)), np.float32)
  return to_torch_array(entry, template, feature_map).shape


def state_dict_to_variables(state_dict: Mapping[str, Any], entries: list[Entry],
                            like: Mapping[str, Any],
                            feature_map: tuple[int, int, int] | None = None,
                            ignored_prefixes: tuple[str, ...] = ()) -> dict[str, Any]:
  """{torch key: array} -> jaxat variables shaped like `like` (e.g. `module.init(...)`).

  Raises StateDictMismatch naming the missing, unexpected or misshaped keys (with the
  expected shape) before anything is converted. Keys starting with one of
  `ignored_prefixes` (e.g. TRADES' unused 'sub_block1.') are dropped; num_batches_tracked
  is optional.
  """
  arrays = {key: np.asarray(value) for key, value in state_dict.items()
            if not (ignored_prefixes and key.startswith(ignored_prefixes))}
  expected = {entry.torch_key: entry for entry in entries}
  missing = sorted(key for key, entry in expected.items()
                   if key not in arrays and entry.kind != BN_COUNT)
  unexpected = sorted(key for key in arrays if key not in expected)
  if missing or unexpected:
    parts = []
    if missing:
      parts.append(f"missing keys {_shorten(missing)}")
    if unexpected:
      parts.append(f"unexpected keys {_shorten(unexpected)}")
    raise StateDictMismatch("state_dict does not match the architecture: " + "; ".join(parts))
  for key, entry in expected.items():
    if key not in arrays:
      continue
    want = _expected_torch_shape(entry, like, feature_map)
    if tuple(arrays[key].shape) != tuple(want):
      raise StateDictMismatch(f"state_dict key {key!r} has shape {tuple(arrays[key].shape)}; "
                              f"the architecture needs {tuple(want)}")
  variables: dict[str, Any] = {}
  for entry in entries:
    if entry.kind != BN_COUNT:
      _insert(variables.setdefault(entry.collection, {}), entry.path,
              from_torch_array(entry, arrays[entry.torch_key], feature_map))
  return variables


def _shorten(keys: list[str], limit: int = 6) -> str:
  shown = ", ".join(keys[:limit])
  return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)})"


def count_variables(tree: Mapping[str, Any]) -> int:
  """Number of arrays in a nested dict (used to check that a key table covers a model)."""
  return sum(count_variables(v) if isinstance(v, Mapping) else 1 for v in tree.values())
