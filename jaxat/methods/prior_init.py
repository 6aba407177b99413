"""The initialiser role for prior-guided single-step attacks: prior perturbations kept in
`method_state` and used as the start point x_0 = x + η of the next attack
(docs/fast_adversarial_training.md#per-example-buffers-at-scale).

Three kinds of prior (Jia et al., ECCV 2022, "Prior-Guided Adversarial Initialization for
Fast Adversarial Training"):

| kind             | buffer                                        | prior of a batch            |
|------------------|-----------------------------------------------|-----------------------------|
| `batch`          | η (B,H,W,C): one batch, not per example        | the previous batch's δ      |
| `epoch`          | η (N,H,W,C) per example                        | the example's δ one epoch ago |
| `momentum_epoch` | η (N,H,W,C) and gradient momentum m (N,H,W,C)  | η written by the momentum rule |

N is the number of training examples; rows are read and written by `batch.indices` (the
dataset index of each example), so shuffling, augmentation and sharding do not matter and
an example missing from an epoch (drop-last batching) keeps its rows.

Reset every R epochs (`reset_epochs`; R = 0: only at the start of training): at the
0-based epochs e with e mod R = 0 every prior is redrawn,
    η = clip(α·sign(u), −ε, ε),  u ~ U(−ε, ε) per element
(with α = ε a random ±ε per element), and m = 0. The redraw is lazy: each buffer keeps the
0-based epoch of its last write per row (`written_epoch`, −1 = never), and a row read at
epoch e whose last write precedes the last reset epoch ⌊e/R⌋·R is replaced by a fresh draw
(η) and zeros (m) before use. This equals redrawing the whole buffer at the start of the
reset epoch (each example is read at most once per epoch, before its first write of the
epoch), costs no (N,H,W,C) draw, and the draw comes from the step's key through fold_in,
so a resumed run is bit-identical.

`buffer_dtype` 'bfloat16' halves the memory of η and m (CIFAR-10: 50000×32×32×3 values
each, 614 MB in float32); values are cast to float32 when read, so only the stored priors
are rounded (to 8 significant bits): a stored ±ε may read back up to 2⁻⁸·ε larger, which
moves the start point x + η slightly but not the adversarial example, whose perturbation
is clipped to [−ε, ε] after the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

KINDS = ("batch", "epoch", "momentum_epoch")
BUFFER_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# fold_in id of the fresh draws within a step's key.
_FRESH_STREAM = 7


def validate_kind(kind: str) -> None:
  if kind not in KINDS:
    raise ValueError(f"unknown prior kind {kind!r}; valid choices: {', '.join(KINDS)}")


def buffer_dtype(name: str):
  if name not in BUFFER_DTYPES:
    raise ValueError(f"unknown method.buffer_dtype {name!r}; valid choices: "
                     f"{', '.join(BUFFER_DTYPES)}")
  return BUFFER_DTYPES[name]


def last_reset_epoch(epoch: jax.Array, reset_epochs: int) -> jax.Array:
  """⌊epoch / R⌋·R, the last epoch ≤ `epoch` at which the priors were redrawn (0 when R = 0)."""
  epoch = jnp.asarray(epoch, jnp.int32)
  if reset_epochs <= 0:
    return jnp.zeros_like(epoch)
  return (epoch // reset_epochs) * reset_epochs


def random_prior(key: jax.Array, shape: tuple[int, ...], eps: float, step_size: float) -> jax.Array:
  """clip(α·sign(u), −ε, ε) with u ~ U(−ε, ε) per element; float32 of `shape`."""
  u = jax.random.uniform(key, shape, jnp.float32, minval=-eps, maxval=eps)
  return jnp.clip(step_size * jnp.sign(u), -eps, eps)


def init_prior_state(kind: str, num_train: int, batch_size: int,
                     image_shape: tuple[int, int, int], dtype_name: str = "float32") -> dict:
  """The prior buffers before any write: zeros, every row marked never written (−1).

  batch: {'eta': (B,H,W,C), 'written_epoch': () int32};
  epoch: {'eta': (N,H,W,C), 'written_epoch': (N,) int32};
  momentum_epoch: the same plus 'momentum': (N,H,W,C).
  """
  validate_kind(kind)
  dtype = buffer_dtype(dtype_name)
  if kind == "batch":
    return {"eta": jnp.zeros((batch_size,) + tuple(image_shape), dtype),
            "written_epoch": jnp.full((), -1, jnp.int32)}
  state = {"eta": jnp.zeros((num_train,) + tuple(image_shape), dtype),
           "written_epoch": jnp.full((num_train,), -1, jnp.int32)}
  if kind == "momentum_epoch":
    state["momentum"] = jnp.zeros((num_train,) + tuple(image_shape), dtype)
  return state


def _rows(written_or_stale: jax.Array, ndim: int) -> jax.Array:
  """Broadcasts a (B,) or () per-row flag against a (B,H,W,C) tensor."""
  return written_or_stale.reshape(written_or_stale.shape + (1,) * (ndim - written_or_stale.ndim))


def read_prior(state: dict, kind: str, indices: jax.Array, images_shape: tuple[int, ...],
               key: jax.Array, epoch: jax.Array, eps: float, step_size: float,
               reset_epochs: int) -> tuple[jax.Array, jax.Array | None]:
  """The batch's prior η (B,H,W,C) float32 and momentum m (float32, or None without it).

  Rows (the whole buffer for `batch`) last written before the last reset epoch are replaced
  by a fresh clip(α·sign(u), −ε, ε) drawn from fold_in(key, ·) and a zero momentum.
  """
  validate_kind(kind)
  per_example = kind != "batch"
  written = state["written_epoch"][indices] if per_example else state["written_epoch"]
  stale = _rows(written < last_reset_epoch(epoch, reset_epochs), len(images_shape))
  stored = state["eta"][indices] if per_example else state["eta"]
  fresh = random_prior(jax.random.fold_in(key, _FRESH_STREAM), tuple(images_shape), eps, step_size)
  eta = jnp.where(stale, fresh, stored.astype(jnp.float32))
  momentum = None
  if kind == "momentum_epoch":
    momentum = jnp.where(stale, 0.0, state["momentum"][indices].astype(jnp.float32))
  return eta, momentum


def write_prior(state: dict, kind: str, indices: jax.Array, epoch: jax.Array, eta: jax.Array,
                momentum: jax.Array | None = None) -> dict:
  """The buffers with the batch's rows (the whole buffer for `batch`) replaced by η (and m),
  cast to the buffer dtype, and their `written_epoch` set to `epoch`."""
  validate_kind(kind)
  epoch = jnp.asarray(epoch, jnp.int32)
  new = dict(state)
  if kind == "batch":
    new["eta"] = eta.astype(state["eta"].dtype)
    new["written_epoch"] = epoch
    return new
  new["eta"] = state["eta"].at[indices].set(eta.astype(state["eta"].dtype))
  new["written_epoch"] = state["written_epoch"].at[indices].set(epoch)
  if kind == "momentum_epoch":
    if momentum is None:
      raise ValueError("the momentum_epoch prior needs the momentum m to write")
    new["momentum"] = state["momentum"].at[indices].set(momentum.astype(state["momentum"].dtype))
  return new
