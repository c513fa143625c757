"""Tests of the ResNet backbones and DeepLabV3+ (cfcls.models).

Big networks are only traced (jax.eval_shape): parameter counts and shapes.
Numerics use tiny width-0.125 networks on small images.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from cfcls.models import create_model
from cfcls.models.resnet import ResNet


def count_params(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def model_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      backbone="resnet101", output_stride=16, dtype="float32", width=1.0,
      aspp_channels=256, decoder_channels=256, low_level_channels=48,
      mlc_hidden=256))
  config.update(overrides)
  return config


TINY = dict(backbone="resnet18", width=0.125)


def init_shapes(model, size=65):
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3), jnp.float32),
      train=False))


def init_tiny(model, size=33, seed=0):
  # An 'unsafe_rbg' key: XLA compiles threefry initialisers slowly on the CPU
  # (about 5 s for the tiny network against 1 s).
  return jax.jit(lambda key: model.init(
      key, jnp.zeros((1, size, size, 3), jnp.float32), train=False))(
          jax.random.key(seed, impl="unsafe_rbg"))


@pytest.fixture(scope="module")
def tiny_variables():
  """Variables of the tiny DeepLabV3+ (K=4); shared by all its variants
  (output stride, dtype and axis name do not change the parameter shapes)."""
  return init_tiny(create_model(model_config(**TINY), 4))


def random_images(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


# torchvision's parameter counts (with the 1000-way fc) minus its fc
# (2048*1000+1000 for bottlenecks, 512*1000+1000 for basic blocks).
TORCHVISION_COUNTS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032,
                      101: 44_549_160, 152: 60_192_808}


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_resnet_parameter_counts_equal_torchvision(depth):
  fc = 512 * 1000 + 1000 if depth < 50 else 2048 * 1000 + 1000
  variables = init_shapes(ResNet(depth=depth, output_stride=32))
  assert count_params(variables["params"]) == TORCHVISION_COUNTS[depth] - fc
  if depth == 50:
    assert count_params(variables["params"]) == 23_508_032
  if depth == 101:
    assert count_params(variables["params"]) == 42_500_160


def test_deeplab_resnet101_parameter_count():
  num_classes = 21
  model = create_model(model_config(), num_classes)
  params = init_shapes(model)["params"]
  k1 = num_classes - 1
  conv_bn = lambda cin, cout, k: k * k * cin * cout + 2 * cout
  aspp = (conv_bn(2048, 256, 1) + 3 * conv_bn(2048, 256, 3)
          + conv_bn(2048, 256, 1) + conv_bn(5 * 256, 256, 1))
  decoder = (conv_bn(256, 48, 1) + conv_bn(256 + 48, 256, 3)
             + conv_bn(256, 256, 3))
  classifier = 256 * k1 + k1
  mlc = 2048 * 256 + 256 + 256 * k1 + k1
  expected = 42_500_160 + aspp + decoder + classifier + mlc
  total = count_params(params)
  print(f"DeepLabV3+ ResNet-101, K={num_classes}: {total:,} parameters "
        f"(backbone {count_params(params['backbone']):,})")
  assert count_params(params["backbone"]) == 42_500_160
  assert total == expected


def test_mlc_head_on_decoder_features():
  # mlc_features='decoder': the MLC head pools the 256-channel decoder output
  # instead of the 2048-channel backbone output; nothing else changes.
  k1 = 6
  base = init_shapes(create_model(model_config(), k1 + 1))["params"]
  dec = init_shapes(create_model(model_config(mlc_features="decoder"),
                                 k1 + 1))["params"]
  assert dec["mlc_head"]["hidden"]["kernel"].shape == (256, 256)
  assert base["mlc_head"]["hidden"]["kernel"].shape == (2048, 256)
  assert count_params(base) - count_params(dec) == (2048 - 256) * 256


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_shapes_resnet101(output_stride):
  num_classes, batch = 7, 2
  model = create_model(model_config(output_stride=output_stride), num_classes)
  variables = init_shapes(model)
  backbone = ResNet(depth=101, output_stride=output_stride)
  for size in (321, 513):
    images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    for train in (False, True):
      out = jax.eval_shape(
          functools.partial(model.apply, train=train, mutable=["batch_stats"]),
          variables, images)
      (outputs, mlc_logits), _ = out
      assert outputs.shape == (batch, size, size, num_classes - 1)
      assert mlc_logits.shape == (batch, num_classes - 1)
      assert outputs.dtype == mlc_logits.dtype == jnp.float32
    features = jax.eval_shape(
        functools.partial(backbone.apply, train=False),
        {"params": variables["params"]["backbone"],
         "batch_stats": variables["batch_stats"]["backbone"]}, images)
    # torch arithmetic: 7x7/2 pad 3, max pool 3/2 pad 1, stride-2 3x3 pad 1.
    down = lambda n: (n - 1) // 2 + 1
    stride4 = down(down(size))
    expected = stride4
    for _ in range({16: 2, 8: 1}[output_stride]):
      expected = down(expected)
    assert features["stride4"].shape == (batch, stride4, stride4, 256)
    assert features["out"].shape == (batch, expected, expected, 2048)


def test_num_outputs_for_softmax_baselines():
  model = create_model(model_config(**TINY), 5, num_outputs=5)
  variables = init_shapes(model, 33)
  outputs, mlc_logits = jax.eval_shape(
      functools.partial(model.apply, train=False), variables,
      jax.ShapeDtypeStruct((3, 33, 33, 3), jnp.float32))
  assert outputs.shape == (3, 33, 33, 5)
  assert mlc_logits.shape == (3, 4)


@pytest.mark.parametrize("field,value,allowed", [
    ("backbone", "resnet42", "resnet101"),
    ("output_stride", 32, "(8, 16)"),
    ("dtype", "float16", "bfloat16"),
    ("mlc_features", "aspp", "('backbone', 'decoder')"),
])
def test_bad_config_values_raise(field, value, allowed):
  with pytest.raises(ValueError) as err:
    create_model(model_config(**{field: value}), 3)
  assert repr(value) in str(err.value) and allowed in str(err.value)
  assert field in str(err.value)


def test_bad_num_classes_raises():
  with pytest.raises(ValueError, match="num_classes"):
    create_model(model_config(**TINY), 1)


def test_odd_input_sizes_tiny_model(tiny_variables):
  model = create_model(model_config(**TINY, output_stride=8), 4)
  variables = tiny_variables
  apply = jax.jit(functools.partial(model.apply, train=False))
  for shape in [(1, 37, 53, 3), (2, 20, 45, 3)]:
    outputs, mlc_logits = apply(variables, random_images(shape))
    assert outputs.shape == shape[:3] + (3,)
    assert mlc_logits.shape == (shape[0], 3)
    assert np.all(np.isfinite(np.asarray(outputs)))


def test_bfloat16_forward_agrees_with_float32(tiny_variables):
  model32 = create_model(model_config(**TINY), 4)
  model16 = create_model(model_config(**TINY, dtype="bfloat16"), 4)
  images = random_images((2, 41, 41, 3))
  # Eval mode: in train mode the image-pooling BN normalises 2 numbers per
  # channel (batch 2, 1x1), which amplifies any rounding without bound.
  run = lambda m: jax.jit(functools.partial(m.apply, train=False))(
      tiny_variables, images)
  out32, mlc32 = run(model32)
  out16, mlc16 = run(model16)
  assert out16.dtype == mlc16.dtype == jnp.float32
  for a, b in ((out32, out16), (mlc32, mlc16)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rel = np.linalg.norm(a - b) / np.linalg.norm(a)
    # bfloat16 keeps 8 significant bits (relative step 2^-8 ~ 0.4%); over
    # ~20 layers that stays around 1%. rel == 0 would mean no bfloat16 at all.
    assert 0 < rel < 0.02, rel


def _bn_reference(x, mean, var, scale, bias, eps=1e-5):
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def test_batchnorm_train_uses_batch_stats_and_updates_running_stats():
  model = ResNet(depth=18, output_stride=32, width=0.125)
  variables = init_tiny(model)
  rng = np.random.default_rng(0)
  c = variables["params"]["bn1"]["scale"].shape[0]
  variables["params"]["bn1"] = {"scale": jnp.asarray(rng.uniform(0.5, 2, c)),
                                "bias": jnp.asarray(rng.normal(size=c))}
  old_mean, old_var = rng.normal(size=c), rng.uniform(0.5, 3, c)
  variables["batch_stats"]["bn1"] = {"mean": jnp.asarray(old_mean, jnp.float32),
                                     "var": jnp.asarray(old_var, jnp.float32)}
  scale = np.asarray(variables["params"]["bn1"]["scale"], np.float64)
  bias = np.asarray(variables["params"]["bn1"]["bias"], np.float64)
  images = random_images((3, 32, 32, 3))

  def run(train):
    return jax.jit(functools.partial(
        model.apply, train=train, capture_intermediates=True,
        mutable=["batch_stats", "intermediates"]))(variables, images)

  _, state = run(train=True)
  conv1 = np.asarray(state["intermediates"]["conv1"]["__call__"][0], np.float64)
  bn1 = np.asarray(state["intermediates"]["bn1"]["__call__"][0], np.float64)
  batch_mean = conv1.mean(axis=(0, 1, 2))
  batch_var = conv1.var(axis=(0, 1, 2))
  np.testing.assert_allclose(
      bn1, _bn_reference(conv1, batch_mean, batch_var, scale, bias),
      rtol=1e-4, atol=1e-4)
  new_stats = state["batch_stats"]["bn1"]
  np.testing.assert_allclose(new_stats["mean"],
                             0.9 * old_mean + 0.1 * batch_mean, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(new_stats["var"], 0.9 * old_var + 0.1 * batch_var,
                             rtol=1e-5, atol=1e-5)

  _, state = run(train=False)
  conv1 = np.asarray(state["intermediates"]["conv1"]["__call__"][0], np.float64)
  bn1 = np.asarray(state["intermediates"]["bn1"]["__call__"][0], np.float64)
  np.testing.assert_allclose(
      bn1, _bn_reference(conv1, old_mean, old_var, scale, bias),
      rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(state["batch_stats"]["bn1"]["mean"],
                                np.float32(old_mean))


def test_every_batchnorm_follows_the_train_flag(tiny_variables):
  """Train mode moves every running statistic of the model; eval none."""
  model = create_model(model_config(**TINY), 4)
  variables = tiny_variables
  images = random_images((2, 33, 33, 3))
  apply = lambda train: jax.jit(functools.partial(
      model.apply, train=train, mutable=["batch_stats"]))(variables, images)
  before = jax.tree_util.tree_leaves_with_path(variables["batch_stats"])
  (_, _), train_state = apply(True)
  (_, _), eval_state = apply(False)
  after_train = jax.tree_util.tree_leaves(train_state["batch_stats"])
  after_eval = jax.tree_util.tree_leaves(eval_state["batch_stats"])
  assert len(before) == len(after_train) > 40
  for (path, old), new_train, new_eval in zip(before, after_train, after_eval):
    assert not np.allclose(old, new_train), jax.tree_util.keystr(path)
    np.testing.assert_array_equal(old, new_eval)


def test_batchnorm_statistics_are_averaged_across_two_devices(tiny_variables):
  devices = jax.devices()[:2]
  assert len(devices) == 2, "conftest should give 2 host CPU devices"
  config = model_config(**TINY)
  local_model = create_model(config, 4)
  sharded_model = create_model(config, 4, axis_name="batch")
  variables = tiny_variables
  # The two halves of the batch differ in brightness, so per-device
  # statistics differ clearly from the global ones.
  images = jnp.concatenate([0.3 * random_images((2, 33, 33, 3), 1),
                            0.5 + 0.5 * random_images((2, 33, 33, 3), 2)])

  def forward(model, variables, images):
    (outputs, mlc), state = model.apply(variables, images, train=True,
                                        mutable=["batch_stats"])
    return outputs, mlc, state["batch_stats"]

  mesh = Mesh(np.array(devices), ("batch",))
  sharded = jax.jit(jax.shard_map(
      functools.partial(forward, sharded_model), mesh=mesh,
      in_specs=(P(), P("batch")), out_specs=(P("batch"), P("batch"), P())))
  out_sharded, mlc_sharded, stats_sharded = sharded(variables, images)
  out_global, mlc_global, stats_global = jax.jit(
      functools.partial(forward, local_model))(variables, images)
  _, _, stats_first_half = jax.jit(functools.partial(forward, local_model))(
      variables, images[:2])

  np.testing.assert_allclose(out_sharded, out_global, rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(mlc_sharded, mlc_global, rtol=2e-4, atol=2e-4)
  for a, b in zip(jax.tree_util.tree_leaves(stats_sharded),
                  jax.tree_util.tree_leaves(stats_global)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  # Without the cross-device mean the first device would see other statistics.
  first = np.asarray(stats_first_half["backbone"]["bn1"]["mean"])
  assert not np.allclose(first, stats_global["backbone"]["bn1"]["mean"],
                         rtol=1e-2, atol=1e-3)


def test_create_model_fills_missing_fields_with_defaults():
  model = create_model(ml_collections.ConfigDict(dict(backbone="resnet50")), 7)
  assert (model.depth, model.output_stride, model.dtype) == (50, 16,
                                                             jnp.float32)
  assert (model.aspp_channels, model.decoder_channels, model.low_level_channels,
          model.mlc_hidden) == (256, 256, 48, 256)
  assert (model.num_outputs, model.num_mlc_logits) == (6, 6)
  with pytest.raises(ValueError, match="model.width=0.0"):
    create_model(model_config(width=0.0), 3)
