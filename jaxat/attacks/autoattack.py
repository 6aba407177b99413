"""The attack ensemble: AutoAttack's pipeline (Croce & Hein 2020; docs/evaluation.md#pipeline) over
any list of attacks, with fixed compiled shapes.

Attacks run in order, each only on the points that are still robust, always from the
clean inputs; a point fooled by any attack stays fooled, with the adversarial example
that fooled it (the point-wise worst case). Targeted attacks run one *pass* per target
class, and the points fooled by one target leave before the next, as in the reference.
Every returned point is re-checked with a fresh forward pass: it counts as fooled only if
it is misclassified, inside the eps-ball (float tolerance eps*(1+1e-6)+1e-7 for L-inf,
eps*(1+1e-5)+1e-7 for L2) and inside [0,1] with finite values; any other point an attack
returns is *rejected* (counted, never trusted).

Compiled shapes: the still-robust points of a pass are cut into chunks whose sizes are a
few buckets (batch, batch/2, batch/4, batch/8; see `chunk_sizes`), and a short last chunk
is padded with inactive copies of a real row. Each attack therefore compiles at most once
per bucket, whatever the number of batches or of points left.

Randomness: the attack's key is fold_in(key(seed), crc32(name)), pass p's key is
fold_in(attack key, p); gradient attacks draw per example from fold_in(pass key, example
index) (results do not depend on batch size or on the other points; the index is in the
whole set when x is a slice of it given with `index_offset`), Square draws per chunk from
fold_in(pass key, chunk index). Everything is deterministic given the seed.

The state (`EnsembleState`) is explicit host data: a run can be stopped after any chunk
and continued from the state later with identical results.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxat import xla_cpu
from jaxat.attacks import rng
from jaxat.attacks.registry import AttackSpec, run_attack_pass

NORMS = ("linf", "l2")
NUM_BUCKETS = 4
_LINF_TOLERANCE = (1e-6, 1e-7)   # (relative, absolute) slack of the eps-ball check
_L2_TOLERANCE = (1e-5, 1e-7)     # L2 norms of projected points carry float32 sum error

# (attack name, norm, batch shape) recorded each time a stage function is traced, i.e.
# compiled. Tests read it to check that nothing recompiles per batch.
COMPILATIONS: list[tuple[str, str, tuple[int, ...]]] = []


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A model as the evaluator sees it: apply_fn(variables, x (B,H,W,C) in [0,1]) ->
  logits (B,K), pure and deterministic (BatchNorm in inference mode). `apply_fn` must be
  hashable (it keys the compiled functions); `variables` is any pytree of arrays and is
  passed as an argument, never baked into the compiled code."""

  apply_fn: Callable[[Any, jax.Array], jax.Array]
  variables: Any


@dataclasses.dataclass
class EnsembleState:
  """Where an ensemble run stands; numpy arrays on the host.

  robust: (N,) bool, clean-correct and not fooled so far.
  x_adv: (N,H,W,C) float32, the fooling point where fooled, x elsewhere.
  stage: index of the next (attack, pass) stage; chunk: next chunk within it.
  stage_robust: (N,) bool robust flags when the current stage began (they fix its chunks),
    None between stages.
  robust_after: attack name -> (N,) robust flags after that attack (completed attacks).
  seconds: attack name -> seconds spent (compilation included).
  rejected: attack name -> number of returned points rejected by the re-check.
  """

  robust: np.ndarray
  x_adv: np.ndarray
  stage: int = 0
  chunk: int = 0
  stage_robust: np.ndarray | None = None
  robust_after: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)
  rejected: dict[str, int] = dataclasses.field(default_factory=dict)

  @classmethod
  def start(cls, x: np.ndarray, robust: np.ndarray, x_adv: np.ndarray | None = None) -> "EnsembleState":
    """Initial state: `robust` are the points to attack (usually the clean-correct ones);
    `x_adv` optionally carries adversarial points found earlier (e.g. at a smaller eps)."""
    return cls(robust=np.array(robust, bool), x_adv=np.array(x if x_adv is None else x_adv,
                                                              np.float32))


@dataclasses.dataclass(frozen=True)
class ChunkEvent:
  """Progress after one chunk: the attack, its pass, how many of the pass's points are
  done, how many points are still robust out of all N, the seconds spent on the attack
  so far and on this pass (since it started or was resumed)."""

  attack: str
  pass_index: int
  num_passes: int
  points_done: int
  points_total: int
  num_robust: int
  num_examples: int
  seconds: float
  pass_seconds: float


def bucket_sizes(batch_size: int, num_buckets: int = NUM_BUCKETS) -> tuple[int, ...]:
  """Descending padded batch sizes: batch_size, ceil(batch_size/2), ... (distinct, >= 1)."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if num_buckets < 1:
    raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
  sizes = sorted({max(1, -(-batch_size // 2 ** i)) for i in range(num_buckets)}, reverse=True)
  return tuple(sizes)


def chunk_sizes(count: int, buckets: Sequence[int]) -> list[int]:
  """How `count` points are cut into chunks (real points per chunk, in order): full
  batches of buckets[0], then the remainder split over buckets so that the fewest rows
  are computed (padding included; one extra chunk costs like one extra row, so ties go to
  fewer chunks). 80 points with buckets 250/125/63/32 -> 48 (padded to 63) + 32: 95 rows
  instead of 125."""
  full = [buckets[0]] * (count // buckets[0])
  remainder = count - sum(full)

  @functools.lru_cache(maxsize=None)
  def best(rest: int) -> tuple[int, tuple[int, ...]]:
    """(computed rows + chunks, real points per chunk) for `rest` points."""
    if rest == 0:
      return 0, ()
    options = []
    for bucket in buckets:
      take = min(bucket, rest)
      cost, parts = best(rest - take)
      options.append((bucket + 1 + cost, (take,) + parts))
    return min(options)

  return full + sorted(best(remainder)[1], reverse=True)


def bucket_for(count: int, buckets: Sequence[int]) -> int:
  """The smallest bucket that holds `count` points (buckets descending, count <= max)."""
  fitting = [b for b in buckets if b >= count]
  if not fitting:
    raise ValueError(f"{count} points exceed the largest bucket {buckets[0]}")
  return fitting[-1]


def within_threat_model(x_adv: jax.Array, x: jax.Array, eps, norm: str) -> jax.Array:
  """(B,) bool: x_adv inside the eps-ball around x (float tolerance, see module docstring),
  inside [0,1] and finite."""
  delta = (x_adv - x).reshape(x.shape[0], -1)
  if norm == "linf":
    distance = jnp.max(jnp.abs(delta), axis=1)
    relative, absolute = _LINF_TOLERANCE
  else:
    distance = jnp.sqrt(jnp.sum(jnp.square(delta), axis=1))
    relative, absolute = _L2_TOLERANCE
  flat = x_adv.reshape(x.shape[0], -1)
  in_box = jnp.all((flat >= 0.0) & (flat <= 1.0), axis=1)
  finite = jnp.all(jnp.isfinite(flat), axis=1)
  return (distance <= eps * (1.0 + relative) + absolute) & in_box & finite


@functools.lru_cache(maxsize=64)
def _stage_function(apply_fn, spec: AttackSpec, norm: str):
  """jitted (variables, x, y, active, indices, attack_key, chunk_index, eps, pass_index) ->
  (x_adv, fooled, rejected) for one chunk of one pass of `spec`."""

  def stage(variables, x, y, active, indices, attack_key, chunk_index, eps, pass_index):
    COMPILATIONS.append((spec.name, norm, tuple(x.shape)))
    logits_fn = functools.partial(apply_fn, variables)
    pass_key = jax.random.fold_in(attack_key, pass_index)
    x_adv = run_attack_pass(spec, logits_fn, x, y, eps=eps, norm=norm, active=active,
                            example_keys=rng.example_keys(pass_key, indices),
                            batch_key=jax.random.fold_in(pass_key, chunk_index),
                            pass_index=pass_index)
    misclassified = jnp.argmax(logits_fn(x_adv), axis=-1) != y
    valid = within_threat_model(x_adv, x, eps, norm)
    fooled = active & misclassified & valid
    rejected = active & misclassified & ~valid
    keep = fooled.reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x_adv, x), fooled, rejected

  return xla_cpu.jit(stage)


@functools.lru_cache(maxsize=64)
def _predict_function(apply_fn):
  return xla_cpu.jit(lambda variables, x: apply_fn(variables, x))


def predict_logits(classifier: Classifier, x: np.ndarray, batch_size: int) -> np.ndarray:
  """Logits (N,K) of a host array x (N,H,W,C) in padded fixed-size chunks."""
  buckets = bucket_sizes(min(batch_size, max(len(x), 1)))
  predict = _predict_function(classifier.apply_fn)
  outputs = []
  for start in range(0, len(x), buckets[0]):
    part = x[start:start + buckets[0]]
    size = bucket_for(len(part), buckets)
    padded = np.concatenate([part, np.repeat(part[:1], size - len(part), axis=0)])
    outputs.append(np.asarray(predict(classifier.variables, jnp.asarray(padded)))[:len(part)])
  return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def check_traceable(classifier: Classifier, specs: Sequence[AttackSpec], x_shape: tuple[int, ...],
                    *, norm: str, batch_size: int) -> None:
  """Traces (without compiling) every attack on a batch of the first bucket's shape, so
  that an attack that cannot run on these inputs (too few classes, images too small for
  L2 Square, ...) raises its ValueError before anything is attacked. The trace is cached:
  the first real call of the same shape does not trace again."""
  size = min(batch_size, max(x_shape[0], 1))
  batch = (size,) + tuple(x_shape[1:])
  for spec in specs:
    jax.eval_shape(_stage_function(classifier.apply_fn, spec, norm), classifier.variables,
                   jax.ShapeDtypeStruct(batch, jnp.float32), jax.ShapeDtypeStruct((size,), jnp.int32),
                   jax.ShapeDtypeStruct((size,), jnp.bool_), jax.ShapeDtypeStruct((size,), jnp.int32),
                   jax.random.key(0), jnp.int32(0), jnp.float32(0.0), jnp.int32(0))


def stages_of(specs: Sequence[AttackSpec], num_classes: int) -> list[tuple[AttackSpec, int]]:
  """The flattened (attack, pass index) list of an ensemble."""
  return [(spec, p) for spec in specs for p in range(spec.num_passes(num_classes))]


def run_ensemble(classifier: Classifier,
                 x: np.ndarray,
                 y: np.ndarray,
                 specs: Sequence[AttackSpec],
                 state: EnsembleState,
                 *,
                 eps: float,
                 norm: str,
                 seed: int,
                 num_classes: int,
                 batch_size: int = 250,
                 num_buckets: int = NUM_BUCKETS,
                 on_chunk: Callable[[ChunkEvent, EnsembleState], None] | None = None,
                 index_offset: int = 0) -> EnsembleState:
  """Runs (or continues) the ensemble `specs` on x (N,H,W,C) float32 in [0,1], y (N,)
  int, from `state`; returns the final state (the same object, updated in place).

  eps in pixel units (8/255 = 0.0314 L-inf), norm 'linf' | 'l2'. `batch_size` bounds the
  compiled batch (buckets derive from min(batch_size, N)); `num_buckets` = 1 pads every
  chunk to the full batch (fewest compilations), more buckets waste less padding when few
  points are left. `on_chunk(event, state)` is called after every chunk (progress display,
  checkpointing); it may raise to stop the run, and the state then continues where it
  stopped. `index_offset`: the index of x[0] in a larger set of which x is a contiguous
  slice; per-example keys then use the larger set's indices, so the gradient attacks draw
  for each example what a run on the whole set draws (Square's per-chunk draws, and FAB's
  random restarts beyond the first, still depend on the chunks, i.e. on the points
  attacked together).
  """
  if norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; valid choices: {', '.join(NORMS)}")
  num_examples = len(x)
  buckets = bucket_sizes(min(batch_size, max(num_examples, 1)), num_buckets)
  for spec in specs:
    if spec.num_passes(num_classes) < 1:
      raise ValueError(f"attack {spec.name!r} has no target class to attack with "
                       f"{num_classes} classes")
  stages = stages_of(specs, num_classes)
  root = jax.random.key(seed)
  eps_array = jnp.asarray(eps, jnp.float32)
  while state.stage < len(stages):
    spec, pass_index = stages[state.stage]
    num_passes = spec.num_passes(num_classes)
    if state.stage_robust is None:
      state.stage_robust = state.robust.copy()
      state.chunk = 0
    candidates = np.flatnonzero(state.stage_robust)
    # No robust point left: the stage has no chunk (np.split would give one empty chunk).
    chunks = (np.split(candidates, np.cumsum(chunk_sizes(len(candidates), buckets))[:-1])
              if len(candidates) else [])
    stage_fn = _stage_function(classifier.apply_fn, spec, norm)
    attack_key = jax.random.fold_in(root, spec.attack_id)
    pass_seconds = 0.0
    while state.chunk < len(chunks):
      started = time.perf_counter()
      indices = chunks[state.chunk]
      size = bucket_for(len(indices), buckets)
      padded = np.concatenate([indices, np.full(size - len(indices), indices[0])]).astype(np.int32)
      active = np.arange(size) < len(indices)
      x_adv, fooled, rejected = stage_fn(classifier.variables, jnp.asarray(x[padded]),
                                         jnp.asarray(y[padded]), jnp.asarray(active),
                                         jnp.asarray(padded + index_offset), attack_key,
                                         jnp.asarray(state.chunk, jnp.int32), eps_array,
                                         jnp.asarray(pass_index, jnp.int32))
      fooled = np.asarray(fooled)[:len(indices)]
      rejected = np.asarray(rejected)[:len(indices)]
      fooled_indices = indices[fooled]
      state.robust[fooled_indices] = False
      state.x_adv[fooled_indices] = np.asarray(x_adv)[:len(indices)][fooled]
      state.rejected[spec.name] = state.rejected.get(spec.name, 0) + int(rejected.sum())
      spent = time.perf_counter() - started
      pass_seconds += spent
      state.seconds[spec.name] = state.seconds.get(spec.name, 0.0) + spent
      state.chunk += 1
      if on_chunk is not None:
        done = sum(len(c) for c in chunks[:state.chunk])
        on_chunk(ChunkEvent(spec.name, pass_index, num_passes, done, len(candidates),
                            int(state.robust.sum()), num_examples, state.seconds[spec.name],
                            pass_seconds), state)
    state.seconds.setdefault(spec.name, 0.0)
    state.rejected.setdefault(spec.name, 0)
    if pass_index == num_passes - 1:
      state.robust_after[spec.name] = state.robust.copy()
    state.stage += 1
    state.stage_robust = None
    state.chunk = 0
  return state
