"""Evaluation attacks by name: name -> AttackSpec (what to run, with which settings).

Names (case-sensitive):
  clean                      no attack (clean accuracy)
  fgsm                       one eps-step on CE from x
  pgd<k>[-<r>][_es]          PGD-k on CE, uniform start, step eps/4 by default, r restarts
                             (worst case per example); _es = per-example early stopping
                             (docs/evaluation.md#per-example-early-stopping), reported under its own name
  cw<k>[-<r>][_es]           the same loop on the CW margin -(z_y - max_{j!=y} z_j)
  apgd-ce, apgd-dlr          APGD on CE / untargeted DLR (100 iterations, 1 restart)
  apgd-t                     APGD on the targeted DLR, 9 target classes (ranks 2..10)
  fab-t                      FAB targeted, 9 target classes (jaxat/attacks/fab.py)
  square                     Square Attack, 5000 queries (jaxat/attacks/square.py)
  aa                         the AutoAttack 'standard' ensemble apgd-ce+apgd-t+fab-t+square
  a+b+...                    a custom ensemble: each attack only on the points still robust

Settings are the reference's defaults; `overrides` change them per attack (tests use few
iterations). A spec is hashable (it keys the compiled functions) and turns into a JSON
dict with `settings()`. Every attack runs through one uniform entry point,
`run_attack_pass`, so adding an attack is one entry in `_FAMILIES` plus a name.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import zlib
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxat.attacks import apgd as apgd_lib
from jaxat.attacks import pgd_attacks, rng

STANDARD_ENSEMBLE = ("apgd-ce", "apgd-t", "fab-t", "square")
ENSEMBLE_ALIASES = {"aa": STANDARD_ENSEMBLE}
PGD_STEP_FRACTION = 0.25  # step = eps/4: 2/255 at eps = 8/255 (Jia-family, Rice, AWP)
_PGD_NAME = re.compile(r"^(pgd|cw)(\d+)(?:-(\d+))?(_es)?$")
VALID_NAMES_TEXT = ("clean, fgsm, pgd<k>[-<restarts>][_es], cw<k>[-<restarts>][_es], apgd-ce, "
                    "apgd-dlr, apgd-t, fab-t, square, aa, or an ensemble such as apgd-ce+square")


@dataclasses.dataclass(frozen=True)
class AttackSpec:
  """One evaluation attack.

  name: canonical name, as reported.
  family: key of the runner in `_FAMILIES` ('clean', 'pgd', 'apgd', 'apgd-t', 'fab-t',
    'square').
  options: sorted (key, value) pairs of static settings.
  """

  name: str
  family: str
  options: tuple[tuple[str, Any], ...]

  def settings(self) -> dict[str, Any]:
    return dict(self.options)

  def option(self, key: str) -> Any:
    return self.settings()[key]

  @property
  def attack_id(self) -> int:
    """A stable 31-bit id of the name: the attack's PRNG stream is fold_in(seed key, id)."""
    return zlib.crc32(self.name.encode()) & 0x7FFFFFFF

  def num_passes(self, num_classes: int) -> int:
    """Targeted attacks run one pass per target class (points fooled by one target are
    dropped before the next, as in the reference); the others run once."""
    if self.family in ("apgd-t", "fab-t"):
      return apgd_lib.num_target_classes(num_classes, self.option("n_target_classes"))
    return 1

  @property
  def uses_batch_key(self) -> bool:
    """Square shares its random window positions across a batch (reference behaviour), so
    its draws are per batch; all other attacks draw per example."""
    return self.family == "square"


def _defaults(name: str) -> tuple[str, dict[str, Any]]:
  """(family, default options) of a single attack name; ValueError if unknown."""
  if name == "clean":
    return "clean", {}
  if name == "fgsm":
    return "pgd", dict(loss="ce", num_steps=1, restarts=1, early_stop=False, init="zero",
                       step_fraction=1.0, step_size=None)
  match = _PGD_NAME.match(name)
  if match:
    kind, steps, restarts, early_stop = match.groups()
    if int(steps) < 1 or (restarts is not None and int(restarts) < 1):
      raise ValueError(f"attack {name!r}: steps and restarts must be >= 1")
    return "pgd", dict(loss="ce" if kind == "pgd" else "cw", num_steps=int(steps),
                       restarts=int(restarts or 1), early_stop=bool(early_stop), init="uniform",
                       step_fraction=PGD_STEP_FRACTION, step_size=None)
  if name in ("apgd-ce", "apgd-dlr"):
    return "apgd", dict(loss=name.split("-")[1], n_iter=100, n_restarts=1, rho=0.75)
  if name == "apgd-t":
    return "apgd-t", dict(n_iter=100, n_target_classes=9, rho=0.75)
  if name == "fab-t":
    return "fab-t", dict(n_iter=100, n_target_classes=9, n_restarts=1, alpha_max=0.1, eta=1.05,
                         beta=0.9)
  if name == "square":
    return "square", dict(n_queries=5000, p_init=0.8)
  raise ValueError(f"unknown attack {name!r}; valid choices: {VALID_NAMES_TEXT}")


def _module_available(module: str) -> bool:
  return importlib.util.find_spec(module) is not None


def attack_spec(name: str, overrides: dict[str, Any] | None = None) -> AttackSpec:
  """The spec of a single attack, with optional setting overrides (validated)."""
  name = name.strip()
  family, options = _defaults(name)
  needs = {"fab-t": "jaxat.attacks.fab", "square": "jaxat.attacks.square"}.get(family)
  if needs and not _module_available(needs):
    raise ValueError(f"attack {name!r} needs {needs}, which is not installed")
  for key, value in (overrides or {}).items():
    if key not in options:
      raise ValueError(f"attack {name!r} has no setting {key!r}; valid settings: "
                       f"{', '.join(sorted(options)) or 'none'}")
    options[key] = value
  if family == "pgd" and options["step_size"] is not None and not options["step_size"] > 0:
    raise ValueError(f"attack {name!r}: step_size must be > 0 (pixel units), got {options['step_size']}")
  for key in ("n_iter", "n_queries", "num_steps", "restarts", "n_restarts", "n_target_classes"):
    if key in options and (not isinstance(options[key], int) or options[key] < 1):
      raise ValueError(f"attack {name!r}: {key} must be an integer >= 1, got {options[key]!r}")
  return AttackSpec(name, family, tuple(sorted(options.items())))


def is_ensemble(item: str) -> bool:
  return item in ENSEMBLE_ALIASES or "+" in item


def ensemble_members(item: str) -> tuple[str, ...]:
  """The attack names of an evaluation item: 'aa' -> the standard four, 'a+b' -> (a, b),
  a single attack -> (it,)."""
  if item in ENSEMBLE_ALIASES:
    return ENSEMBLE_ALIASES[item]
  members = tuple(part.strip() for part in item.split("+"))
  if any(not part for part in members):
    raise ValueError(f"empty attack name in {item!r}; valid choices: {VALID_NAMES_TEXT}")
  if len(set(members)) != len(members):
    raise ValueError(f"ensemble {item!r} names an attack twice")
  if len(members) > 1 and "clean" in members:
    raise ValueError(f"ensemble {item!r}: 'clean' is not an attack")
  return members


# ---------------------------------------------------------------------------------------
# Runners: one uniform signature for every family. They return x_adv (B,H,W,C); the
# evaluator re-checks every returned point with a fresh forward pass and the eps-ball.


def _run_pgd(spec, logits_fn, x, y, *, eps, norm, active, example_keys, batch_key, pass_index):
  del batch_key, pass_index
  o = spec.settings()
  step_size = o["step_size"] if o["step_size"] is not None else eps * o["step_fraction"]
  return pgd_attacks.pgd_attack(logits_fn, x, y, example_keys, eps=eps, num_steps=o["num_steps"],
                                step_size=step_size, norm=norm, loss=o["loss"], init=o["init"],
                                restarts=o["restarts"], early_stop=o["early_stop"],
                                active=active).x_adv


def _run_apgd(spec, logits_fn, x, y, *, eps, norm, active, example_keys, batch_key, pass_index):
  del batch_key, pass_index
  o = spec.settings()
  x_adv = x
  robust = active
  # Restarts only attack the points the earlier restarts did not fool (reference perturb).
  for restart in range(o["n_restarts"]):
    result = apgd_lib.apgd(logits_fn, x, y, rng.fold_in(example_keys, restart), eps=eps,
                           norm=norm, loss=o["loss"], n_iter=o["n_iter"], rho=o["rho"],
                           active=robust)
    fooled = robust & ~result.robust
    x_adv = jnp.where(fooled.reshape((-1,) + (1,) * (x.ndim - 1)), result.x_adv, x_adv)
    robust = robust & result.robust
  return x_adv


def _run_apgd_targeted(spec, logits_fn, x, y, *, eps, norm, active, example_keys, batch_key,
                       pass_index):
  del batch_key
  o = spec.settings()
  targets = apgd_lib.target_classes(logits_fn(x), pass_index + 2)
  return apgd_lib.apgd(logits_fn, x, y, example_keys, eps=eps, norm=norm, loss="dlr-targeted",
                       n_iter=o["n_iter"], rho=o["rho"], targets=targets, active=active).x_adv


def _run_fab_targeted(spec, logits_fn, x, y, *, eps, norm, active, example_keys, batch_key,
                      pass_index):
  del example_keys
  from jaxat.attacks import fab  # Imported on use: written separately from this registry.
  o = spec.settings()
  targets = apgd_lib.target_classes(logits_fn(x), pass_index + 2)[:, None]
  return fab.fab_targeted(logits_fn, x, y, batch_key, eps=eps, norm=norm, n_target_classes=1,
                          n_iter=o["n_iter"], n_restarts=o["n_restarts"], alpha_max=o["alpha_max"],
                          eta=o["eta"], beta=o["beta"], active=active, targets=targets).x_adv


def _run_square(spec, logits_fn, x, y, *, eps, norm, active, example_keys, batch_key, pass_index):
  del example_keys, pass_index
  from jaxat.attacks import square  # Imported on use: written separately from this registry.
  o = spec.settings()
  return square.square_attack(logits_fn, x, y, batch_key, eps=eps, norm=norm,
                              n_queries=o["n_queries"], p_init=o["p_init"], active=active).x_adv


def _run_clean(spec, logits_fn, x, y, *, eps, norm, active, example_keys, batch_key, pass_index):
  del spec, logits_fn, y, eps, norm, active, example_keys, batch_key, pass_index
  return x


_FAMILIES: dict[str, Callable[..., jax.Array]] = {
    "clean": _run_clean,
    "pgd": _run_pgd,
    "apgd": _run_apgd,
    "apgd-t": _run_apgd_targeted,
    "fab-t": _run_fab_targeted,
    "square": _run_square,
}


def run_attack_pass(spec: AttackSpec, logits_fn, x, y, *, eps, norm: str, active, example_keys,
                    batch_key, pass_index) -> jax.Array:
  """x_adv (B,H,W,C) of pass `pass_index` (traced int32; the target rank - 2 for targeted
  attacks) of `spec` on a batch.

  eps: traced scalar (pixel units); active: (B,) bool, False for padding rows;
  example_keys: (B,) per-example keys; batch_key: one key for batch-shared draws.
  """
  return _FAMILIES[spec.family](spec, logits_fn, x, y, eps=eps, norm=norm, active=active,
                                example_keys=example_keys, batch_key=batch_key,
                                pass_index=pass_index)
