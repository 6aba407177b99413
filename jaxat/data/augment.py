"""Standard CIFAR-style augmentation as pure JAX functions (jit and vmap friendly).

All functions take a batch of images (B, H, W, C), uint8 or float, and return a batch
of the same shape and dtype. `padding`, `mode` and `flip` are Python values fixed at
trace time; randomness comes only from the key, so a key fully determines the output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PADDING_MODES = ("zero", "reflect")
# Our mode names -> jnp.pad modes. 'reflect' mirrors without repeating the edge pixel
# (np.pad 'reflect'), the usual choice for CIFAR crops.
_JNP_PAD_MODES = {"zero": "constant", "reflect": "reflect"}


def _check_images(images: jax.Array) -> None:
  if images.ndim != 4:
    raise ValueError(f"images must have shape (B, H, W, C), got shape {images.shape}")


def _check_padding(padding: int, mode: str) -> None:
  if mode not in PADDING_MODES:
    raise ValueError(f"padding mode {mode!r} is unknown; choose one of {list(PADDING_MODES)}")
  if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
    raise ValueError(f"padding must be a non-negative Python int, got {padding!r}")


def random_crop(key: jax.Array, images: jax.Array, padding: int, mode: str) -> jax.Array:
  """Pads every side by `padding` pixels, then crops each example at a random offset.

  Each example draws its own (row, column) offset uniformly from 0..2*padding
  inclusive, so the output is a window of the padded image shifted by up to
  `padding` pixels in each direction. padding == 0 returns the images unchanged.

  Args:
    key: PRNG key.
    images: (B, H, W, C) array, any dtype.
    padding: pixels added on each side, a non-negative Python int.
    mode: 'zero' (pad with 0) or 'reflect' (np.pad 'reflect' semantics).

  Returns:
    (B, H, W, C) array of the same dtype.
  """
  _check_padding(padding, mode)
  _check_images(images)
  if padding == 0:
    return images
  batch, height, width, channels = images.shape
  padded = jnp.pad(
      images,
      ((0, 0), (padding, padding), (padding, padding), (0, 0)),
      mode=_JNP_PAD_MODES[mode],
  )
  offsets = jax.random.randint(key, (batch, 2), 0, 2 * padding + 1)

  def crop_one(image: jax.Array, offset: jax.Array) -> jax.Array:
    return jax.lax.dynamic_slice(
        image, (offset[0], offset[1], 0), (height, width, channels)
    )

  return jax.vmap(crop_one)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
  """Mirrors each example left-right (axis 2, width) with probability 1/2.

  Args:
    key: PRNG key.
    images: (B, H, W, C) array, any dtype.

  Returns:
    (B, H, W, C) array of the same dtype.
  """
  _check_images(images)
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def augment_batch(
    key: jax.Array, images: jax.Array, padding: int, padding_mode: str, flip: bool
) -> jax.Array:
  """Random crop (see `random_crop`) followed by an optional random horizontal flip.

  Args:
    key: PRNG key; split into independent crop and flip keys.
    images: (B, H, W, C) array, any dtype.
    padding: crop padding in pixels, a non-negative Python int (0 disables crops).
    padding_mode: 'zero' or 'reflect'.
    flip: whether to apply `random_flip`.

  Returns:
    (B, H, W, C) array of the same dtype.
  """
  _check_padding(padding, padding_mode)
  crop_key, flip_key = jax.random.split(key)
  images = random_crop(crop_key, images, padding, padding_mode)
  if flip:
    images = random_flip(flip_key, images)
  return images
