"""SGD with PyTorch semantics: coupled weight decay before momentum, lr after it."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxat.train.optimizer import make_optimizer


def run_sgd(nesterov, grads, lrs, momentum=0.9, wd=0.5, w0=1.0, clip=0.0):
  cfg = ml_collections.ConfigDict(dict(momentum=momentum, nesterov=nesterov, weight_decay=wd,
                                       grad_clip_norm=clip))
  tx = make_optimizer(cfg, lambda step: jnp.asarray(lrs)[step])
  params = {"w": jnp.asarray(w0)}
  state = tx.init(params)
  trajectory = []
  for g in grads:
    updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
    trajectory.append(float(params["w"]))
  return trajectory


def torch_sgd_by_hand(nesterov, grads, lrs, momentum=0.9, wd=0.5, w=1.0):
  """torch.optim.SGD(momentum, weight_decay, nesterov), dampening 0, written out."""
  buf, out = None, []
  for g, lr in zip(grads, lrs):
    d = g + wd * w
    buf = d if buf is None else momentum * buf + d
    step = d + momentum * buf if nesterov else buf
    w = w - lr * step
    out.append(w)
  return out


def test_momentum_sgd_matches_pytorch_with_changing_lr():
  grads, lrs = [0.3, -0.2, 0.7], [0.1, 0.05, 0.2]
  np.testing.assert_allclose(run_sgd(False, grads, lrs), torch_sgd_by_hand(False, grads, lrs), rtol=1e-6)


def test_nesterov_sgd_matches_pytorch():
  grads, lrs = [0.3, -0.2, 0.7], [0.1, 0.1, 0.1]
  np.testing.assert_allclose(run_sgd(True, grads, lrs), torch_sgd_by_hand(True, grads, lrs), rtol=1e-6)


def test_clipping_acts_on_the_raw_gradient_before_weight_decay():
  # |g| = 4 is clipped to 1; then wd * w = 0.5 is added: w = 1 - 0.1 * (1 + 0.5).
  got = run_sgd(False, [4.0], [0.1], momentum=0.0, clip=1.0)
  np.testing.assert_allclose(got, [1.0 - 0.1 * 1.5], rtol=1e-6)
