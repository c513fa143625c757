"""Tests of the torchvision weight import (cfcls.models.pretrained) and its CLI.

State dicts are made here from torchvision's architecture (key names and OIHW
shapes, random values); the converted network is checked against a numpy
float64 forward pass written from those torchvision tensors alone.
"""

import functools
import importlib.util
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cfcls.models import create_model, pretrained
from cfcls.models.resnet import ResNet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 1e-5
BLOCKS = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)),
          50: (True, (3, 4, 6, 3)), 101: (True, (3, 4, 23, 3)),
          152: (True, (3, 8, 36, 3))}


def torchvision_shapes(depth, width=1.0):
  """{key: shape} of torchvision's resnet{depth} state dict (channels * width)."""
  ch = lambda c: max(1, int(round(c * width)))
  bottleneck, counts = BLOCKS[depth]
  expansion = 4 if bottleneck else 1
  shapes = {}

  def bn(prefix, c):
    for leaf in ("weight", "bias", "running_mean", "running_var"):
      shapes[f"{prefix}.{leaf}"] = (c,)
    shapes[f"{prefix}.num_batches_tracked"] = ()

  shapes["conv1.weight"] = (ch(64), 3, 7, 7)
  bn("bn1", ch(64))
  inplanes = ch(64)
  for stage, n in enumerate(counts, start=1):
    planes = ch(64 * 2 ** (stage - 1))
    stride = 1 if stage == 1 else 2
    for i in range(n):
      p = f"layer{stage}.{i}"
      if bottleneck:
        shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
        shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
        shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
        for j in (1, 2):
          bn(f"{p}.bn{j}", planes)
        bn(f"{p}.bn3", planes * 4)
      else:
        shapes[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
        shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
        bn(f"{p}.bn1", planes)
        bn(f"{p}.bn2", planes)
      if i == 0 and (stride != 1 or inplanes != planes * expansion):
        shapes[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
        bn(f"{p}.downsample.1", planes * expansion)
      inplanes = planes * expansion
  shapes["fc.weight"] = (1000, inplanes)
  shapes["fc.bias"] = (1000,)
  return shapes


def random_state_dict(depth, width, seed=0):
  rng = np.random.default_rng(seed)
  state = {}
  for key, shape in torchvision_shapes(depth, width).items():
    if key.endswith("num_batches_tracked"):
      state[key] = np.asarray(7, np.int64)
    elif key.endswith("running_var"):
      state[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    elif key.endswith("weight") and len(shape) == 4:
      fan_in = shape[1] * shape[2] * shape[3]
      state[key] = (rng.normal(size=shape) * np.sqrt(1.0 / fan_in)).astype(
          np.float32)
    elif key.endswith("weight") and len(shape) == 1:  # BN scale
      state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    else:
      state[key] = (0.1 * rng.normal(size=shape)).astype(np.float32)
  return state


# ---------------------------------------------------------------- numpy reference
def np_conv(x, w, stride=1, dilation=1):
  """x [B,H,W,Cin] float64, w torch OIHW, torch padding dilation*(k-1)//2."""
  k = w.shape[2]
  pad = dilation * (k - 1) // 2
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho = (x.shape[1] + 2 * pad - dilation * (k - 1) - 1) // stride + 1
  wo = (x.shape[2] + 2 * pad - dilation * (k - 1) - 1) // stride + 1
  out = np.zeros((x.shape[0], ho, wo, w.shape[0]))
  for i in range(k):
    for j in range(w.shape[3]):
      patch = xp[:, i * dilation:i * dilation + stride * (ho - 1) + 1:stride,
                 j * dilation:j * dilation + stride * (wo - 1) + 1:stride, :]
      out += patch @ w[:, :, i, j].T
  return out


def np_bn(x, sd, prefix):
  g = lambda leaf: sd[f"{prefix}.{leaf}"].astype(np.float64)
  return ((x - g("running_mean")) / np.sqrt(g("running_var") + EPS)
          * g("weight") + g("bias"))


def np_maxpool(x):
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
  ho, wo = (x.shape[1] - 1) // 2 + 1, (x.shape[2] - 1) // 2 + 1
  return np.max([xp[:, i:i + 2 * (ho - 1) + 1:2, j:j + 2 * (wo - 1) + 1:2]
                 for i in range(3) for j in range(3)], axis=0)


relu = lambda x: np.maximum(x, 0)
# torchvision replace_stride_with_dilation, per stage: (stride, dilation of
# block 0, dilation of the other blocks).
SCHEDULE = {32: [(1, 1, 1), (2, 1, 1), (2, 1, 1), (2, 1, 1)],
            16: [(1, 1, 1), (2, 1, 1), (2, 1, 1), (1, 1, 2)],
            8: [(1, 1, 1), (2, 1, 1), (1, 1, 2), (1, 2, 4)]}


def np_resnet(sd, depth, output_stride, images):
  """Eval-mode torchvision ResNet on normalised images; (stem, layer1, out)."""
  bottleneck, counts = BLOCKS[depth]
  x = relu(np_bn(np_conv(images, sd["conv1.weight"], stride=2), sd, "bn1"))
  stem = np_maxpool(x)
  x = stem
  for stage, n in enumerate(counts, start=1):
    stride, first_dilation, dilation = SCHEDULE[output_stride][stage - 1]
    for i in range(n):
      p = f"layer{stage}.{i}"
      s, d = (stride, first_dilation) if i == 0 else (1, dilation)
      w = lambda name: sd[f"{p}.{name}.weight"].astype(np.float64)
      if bottleneck:
        y = relu(np_bn(np_conv(x, w("conv1")), sd, f"{p}.bn1"))
        y = relu(np_bn(np_conv(y, w("conv2"), s, d), sd, f"{p}.bn2"))
        y = np_bn(np_conv(y, w("conv3")), sd, f"{p}.bn3")
      else:
        y = relu(np_bn(np_conv(x, w("conv1"), s, d), sd, f"{p}.bn1"))
        y = np_bn(np_conv(y, w("conv2"), 1, d), sd, f"{p}.bn2")
      if f"{p}.downsample.0.weight" in sd:
        x = np_bn(np_conv(x, w("downsample.0"), s), sd, f"{p}.downsample.1")
      x = relu(y + x)
    if stage == 1:
      layer1 = x
  return stem, layer1, x


def normalise(images):
  mean = np.array([0.485, 0.456, 0.406]).reshape(1, 1, 1, 3)
  std = np.array([0.229, 0.224, 0.225]).reshape(1, 1, 1, 3)
  return (np.asarray(images, np.float64) - mean) / std


def resnet_shapes(depth, width=1.0):
  model = ResNet(depth=depth, output_stride=32, width=width)
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32), train=False))


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("depth,total", [(18, 11_689_512), (50, 25_557_032),
                                         (101, 44_549_160)])
def test_reference_state_dict_matches_torchvision_counts(depth, total):
  """The test's own torchvision layout is right: its parameter count (BN
  running stats excluded) is torchvision's."""
  shapes = torchvision_shapes(depth)
  count = sum(int(np.prod(s)) for k, s in shapes.items()
              if not k.endswith(("running_mean", "running_var",
                                 "num_batches_tracked")))
  assert count == total


@pytest.mark.parametrize("depth", [18, 50, 101])
def test_full_size_checkpoint_fills_every_backbone_variable(depth):
  # Zero-stride arrays: the real shapes without the memory.
  state = {k: np.broadcast_to(np.float32(0.5), s)
           for k, s in torchvision_shapes(depth).items()}
  model = create_model(ml_collections.ConfigDict(dict(
      backbone=f"resnet{depth}", output_stride=16)), 3)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 65, 65, 3), jnp.float32), train=False))
  variables, report = pretrained.load_torchvision_resnet(state, shapes)
  assert report.missing == []
  assert report.left_over == ["fc.bias", "fc.weight"]
  assert len(report.ignored) == sum(k.endswith("num_batches_tracked")
                                    for k in state)
  assert len(report.used) == len(state) - 2 - len(report.ignored)
  backbone_leaves = (jax.tree_util.tree_leaves(shapes["params"]["backbone"])
                     + jax.tree_util.tree_leaves(
                         shapes["batch_stats"]["backbone"]))
  assert len(report.used) == len(backbone_leaves)
  # Everything under the backbone is now a real array; the rest untouched.
  for leaf in jax.tree_util.tree_leaves(variables["params"]["backbone"]):
    assert isinstance(leaf, jax.Array) and float(leaf.ravel()[0]) == 0.5
  assert isinstance(variables["params"]["aspp"]["projection"]["conv"]["kernel"],
                    jax.ShapeDtypeStruct)


def test_shape_mismatch_names_key_and_shapes():
  state = random_state_dict(18, 0.125)
  state["layer2.0.conv1.weight"] = np.zeros((16, 8, 5, 5), np.float32)
  with pytest.raises(ValueError) as err:
    pretrained.load_torchvision_resnet(state, resnet_shapes(18, 0.125),
                                       prefix=())
  message = str(err.value)
  assert "layer2.0.conv1.weight" in message
  assert "(5, 5, 8, 16)" in message and "(3, 3, 8, 16)" in message


def test_deeper_checkpoint_into_shallower_model_is_rejected():
  state = {k: np.broadcast_to(np.float32(0), s)
           for k, s in torchvision_shapes(101).items()}
  with pytest.raises(ValueError, match="layer3.6"):
    pretrained.load_torchvision_resnet(state, resnet_shapes(50), prefix=())
  _, report = pretrained.load_torchvision_resnet(
      state, resnet_shapes(50), prefix=(), strict=False)
  assert "layer3.22.conv3.weight" in report.left_over
  assert report.missing == []


def test_missing_keys_are_reported():
  state = random_state_dict(18, 0.125)
  del state["layer4.1.bn2.running_var"]
  with pytest.raises(ValueError, match="missing"):
    pretrained.load_torchvision_resnet(state, resnet_shapes(18, 0.125),
                                       prefix=())
  _, report = pretrained.load_torchvision_resnet(
      state, resnet_shapes(18, 0.125), prefix=(), strict=False)
  assert report.missing == ["batch_stats/layer4_1/bn2/var"]


def test_bad_files_raise_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere.npz"):
    pretrained.read_checkpoint(tmp_path / "nowhere.npz")
  bad = tmp_path / "weights.bin"
  bad.write_bytes(b"x")
  with pytest.raises(ValueError, match="weights.bin.*extension"):
    pretrained.read_checkpoint(bad)
  if importlib.util.find_spec("torch") is None:
    pth = tmp_path / "resnet.pth"
    pth.write_bytes(b"x")
    with pytest.raises(ValueError, match="resnet.pth needs torch"):
      pretrained.read_checkpoint(pth)


@pytest.mark.parametrize("depth,output_stride", [(18, 16), (50, 8)])
def test_imported_resnet_matches_numpy_reference(tmp_path, depth,
                                                 output_stride):
  state = random_state_dict(depth, 0.125, seed=depth)
  path = tmp_path / f"resnet{depth}.npz"
  np.savez(path, **state)
  model = ResNet(depth=depth, output_stride=output_stride, width=0.125)
  variables, report = pretrained.init_from(path, resnet_shapes(depth, 0.125),
                                           prefix=())
  assert report.left_over == ["fc.bias", "fc.weight"] and not report.missing
  images = np.random.default_rng(1).uniform(size=(2, 27, 30, 3))
  features, state_out = jax.jit(functools.partial(
      model.apply, train=False, capture_intermediates=True,
      mutable=["intermediates"]))(variables, jnp.asarray(normalise(images),
                                                         jnp.float32))
  stem, layer1, out = np_resnet(state, depth, output_stride, normalise(images))
  # Stem + first block on their own, then the whole network.
  block0 = state_out["intermediates"]["layer1_0"]["__call__"][0]
  stride, first_dilation, _ = SCHEDULE[output_stride][0]
  sd = state
  w = lambda name: sd[f"layer1.0.{name}.weight"].astype(np.float64)
  if BLOCKS[depth][0]:
    y = relu(np_bn(np_conv(stem, w("conv1")), sd, "layer1.0.bn1"))
    y = relu(np_bn(np_conv(y, w("conv2"), stride, first_dilation), sd,
                   "layer1.0.bn2"))
    y = np_bn(np_conv(y, w("conv3")), sd, "layer1.0.bn3")
    shortcut = np_bn(np_conv(stem, w("downsample.0")), sd,
                     "layer1.0.downsample.1")
  else:
    y = relu(np_bn(np_conv(stem, w("conv1")), sd, "layer1.0.bn1"))
    y = np_bn(np_conv(y, w("conv2")), sd, "layer1.0.bn2")
    shortcut = stem
  np.testing.assert_allclose(block0, relu(y + shortcut), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(features["stride4"], layer1, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(features["out"], out, rtol=2e-4, atol=2e-4)
  assert np.abs(out).max() > 0.1  # not a trivially zero comparison


def test_converter_cli_roundtrip(tmp_path, capsys):
  state = random_state_dict(18, 1.0, seed=3)
  source = tmp_path / "resnet18_tv.npz"
  np.savez(source, **state)
  spec = importlib.util.spec_from_file_location(
      "convert_resnet_weights",
      os.path.join(REPO, "data_prep", "convert_resnet_weights.py"))
  cli = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(cli)
  output = tmp_path / "resnet18_flax.npz"
  cli.main(["--input", str(source), "--output", str(output), "--depth", "18"])
  printed = capsys.readouterr().out
  assert "2 left over" in printed and "0 missing" in printed
  with np.load(output) as data:
    converted = {k: data[k] for k in data.files}
  assert str(converted["__format__"]) == pretrained.CONVERTED_FORMAT
  np.testing.assert_array_equal(converted["params/layer1_0/conv2/kernel"],
                                state["layer1.0.conv2.weight"].transpose(
                                    2, 3, 1, 0))
  np.testing.assert_array_equal(converted["batch_stats/layer2_0/downsample_1/var"],
                                state["layer2.0.downsample.1.running_var"])
  # The converted file initialises a DeepLabV3+ backbone exactly as the
  # torchvision file does, and leaves the head alone.
  model = create_model(ml_collections.ConfigDict(dict(
      backbone="resnet18", output_stride=16, width=1.0)), 3)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 65, 65, 3), jnp.float32), train=False))
  from_tv, _ = pretrained.init_from(source, shapes)
  from_converted, report = pretrained.init_from(output, shapes)
  assert report.left_over == [] and report.missing == []
  for a, b in zip(jax.tree_util.tree_leaves(from_tv["batch_stats"]),
                  jax.tree_util.tree_leaves(from_converted["batch_stats"])):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(
      from_converted["params"]["backbone"]["bn1"]["scale"], state["bn1.weight"])
  with pytest.raises(SystemExit, match="--depth=42"):
    cli.main(["--input", str(source), "--output", str(output), "--depth", "42"])
  with pytest.raises(SystemExit, match="missing.*layer1_2"):
    cli.main(["--input", str(source), "--output", str(output), "--depth", "34"])


def test_pth_checkpoint_with_torch(tmp_path):
  torch = pytest.importorskip("torch")  # optional: not in requirements.txt
  state = random_state_dict(18, 0.125)
  path = tmp_path / "resnet18.pth"
  torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()},
             path)
  variables, report = pretrained.load_torchvision_resnet(
      path, resnet_shapes(18, 0.125), prefix=())
  assert not report.missing
  np.testing.assert_array_equal(variables["params"]["conv1"]["kernel"],
                                state["conv1.weight"].transpose(2, 3, 1, 0))
