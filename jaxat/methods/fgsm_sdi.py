r"""FGSM-SDI: fast adversarial training with a learnable, sample-dependent initialisation
(Jia et al., IEEE TIP, "Boosting Fast Adversarial Training with Learnable Adversarial
Initialization"; official code jiaxiaojunQAQ/FGSM-SDI, FGSM_SDI.py and FGSM_SDI_loss.py).

A generator G (jaxat/models/init_generator.py, the official `One_Layer_Attacker`) turns the
clean image and the sign of the classifier's input gradient into the start point of an
FGSM step; G is trained to *maximise* the classifier's loss at the resulting adversarial
example while the classifier minimises it. Docs: docs/fast_adversarial_training.md#fgsm-sdi.

A step (x the augmented batch, y its labels, K classes; CE the batch-mean cross-entropy,
LSCE_f the label-smoothed one with true-class mass f: t_y = f, t_k = (1−f)/(K−1); Π_ε =
clip to [−ε, ε]; classifier passes in BatchNorm mode `bn_mode`, 'train' by default, so
each updates the running statistics as in the official code):
1. g = ∇_x CE(f(x), y)                                      clean gradient
2. every k-th batch of an epoch ((step mod steps_per_epoch) mod k = 0), before the
   classifier's step on the same batch — the generator update, G in train mode:
     η = G(x, sign g)  ∈ (−ε, ε)           (ε·tanh; G's running statistics updated)
     x₁ = x + η                             (not clipped to [0, 1])
     g₁ = ∇_{x₁} CE(f(x₁), y)               (plain CE; a constant for G: no second order)
     δ = Π_ε(η + Π_ε(α·sign g₁));  x_adv = x + δ   (not clipped to [0, 1])
     L_G = −LSCE_f(f(x_adv), y);  θ_G ← Adam step on L_G (coupled L2 weight decay)
   The gradient reaches G only through η inside the outer Π_ε (where |η + α·sign g₁| < ε).
   Only G's parameters are differentiated: nothing of L_G reaches the classifier.
3. x_adv as in 2 with the (possibly just updated) G in eval mode (running statistics).
4. Loss (differentiated by the engine): LSCE_f(f(x_adv), y), classifier in train mode.

Defaults (official FGSM_SDI.py at its last commit, d54cac6 of 2023-08-22): ε = α = 8/255;
f = 0.5 (`--factor 0.5`; it was 0.9 before that commit: `label_smoothing=0.9`); k = 20
(`--att_num`); generator width 64; Adam lr 1e-3, betas (0.9, 0.999), eps 1e-8, L2 weight
decay 5e-4 added to the gradient before Adam (torch.optim.Adam(weight_decay=5e-4), i.e.
optax.chain(add_decayed_weights, adam)). The official `--opt_att SGD` option is
`generator_optimizer='sgd'` (momentum 0.9, the official --momentum shared with the
classifier). The generator's learning rate never decays: the official MultiStepLR of the
generator has the classifier's iteration milestones (100/110 and 105/110 of all
iterations) but is stepped only at generator updates, about 1/k of the iterations, so it
never reaches them. The recipe (configs/fgsm_sdi.py): ResNet-18 on raw [0,1] inputs, SGD
lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, 110 epochs, lr ×0.1 at 100/110 and
105/110 of the iterations (per iteration).

State: `method_state['generator']` = {'params', 'batch_stats', 'opt_state'} of G, every
leaf with a leading axis of size 1 (replicated, never mistaken for a per-example buffer),
checkpointed with the run, so a resumed run continues G exactly. Metrics: `clean_ce` (CE
at x), `init_ce` (CE at x₁, how strong the initialisation is), `init_size` (mean |η| / ε),
`loss` and `adv_acc` (at x_adv).

Official behaviours reproduced: the clean-gradient pass, both passes of the generator
update and the x₁ pass of step 3 run the classifier in train mode and update its running
BatchNorm statistics (3 train-mode passes per batch, 5 at generator updates, in the
official order); g₁ uses plain CE while the losses use LSCE_f; neither x₁ nor x_adv is
clipped to the image box (`clip_to_image=True` clips both); the generator update uses the
clean gradient computed before it, on the same batch; the classifier's gradient from L_G
is discarded (the official zeroes it before the classifier step).

Deviations and choices (docs/fast_adversarial_training.md#fgsm-sdi-decisions): the
generator's unused learnable scalar `scale_last` is omitted (it never enters the output;
with Adam's weight decay it only drifts); the label-smoothed targets use the dataset's K
(the official code hard-codes 10 classes); Flax's BatchNorm keeps the biased batch variance
in the running average where PyTorch keeps the unbiased one; the engine drops the last
incomplete batch of an epoch, which keeps the official 20 generator updates per epoch on
CIFAR-10 (batches 0, 20, …, 380 of 390 instead of 391). The generator update is a
`lax.cond`, so the other k − 1 steps do not compute it; on XLA:CPU that needs the
generator's own convolution gradients (jaxat/models/init_generator.py, `same_conv3x3`),
without which the conditional update was slower than computing it every step
(docs/fast_adversarial_training.md#fgsm-sdi-cost).

Official quirks: FGSM_SDI.py crashes at start-up as published — it builds its output path
from `args.attacker`, an argument it never defines; jaxat has no such path (outputs go to
--workdir), and nothing else of the training step depends on it. Only a CIFAR-10 training
script exists (CIFAR-100 and Tiny-ImageNet settings are in the paper only). The best
checkpoint is chosen by PGD-10 on the *test* set, which jaxat never does (set
`dataset.val_size` for a validation-selected best checkpoint).

Published (paper, Table IV, CIFAR-10, ResNet-18, ε = 8/255, best / last checkpoint):
84.86 / 85.25 clean, 53.73 / 53.18 PGD-10, 52.54 / 52.05 PGD-20, 51.00 / 50.29 C&W, 48.50 /
47.91 AA; CIFAR-100 (Table VII, best): 60.67 clean, 31.50 PGD-10, 25.23 AA.

  python -m jaxat.main --config=configs/fgsm_sdi.py:cifar10 --workdir=runs/fgsm_sdi_c10 \
      --config.dataset.data_dir=/path/to/cifar
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxat import xla_cpu
from jaxat.methods import losses
from jaxat.methods.base import Batch, Method, StepContext, StepInfo
from jaxat.models.forward import validate_bn_mode
from jaxat.models.init_generator import InitGenerator

GENERATOR = "generator"   # method_state key: {'params', 'batch_stats', 'opt_state'}
GENERATOR_OPTIMIZERS = ("adam", "sgd")
GENERATOR_SGD_MOMENTUM = 0.9  # the official --momentum, shared with the classifier


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def generator_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam (or SGD) with PyTorch's coupled L2 weight decay: wd·θ is added to the gradient
  before the optimiser's moments. Constant learning rate (see the module docstring)."""
  decay = optax.add_decayed_weights(cfg.generator_weight_decay)
  if cfg.generator_optimizer == "adam":
    return optax.chain(decay, optax.adam(cfg.generator_lr))
  return optax.chain(decay, optax.sgd(cfg.generator_lr, momentum=GENERATOR_SGD_MOMENTUM))


# The generator's state is replicated, not per example: a leading axis of size 1 on every
# leaf keeps the engine from mistaking a (width,) leaf for a per-example buffer when the
# number of training rows equals the width (jaxat/train/sharding.py shards leaves whose
# leading axis has ctx.example_rows rows, never 1 row when there are several devices).
def _add_replica_axis(tree):
  return jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], tree)


def _drop_replica_axis(tree):
  return jax.tree.map(lambda leaf: leaf[0], tree)


def generator_update_due(info: StepInfo, ctx: StepContext, every: int) -> jax.Array:
  """True at batches 0, k, 2k, … of every epoch (the official `batch_idx % att_num == 0`)."""
  return (info.step % ctx.steps_per_epoch) % every == 0


def update_if_due(due: jax.Array, update, operand):
  """`update(operand)` when `due`, else `operand`: a `lax.cond`, so only the taken branch
  runs and the generator's forward and backward are skipped on k − 1 of k steps. Measured
  against computing the update every step and selecting (benchmarks/
  sdi_generator_update.py, XLA:CPU, digits small CNN, k = 20): 27 ms against 116 ms per
  step of `prepare`."""
  return jax.lax.cond(due, update, lambda unchanged: unchanged, operand)


class FGSMSDI(Method):
  """FGSM from a generator's sample-dependent initialisation; see the module docstring."""

  name = "fgsm_sdi"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        eps=8 / 255,           # ε of the threat model and of G's output (pixels in [0,1])
        step_size=8 / 255,     # α, the FGSM step from x + η
        label_smoothing=0.5,   # true-class mass f of LSCE_f (--factor; 0.9 before 2023-08-22)
        generator_every=20,    # k: G updated at batches 0, k, 2k, … of each epoch (--att_num)
        generator_lr=1e-3,     # G's learning rate, constant (--lr_att)
        generator_weight_decay=5e-4,  # coupled L2 decay of G (--weight-decay)
        generator_optimizer="adam",   # 'adam' | 'sgd' (momentum 0.9) (--opt_att)
        generator_width=64,    # hidden channels of G
        bn_mode="train",       # classifier BN mode of the clean, x₁ and generator passes
        clip_to_image=False,   # clip x + η and x + δ to [0, 1] (the official code does not)
    ))

  @classmethod
  def validate(cls, cfg, num_classes=None):
    if not 0.0 <= cfg.eps <= 1.0:
      raise ValueError(f"method.eps={cfg.eps!r} is invalid; valid: a radius in [0, 1] pixel units "
                       f"(8/255 = 0.0314)")
    if not cfg.step_size >= 0:
      raise ValueError(f"method.step_size={cfg.step_size!r} is invalid; valid: >= 0 (pixel units)")
    if not 0.0 < cfg.label_smoothing <= 1.0:
      raise ValueError(f"method.label_smoothing={cfg.label_smoothing!r} is invalid; valid: the "
                       f"true-class mass in (0, 1] (official 0.5)")
    if not _is_int(cfg.generator_every) or cfg.generator_every < 1:
      raise ValueError(f"method.generator_every={cfg.generator_every!r} is invalid; valid: an "
                       f"integer >= 1 (official 20)")
    if not cfg.generator_lr > 0:
      raise ValueError(f"method.generator_lr={cfg.generator_lr!r} is invalid; valid: > 0")
    if not cfg.generator_weight_decay >= 0:
      raise ValueError(f"method.generator_weight_decay={cfg.generator_weight_decay!r} is "
                       f"invalid; valid: >= 0")
    if cfg.generator_optimizer not in GENERATOR_OPTIMIZERS:
      raise ValueError(f"method.generator_optimizer={cfg.generator_optimizer!r} is invalid; "
                       f"valid choices: {', '.join(GENERATOR_OPTIMIZERS)}")
    if not _is_int(cfg.generator_width) or cfg.generator_width < 1:
      raise ValueError(f"method.generator_width={cfg.generator_width!r} is invalid; valid: an "
                       f"integer >= 1 (official 64)")
    validate_bn_mode(cfg.bn_mode, "method.bn_mode")
    if not isinstance(cfg.clip_to_image, bool):
      raise ValueError(f"method.clip_to_image={cfg.clip_to_image!r} is invalid; valid choices: "
                       f"False, True")

  def __init__(self, cfg):
    super().__init__(cfg)
    self.generator = InitGenerator(eps=float(cfg.eps), width=int(cfg.generator_width))
    self.generator_tx = generator_optimizer(cfg)

  # -- state ------------------------------------------------------------------------------
  def init_state(self, key, ctx, params, batch_stats):
    del params, batch_stats
    shape = (1,) + tuple(ctx.image_shape)

    @xla_cpu.jit   # one compilation instead of op-by-op dispatch (seconds on CPU)
    def initial(key):
      dummy = jnp.zeros(shape, jnp.float32)
      variables = self.generator.init(key, dummy, dummy, train=False)
      return {"params": variables["params"], "batch_stats": variables["batch_stats"],
              "opt_state": self.generator_tx.init(variables["params"])}

    return {GENERATOR: _add_replica_axis(initial(key))}

  @staticmethod
  def generator_of(method_state) -> dict:
    """{'params', 'batch_stats', 'opt_state'} of G, without the replica axis."""
    return _drop_replica_axis(method_state[GENERATOR])

  # -- the pieces of the step -------------------------------------------------------------
  def initial_perturbation(self, generator, x, grad_sign, train: bool):
    """η = G(x, sign g) and G's batch_stats (updated when `train`)."""
    variables = {"params": generator["params"], "batch_stats": generator["batch_stats"]}
    if not train:
      return self.generator.apply(variables, x, grad_sign, train=False), generator["batch_stats"]
    eta, updates = self.generator.apply(variables, x, grad_sign, train=True,
                                        mutable=["batch_stats"])
    return eta, updates["batch_stats"]

  def _ce_and_grad(self, ctx, params, batch_stats, x, labels):
    """(CE(f(x), y), batch_stats after the pass, ∇_x CE), classifier in `bn_mode`."""
    def ce(inputs):
      logits, _, stats = ctx.model(params, batch_stats, inputs, self.cfg.bn_mode)
      return losses.cross_entropy(logits, labels), stats

    (value, batch_stats), grad = jax.value_and_grad(ce, has_aux=True)(x)
    return value, batch_stats, grad

  def adversarial_from(self, ctx, params, batch_stats, x, labels, eta):
    """x_adv = x + Π_ε(η + Π_ε(α·sign ∇_{x₁} CE(f(x₁), y))), x₁ = x + η, differentiable in η
    (the gradient at x₁ is a constant). Returns (x_adv, CE at x₁, batch_stats)."""
    cfg = self.cfg
    x1 = x + eta
    if cfg.clip_to_image:
      x1 = jnp.clip(x1, 0.0, 1.0)
    init_ce, batch_stats, g1 = self._ce_and_grad(ctx, params, batch_stats,
                                                 jax.lax.stop_gradient(x1), labels)
    step = jnp.clip(cfg.step_size * jnp.sign(jax.lax.stop_gradient(g1)), -cfg.eps, cfg.eps)
    x_adv = x + jnp.clip(eta + step, -cfg.eps, cfg.eps)
    if cfg.clip_to_image:
      x_adv = jnp.clip(x_adv, 0.0, 1.0)
    return x_adv, init_ce, batch_stats

  def generator_objective(self, ctx, params, batch_stats, generator_params, generator_stats,
                          x, labels, grad_sign):
    """L_G = −LSCE_f(f(x_adv), y) with G in train mode; aux (G's batch_stats, the
    classifier's batch_stats, LSCE_f)."""
    eta, generator_stats = self.initial_perturbation(
        {"params": generator_params, "batch_stats": generator_stats}, x, grad_sign, train=True)
    x_adv, _, batch_stats = self.adversarial_from(ctx, params, batch_stats, x, labels, eta)
    logits, _, batch_stats = ctx.model(params, batch_stats, x_adv, self.cfg.bn_mode)
    lsce = losses.cross_entropy(logits, labels, self.cfg.label_smoothing)
    return -lsce, (generator_stats, batch_stats, lsce)

  def update_generator(self, ctx, params, batch_stats, generator, x, labels, grad_sign):
    """One optimiser step of G on L_G; returns (generator, classifier batch_stats)."""
    grads, (generator_stats, batch_stats, _) = jax.grad(self.generator_objective, argnums=3,
                                                        has_aux=True)(
        ctx, params, batch_stats, generator["params"], generator["batch_stats"], x, labels,
        grad_sign)
    updates, opt_state = self.generator_tx.update(grads, generator["opt_state"],
                                                  generator["params"])
    return ({"params": optax.apply_updates(generator["params"], updates),
             "batch_stats": generator_stats, "opt_state": opt_state}, batch_stats)

  # -- the step ---------------------------------------------------------------------------
  def prepare(self, ctx: StepContext, params, batch_stats, method_state, batch: Batch, key, info):
    del key  # deterministic
    cfg = self.cfg
    x, labels = batch.images, batch.labels
    generator = self.generator_of(method_state)
    clean_ce, batch_stats, grad = self._ce_and_grad(ctx, params, batch_stats, x, labels)
    grad_sign = jnp.sign(grad)

    def update(operand):
      return self.update_generator(ctx, params, operand[1], operand[0], x, labels, grad_sign)

    generator, batch_stats = update_if_due(generator_update_due(info, ctx, cfg.generator_every),
                                           update, (generator, batch_stats))

    eta, _ = self.initial_perturbation(generator, x, grad_sign, train=False)
    x_adv, init_ce, batch_stats = self.adversarial_from(ctx, params, batch_stats, x, labels, eta)
    new_state = dict(method_state, **{GENERATOR: _add_replica_axis(generator)})
    metrics = {"clean_ce": clean_ce, "init_ce": init_ce,
               "init_size": jnp.mean(jnp.abs(eta)) / max(cfg.eps, 1e-12)}
    return {"x_adv": jax.lax.stop_gradient(x_adv)}, batch_stats, new_state, metrics

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    loss, (batch_stats, metrics, _) = self.loss_and_logits(ctx, params, batch_stats, batch,
                                                           prepared, key, info)
    return loss, (batch_stats, metrics)

  exposes_adversarial_logits = True

  def loss_and_logits(self, ctx, params, batch_stats, batch, prepared, key, info):
    logits, _, batch_stats = ctx.model(params, batch_stats, prepared["x_adv"], "train")
    loss = losses.cross_entropy(logits, batch.labels, self.cfg.label_smoothing)
    return loss, (batch_stats, {"loss": loss, "adv_acc": losses.accuracy(logits, batch.labels)},
                  logits)
