"""Tests for jaxat.models: shapes, parameter counts, reference logits, normalisation,
activation choice, BatchNorm semantics and config validation."""

from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxat.models import (MODEL_NAMES, PreActResNet18, ResNet18, SmallCNN, WideResNet,
                          create_model, validate_model_config)
from jaxat.models.preact_resnet import PreActBlock
from jaxat.models.resnet import BasicBlock
from jaxat.models.wide_resnet import WideBasicBlock

GOLDEN_PATH = Path(__file__).parents[2] / 'shared/goldens/autoattack_smallcnn.npz'
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)


def model_config(**overrides) -> ml_collections.ConfigDict:
  fields = dict(name='small_cnn', activation='relu', normalization='none',
                final_bn=True, depth=34, width=10, channels=(16, 32), batch_norm=False)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def build(num_channels: int = 3, num_classes: int = 10, **overrides):
  mean = CIFAR_MEAN if num_channels == 3 else (0.5,)
  std = CIFAR_STD if num_channels == 3 else (0.25,)
  return create_model(model_config(**overrides), num_classes, mean, std)


def images(shape, seed: int = 0) -> jnp.ndarray:
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


def param_count(model, input_shape=(1, 32, 32, 3)) -> int:
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(input_shape), train=False))
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables['params']))


# --- reference weights -------------------------------------------------------------


def test_small_cnn_reproduces_golden_autoattack_logits():
  if not GOLDEN_PATH.exists():
    pytest.skip(f'golden file {GOLDEN_PATH} not available')
  golden = np.load(GOLDEN_PATH)
  params = {layer: {'kernel': golden[f'{layer}/kernel'], 'bias': golden[f'{layer}/bias']}
            for layer in ('conv1', 'conv2', 'dense')}
  model = build(name='small_cnn', normalization='none')
  fresh = model.init(jax.random.key(0), golden['x'][:1], train=False)
  assert jax.tree.map(np.shape, fresh) == {'params': jax.tree.map(np.shape, params)}
  logits, features = model.apply({'params': params}, golden['x'], train=False)
  assert features.shape == (64, 8192)
  np.testing.assert_allclose(logits, golden['clean_logits'], rtol=0, atol=1e-4)


# --- shapes and BatchNorm state ----------------------------------------------------

REAL_FORWARD_CASES = {
    'small_cnn': dict(name='small_cnn', batch_norm=False),
    'small_cnn_bn': dict(name='small_cnn', batch_norm=True),
    'resnet18': dict(name='resnet18'),
    'preact_final_bn': dict(name='preact_resnet18', final_bn=True),
    'preact_kuangliu': dict(name='preact_resnet18', final_bn=False),
}


def expected_feature_dim(case: dict, height: int, width: int) -> int:
  if case['name'] == 'small_cnn':
    return -(-height // 2) * -(-width // 2) * 32
  return 512


@pytest.mark.parametrize('input_shape', [(2, 8, 8, 1), (2, 32, 32, 3)])
@pytest.mark.parametrize('case_id', list(REAL_FORWARD_CASES))
def test_forward_shapes_and_batch_stats(case_id, input_shape):
  case = REAL_FORWARD_CASES[case_id]
  batch, height, width, channels = input_shape
  model = build(num_channels=channels, normalization='dataset', **case)
  x = images(input_shape)
  variables = model.init(jax.random.key(1), x, train=False)
  has_bn = case.get('batch_norm', True)
  assert ('batch_stats' in variables) == has_bn
  feature_dim = expected_feature_dim(case, height, width)

  eval_logits, eval_features = model.apply(variables, x, train=False)
  assert eval_logits.shape == (batch, 10)
  assert eval_features.shape == (batch, feature_dim)
  assert eval_logits.dtype == jnp.float32
  assert np.all(np.isfinite(eval_logits))

  (train_logits, train_features), updates = model.apply(
      variables, x, train=True, mutable=['batch_stats'])
  assert train_logits.shape == (batch, 10)
  assert train_features.shape == (batch, feature_dim)
  if has_bn:
    old_stats = jax.tree.leaves(variables['batch_stats'])
    new_stats = jax.tree.leaves(updates['batch_stats'])
    assert len(new_stats) == len(old_stats) > 0
    for old, new in zip(old_stats, new_stats):
      assert not np.allclose(old, new)
    # Batch statistics instead of the fresh running ones must change the outputs.
    assert not np.allclose(train_logits, eval_logits)
  else:
    assert updates == {}
    np.testing.assert_allclose(train_logits, eval_logits, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('depth,width', [(28, 10), (34, 10), (34, 20), (70, 16)])
def test_wide_resnet_shapes(depth, width):
  model = build(name='wide_resnet', depth=depth, width=width, normalization='dataset')
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  assert 'batch_stats' in variables
  blocks_per_group = (depth - 4) // 6
  assert len([k for k in variables['params'] if k.startswith('block')]) == 3 * blocks_per_group
  (logits, features), updates = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']), variables, x)
  assert logits.shape == (2, 10)
  assert features.shape == (2, 64 * width)
  assert jax.tree.map(lambda a: a.shape, updates['batch_stats']) == jax.tree.map(
      lambda a: a.shape, variables['batch_stats'])


def test_global_pooling_accepts_64x64_inputs():
  model = build(name='wide_resnet', depth=10, width=1)
  x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  logits, features = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False)[0], x)
  assert logits.shape == (2, 10) and features.shape == (2, 64)


# --- residual block wiring ---------------------------------------------------------


def reference_conv(x, kernel, stride):
  pad = ((1, 1), (1, 1)) if kernel.shape[0] == 3 else ((0, 0), (0, 0))
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), pad,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def reference_bn(x, params, stats):
  return ((x - stats['mean']) / jnp.sqrt(stats['var'] + 1e-5) * params['scale']
          + params['bias'])


def reference_basic_block(x, p, s, stride):
  out = jax.nn.relu(reference_bn(reference_conv(x, p['conv1']['kernel'], stride),
                                 p['bn1'], s['bn1']))
  out = reference_bn(reference_conv(out, p['conv2']['kernel'], 1), p['bn2'], s['bn2'])
  if 'shortcut_conv' in p:
    shortcut = reference_bn(reference_conv(x, p['shortcut_conv']['kernel'], stride),
                            p['shortcut_bn'], s['shortcut_bn'])
  else:
    shortcut = x
  return jax.nn.relu(out + shortcut)


def reference_preact_block(x, p, s, stride):
  out = jax.nn.relu(reference_bn(x, p['bn1'], s['bn1']))
  shortcut = (reference_conv(out, p['shortcut_conv']['kernel'], stride)
              if 'shortcut_conv' in p else x)
  out = reference_conv(out, p['conv1']['kernel'], stride)
  out = reference_conv(jax.nn.relu(reference_bn(out, p['bn2'], s['bn2'])),
                       p['conv2']['kernel'], 1)
  return out + shortcut


def reference_wide_block(x, p, s, stride):
  # TRADES: when shapes differ, x is replaced by relu(bn1(x)) for both paths.
  pre_activated = jax.nn.relu(reference_bn(x, p['bn1'], s['bn1']))
  out = reference_conv(pre_activated, p['conv1']['kernel'], stride)
  out = reference_conv(jax.nn.relu(reference_bn(out, p['bn2'], s['bn2'])),
                       p['conv2']['kernel'], 1)
  shortcut = (reference_conv(pre_activated, p['shortcut_conv']['kernel'], stride)
              if 'shortcut_conv' in p else x)
  return out + shortcut


BN_RANDOM_RANGES = {'scale': (0.5, 1.5), 'bias': (-0.5, 0.5), 'mean': (-0.5, 0.5),
                    'var': (0.5, 1.5)}


def randomise_batch_norm(variables, key):
  """Gives every BN scale/bias/running statistic a non-trivial value so each BN matters."""
  flat = flax.traverse_util.flatten_dict(variables)
  keys = jax.random.split(key, len(flat))
  for leaf_key, path in zip(keys, list(flat)):
    if path[-1] in BN_RANDOM_RANGES:
      low, high = BN_RANDOM_RANGES[path[-1]]
      flat[path] = jax.random.uniform(leaf_key, flat[path].shape, minval=low, maxval=high)
  return flax.traverse_util.unflatten_dict(flat)


@pytest.mark.parametrize('block_cls,reference', [
    (BasicBlock, reference_basic_block),
    (PreActBlock, reference_preact_block),
    (WideBasicBlock, reference_wide_block),
])
@pytest.mark.parametrize('in_channels,features,stride,has_projection', [
    (4, 8, 2, True), (8, 8, 1, False), (4, 8, 1, True)])
def test_residual_block_matches_reference_formula(block_cls, reference, in_channels,
                                                  features, stride, has_projection):
  block = block_cls(features=features, stride=stride, activation='relu')
  x = images((2, 6, 6, in_channels)) - 0.5
  variables = block.init(jax.random.key(0), x, train=False)
  assert ('shortcut_conv' in variables['params']) == has_projection
  variables = randomise_batch_norm(variables, jax.random.key(1))
  actual = block.apply(variables, x, train=False)
  expected = reference(x, variables['params'], variables['batch_stats'], stride)
  assert actual.shape == (2, 6 // stride, 6 // stride, features)
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


# --- parameter counts ---------------------------------------------------------------


@pytest.mark.parametrize('overrides,expected', [
    (dict(name='resnet18'), 11_173_962),
    (dict(name='preact_resnet18', final_bn=False), 11_171_146),
    (dict(name='preact_resnet18', final_bn=True), 11_172_170),
    (dict(name='wide_resnet', depth=34, width=10), 46_160_474),
    (dict(name='wide_resnet', depth=28, width=10), 36_479_194),
    (dict(name='small_cnn'), 3 * 3 * 3 * 16 + 16 + 3 * 3 * 16 * 32 + 32 + 8192 * 10 + 10),
])
def test_parameter_count_matches_pytorch_reference(overrides, expected):
  assert param_count(build(**overrides)) == expected


# --- initialisation -----------------------------------------------------------------


def test_wide_resnet_init_is_untruncated_he_normal_fan_out():
  model = WideResNet(num_classes=10, depth=10, width=2)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)['params']
  kernel = np.asarray(params['block3_0']['conv2']['kernel'])  # (3, 3, 128, 128)
  expected_std = np.sqrt(2.0 / (3 * 3 * 128))
  assert abs(kernel.std() / expected_std - 1) < 0.02
  # Flax's truncated normal (rescaled, cut at 2 sigma) never exceeds ~2.3 std.
  assert np.abs(kernel).max() > 3 * expected_std
  np.testing.assert_array_equal(params['dense']['bias'], 0.0)
  np.testing.assert_array_equal(params['bn_final']['scale'], 1.0)


def test_resnet_init_is_pytorch_default_uniform():
  model = ResNet18(num_classes=10)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)['params']
  kernel = np.asarray(params['layer4_1']['conv2']['kernel'])  # fan_in 9 * 512
  bound = 1 / np.sqrt(3 * 3 * 512)
  assert np.abs(kernel).max() <= bound * (1 + 1e-6)  # float32 rounding of the bound
  assert np.abs(kernel).max() > 0.99 * bound
  dense_bias = np.asarray(params['dense']['bias'])
  assert np.abs(dense_bias).max() <= 1 / np.sqrt(512) and np.any(dense_bias != 0)


# --- input normalisation ------------------------------------------------------------


@pytest.mark.parametrize('overrides', [
    dict(name='small_cnn', batch_norm=True),
    dict(name='preact_resnet18', final_bn=False),
])
def test_normalisation_happens_inside_the_model(overrides):
  normalising = build(normalization='dataset', **overrides)
  identity = build(normalization='none', **overrides)
  assert normalising.mean == CIFAR_MEAN and identity.mean == (0.0, 0.0, 0.0)
  x = images((2, 8, 8, 3))
  variables = normalising.init(jax.random.key(0), x, train=False)
  standardised = (x - jnp.asarray(CIFAR_MEAN)) / jnp.asarray(CIFAR_STD)
  for train in (False, True):
    expected, _ = identity.apply(variables, standardised, train=train, mutable=['batch_stats'])
    actual, _ = normalising.apply(variables, x, train=train, mutable=['batch_stats'])
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(actual[1], expected[1], rtol=1e-5, atol=1e-5)
    unnormalised, _ = identity.apply(variables, x, train=train, mutable=['batch_stats'])
    assert not np.allclose(unnormalised[0], expected[0])


def test_normalisation_rejects_wrong_channel_count():
  model = build(num_channels=3, normalization='dataset')
  with pytest.raises(ValueError, match='3 channels'):
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)


# --- activation ---------------------------------------------------------------------


@pytest.mark.parametrize('name', ['small_cnn', 'preact_resnet18'])
def test_silu_changes_outputs(name):
  relu_model = build(name=name, activation='relu')
  silu_model = build(name=name, activation='silu')
  assert silu_model.activation == 'silu'
  x = images((2, 8, 8, 3))
  variables = relu_model.init(jax.random.key(0), x, train=False)
  relu_logits, _ = relu_model.apply(variables, x, train=False)
  silu_logits, _ = silu_model.apply(variables, x, train=False)
  assert not np.allclose(relu_logits, silu_logits, atol=1e-4)


# --- BatchNorm semantics ------------------------------------------------------------


def test_batch_norm_running_average_uses_pytorch_momentum():
  model = SmallCNN(num_classes=10, batch_norm=True)
  x = images((4, 8, 8, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  conv1 = variables['params']['conv1']
  conv1_out = jax.lax.conv_general_dilated(
      x, conv1['kernel'], window_strides=(1, 1), padding=((1, 1), (1, 1)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + conv1['bias']
  batch_mean = conv1_out.mean(axis=(0, 1, 2))
  batch_var = conv1_out.var(axis=(0, 1, 2))
  stats = updates['batch_stats']['bn1']
  np.testing.assert_allclose(stats['mean'], 0.1 * batch_mean, rtol=1e-4, atol=1e-6)
  # Flax averages the biased batch variance (PyTorch the unbiased one).
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * batch_var, rtol=1e-4, atol=1e-6)


def test_batch_norm_uses_pytorch_epsilon():
  model = SmallCNN(num_classes=10, batch_norm=True)
  x = images((2, 8, 8, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  _, intermediates = model.apply(variables, x, train=False,
                                 capture_intermediates=True, mutable=['intermediates'])
  conv1_out = intermediates['intermediates']['conv1']['__call__'][0]
  bn1_out = intermediates['intermediates']['bn1']['__call__'][0]
  # Fresh running stats are mean 0, var 1: eval-mode BN divides by sqrt(1 + eps).
  np.testing.assert_allclose(bn1_out, conv1_out / np.sqrt(1 + 1e-5), rtol=1e-6, atol=1e-7)


# --- config validation --------------------------------------------------------------


@pytest.mark.parametrize('overrides,bad_value,valid_choice', [
    (dict(name='vgg16'), 'vgg16', 'preact_resnet18'),
    (dict(activation='gelu'), 'gelu', 'silu'),
    (dict(normalization='zscore'), 'zscore', 'dataset'),
    (dict(name='preact_resnet18', final_bn='yes'), 'yes', 'True'),
    (dict(name='wide_resnet', depth=30), '30', '(34, 10)'),
    (dict(name='wide_resnet', depth=4), '4', '(70, 16)'),
    (dict(name='wide_resnet', width=0), '0', '(28, 10)'),
    (dict(name='small_cnn', channels=(16,)), '(16,)', '(16, 32)'),
    (dict(name='small_cnn', batch_norm=1), '1', 'False'),
])
def test_validation_names_bad_value_and_valid_choices(overrides, bad_value, valid_choice):
  cfg = model_config(**overrides)
  with pytest.raises(ValueError) as raised:
    validate_model_config(cfg)
  message = str(raised.value)
  assert bad_value in message and valid_choice in message
  with pytest.raises(ValueError):
    create_model(cfg, 10, CIFAR_MEAN, CIFAR_STD)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_validation_accepts_every_model_and_ignores_other_models_fields(name):
  # depth 30 is an invalid WRN depth but irrelevant for the other models.
  cfg = model_config(name=name, depth=30 if name != 'wide_resnet' else 16, width=1,
                     activation='silu', normalization='dataset')
  validate_model_config(cfg)
  model = create_model(cfg, 7, CIFAR_MEAN, CIFAR_STD)
  expected_type = {'small_cnn': SmallCNN, 'resnet18': ResNet18,
                   'preact_resnet18': PreActResNet18, 'wide_resnet': WideResNet}[name]
  assert type(model) is expected_type
  assert model.num_classes == 7 and model.std == CIFAR_STD


@pytest.mark.parametrize('num_classes,mean,std,message', [
    (0, CIFAR_MEAN, CIFAR_STD, 'num_classes=0'),
    (10, CIFAR_MEAN, (0.2, 0.2), 'one entry per channel'),
    (10, CIFAR_MEAN, (0.2, 0.0, 0.2), 'strictly positive'),
])
def test_create_model_rejects_bad_arguments(num_classes, mean, std, message):
  with pytest.raises(ValueError, match=message):
    create_model(model_config(), num_classes, mean, std)
