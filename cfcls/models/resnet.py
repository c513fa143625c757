"""ResNet v1 backbones (torchvision layout) with DeepLab-style dilation.

The layout follows torchvision's ``resnet{18,34,50,101,152}`` exactly so that
ImageNet weights convert one to one (see ``cfcls.models.pretrained``):

* stem: 7x7/2 conv ``conv1`` (no bias), ``bn1``, ReLU, 3x3/2 max pool (pad 1);
* four stages ``layer1`` .. ``layer4``; block ``i`` of stage ``n`` is the
  submodule ``layer{n}_{i}`` (torchvision ``layer{n}.{i}``) with ``conv1``,
  ``bn1``, ``conv2``, ``bn2`` (``conv3``, ``bn3`` for bottlenecks) and, when
  the shape changes, ``downsample_0`` (1x1 conv) and ``downsample_1`` (BN)
  (torchvision ``downsample.0`` / ``downsample.1``);
* the bottleneck carries its stride on the 3x3 conv (``conv2``): "ResNet v1.5",
  as torchvision does. Convolutions pad symmetrically like PyTorch
  (``dilation * (k - 1) // 2`` on each side), not with XLA's 'SAME'.

Output stride: 32 is the classifier network. For 16 the stride of ``layer4``
and for 8 those of ``layer3`` and ``layer4`` become dilation, with torchvision's
``replace_stride_with_dilation`` convention: the first block of a dilated stage
keeps the previous dilation, the others use the new one (OS16: layer4 at 2;
OS8: layer3 at 2, layer4 at 4).

No fully connected classifier: the backbone returns feature maps.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# Stage depths per ResNet depth and whether blocks are bottlenecks.
RESNET_STAGES = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}
OUTPUT_STRIDES = (8, 16, 32)
BOTTLENECK_EXPANSION = 4

# ImageNet statistics of torchvision's pretrained weights (RGB, images in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# He-normal with fan_out, as torchvision initialises its convolutions.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def normalize_images(images):
  """ImageNet mean/std normalisation.

  Args:
    images: float ``[B, H, W, 3]`` RGB in [0, 1].

  Returns:
    float32 ``[B, H, W, 3]``: ``(images - mean) / std`` per channel.
  """
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32).reshape(1, 1, 1, 3)
  std = jnp.asarray(IMAGENET_STD, jnp.float32).reshape(1, 1, 1, 3)
  return (jnp.asarray(images, jnp.float32) - mean) / std


def scaled_channels(channels: int, width: float) -> int:
  """Channel count ``channels`` times the width multiplier (at least 1)."""
  return max(1, int(round(channels * width)))


def stage_dilations(output_stride: int):
  """Per-stage (stride, first-block dilation, dilation) for layer1..layer4.

  Args:
    output_stride: 8, 16 or 32.

  Returns:
    tuple of four ``(stride, first_dilation, dilation)`` triples.
  """
  if output_stride not in OUTPUT_STRIDES:
    raise ValueError(
        f"output_stride={output_stride!r} is not supported; allowed: "
        f"{OUTPUT_STRIDES}")
  # Stages 3 and 4 are dilated from the end until the stride fits.
  num_dilated = {32: 0, 16: 1, 8: 2}[output_stride]
  replace = (False,) * (3 - num_dilated) + (True,) * num_dilated
  dilation = 1
  specs = [(1, 1, 1)]  # layer1: stride 1 after the max pool.
  for dilate in replace:
    previous = dilation
    if dilate:
      dilation *= 2
      specs.append((1, previous, dilation))
    else:
      specs.append((2, previous, dilation))
  return tuple(specs)


def conv(features: int, kernel: int, *, stride: int = 1, dilation: int = 1,
         use_bias: bool = False, dtype: Any = jnp.float32, name=None):
  """A torch-style 2-D convolution (symmetric padding), float32 parameters."""
  pad = dilation * (kernel - 1) // 2
  return nn.Conv(
      features, (kernel, kernel), strides=(stride, stride),
      padding=((pad, pad), (pad, pad)), kernel_dilation=(dilation, dilation),
      use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=conv_kernel_init, name=name)


def batch_norm(train: bool, *, axis_name=None, momentum: float = 0.9,
               epsilon: float = 1e-5, dtype: Any = jnp.float32, name=None):
  """BatchNorm: batch statistics in train mode, running ones in eval mode.

  ``momentum`` is flax's decay of the running averages (torch's 0.1 is 0.9
  here). With ``axis_name`` the batch statistics are averaged over that mapped
  axis (``shard_map`` / ``pmap``), i.e. computed on the global batch.
  """
  return nn.BatchNorm(
      use_running_average=not train, momentum=momentum, epsilon=epsilon,
      dtype=dtype, param_dtype=jnp.float32, axis_name=axis_name, name=name)


class ResidualBlock(nn.Module):
  """Basic (two 3x3) or bottleneck (1x1-3x3-1x1) residual block.

  Attributes:
    planes: inner channel count (output is ``planes * 4`` for bottlenecks).
    bottleneck: which block type.
    stride: stride of the first 3x3 conv.
    dilation: dilation of the 3x3 convs.
  """
  planes: int
  bottleneck: bool
  stride: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """x: ``[B, H, W, C]`` -> ``[B, ceil(H/stride), ceil(W/stride), C_out]``."""
    norm = lambda name: batch_norm(
        train, axis_name=self.axis_name, momentum=self.bn_momentum,
        dtype=self.dtype, name=name)
    conv_ = lambda f, k, s, d, name: conv(
        f, k, stride=s, dilation=d, dtype=self.dtype, name=name)
    if self.bottleneck:
      out_features = self.planes * BOTTLENECK_EXPANSION
      y = nn.relu(norm("bn1")(conv_(self.planes, 1, 1, 1, "conv1")(x)))
      y = conv_(self.planes, 3, self.stride, self.dilation, "conv2")(y)
      y = nn.relu(norm("bn2")(y))
      y = norm("bn3")(conv_(out_features, 1, 1, 1, "conv3")(y))
    else:
      out_features = self.planes
      y = conv_(self.planes, 3, self.stride, self.dilation, "conv1")(x)
      y = nn.relu(norm("bn1")(y))
      y = norm("bn2")(conv_(self.planes, 3, 1, self.dilation, "conv2")(y))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != out_features:
      shortcut = conv_(out_features, 1, self.stride, 1, "downsample_0")(x)
      shortcut = norm("downsample_1")(shortcut)
    return nn.relu(y + shortcut)


class ResNet(nn.Module):
  """ResNet v1 feature extractor.

  Attributes:
    depth: 18, 34, 50, 101 or 152.
    output_stride: 8, 16 or 32 (see the module docstring).
    width: multiplier of every channel count (1.0 = torchvision's network).
    dtype: compute dtype (parameters and BN statistics stay float32).
    axis_name: mapped axis over which BatchNorm averages batch statistics.
    bn_momentum: decay of the BatchNorm running averages.
  """
  depth: int = 50
  output_stride: int = 16
  width: float = 1.0
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """Feature maps of a normalised image batch.

    Args:
      x: ``[B, H, W, 3]`` images, already normalised (``normalize_images``).
      train: BatchNorm uses (and updates) batch statistics when True.

    Returns:
      dict with ``'stride4'``: layer1 output ``[B, ceil(H/4), ceil(W/4), C4]``
      (the DeepLabV3+ low-level features) and ``'out'``: layer4 output
      ``[B, ~H/os, ~W/os, C]`` (2048 * width channels for bottlenecks).
    """
    if self.depth not in RESNET_STAGES:
      raise ValueError(
          f"ResNet depth={self.depth!r} is not supported; allowed: "
          f"{tuple(RESNET_STAGES)}")
    bottleneck, blocks_per_stage = RESNET_STAGES[self.depth]
    x = x.astype(self.dtype)
    x = conv(scaled_channels(64, self.width), 7, stride=2, dtype=self.dtype,
             name="conv1")(x)
    x = batch_norm(train, axis_name=self.axis_name, momentum=self.bn_momentum,
                   dtype=self.dtype, name="bn1")(x)
    x = nn.relu(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    features = {}
    for stage, (num_blocks, (stride, first_dilation, dilation)) in enumerate(
        zip(blocks_per_stage, stage_dilations(self.output_stride)), start=1):
      planes = scaled_channels(64 * 2 ** (stage - 1), self.width)
      for i in range(num_blocks):
        x = ResidualBlock(
            planes, bottleneck,
            stride=stride if i == 0 else 1,
            dilation=first_dilation if i == 0 else dilation,
            dtype=self.dtype, axis_name=self.axis_name,
            bn_momentum=self.bn_momentum, name=f"layer{stage}_{i}")(x, train)
      if stage == 1:
        features["stride4"] = x
    features["out"] = x
    return features
