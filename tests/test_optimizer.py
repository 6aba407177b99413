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


def test_cycled_momentum_matches_pytorch_onecycle():
  """schedule.cycle_momentum against torch.optim.SGD + OneCycleLR(cycle_momentum=True) itself:
  the same weights after every step (the momentum buffer uses the cycled μ of each step)."""
  torch = __import__("pytest").importorskip("torch")
  from jaxat.train.schedules import make_momentum_schedule, make_schedule
  total, grads = 12, np.sin(np.arange(12) * 1.3) + 0.2
  schedule_cfg = ml_collections.ConfigDict(dict(
      name="onecycle", lr_max=0.1, boundaries=(), decay_factor=0.1, per_epoch=False,
      pct_start=0.25, div_factor=25.0, final_div_factor=1e4, cycle_momentum=True,
      base_momentum=0.85, max_momentum=0.95))
  for nesterov in (False, True):
    cfg = ml_collections.ConfigDict(dict(momentum=0.9, nesterov=nesterov, weight_decay=5e-2,
                                         grad_clip_norm=0.0))
    momentum = make_momentum_schedule(schedule_cfg, total, 1)
    tx = make_optimizer(cfg, make_schedule(schedule_cfg, total, 1), momentum)
    params = {"w": jnp.asarray(1.0)}
    state = tx.init(params)
    w = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=5e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total,
                                                pct_start=0.25, cycle_momentum=True,
                                                base_momentum=0.85, max_momentum=0.95)
    for step, g in enumerate(grads):
      np.testing.assert_allclose(float(momentum(step)), opt.param_groups[0]["momentum"], rtol=1e-6)
      updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
      params = optax.apply_updates(params, updates)
      w.grad = torch.tensor(float(g), dtype=torch.float64)
      opt.step()
      sched.step()
      np.testing.assert_allclose(float(params["w"]), w.item(), rtol=1e-5)
  # The ends and the peak by hand: 0.95 at step 0, 0.85 at step pct·total − 1 = 2, 0.95 last.
  momentum = make_momentum_schedule(schedule_cfg, total, 1)
  np.testing.assert_allclose([float(momentum(s)) for s in (0, 2, total - 1)], [0.95, 0.85, 0.95],
                             rtol=1e-6)
  off = ml_collections.ConfigDict(dict(schedule_cfg.to_dict(), cycle_momentum=False))
  assert make_momentum_schedule(off, total, 1) is None
