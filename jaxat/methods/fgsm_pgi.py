"""Prior-guided FGSM adversarial training: FGSM-BP, FGSM-EP and FGSM-MEP (Jia et al., ECCV
2022, "Prior-Guided Adversarial Initialization for Fast Adversarial Training").
Docs: docs/fast_adversarial_training.md#fgsm-bp-fgsm-ep-fgsm-mep.

A single FGSM step starts from a *prior* perturbation η instead of a random point; the
three registered methods differ only in the prior (kept by jaxat/methods/prior_init.py):

| name       | prior η of a batch                                    | buffers in method_state     |
|------------|-------------------------------------------------------|-----------------------------|
| `fgsm_bp`  | the adversarial perturbation δ of the previous batch  | η (B,H,W,C)                  |
| `fgsm_ep`  | the example's own δ of the previous epoch              | η (N,H,W,C)                  |
| `fgsm_mep` | written by the momentum rule below (official code)    | η and m (N,H,W,C)            |

A step, model in train mode throughout (x the augmented batch, y its labels; LSCE_f the
label-smoothed cross-entropy with true-class mass f: targets t_y = f, t_k = (1−f)/(K−1)):
1. z0 = f(x + η) (η is not clipped to the image box before this forward);
   L0 = LSCE_f(z0, y), batch mean; g = ∇_η L0 (B,H,W,C).
2. Adversarial perturbation from the raw gradient:
   δ = clip_[0,1](x + clip_ε(η + α·sign(g))) − x.
3. Prior written back for the examples of the batch:
   fgsm_mep: m ← g/‖g‖₁ + μ·m, with ‖g‖₁ the L1 norm of the whole batch tensor (one
             scalar per batch, not per example); η ← clip_[0,1](x + clip_ε(η + α·sign(m))) − x;
   fgsm_ep:  η ← δ (per example, used one epoch later);
   fgsm_bp:  η ← δ (the whole batch buffer, used by the next batch, i.e. other images).
4. Loss (differentiated): z = f(x + δ);
   L = LSCE_f(z, y) + λ·mean((z − z0)²), the mean over all B·K logit entries, on logits
   (not probabilities), and z0 is not detached: the gradient flows through both forward
   passes.

The priors are redrawn every R epochs (`reset_epochs`): η = clip(α·sign(u), −ε, ε), u ~ U(−ε,
ε) (random ±ε when α = ε), m = 0 (see prior_init.py).

Defaults (official FGSM_MEP.py for CIFAR-10): ε = α = 8/255, f = 0.6 (the official
`--factor 0.6` is the true-class mass: its targets are one_hot·0.6 + (1 − one_hot)·0.4/(K−1),
i.e. `label_smoothing=0.6` in jaxat's convention, NOT PyTorch's label_smoothing=0.6), λ = 10,
μ = 0.3, R = 40 (CIFAR-100: 10). The recipe (configs/fgsm_*.py): ResNet-18 on raw [0,1]
inputs, SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, 110 epochs, lr ×0.1 at 100/110
and 105/110 of the iterations.

Official behaviours reproduced: every forward pass in train mode, so the running BatchNorm
statistics are updated twice per batch (at x + η, then at x + δ); the prior of an example
was computed for a different crop/flip of its image (per-step augmentation; the original
has the same misalignment); buffer rows follow the example identity. Deviations, all
documented choices: the engine drops the last incomplete batch of an epoch (those examples
keep their rows for the epoch); an all-zero gradient gives m ← μ·m instead of the original's
0/0 = NaN; the forward at x + η is written again inside `loss` (batch statistics, running
averages untouched, so the same values as the train-mode pass of `prepare`) where the
original keeps its graph — prepare must finish the buffer update before the differentiated
loss. It costs no second pass: both forwards take the same weights and input in one
compiled step, and XLA computes them once (docs/fast_adversarial_training.md counts the
convolutions of the optimised step). Under AWP the loss runs at perturbed
weights, and the second forward is real. Per batch: a forward and input-backward at x + η
in `prepare`, a forward at x + δ, and the weight and input backward of both forwards.

Official quirks (jiaxiaojunQAQ/FGSM-PGI): only FGSM-MEP is published as code (BP and EP
exist in the paper only; here they use the same δ rule and regulariser as MEP, as the paper
describes); the Tiny-ImageNet script cannot run as published (it uses `ori_output`,
`momentum` and `next_delta` without defining them; its visible intent is the EP prior with
gradient clipping at norm 10, no augmentation); the label-perturbation arguments
(`--epsilon_y`, `--alpha_y`) are unused; PyTorch's MultiStepLR only decays when the
milestone product is an integer (it is for 110 epochs); the best checkpoint is chosen by
PGD-10 on the *test* set, which jaxat never does (set `dataset.val_size` for a validation-
selected best checkpoint).

  python -m jaxat.main --config=configs/fgsm_mep.py:cifar10 --workdir=runs/fgsm_mep_c10 \\
      --config.dataset.data_dir=/path/to/cifar
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import ml_collections

from jaxat.methods import losses, prior_init
from jaxat.methods.base import Batch, Method, StepContext


def lsce_and_logits(ctx: StepContext, params, batch_stats, x, labels, true_class_mass, mode):
  logits, _, batch_stats = ctx.model(params, batch_stats, x, mode)
  return losses.cross_entropy(logits, labels, true_class_mass), (logits, batch_stats)


class PriorGuidedFGSM(Method):
  """The shared implementation; subclasses set `name` and `prior_kind`."""

  name = "prior_guided_fgsm"  # not registered; the subclasses are
  prior_kind: ClassVar[str] = "momentum_epoch"

  @classmethod
  def default_config(cls):
    return ml_collections.ConfigDict(dict(
        name=cls.name,
        eps=8 / 255,            # ε of the L∞ threat model (pixel units in [0,1])
        step_size=8 / 255,      # α, the FGSM step (and the reset draw's α)
        label_smoothing=0.6,    # true-class mass f of LSCE_f (official --factor 0.6)
        reg_weight=10.0,        # λ of the logit MSE regulariser
        momentum_decay=0.3,     # μ (fgsm_mep only)
        reset_epochs=40,        # R: priors redrawn at epochs e with e mod R = 0 (0 = never after the start)
        buffer_dtype="float32",  # 'float32' | 'bfloat16' storage of η and m
    ))

  @classmethod
  def validate(cls, cfg, num_classes=None):
    if not 0.0 <= cfg.eps <= 1.0:
      raise ValueError(f"method.eps must be in [0, 1] pixel units (8/255 = 0.0314), got {cfg.eps}")
    if not cfg.step_size >= 0:
      raise ValueError(f"method.step_size must be >= 0, got {cfg.step_size}")
    if not 0.0 < cfg.label_smoothing <= 1.0:
      raise ValueError(f"method.label_smoothing is the true-class mass and must be in (0, 1], "
                       f"got {cfg.label_smoothing}")
    if not cfg.reg_weight >= 0:
      raise ValueError(f"method.reg_weight (λ) must be >= 0, got {cfg.reg_weight}")
    if not cfg.momentum_decay >= 0:
      raise ValueError(f"method.momentum_decay (μ) must be >= 0, got {cfg.momentum_decay}")
    if (isinstance(cfg.reset_epochs, bool) or not isinstance(cfg.reset_epochs, int)
        or cfg.reset_epochs < 0):
      raise ValueError(f"method.reset_epochs must be an integer >= 0 (0 = never reset after the "
                       f"start), got {cfg.reset_epochs!r}")
    prior_init.buffer_dtype(cfg.buffer_dtype)

  def init_state(self, key, ctx, params, batch_stats):
    del key, params, batch_stats  # the priors are drawn lazily from the step keys
    return {"prior": prior_init.init_prior_state(self.prior_kind, ctx.example_rows, ctx.batch_size,
                                                  ctx.image_shape, self.cfg.buffer_dtype)}

  def prepare(self, ctx: StepContext, params, batch_stats, method_state, batch: Batch, key, info):
    cfg = self.cfg
    kind = self.prior_kind
    x = batch.images
    eta, momentum = prior_init.read_prior(method_state["prior"], kind, batch.indices, x.shape,
                                          key, info.epoch, cfg.eps, cfg.step_size,
                                          cfg.reset_epochs)

    def prior_loss(eta_):
      return lsce_and_logits(ctx, params, batch_stats, x + eta_, batch.labels,
                             cfg.label_smoothing, "train")

    (prior_value, (prior_logits, batch_stats)), grad = jax.value_and_grad(
        prior_loss, has_aux=True)(eta)
    x_adv = jnp.clip(x + jnp.clip(eta + cfg.step_size * jnp.sign(grad), -cfg.eps, cfg.eps), 0.0, 1.0)
    delta = x_adv - x
    if kind == "momentum_epoch":
      norm = jnp.sum(jnp.abs(grad))
      normalised = jnp.where(norm > 0, grad / jnp.where(norm > 0, norm, 1.0), 0.0)
      momentum = normalised + cfg.momentum_decay * momentum
      next_eta = jnp.clip(x + jnp.clip(eta + cfg.step_size * jnp.sign(momentum), -cfg.eps, cfg.eps),
                          0.0, 1.0) - x
    else:
      next_eta = delta
    prior_state = prior_init.write_prior(method_state["prior"], kind, batch.indices, info.epoch,
                                         next_eta, momentum)
    new_state = dict(method_state, prior=prior_state)
    prepared = {"x_adv": jax.lax.stop_gradient(x_adv), "x_prior": jax.lax.stop_gradient(x + eta)}
    metrics = {"prior_loss": prior_value, "prior_acc": losses.accuracy(prior_logits, batch.labels)}
    return prepared, batch_stats, new_state, metrics

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    loss, (batch_stats, metrics, _) = self.loss_and_logits(ctx, params, batch_stats, batch,
                                                           prepared, key, info)
    return loss, (batch_stats, metrics)

  exposes_adversarial_logits = True

  def loss_and_logits(self, ctx, params, batch_stats, batch, prepared, key, info):
    cfg = self.cfg
    # z0 = f(x + η) again, differentiable; batch statistics as in prepare's train-mode pass,
    # whose running-average update is already in batch_stats.
    prior_logits, _, _ = ctx.model(params, batch_stats, prepared["x_prior"], "batch_stats")
    logits, _, batch_stats = ctx.model(params, batch_stats, prepared["x_adv"], "train")
    lsce = losses.cross_entropy(logits, batch.labels, cfg.label_smoothing)
    reg = jnp.mean(jnp.square(logits.astype(jnp.float32) - prior_logits.astype(jnp.float32)))
    loss = lsce + cfg.reg_weight * reg
    return loss, (batch_stats, {"loss": loss, "lsce_adv": lsce, "logit_mse": reg,
                                "adv_acc": losses.accuracy(logits, batch.labels)}, logits)


class FGSMBP(PriorGuidedFGSM):
  """FGSM-BP: the previous batch's adversarial perturbation is the start of the next."""

  name = "fgsm_bp"
  prior_kind = "batch"


class FGSMEP(PriorGuidedFGSM):
  """FGSM-EP: each example starts from its own adversarial perturbation of the last epoch."""

  name = "fgsm_ep"
  prior_kind = "epoch"


class FGSMMEP(PriorGuidedFGSM):
  """FGSM-MEP: per-example prior updated with the L1-normalised gradient momentum."""

  name = "fgsm_mep"
  prior_kind = "momentum_epoch"
