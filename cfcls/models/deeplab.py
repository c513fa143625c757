"""DeepLabV3+ on a ResNet backbone, with the multi-label classification head.

Structure (Chen et al. 2018, as used by the CFM paper; docs/method.md,
section 6):

* ``backbone``: ``ResNet`` at output stride 8 or 16;
* ``aspp``: a 1x1 conv, three 3x3 atrous convs (rates 6/12/18 at OS16, doubled
  at OS8) and image pooling (global mean, 1x1 conv, broadcast back), each with
  BN + ReLU, concatenated and projected by a 1x1 conv + BN + ReLU;
* ``decoder``: a 1x1 projection of the stride-4 backbone features
  (``low_level_channels``), the ASPP output bilinearly resized to that grid and
  concatenated, two 3x3 convs + BN + ReLU;
* ``classifier``: a 1x1 conv with bias to ``num_outputs`` channels, linear (no
  activation: the CFM loss wants unconstrained alpha mattes), computed in
  float32 and bilinearly resized to the input size (``jax.image.resize``, half-
  pixel centres; any size, odd ones included);
* ``mlc_head``: global average pooling of the backbone output (the paper's
  encoder features; ``mlc_features='decoder'``: of the decoder output),
  Dense + ReLU, Dense to ``num_classes - 1`` logits (one per foreground
  class).

Every channel count is multiplied by ``width``. No dropout anywhere, so a
forward pass is deterministic given the BN mode.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cfcls.models import resnet


def resize_bilinear(x, height: int, width: int):
  """Bilinear resize of ``[B, h, w, C]`` to ``[B, height, width, C]`` (float32)."""
  x = x.astype(jnp.float32)
  if x.shape[1:3] == (height, width):
    return x
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]),
                          method="bilinear")


MLC_FEATURES = ("backbone", "decoder")


class ConvBNReLU(nn.Module):
  """Conv (no bias) + BatchNorm + ReLU; submodules ``conv`` and ``bn``."""
  features: int
  kernel: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """x: ``[B, H, W, C]`` -> ``[B, H, W, features]``."""
    x = resnet.conv(self.features, self.kernel, dilation=self.dilation,
                    dtype=self.dtype, name="conv")(x)
    x = resnet.batch_norm(train, axis_name=self.axis_name,
                          momentum=self.bn_momentum, dtype=self.dtype,
                          name="bn")(x)
    return nn.relu(x)


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling.

  Attributes:
    channels: output channels of every branch and of the projection.
    rates: dilation rates of the three 3x3 branches.
  """
  channels: int = 256
  rates: tuple[int, ...] = (6, 12, 18)
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """x: ``[B, h, w, C]`` -> ``[B, h, w, channels]``."""
    block = lambda k, d, name: ConvBNReLU(
        self.channels, k, d, dtype=self.dtype, axis_name=self.axis_name,
        bn_momentum=self.bn_momentum, name=name)
    branches = [block(1, 1, "branch_1x1")(x, train)]
    for i, rate in enumerate(self.rates):
      branches.append(block(3, rate, f"branch_atrous_{i}")(x, train))
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True)
    pooled = block(1, 1, "image_pooling")(pooled.astype(self.dtype), train)
    branches.append(jnp.broadcast_to(pooled, branches[0].shape))
    x = jnp.concatenate(branches, axis=-1)
    return block(1, 1, "projection")(x, train)


class Decoder(nn.Module):
  """DeepLabV3+ decoder: fuse the ASPP output with stride-4 features."""
  low_level_channels: int = 48
  channels: int = 256
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, low_level, train: bool):
    """x: ``[B, h, w, C]``, low_level: ``[B, h4, w4, C4]`` -> ``[B, h4, w4, channels]``."""
    block = lambda f, k, name: ConvBNReLU(
        f, k, dtype=self.dtype, axis_name=self.axis_name,
        bn_momentum=self.bn_momentum, name=name)
    low_level = block(self.low_level_channels, 1, "low_level_projection")(
        low_level, train)
    x = resize_bilinear(x, low_level.shape[1], low_level.shape[2])
    x = jnp.concatenate([x.astype(self.dtype), low_level], axis=-1)
    x = block(self.channels, 3, "conv_0")(x, train)
    return block(self.channels, 3, "conv_1")(x, train)


class MLCHead(nn.Module):
  """Multi-label classification head: global average pool, two dense layers."""
  num_logits: int
  hidden: int = 256

  @nn.compact
  def __call__(self, features):
    """features: ``[B, h, w, C]`` -> float32 logits ``[B, num_logits]``."""
    x = jnp.mean(features.astype(jnp.float32), axis=(1, 2))
    x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
    return nn.Dense(self.num_logits, name="logits")(x)


class DeepLabV3Plus(nn.Module):
  """DeepLabV3+ with an MLC head; images in, (per-pixel outputs, MLC logits) out.

  Attributes:
    num_outputs: channels of the per-pixel output (K-1 mattes, or K logits).
    num_mlc_logits: outputs of the MLC head (K-1).
    depth: ResNet depth.
    output_stride: 8 or 16.
    width: multiplier of every channel count.
    dtype: compute dtype of backbone, ASPP and decoder.
    aspp_channels, decoder_channels, low_level_channels, mlc_hidden: channel
      counts before the width multiplier.
    mlc_features: what the MLC head pools: "backbone" (the encoder output)
      or "decoder" (the decoder output the mattes come from).
    axis_name: mapped axis over which BatchNorm averages batch statistics.
    bn_momentum: decay of the BatchNorm running averages.
  """
  num_outputs: int
  num_mlc_logits: int
  depth: int = 101
  output_stride: int = 16
  width: float = 1.0
  dtype: Any = jnp.float32
  aspp_channels: int = 256
  decoder_channels: int = 256
  low_level_channels: int = 48
  mlc_hidden: int = 256
  mlc_features: str = "backbone"
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, images, train: bool):
    """Forward pass.

    Args:
      images: float32 ``[B, H, W, 3]`` RGB in [0, 1] (normalised inside).
      train: BatchNorm uses and updates batch statistics when True (call
        ``apply`` with ``mutable=['batch_stats']`` then).

    Returns:
      ``(outputs, mlc_logits)``: float32 ``[B, H, W, num_outputs]`` and float32
      ``[B, num_mlc_logits]``.
    """
    if self.mlc_features not in MLC_FEATURES:
      raise ValueError(f"mlc_features={self.mlc_features!r} is not one of "
                       f"{MLC_FEATURES}")
    if self.output_stride not in (8, 16):
      raise ValueError(
          f"output_stride={self.output_stride!r} is not supported by "
          "DeepLabV3+; allowed: (8, 16)")
    height, width_px = images.shape[1], images.shape[2]
    scale = lambda c: resnet.scaled_channels(c, self.width)
    shared = dict(dtype=self.dtype, axis_name=self.axis_name,
                  bn_momentum=self.bn_momentum)
    features = resnet.ResNet(
        self.depth, self.output_stride, self.width, name="backbone",
        **shared)(resnet.normalize_images(images), train)
    rates = tuple(r * 16 // self.output_stride for r in (6, 12, 18))
    x = ASPP(scale(self.aspp_channels), rates, name="aspp", **shared)(
        features["out"], train)
    x = Decoder(scale(self.low_level_channels), scale(self.decoder_channels),
                name="decoder", **shared)(x, features["stride4"], train)
    mlc_input = x if self.mlc_features == "decoder" else features["out"]
    x = nn.Conv(self.num_outputs, (1, 1), dtype=jnp.float32,
                param_dtype=jnp.float32, name="classifier")(
                    x.astype(jnp.float32))
    outputs = resize_bilinear(x, height, width_px)
    mlc_logits = MLCHead(self.num_mlc_logits, scale(self.mlc_hidden),
                         name="mlc_head")(mlc_input)
    return outputs, mlc_logits
