"""Tests of the lighter networks: U-Net and ERFNet (cfcls.models).

Full-size networks are only traced (jax.eval_shape): parameter counts and
shapes. Numerics use tiny width-reduced networks on small images.

Time on the shared 2-core CPU (2026-12-01): 29 s with the persistent
compilation cache of tests/conftest.py filled, 69 s without it, 36 s of which
is compiling the ERFNet train step of the resume test.
"""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from cfcls.training import checkpointing
from cfcls.training import config_utils
from cfcls import parallel
from cfcls.training import run_lib
from cfcls.models import create_model

# ERFNet channels 4 / 16 / 32; U-Net channels 4 .. 64.
ERFNET_TINY = dict(name="erfnet", width=0.25, mlc_hidden=16)
UNET_TINY = dict(name="unet", unet_base=4, mlc_hidden=16)
TINY = {"erfnet": ERFNET_TINY, "unet": UNET_TINY}


def count_params(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def init_shapes(model, size=32):
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3), jnp.float32),
      train=False))


def init_tiny(model, seed=0):
  """He-normal kernels, small random biases / BN parameters, unit running
  statistics, drawn with numpy from the traced shapes: compiling the flax
  initialisers of these deep little networks costs seconds on the CPU."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      fan_in = int(np.prod(leaf.shape[:-1]))
      value = rng.normal(0, np.sqrt(2 / fan_in), leaf.shape)
    elif name.endswith("['var']") or name.endswith("['scale']"):
      value = rng.uniform(0.8, 1.2, leaf.shape)
    else:  # biases, BN shifts and running means
      value = rng.normal(0, 0.1, leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, init_shapes(model, 16))


def random_images(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


@pytest.fixture(scope="module")
def tiny_variables():
  """Variables of the tiny networks (K=3); dtype, dropout and axis name do
  not change the parameter shapes."""
  return {name: init_tiny(create_model(config, 3))
          for name, config in TINY.items()}


def mlc_head_count(features, hidden, k1):
  return features * hidden + hidden + hidden * k1 + k1


def test_erfnet_parameter_count_is_the_papers():
  # Reference: the authors' PyTorch ERFNet (Eromera/erfnet_pytorch,
  # train/erfnet.py), counted layer by layer: convs with bias, BatchNorm
  # scale + shift (running statistics are not parameters). Its
  # Encoder.output_conv (1x1, 128 -> C) is only used to pretrain the encoder
  # alone and is not part of the segmentation network. With 20 outputs this
  # gives 2,064,256 ("about 2.06 M").
  num_outputs = 20
  def downsampler(cin, cout):  # 3x3/2 conv to cout-cin (+ max pool), BN
    return 9 * cin * (cout - cin) + (cout - cin) + 2 * cout
  def non_bt_1d(c):  # four 3x1/1x3 convs with bias, two BNs
    return 4 * (3 * c * c + c) + 2 * 2 * c
  def upsampler(cin, cout):  # 3x3 transposed conv with bias, BN
    return 9 * cin * cout + cout + 2 * cout
  encoder = (downsampler(3, 16) + downsampler(16, 64) + 5 * non_bt_1d(64)
             + downsampler(64, 128) + 8 * non_bt_1d(128))
  decoder = (upsampler(128, 64) + 2 * non_bt_1d(64) + upsampler(64, 16)
             + 2 * non_bt_1d(16) + 4 * 16 * num_outputs + num_outputs)
  assert encoder + decoder == 2_064_256
  params = init_shapes(create_model(dict(name="erfnet"), num_outputs + 1))[
      "params"]
  assert count_params(params["backbone"]) == encoder
  mlc = mlc_head_count(128, 256, num_outputs)
  assert count_params(params["mlc_head"]) == mlc
  assert count_params(params) == encoder + decoder + mlc


def test_unet_parameter_count_at_base_64():
  # Reference: Ronneberger et al.'s U-Net with same-padding and BatchNorm in
  # the common PyTorch layout (e.g. milesial/Pytorch-UNet, bilinear=False:
  # bias-free 3x3 convs before BN, 2x2 transposed convs with bias, 1x1
  # output conv with bias), counted layer by layer: 31,037,568 + 65 per
  # output channel ("about 31 M"; 31,037,763 for 3 outputs).
  num_outputs = 3
  def double_conv(cin, cout):  # two bias-free 3x3 convs, two BNs
    return 9 * cin * cout + 9 * cout * cout + 2 * 2 * cout
  widths = [64 * 2 ** level for level in range(5)]
  down = double_conv(3, 64) + sum(double_conv(widths[i], widths[i + 1])
                                  for i in range(4))
  up = sum(4 * widths[i + 1] * widths[i] + widths[i]
           + double_conv(widths[i + 1], widths[i]) for i in range(4))
  output = 64 * num_outputs + num_outputs
  assert down + up + output == 31_037_763
  params = init_shapes(create_model(dict(name="unet"), num_outputs + 1))[
      "params"]
  assert count_params(params["backbone"]) == down
  mlc = mlc_head_count(1024, 256, num_outputs)
  assert count_params(params) == down + up + output + mlc


@pytest.mark.parametrize("name", ["erfnet", "unet"])
def test_output_shapes_odd_and_even_sizes(name):
  model = create_model(dict(name=name), 5, num_outputs=5)
  variables = init_shapes(model)
  for shape in [(2, 64, 48, 3), (1, 37, 53, 3), (3, 17, 1, 3)]:
    for train in (False, True):
      (outputs, mlc_logits), _ = jax.eval_shape(
          functools.partial(model.apply, train=train, mutable=["batch_stats"],
                            rngs={"dropout": jax.random.key(0)}),
          variables, jax.ShapeDtypeStruct(shape, jnp.float32))
      assert outputs.shape == shape[:3] + (5,)
      assert mlc_logits.shape == (shape[0], 4)
      assert outputs.dtype == mlc_logits.dtype == jnp.float32


# The numeric tests share these compiled eval-mode forwards and image sizes
# (compiling the tiny networks costs seconds each on the CPU): 13x21 images
# and their edge-padding to the network's multiple (ERFNet 8, U-Net 16).
PADDED_WIDTH = {"erfnet": 24, "unet": 32}


@functools.cache
def eval_apply(name, **overrides):
  model = create_model(dict(TINY[name], **overrides), 3)
  return jax.jit(functools.partial(model.apply, train=False))


def odd_and_padded_images(name):
  images = random_images((2, 13, 21, 3))
  pads = ((0, 0), (0, 3), (0, PADDED_WIDTH[name] - 21), (0, 0))
  return images, jnp.pad(images, pads, mode="edge")


@pytest.mark.parametrize("name", ["erfnet", "unet"])
def test_odd_size_output_is_the_padded_output_cropped(name, tiny_variables):
  # A 13x21 image is padded (edge) inside to 16x24 (ERFNet) or 16x32
  # (U-Net); its outputs must be the top-left of the outputs of the
  # explicitly padded image (eval mode).
  images, padded = odd_and_padded_images(name)
  apply = eval_apply(name)
  out, mlc = apply(tiny_variables[name], images)
  out_padded, mlc_padded = apply(tiny_variables[name], padded)
  assert out.shape == (2, 13, 21, 2) and mlc.shape == (2, 2)
  np.testing.assert_allclose(out, out_padded[:, :13, :21], rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(mlc, mlc_padded, rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(np.asarray(out)))
  assert float(np.std(np.asarray(out))) > 1e-3  # not a constant map


@pytest.mark.parametrize("name", ["erfnet", "unet"])
def test_bfloat16_forward_agrees_with_float32(name, tiny_variables):
  _, images = odd_and_padded_images(name)
  out32, mlc32 = eval_apply(name)(tiny_variables[name], images)
  out16, mlc16 = eval_apply(name, dtype="bfloat16")(tiny_variables[name],
                                                    images)
  assert out16.dtype == mlc16.dtype == jnp.float32
  for a, b in ((out32, out16), (mlc32, mlc16)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rel = np.linalg.norm(a - b) / np.linalg.norm(a)
    # bfloat16 rounds each layer's output by up to 2^-9 relative; as a random
    # walk over the sequential layers (U-Net 23, ERFNet 94 incl. residual
    # adds) that is about 1% (U-Net) to 4% (ERFNet, measured 3.7% on these
    # random weights). rel == 0 would mean no bfloat16 at all.
    assert 0 < rel < {"erfnet": 0.06, "unet": 0.03}[name], rel


@pytest.mark.parametrize("name", ["erfnet", "unet"])
def test_batchnorm_statistics_are_averaged_across_two_devices(
    name, tiny_variables):
  devices = jax.devices()[:2]
  assert len(devices) == 2, "conftest should give 2 host CPU devices"
  # No dropout: its masks would differ between the two layouts.
  config = dict(TINY[name], erfnet_dropout=(0.0, 0.0))
  local_model = create_model(config, 3)
  sharded_model = create_model(config, 3, axis_name="batch")
  variables = tiny_variables[name]
  # The halves differ in brightness: per-device statistics differ clearly.
  half_a = 0.3 * random_images((2, 16, 16, 3), 1)
  half_b = 0.5 + 0.5 * random_images((2, 16, 16, 3), 2)
  images = jnp.concatenate([half_a, half_b])

  def forward(model, variables, images):
    (outputs, mlc), state = model.apply(variables, images, train=True,
                                        mutable=["batch_stats"])
    return outputs, mlc, state["batch_stats"]

  mesh = Mesh(np.array(devices), ("batch",))
  sharded = jax.jit(jax.shard_map(
      functools.partial(forward, sharded_model), mesh=mesh,
      in_specs=(P(), P("batch")), out_specs=(P("batch"), P("batch"), P())))
  out_sharded, mlc_sharded, stats_sharded = sharded(variables, images)
  local = jax.jit(functools.partial(forward, local_model))
  out_global, mlc_global, stats_global = local(variables, images)
  # The first device's statistics alone: its half twice (same mean and
  # variance, and the shape compiled already).
  _, _, stats_first_half = local(variables,
                                 jnp.concatenate([half_a, half_a]))

  # Per tensor, relative to its largest entry: train-mode BN at the 2x2
  # bottleneck normalises 16 numbers per channel, which magnifies the
  # different summation order (measured up to ~3e-4 of the output scale).
  def assert_close(a, b, tol=1e-3):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.max(np.abs(a - b)) <= tol * np.max(np.abs(b)), (
        np.max(np.abs(a - b)), np.max(np.abs(b)))

  assert_close(out_sharded, out_global)
  assert_close(mlc_sharded, mlc_global)
  leaves = jax.tree_util.tree_leaves(stats_global)
  assert len(leaves) > 20
  for a, b in zip(jax.tree_util.tree_leaves(stats_sharded), leaves):
    assert_close(a, b)
  # Without the cross-device mean the first device would see other
  # statistics (the first BN: 'bn' of ERFNet's downsampler, 'bn_0' of
  # U-Net's double conv).
  bn = {"erfnet": "bn", "unet": "bn_0"}[name]
  first = stats_first_half["backbone"]["down_0"][bn]["mean"]
  assert not np.allclose(first, stats_global["backbone"]["down_0"][bn]["mean"],
                         rtol=1e-2, atol=1e-3)


def test_erfnet_eval_has_no_dropout(tiny_variables):
  # Eval mode needs no dropout key and is the network without dropout,
  # exactly (the train step's dropout: test_resume_with_dropout_...).
  variables = tiny_variables["erfnet"]
  _, images = odd_and_padded_images("erfnet")
  with_dropout = eval_apply("erfnet")(variables, images)
  without = eval_apply("erfnet", erfnet_dropout=(0.0, 0.0))(variables, images)
  again = eval_apply("erfnet")(variables, images)
  for a, b, c in zip(with_dropout, without, again):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
  model = create_model(ERFNET_TINY, 3)
  with pytest.raises(Exception, match="dropout"):  # train needs the key
    jax.eval_shape(functools.partial(model.apply, train=True,
                                     mutable=["batch_stats"]),
                   variables, images)


def test_erfnet_output_conv_starts_at_zero_for_mattes_only():
  # Mattes (K-1 outputs) start flat: ERFNet's 2x2-blocky random mattes kept
  # the end-to-end CFM loss at the constant matte (erfnet.py); softmax
  # logits (K outputs) keep flax's initialiser.
  from cfcls.models import erfnet  # pylint: disable=g-import-not-at-top
  features = random_images((1, 3, 5, 4))
  for zero in (True, False):
    conv = erfnet.output_conv(2, zero)
    variables = conv.init(jax.random.key(0), features)
    assert variables["params"]["kernel"].shape == (2, 2, 4, 2)
    out = np.asarray(conv.apply(variables, features))
    assert out.shape == (1, 6, 10, 2)
    assert (np.abs(out).max() == 0) == zero
  assert create_model(ERFNET_TINY, 3).zero_output  # 2 mattes
  assert not create_model(ERFNET_TINY, 3, num_outputs=3).zero_output


def test_unet_mattes_start_flat_and_logits_do_not():
  # U-Net's 1x1 output conv starts at zero for K-1 mattes (the mattes are
  # its bias, 0, everywhere), and keeps flax's initialiser for K logits.
  images = random_images((1, 16, 16, 3))
  for num_outputs, flat in ((2, True), (3, False)):
    model = create_model(UNET_TINY, 3, num_outputs=num_outputs)
    assert model.zero_output == flat
    variables = model.init(jax.random.key(0), images, train=False)
    outputs, _ = model.apply(variables, images, train=False)
    assert outputs.shape == (1, 16, 16, num_outputs)
    assert (np.abs(np.asarray(outputs)).max() == 0) == flat


def test_erfnet_upsampler_is_aligned_like_pytorch():
  # The reference ConvTranspose2d(3, stride=2, padding=1, output_padding=1)
  # sends input pixel i to output pixels 2i-1, 2i, 2i+1 with the (flipped)
  # kernel centred on 2i, and output row 2H-1 sees input row H-1. Flax's
  # "SAME" centres it on 2i+1: every upsampled map one pixel off.
  from cfcls.models import erfnet  # pylint: disable=g-import-not-at-top
  conv = erfnet.nn.ConvTranspose(1, (3, 3), strides=(2, 2),
                                 padding=erfnet.UPSAMPLER_PADDING)
  kernel = np.arange(1.0, 10.0, dtype=np.float32).reshape(3, 3, 1, 1)
  variables = {"params": {"kernel": jnp.asarray(kernel),
                          "bias": jnp.zeros((1,), jnp.float32)}}
  for (i, j), (h, w) in (((2, 1), (4, 3)), ((0, 2), (3, 3)),
                         ((2, 2), (3, 3))):
    x = np.zeros((1, h, w, 1), np.float32)
    x[0, i, j, 0] = 1.0
    out = np.asarray(conv.apply(variables, jnp.asarray(x)))[0, :, :, 0]
    assert out.shape == (2 * h, 2 * w)
    expected = np.zeros((2 * h + 2, 2 * w + 2), np.float32)  # 1 pixel margin
    expected[2 * i:2 * i + 3, 2 * j:2 * j + 3] = kernel[::-1, ::-1, 0, 0]
    np.testing.assert_array_equal(out, expected[1:-1, 1:-1])
  # And the module uses it: an impulse through the Upsampler's conv.
  module = erfnet.Upsampler(1)
  x = np.zeros((1, 4, 3, 1), np.float32)
  x[0, 1, 1, 0] = 1.0
  up = {"params": {"conv": variables["params"],
                   "bn": {"scale": jnp.ones((1,)), "bias": jnp.zeros((1,))}},
        "batch_stats": {"bn": {"mean": jnp.zeros((1,)), "var": jnp.ones((1,))}}}
  out = np.asarray(module.apply(up, jnp.asarray(x), train=False))[0, :, :, 0]
  expected = np.zeros((8, 6), np.float32)
  expected[1:4, 1:4] = kernel[::-1, ::-1, 0, 0] / np.sqrt(1 + erfnet.BN_EPSILON)
  np.testing.assert_allclose(out, expected, rtol=1e-6)


def _tiny_run_config():
  config = config_utils.default_schema()
  config.model.update(ERFNET_TINY)
  config.loss = "pce"
  config.data.crop_size = 16
  config.batch_size = 4
  config.lr_schedule = "constant"
  config.learning_rate = 1e-2
  config_utils.validate_config(config, device_count=2)
  return config


def _batches(num, size=16, num_classes=3):
  rng = np.random.default_rng(0)
  out = []
  for _ in range(num):
    mask = rng.integers(0, num_classes, (4, size, size)).astype(np.int32)
    scribbles = np.where(rng.random((4, size, size)) < 0.3, mask, 255)
    out.append(dict(
        image=rng.integers(0, 256, (4, size, size, 3)).astype(np.uint8),
        scribbles=scribbles.astype(np.int32), mask=mask,
        valid=np.ones((4, size, size), np.float32),
        presence=np.ones((4, num_classes - 1), np.float32)))
  return out


def _host(state):
  return jax.tree_util.tree_map(np.array, jax.device_get(state))


def test_resume_with_dropout_equals_an_uninterrupted_run(tmp_path):
  """3 ERFNet steps with dropout on 2 devices; stopped after step 2 (saved),
  restored in a freshly built run and continued: the same state, bit for
  bit, as 3 uninterrupted steps."""
  config = _tiny_run_config()
  names = ["bg", "a", "b"]
  run = run_lib.build(config, 3, names)
  batches = [parallel.host_batch_to_global(b, run.mesh) for b in _batches(3)]
  # Numpy-drawn weights (init_tiny) instead of run_lib.initial_state: the
  # flax initialisers' compilation would double this test's time.
  variables = init_tiny(create_model(config.model, 3, num_outputs=3))
  initial = lambda: run.init_fn(jax.random.key(config.seed), variables)

  state = initial()
  states = []
  for batch in batches:
    state, _ = run.train_step(state, batch)
    states.append(_host(state))

  state = initial()
  for batch in batches[:2]:
    state, _ = run.train_step(state, batch)
  ckpts = checkpointing.Checkpoints(str(tmp_path))
  ckpts.save(2, state, force=True)
  ckpts.wait()
  ckpts.close()
  del state
  resumed_run = run_lib.build(config, 3, names)  # as a restarted process
  ckpts = checkpointing.Checkpoints(str(tmp_path))
  state, step = ckpts.restore_latest(run_lib.abstract_state(resumed_run))
  ckpts.close()
  assert step == 2
  state, _ = resumed_run.train_step(state, batches[2])
  resumed = _host(state)
  assert int(resumed.step) == 3
  for a, b in zip(jax.tree_util.tree_leaves(resumed),
                  jax.tree_util.tree_leaves(states[-1])):
    np.testing.assert_array_equal(a, b)

  # Dropout is on in the train step and its masks depend on the step: step
  # 2's state trained as if it were step 7 (same batch, constant learning
  # rate, so only the dropout key differs) ends elsewhere.
  shifted = jax.device_put(states[1].replace(step=np.int32(7)),
                           parallel.replicated_sharding(run.mesh))
  other, _ = run.train_step(shifted, batches[2])
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree_util.tree_leaves(_host(other).params),
      jax.tree_util.tree_leaves(states[-1].params)))
  assert diff > 1e-6, diff


@pytest.mark.parametrize("overrides,message", [
    ({"name": "segnet"}, "model.name='segnet' is not supported; allowed: "
                         "('deeplabv3plus', 'unet', 'erfnet')"),
    ({"unet_base": 0}, "model.unet_base=0 must be >= 1"),
    ({"erfnet_dropout": (0.03, 1.0)}, "model.erfnet_dropout=(0.03, 1.0)"),
])
def test_bad_model_fields_are_named(overrides, message):
  with pytest.raises(ValueError) as err:
    create_model(ml_collections.ConfigDict(overrides), 3)
  assert message in str(err.value)
  config = config_utils.default_schema()
  config.model.update(overrides)
  with pytest.raises(ValueError) as err:
    config_utils.validate_config(config)
  assert message in str(err.value)


def test_init_from_needs_deeplab():
  config = config_utils.default_schema()
  config.model.name = "unet"
  config.init_from = "resnet101.pth"
  with pytest.raises(ValueError, match="model.name='deeplabv3plus'"):
    config_utils.validate_config(config)


@pytest.mark.parametrize("network", ["unet", "erfnet"])
def test_inspection_config_is_valid(network):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "configs", "inspection.py")
  values = flags.FlagValues()
  argv = ["train.py", f"--config={path}:{network}"]
  config_flags.DEFINE_config_file("config", path, flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  config = values.config
  config_utils.validate_config(config, device_count=2)
  assert config.model.name == network
  assert (config.data.name, config.data.crop_size, config.batch_size,
          config.loss) == ("scribble_folder", 513, 10, "cfm")
