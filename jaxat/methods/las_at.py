"""LAS-AT (Jia et al., CVPR 2022): adversarial training with a learnable attack strategy
(docs/las_at.md).

A strategy network π_φ (jaxat/models/strategy_net.py) looks at the clean batch and samples,
per example, an attack strategy: ε_i, iterations I_i, step size α_i and, for LAS-TRADES,
the TRADES weight β_i. The classifier trains on its base method's loss at adversarial
examples generated with that per-example budget; the strategy network is an auxiliary
learner that takes a REINFORCE step every `strategy.interval` steps.

Composition (one wrapper, three published variants):
`method.name = 'las_at'` and `method.base` holds the *whole* sub-config of the base method,
its own `name` included:
- `method.base.name = 'pgd_at'`  -> LAS-PGD-AT (label-smoothed CE at x_adv),
- `method.base.name = 'trades'`  -> LAS-TRADES (per-example β_i through `prepared['beta']`),
- `method.base.name = 'awp'` with `method.base.base = 'pgd_at'` -> LAS-AWP: the existing AWP
  wrapper over PGD-AT, unchanged, nested inside this one.
The base config is nested (not flat as in AWP) because AWP is itself a wrapper with a
`base` field: nesting lets LAS wrap AWP without renaming anything, and every base field is
addressed as `method.base.<field>` exactly as in the base's own config. LAS-AT only
*replaces the budget role* of its base: the base's `prepare` is not called (its fixed-budget
attack would be wasted work); the base's `loss` and `weight_perturbation` run unchanged, so
the engine applies AWP exactly as for `awp` itself.

One training step (`prepare`):
1. At a policy-update step (global step s, counted from 1, with s % interval == 0:
   `las_at_policy.is_policy_update_step`), in a `lax.cond` (or `jnp.where`, see
   `strategy.update_branch`):
   a. strategy net in train BatchNorm mode on the clean batch -> sampled actions a;
   b. x_adv with the budget of a (classifier in `base.attack.bn_mode`, eval officially);
   c. R1 = attack effect of x_adv on the classifier (eval mode): batch-mean CE clipped to
      [0, attack_clip]; LAS-TRADES: CE(f(x)) + mean_i β_i KL(p(x_i) || p(x_adv,i));
   d. look-ahead copy θ′ = one plain SGD step of the classifier (fresh optimiser: momentum
      buffer empty, weight decay 5e-4, the current learning rate) on the base's training
      loss at x_adv, in train mode (LAS-AWP: taken at the AWP-perturbed weights with the
      base's own proxy, the perturbation removed afterwards, as the engine does);
   e. R2 = c2 · accuracy of θ′ on PGD-10 (2 restarts, per-example early stopping) of the
      clean batch, R3 = c3 · clean accuracy of θ′; both accuracies in eval mode;
   f. REINFORCE loss Σ_heads mean_i(−log π(a_i|x_i)·R), the policy optimiser's step
      (gradient norm clipped to 1, then weight decay and SGD as the official PyTorch order).
2. Strategy net (its params after 1.) in eval BatchNorm mode -> new sampled actions; x_adv
   for the classifier's update with their budget; `counts/*` histograms of these actions.

BatchNorm modes (official code): the classifier is attacked in eval mode (its running
statistics untouched by attack passes); only the base loss's train-mode forwards update
them. The look-ahead copy's statistics start from the classifier's, are updated by its
train-mode SGD forward(s) and by every train-mode pass of the reward PGD (10 steps x 2
restarts + the restart-selection passes), and the eval-mode accuracies R2, R3 read those
updated statistics — the official side effect, kept; the copy (and its statistics) is
discarded afterwards, so the classifier never sees them. The strategy network's own
statistics are updated only by its train-mode pass at policy-update steps.

State (`method_state['strategy']`): the strategy net's params, batch_stats and the policy
optimiser's state; the engine checkpoints them with the train state.

The masked attack runs max(strategy.steps) iterations in one compiled loop (jaxat/attacks/
pgd.py), so a budget never recompiles. Keys: fold_in(key, SUBKEY) per sub-use.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxat.attacks import losses as per_example_losses
from jaxat.attacks import pgd as pgd_lib
from jaxat.attacks.budget import Budget
from jaxat.methods import las_at_policy as policy
from jaxat.methods import losses, maximizer
from jaxat.methods.awp import AWP
from jaxat.methods.base import Batch, Method
from jaxat.methods.pgd_at import PGDAT
from jaxat.methods.trades import TRADES
from jaxat.models.strategy_net import StrategyNet, sample_actions

BASES: dict[str, type[Method]] = {PGDAT.name: PGDAT, TRADES.name: TRADES, AWP.name: AWP}
# Which official option set / reward family each base belongs to.
VARIANTS = {PGDAT.name: "las_pgd_at", TRADES.name: "las_trades", AWP.name: "las_awp"}
HEADS = ("eps", "steps", "step_size", "beta")
UPDATE_BRANCHES = ("cond", "where")
BACKBONES = ("resnet18", "small")
REWARD_MEASURES = ("accuracy", "loss")
REWARD_BN_MODES = ("train", "eval")

# fold_in constants of the sub-uses of the prepare key.
_POLICY_SAMPLE, _POLICY_ATTACK, _REWARD_PGD, _LOOKAHEAD, _TARGET_SAMPLE, _TARGET_ATTACK = range(6)


# -- configuration --------------------------------------------------------------------------

def reward_config(c2: float, c3: float, attack_clip: float = 10.0, piece_clip: float = 10.0,
                  eps: float = 8 / 255, step_size: float = 2 / 255, num_steps: int = 10,
                  restarts: int = 2, lookahead_weight_decay: float = 5e-4
                  ) -> ml_collections.ConfigDict:
  """R = clip(R1) + clip(c2·robust acc of θ′) + clip(c3·clean acc of θ′); the PGD of R2 has
  radius `eps`, `num_steps` steps of `step_size` (pixel units) and `restarts` restarts.

  measure: 'accuracy' (official code) | 'loss' (the paper's L2, L3: −CE of θ′ on the PGD
  examples / on the clean batch, in place of the accuracies).
  bn_mode: BatchNorm mode of θ′ during the reward PGD: 'train' (official: running
  statistics updated and read by the eval-mode measurements) | 'eval'.
  """
  return ml_collections.ConfigDict(dict(
      c2=float(c2), c3=float(c3), attack_clip=float(attack_clip), piece_clip=float(piece_clip),
      eps=float(eps), step_size=float(step_size), num_steps=int(num_steps), restarts=int(restarts),
      lookahead_weight_decay=float(lookahead_weight_decay), measure="accuracy", bn_mode="train"))


def policy_optimizer_config(lr: float = 1e-4, momentum: float = 0.0, weight_decay: float = 0.0,
                            grad_clip_norm: float = 1.0, boundaries=(), decay_factor: float = 0.1
                            ) -> ml_collections.ConfigDict:
  """SGD of the strategy net. `boundaries` are fractions of the run's total steps, compared
  with the number of *policy updates* taken (the official scheduler is stepped only when the
  policy updates, so with interval > 1 its milestones come late or never)."""
  return ml_collections.ConfigDict(dict(
      lr=float(lr), momentum=float(momentum), weight_decay=float(weight_decay),
      grad_clip_norm=float(grad_clip_norm), boundaries=tuple(float(b) for b in boundaries),
      decay_factor=float(decay_factor)))


def strategy_config(option_sets, interval: int, reward: ml_collections.ConfigDict,
                    optimizer: ml_collections.ConfigDict, backbone: str = "resnet18",
                    start_radius: float = 8 / 255, final_eps: float = 0.0
                    ) -> ml_collections.ConfigDict:
  """option_sets: las_at_policy.OptionSet tuple (ε and α in [0,1] pixel units); start_radius:
  the uniform start U(−r, r) of every example whatever its ε_i (PGD-AT/AWP bases);
  final_eps > 0 clips δ to ±final_eps after generation (LAS-AWP: 8/255)."""
  values = {name: () for name in HEADS}
  values.update({o.name: tuple(float(v) for v in o.values) for o in option_sets})
  return ml_collections.ConfigDict(dict(
      **values, backbone=backbone, interval=int(interval), start_radius=float(start_radius),
      final_eps=float(final_eps), update_branch="cond", reward=reward, optimizer=optimizer))


def official_strategy(variant: str, dataset: str) -> ml_collections.ConfigDict:
  """The official strategy settings of a variant on cifar10 / cifar100 (docs/las_at.md)."""
  options = policy.OPTION_SETS[(variant, dataset)]
  if variant == "las_pgd_at":
    reward = reward_config(4, 2)
    optimizer = policy_optimizer_config(momentum=0.9 if dataset == "cifar100" else 0.0,
                                        weight_decay=5e-4 if dataset == "cifar100" else 0.0,
                                        boundaries=(99 / 110, 104 / 110))
    return strategy_config(options, 20, reward, optimizer)
  if variant == "las_trades":
    reward = reward_config(8, 4 if dataset == "cifar10" else 2, attack_clip=20, piece_clip=20)
    optimizer = policy_optimizer_config(momentum=0.9, weight_decay=5e-4, boundaries=(0.75, 0.9))
    return strategy_config(options, 1, reward, optimizer)
  c2, c3, interval, momentum = (1, 1, 1, 0.0) if dataset == "cifar10" else (4, 2, 10, 0.9)
  optimizer = policy_optimizer_config(momentum=momentum, weight_decay=5e-4 if momentum else 0.0,
                                      boundaries=(0.5, 0.75))
  return strategy_config(options, interval, reward_config(c2, c3), optimizer, final_eps=8 / 255)


def variant_of(base_cfg: ml_collections.ConfigDict) -> str:
  return VARIANTS[base_cfg.name]


def _fail(field: str, value, valid: str) -> None:
  raise ValueError(f"method.{field}={value!r} is invalid; valid choices: {valid}")


def _validate_values(s, name: str, low: float, high: float, integer: bool = False) -> None:
  values = s[name]
  ok = (isinstance(values, (tuple, list)) and len(values) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and low < v <= high
                and (not integer or float(v).is_integer()) for v in values))
  if not ok:
    kind = "whole numbers" if integer else "numbers"
    _fail(f"strategy.{name}", values, f"a non-empty tuple of {kind} in ({low:g}, {high:g}]")


def validate_strategy(s: ml_collections.ConfigDict, variant: str) -> None:
  _validate_values(s, "eps", 0.0, 1.0)
  _validate_values(s, "step_size", 0.0, 1.0)
  _validate_values(s, "steps", 0.0, 1000.0, integer=True)
  if variant == "las_trades":
    _validate_values(s, "beta", -1.0, 1e6)
  elif len(s.beta):
    _fail("strategy.beta", s.beta, "() (a β head exists only for base trades)")
  if s.backbone not in BACKBONES:
    _fail("strategy.backbone", s.backbone, ", ".join(BACKBONES))
  if isinstance(s.interval, bool) or not isinstance(s.interval, int) or s.interval < 1:
    _fail("strategy.interval", s.interval, "an integer >= 1")
  if s.update_branch not in UPDATE_BRANCHES:
    _fail("strategy.update_branch", s.update_branch, ", ".join(UPDATE_BRANCHES))
  if not 0.0 <= s.start_radius <= 1.0:
    _fail("strategy.start_radius", s.start_radius, "a number in [0, 1] (pixel units)")
  if not 0.0 <= s.final_eps <= 1.0:
    _fail("strategy.final_eps", s.final_eps, "a number in [0, 1] (0 = no final clip)")
  r = s.reward
  if not 0.0 < r.eps <= 1.0 or not 0.0 < r.step_size <= 1.0:
    _fail("strategy.reward.eps/step_size", (r.eps, r.step_size), "numbers in (0, 1] (pixel units)")
  for name in ("num_steps", "restarts"):
    if isinstance(r[name], bool) or not isinstance(r[name], int) or r[name] < 1:
      _fail(f"strategy.reward.{name}", r[name], "an integer >= 1")
  if r.measure not in REWARD_MEASURES:
    _fail("strategy.reward.measure", r.measure, ", ".join(REWARD_MEASURES))
  if r.bn_mode not in REWARD_BN_MODES:
    _fail("strategy.reward.bn_mode", r.bn_mode, ", ".join(REWARD_BN_MODES))
  for name in ("attack_clip", "piece_clip", "lookahead_weight_decay"):
    if not r[name] >= 0:
      _fail(f"strategy.reward.{name}", r[name], "a number >= 0")
  o = s.optimizer
  if not o.lr > 0:
    _fail("strategy.optimizer.lr", o.lr, "a number > 0")
  if not 0.0 <= o.momentum < 1.0:
    _fail("strategy.optimizer.momentum", o.momentum, "a number in [0, 1)")
  if not o.weight_decay >= 0 or not o.grad_clip_norm >= 0:
    _fail("strategy.optimizer.weight_decay/grad_clip_norm", (o.weight_decay, o.grad_clip_norm),
          "numbers >= 0 (grad_clip_norm 0 = no clipping)")
  if not all(0.0 < b < 1.0 for b in o.boundaries):
    _fail("strategy.optimizer.boundaries", o.boundaries, "fractions of training in (0, 1)")


# -- the strategy learner (pure functions) --------------------------------------------------

class Options(NamedTuple):
  """Option values per head, as arrays indexed by the sampled action (static shapes)."""
  names: tuple[str, ...]
  values: tuple[jax.Array, ...]

  @property
  def sizes(self) -> tuple[int, ...]:
    return tuple(int(v.shape[0]) for v in self.values)


class Strategy(NamedTuple):
  """The sampled strategy of a batch: per-example budget, β (None without a β head), actions."""
  budget: Budget
  beta: jax.Array | None
  actions: tuple[jax.Array, ...]


def strategy_from_actions(options: Options, actions: tuple[jax.Array, ...]) -> Strategy:
  chosen = {name: values[a] for name, values, a in zip(options.names, options.values, actions)}
  budget = Budget(chosen["eps"], chosen["step_size"], chosen["steps"].astype(jnp.int32))
  return Strategy(budget, chosen.get("beta"), actions)


class Learner(NamedTuple):
  """The static parts of the strategy learner: its network and optimiser."""
  net: StrategyNet
  tx: optax.GradientTransformation


def _variables(params, batch_stats) -> dict:
  return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def strategy_logits(learner: Learner, state: dict, images: jax.Array, train: bool):
  """(head logits, batch_stats after the pass): train mode updates the running statistics."""
  variables = _variables(state["params"], state["batch_stats"])
  if not train or not state["batch_stats"]:
    return learner.net.apply(variables, images, train=train), state["batch_stats"]
  logits, updates = learner.net.apply(variables, images, train=True, mutable=["batch_stats"])
  return logits, updates["batch_stats"]


def policy_update(learner: Learner, state: dict, images: jax.Array, key: jax.Array,
                  reward_fn: Callable[[tuple], tuple[jax.Array, dict]]):
  """One REINFORCE step of the strategy net (single-step episode, no baseline).

  The net runs once in train BatchNorm mode; actions are sampled from that pass, scored by
  `reward_fn(actions) -> (scalar R, metrics)`, and the loss Σ_heads mean_i(−log π(a_i|x_i)·R)
  is back-propagated through the same pass (jax.vjp, no second forward).
  Returns (new state, actions, R, metrics).
  """
  variables_stats = state["batch_stats"]

  def forward(params):
    logits, stats = strategy_logits(learner, {"params": params, "batch_stats": variables_stats},
                                    images, train=True)
    return logits, stats

  logits, vjp_fn, new_stats = jax.vjp(forward, state["params"], has_aux=True)
  actions = sample_actions(key, logits)
  reward, metrics = reward_fn(actions)
  logit_grads = jax.grad(lambda l: policy.reinforce_loss(l, actions, reward))(logits)
  (grads,) = vjp_fn(logit_grads)
  updates, opt_state = learner.tx.update(grads, state["opt_state"], state["params"])
  new_state = {"params": optax.apply_updates(state["params"], updates),
               "batch_stats": new_stats, "opt_state": opt_state}
  return new_state, actions, reward, metrics


def policy_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """PyTorch order: clip the gradient norm, add weight decay, then SGD (momentum optional)."""
  milestones = {max(1, int(b * total_steps)): cfg.decay_factor for b in cfg.boundaries}
  schedule = optax.piecewise_constant_schedule(cfg.lr, milestones)
  parts = []
  if cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.weight_decay > 0:
    parts.append(optax.add_decayed_weights(cfg.weight_decay))
  parts.append(optax.sgd(schedule, momentum=cfg.momentum or None))
  return optax.chain(*parts)


# -- the method -----------------------------------------------------------------------------

class LASAT(Method):
  name = "las_at"

  def __init__(self, cfg):
    super().__init__(cfg)
    self.base = BASES[cfg.base.name](cfg.base)
    self.variant = variant_of(cfg.base)
    s = cfg.strategy
    names = tuple(n for n in HEADS if len(s[n]))
    self.options = Options(names, tuple(jnp.asarray(s[n], jnp.float32) for n in names))
    self.net = StrategyNet(head_sizes=self.options.sizes, backbone=s.backbone)
    # The classifier's attack: the base's attack settings (BatchNorm mode, objective, norm)
    # with a loop as long as the largest step option.
    self.attack_cfg = ml_collections.ConfigDict(cfg.base.attack.to_dict())
    self.attack_cfg.num_steps = int(max(s.steps))
    # LAS-AWP: generated with ε_i up to 15/255, then δ clipped to the training radius.
    self.attack_cfg.final_clip_eps = float(s.final_eps)

  # -- configuration ------------------------------------------------------------------------
  @classmethod
  def default_config(cls, variant: str = PGDAT.name, dataset: str = "cifar10"):
    """LAS-PGD-AT on CIFAR-10 by default; variant ∈ pgd_at | trades | awp."""
    if variant not in BASES:
      _fail("base.name", variant, ", ".join(BASES))
    if variant == AWP.name:
      base_cfg = AWP.default_config(PGDAT.name)
    else:
      base_cfg = BASES[variant].default_config()
    # Official: the classifier is attacked in eval mode (Get_delta calls eval()).
    base_cfg.attack.bn_mode = "eval"
    if variant == PGDAT.name:
      base_cfg.label_smoothing = 0.7 if dataset == "cifar10" else 0.6
    return ml_collections.ConfigDict(dict(
        name=cls.name, base=base_cfg,
        strategy=official_strategy(VARIANTS[variant], dataset)))

  @classmethod
  def validate(cls, cfg, num_classes=None):
    base = cfg.base
    if not isinstance(base, ml_collections.ConfigDict) or "name" not in base:
      _fail("base", base, "a base method sub-config with a name (pgd_at, trades, awp)")
    if base.name not in BASES:
      _fail("base.name", base.name, ", ".join(BASES))
    if base.name == AWP.name and base.base != PGDAT.name:
      _fail("base.base", base.base, "pgd_at (LAS-AWP is AWP over PGD-AT)")
    expected = set(BASES[base.name].default_config().keys())
    if base.name == AWP.name:
      expected = set(AWP.default_config(PGDAT.name).keys())
    if set(base.keys()) != expected:
      raise ValueError(f"method.base.name={base.name!r} needs the fields {sorted(expected)}, got "
                       f"{sorted(base.keys())}; choose the variant with the config argument "
                       f"(configs/las_at.py:<dataset>,<pgd_at|trades|awp>), not by overriding "
                       f"method.base.name")
    BASES[base.name].validate(base, num_classes)
    # The strategy network is LAS-AT's budget role; a second one would be silently ignored.
    maximizer.require_fixed_budget(base.attack, cls.name, "method.base.attack")
    validate_strategy(cfg.strategy, variant_of(base))

  def count_metric_labels(self):
    def label(name, v):
      return f"{round(float(v) * 255):d}/255" if name in ("eps", "step_size") else f"{float(v):g}"
    return {f"counts/{name}": tuple(label(name, v) for v in self.cfg.strategy[name])
            for name in self.options.names}

  # -- delegation to the base -----------------------------------------------------------------
  def prerequisites(self, config, workdir):
    return self.base.prerequisites(config, workdir)

  def attach_prerequisites(self, runs):
    self.base.attach_prerequisites(runs)

  def loss(self, ctx, params, batch_stats, batch, prepared, key, info):
    return self.base.loss(ctx, params, batch_stats, batch, prepared, key, info)

  def weight_perturbation(self, ctx, params, batch_stats, batch, prepared, key, info):
    return self.base.weight_perturbation(ctx, params, batch_stats, batch, prepared, key, info)

  # -- state ----------------------------------------------------------------------------------
  def learner(self, ctx) -> Learner:
    total = ctx.steps_per_epoch * ctx.num_epochs
    return Learner(self.net, policy_optimizer(self.cfg.strategy.optimizer, total))

  def init_state(self, key, ctx, params, batch_stats):
    dummy = jnp.zeros((1,) + tuple(ctx.image_shape), jnp.float32)
    variables = self.net.init(key, dummy, train=False)
    strategy_params = variables["params"]
    return {"strategy": {"params": strategy_params,
                         "batch_stats": variables.get("batch_stats", {}),
                         "opt_state": self.learner(ctx).tx.init(strategy_params)}}

  # -- pieces of the step ---------------------------------------------------------------------
  def adversarial_examples(self, ctx, params, batch_stats, batch: Batch, key,
                           strategy: Strategy) -> jax.Array:
    """x_adv of the classifier under the per-example budget (its BatchNorm statistics are
    untouched in the official eval mode; in 'train' mode their updates are dropped, since
    the official code never attacks in train mode)."""
    s = self.cfg.strategy
    start = None
    if self.attack_cfg.objective == "ce":
      # Every example starts in the 8/255 box whatever its ε_i; the driver's first
      # projection shrinks the start to ε_i.
      start = policy.uniform_start(key, batch.images, s.start_radius)
    x_adv, _ = maximizer.adversarial_examples(ctx, params, batch_stats, batch, key,
                                              self.attack_cfg, budget=strategy.budget, start=start)
    return x_adv

  def _prepared(self, x_adv, strategy: Strategy) -> dict:
    # 'eps' is read by no base loss; it documents the budget each x_adv was made with.
    prepared = {"x_adv": x_adv, "eps": strategy.budget.eps}
    if strategy.beta is not None:
      prepared["beta"] = strategy.beta
    return prepared

  def attack_effect(self, ctx, params, batch_stats, batch, prepared) -> jax.Array:
    """R1 before clipping, classifier in eval mode."""
    adv_logits = ctx.model.logits(params, batch_stats, prepared["x_adv"], "eval")
    if "beta" not in prepared:
      return losses.cross_entropy(adv_logits, batch.labels)
    clean_logits = ctx.model.logits(params, batch_stats, batch.images, "eval")
    kl = per_example_losses.kl_divergence(clean_logits, adv_logits)
    return losses.cross_entropy(clean_logits, batch.labels) + jnp.mean(prepared["beta"] * kl)

  def lookahead(self, ctx, params, batch_stats, batch, prepared, key, info):
    """θ′ and its BatchNorm statistics after one fresh-SGD step on the base's training loss
    (AWP base: at the perturbed weights, perturbation removed, as the engine's step)."""
    perturbation = self.base.weight_perturbation(ctx, params, batch_stats, batch, prepared, key, info)
    params_at = params if perturbation is None else jax.tree.map(jnp.add, params, perturbation)

    def loss_fn(p):
      return self.base.loss(ctx, p, batch_stats, batch, prepared, key, info)

    (_, (new_stats, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params_at)
    new_params = policy.lookahead_params(params_at, grads, info.learning_rate,
                                         self.cfg.strategy.reward.lookahead_weight_decay)
    if perturbation is not None:
      new_params = jax.tree.map(jnp.subtract, new_params, perturbation)
    return new_params, new_stats

  def lookahead_accuracies(self, ctx, params, batch_stats, batch, key):
    """(robust, clean) measure of θ′: PGD in `reward.bn_mode` (official 'train': running
    statistics threaded and kept, the official side effect), then in eval mode the
    accuracies (official) or −CE (`reward.measure='loss'`, the paper's L2, L3)."""
    r = self.cfg.strategy.reward
    objective = maximizer.model_objective(ctx, params, batch.labels, r.bn_mode,
                                          per_example_losses.cross_entropy)
    result = pgd_lib.pgd(objective, batch.images, batch.labels, key,
                         Budget(r.eps, r.step_size, r.num_steps), max_steps=r.num_steps,
                         init="uniform", early_stop=True, restarts=r.restarts,
                         evaluate_final=True, aux=batch_stats)
    stats = result.aux
    measure = losses.accuracy if r.measure == "accuracy" else (
        lambda logits, labels: -losses.cross_entropy(logits, labels))
    robust = measure(ctx.model.logits(params, stats, result.x_adv, "eval"), batch.labels)
    clean = measure(ctx.model.logits(params, stats, batch.images, "eval"), batch.labels)
    return robust, clean

  def reward(self, ctx, params, batch_stats, batch, key, info, strategy: Strategy):
    """(R, metrics) of a sampled strategy (docs/las_at.md#reward)."""
    r = self.cfg.strategy.reward
    x_adv = self.adversarial_examples(ctx, params, batch_stats, batch,
                                      jax.random.fold_in(key, _POLICY_ATTACK), strategy)
    prepared = jax.lax.stop_gradient(self._prepared(x_adv, strategy))
    effect = self.attack_effect(ctx, params, batch_stats, batch, prepared)
    ahead, ahead_stats = self.lookahead(ctx, params, batch_stats, batch, prepared,
                                        jax.random.fold_in(key, _LOOKAHEAD), info)
    robust, clean = self.lookahead_accuracies(ctx, ahead, ahead_stats, batch,
                                              jax.random.fold_in(key, _REWARD_PGD))
    weights = policy.RewardWeights(r.c2, r.c3, r.attack_clip, r.piece_clip)
    reward = policy.total_reward(effect, robust, clean, weights)
    return jax.lax.stop_gradient(reward), {"strategy_attack_effect": effect,
                                           "strategy_robust_acc": robust,
                                           "strategy_clean_acc": clean}

  def strategy_step(self, ctx, params, batch_stats, strategy_state, batch, key, info):
    """The policy update of this step, or nothing (lax.cond / jnp.where on the interval).
    Returns (strategy state, metrics)."""
    learner = self.learner(ctx)

    def update(state):
      def reward_fn(actions):
        return self.reward(ctx, params, batch_stats, batch, key, info,
                           strategy_from_actions(self.options, actions))

      new_state, _, reward, metrics = policy_update(
          learner, state, batch.images, jax.random.fold_in(key, _POLICY_SAMPLE), reward_fn)
      return new_state, {"strategy_reward": reward, **metrics}

    def skip(state):
      zeros = {k: jnp.zeros((), jnp.float32) for k in
               ("strategy_reward", "strategy_attack_effect", "strategy_robust_acc",
                "strategy_clean_acc")}
      return state, zeros

    is_update = policy.is_policy_update_step(info.step + 1, self.cfg.strategy.interval)
    if self.cfg.strategy.interval == 1:
      # Every step updates: no conditional at all (XLA:CPU ran the same work about 1.6x
      # slower inside lax.cond, docs/las_at.md#cost).
      new_state, metrics = update(strategy_state)
    elif self.cfg.strategy.update_branch == "cond":
      new_state, metrics = jax.lax.cond(is_update, update, skip, strategy_state)
    else:
      updated, metrics = update(strategy_state)
      new_state = jax.tree.map(lambda new, old: jnp.where(is_update, new, old), updated,
                               strategy_state)
      metrics = {k: jnp.where(is_update, v, 0.0) for k, v in metrics.items()}
    metrics["strategy_updates"] = is_update.astype(jnp.float32)
    return new_state, metrics

  def prepare(self, ctx, params, batch_stats, method_state, batch, key, info):
    strategy_state, metrics = self.strategy_step(ctx, params, batch_stats,
                                                 method_state["strategy"], batch, key, info)
    logits, _ = strategy_logits(self.learner(ctx), strategy_state, batch.images, train=False)
    actions = sample_actions(jax.random.fold_in(key, _TARGET_SAMPLE), logits)
    strategy = strategy_from_actions(self.options, actions)
    x_adv = self.adversarial_examples(ctx, params, batch_stats, batch,
                                      jax.random.fold_in(key, _TARGET_ATTACK), strategy)
    prepared = self._prepared(x_adv, strategy)
    for name, a, size in zip(self.options.names, actions, self.options.sizes):
      metrics[f"counts/{name}"] = policy.strategy_counts(a, batch.labels, size, ctx.num_classes)
    metrics["strategy_eps_mean"] = jnp.mean(strategy.budget.eps)
    return prepared, batch_stats, {**method_state, "strategy": strategy_state}, metrics
