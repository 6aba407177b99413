"""Central finite differences, the independent reference for "is this gradient right"
(e.g. that a KL target is not detached: a detached target gives an autodiff gradient that
disagrees with the derivative of the loss value)."""

import numpy as np


def central_difference_gradient(fn, x, step=1e-2):
  """d fn / d x by central differences, float64 (B,K) for a scalar fn of a (B,K) array.

  The O(step²) truncation error stays below 1e-4 for losses of logits of order 1; float32
  rounding of fn adds about 1e-7 / step."""
  x = np.asarray(x, np.float64)
  grad = np.zeros_like(x)
  for index in np.ndindex(x.shape):
    offset = np.zeros_like(x)
    offset[index] = step
    grad[index] = (float(fn(x + offset)) - float(fn(x - offset))) / (2 * step)
  return grad
