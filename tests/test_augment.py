"""Tests of the pure-JAX crop and flip augmentation against numpy references."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxat.data import augment_batch, random_crop, random_flip

NUMPY_PAD_MODES = {"zero": "constant", "reflect": "reflect"}


def distinct_images(batch: int, height: int = 6, width: int = 6, channels: int = 2) -> np.ndarray:
  """float32 images whose every pixel value is unique, so a crop identifies its offset."""
  count = batch * height * width * channels
  return (np.arange(count, dtype=np.float32) + 1.0).reshape(batch, height, width, channels)


def crop_offset(output: np.ndarray, source: np.ndarray, padding: int, mode: str):
  """The (row, column) offset of `output` within padded `source`, or None if no window matches."""
  height, width = source.shape[:2]
  padded = np.pad(source, ((padding, padding), (padding, padding), (0, 0)),
                  mode=NUMPY_PAD_MODES[mode])
  for row, column in itertools.product(range(2 * padding + 1), repeat=2):
    if np.array_equal(output, padded[row:row + height, column:column + width]):
      return row, column
  return None


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_no_padding_and_no_flip_is_identity(dtype):
  images = (distinct_images(3) % 256).astype(dtype)
  output = augment_batch(jax.random.PRNGKey(0), jnp.asarray(images), padding=0,
                         padding_mode="zero", flip=False)
  assert output.dtype == dtype
  np.testing.assert_array_equal(np.asarray(output), images)


def test_flip_twice_with_same_key_is_identity_and_flips_some_examples():
  images = jnp.asarray(distinct_images(32))
  key = jax.random.PRNGKey(1)
  flipped = np.asarray(random_flip(key, images))
  np.testing.assert_array_equal(np.asarray(random_flip(key, jnp.asarray(flipped))), images)
  mirrored = np.asarray(images)[:, :, ::-1, :]
  was_flipped = [np.array_equal(flipped[i], mirrored[i]) for i in range(32)]
  kept = [np.array_equal(flipped[i], np.asarray(images)[i]) for i in range(32)]
  assert all(a != b for a, b in zip(was_flipped, kept))  # each example is one or the other
  assert 4 <= sum(was_flipped) <= 28  # probability 1/2 per example


def test_zero_padded_crop_of_constant_image_holds_only_constant_or_zero():
  images = jnp.full((16, 5, 5, 3), 7, jnp.uint8)
  output = np.asarray(random_crop(jax.random.PRNGKey(2), images, padding=3, mode="zero"))
  assert output.dtype == np.uint8
  assert set(np.unique(output)) == {0, 7}


def test_reflect_padding_never_produces_zeros():
  images = jnp.ones((32, 4, 4, 1), jnp.float32)
  output = np.asarray(random_crop(jax.random.PRNGKey(3), images, padding=3, mode="reflect"))
  np.testing.assert_array_equal(output, 1.0)


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_each_crop_is_a_window_of_the_numpy_padded_image_at_uniform_offsets(mode):
  padding, batch = 2, 400
  images = distinct_images(batch)
  output = np.asarray(random_crop(jax.random.PRNGKey(4), jnp.asarray(images), padding, mode))

  offsets = [crop_offset(output[i], images[i], padding, mode) for i in range(batch)]

  assert None not in offsets
  counts = np.zeros((2 * padding + 1, 2 * padding + 1))
  for row, column in offsets:
    counts[row, column] += 1
  # All 25 offsets, extremes 0 and 2*padding included, occur about 16 times each.
  assert counts.min() >= 3 and counts.max() <= 40


def test_examples_get_independent_crops_and_key_determines_output():
  images = jnp.asarray(np.broadcast_to(distinct_images(1), (16, 6, 6, 2)))
  key = jax.random.PRNGKey(5)
  output = np.asarray(augment_batch(key, images, padding=2, padding_mode="zero", flip=True))
  again = np.asarray(augment_batch(key, images, padding=2, padding_mode="zero", flip=True))
  other_key = np.asarray(augment_batch(jax.random.PRNGKey(6), images, padding=2,
                                       padding_mode="zero", flip=True))

  distinct_outputs = {output[i].tobytes() for i in range(16)}
  assert len(distinct_outputs) > 4  # identical inputs, different random crops/flips
  np.testing.assert_array_equal(output, again)
  assert not np.array_equal(output, other_key)


def test_augment_batch_under_jit_matches_eager_and_keeps_dtype():
  images = jnp.asarray(distinct_images(8) % 256, jnp.uint8)
  key = jax.random.PRNGKey(7)
  jitted = jax.jit(augment_batch, static_argnames=("padding", "padding_mode", "flip"))
  compiled = jitted(key, images, padding=1, padding_mode="reflect", flip=True)
  eager = augment_batch(key, images, padding=1, padding_mode="reflect", flip=True)
  assert compiled.dtype == jnp.uint8 and compiled.shape == images.shape
  np.testing.assert_array_equal(np.asarray(compiled), np.asarray(eager))


def test_unknown_padding_mode_lists_valid_modes():
  images = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError, match=r"'wrap'.*\['zero', 'reflect'\]"):
    augment_batch(jax.random.PRNGKey(0), images, padding=2, padding_mode="wrap", flip=False)
  with pytest.raises(ValueError, match="non-negative"):
    random_crop(jax.random.PRNGKey(0), images, padding=-1, mode="zero")
