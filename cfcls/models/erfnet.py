"""ERFNet (Romera et al., IEEE T-ITS 2018) with the multi-label classification head.

The layout of the authors' PyTorch implementation (``erfnet.py`` of
Eromera/erfnet_pytorch), which the CFM paper trains on its inspection data:

* encoder (``backbone``): downsampler 3->16, downsampler 16->64, five
  non-bottleneck-1D blocks at 64 (dilation 1, dropout 0.03), downsampler
  64->128, eight non-bottleneck-1D blocks at 128 with dilations
  2, 4, 8, 16, 2, 4, 8, 16 (dropout 0.3); output stride 8;
* downsampler ``cin -> cout``: a 3x3 stride-2 conv with ``cout - cin``
  channels concatenated with a 2x2 max pool of the input, BN, ReLU;
* non-bottleneck-1D ``c`` (dilation d): conv 3x1, ReLU, conv 1x3, BN, ReLU,
  conv 3x1 (dilation d), ReLU, conv 1x3 (dilation d), BN, spatial dropout
  (whole channels, the implementation's ``Dropout2d``; training only), then
  ReLU(x + input);
* decoder: upsampler (3x3 stride-2 transposed conv, BN, ReLU) 128->64, two
  non-bottleneck-1D at 64, upsampler 64->16, two non-bottleneck-1D at 16,
  a 2x2 stride-2 transposed conv to ``num_outputs`` (linear, float32; for
  mattes its kernel starts at zero, see below); the
  upsampler's transposed conv is padded like the reference's
  ``ConvTranspose2d(padding=1, output_padding=1)`` (``UPSAMPLER_PADDING``,
  not flax's "SAME", which is one pixel off); a PyTorch transposed-conv
  weight ``[in, out, kh, kw]`` is the flax kernel ``[kh, kw, in, out]``
  flipped in both spatial axes;
* ``mlc_head`` (as in DeepLabV3+): global average pool of the encoder output
  (``mlc_features='decoder'``: of the 16-channel decoder output), Dense +
  ReLU, Dense to K-1 logits.

With ``zero_output`` (``create_model`` sets it for alpha-matte outputs, the
CFM loss) the output conv's kernel starts at zero (not in the reference
implementation): the outputs of a freshly initialised ERFNet vary in 2x2
blocks (each half-resolution pixel feeds four different kernel taps), and
this pattern costs the end-to-end CFM loss 16x the energy of a constant
matte (23 vs 1.5 on the demo; DeepLabV3+'s bilinear output 11); the
quickest way down is to flatten the mattes, and ERFNet then stayed at the
constant matte for all 2000 demo steps (mIoU 0.140). Starting from flat
mattes, only the scribble term pulls at first and the network learns:
0.824 on the demo with the guided filter (docs/method.md, section 8). For
softmax logits the zero start is harmful (two_stage on the demo: 0.210
against 0.687, with the guided filter), so they keep flax's initialiser.

Convolutions carry biases and BatchNorm uses eps 1e-3, as in the reference
implementation; with 20 outputs the network without the MLC head has
2,064,256 parameters (tests/test_light_models.py derives the number layer by
layer). Every channel count is multiplied by ``width``; a downsampler whose
scaled output would not exceed its input gets one conv channel.

Any input size: the images are padded (edge) to a multiple of 8 and the
outputs cropped back. Dropout needs ``rngs={'dropout': key}`` when
``train=True``; with ``train=False`` the network is deterministic.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cfcls.models import layers
from cfcls.models import resnet
from cfcls.models.deeplab import MLC_FEATURES, MLCHead

BN_EPSILON = 1e-3  # the reference implementation's BatchNorm2d(eps=1e-3)
ENCODER_DILATIONS = (2, 4, 8, 16, 2, 4, 8, 16)
INPUT_MULTIPLE = 8  # three stride-2 stages
# PyTorch's ConvTranspose2d(3, stride=2, padding=1, output_padding=1): the
# stride-dilated input is padded by k-1-padding = 1 before and by
# k-1-padding+output_padding = 2 after. Flax's "SAME" pads (2, 1) instead and
# so shifts every upsampled map by one pixel down and right of the reference.
UPSAMPLER_PADDING = ((1, 2), (1, 2))


def _conv(features, kernel, *, stride=1, dilation=(1, 1), dtype, name):
  """Conv with bias and PyTorch-style symmetric padding; float32 params."""
  pads = tuple((d * (k - 1) // 2,) * 2 for k, d in zip(kernel, dilation))
  return nn.Conv(features, kernel, strides=(stride, stride), padding=pads,
                 kernel_dilation=dilation, use_bias=True, dtype=dtype,
                 param_dtype=jnp.float32,
                 kernel_init=resnet.conv_kernel_init, name=name)


def _bn(train, axis_name, momentum, dtype, name):
  return resnet.batch_norm(train, axis_name=axis_name, momentum=momentum,
                           epsilon=BN_EPSILON, dtype=dtype, name=name)


class Downsampler(nn.Module):
  """ERFNet downsampler: concat(3x3/2 conv, 2x2 max pool), BN, ReLU."""
  features: int
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """x: ``[B, H, W, C]`` (H, W even) -> ``[B, H/2, W/2, max(features, C+1)]``."""
    conv_channels = max(self.features - x.shape[-1], 1)
    y = _conv(conv_channels, (3, 3), stride=2, dtype=self.dtype,
              name="conv")(x)
    pooled = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = jnp.concatenate([y, pooled.astype(y.dtype)], axis=-1)
    x = _bn(train, self.axis_name, self.bn_momentum, self.dtype, "bn")(x)
    return nn.relu(x)


class NonBottleneck1D(nn.Module):
  """ERFNet's residual block of factorised (3x1, 1x3) convolutions.

  Attributes:
    dilation: dilation of the second pair of convolutions.
    dropout: spatial dropout rate in training (0 = none).
  """
  dilation: int = 1
  dropout: float = 0.0
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """x: ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
    c, d = x.shape[-1], self.dilation
    conv = lambda kernel, dil, name: _conv(c, kernel, dilation=dil,
                                           dtype=self.dtype, name=name)
    bn = lambda name: _bn(train, self.axis_name, self.bn_momentum, self.dtype,
                          name)
    y = nn.relu(conv((3, 1), (1, 1), "conv3x1_1")(x))
    y = nn.relu(bn("bn1")(conv((1, 3), (1, 1), "conv1x3_1")(y)))
    y = nn.relu(conv((3, 1), (d, 1), "conv3x1_2")(y))
    y = bn("bn2")(conv((1, 3), (1, d), "conv1x3_2")(y))
    if self.dropout > 0:
      # Dropout2d: one draw per (example, channel), broadcast over H and W.
      y = nn.Dropout(self.dropout, broadcast_dims=(1, 2),
                     deterministic=not train)(y)
    return nn.relu(y + x.astype(y.dtype))


class Upsampler(nn.Module):
  """ERFNet upsampler: 3x3 stride-2 transposed conv (with bias), BN, ReLU."""
  features: int
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """x: ``[B, H, W, C]`` -> ``[B, 2H, 2W, features]``."""
    x = nn.ConvTranspose(self.features, (3, 3), strides=(2, 2),
                         padding=UPSAMPLER_PADDING, dtype=self.dtype,
                         param_dtype=jnp.float32,
                         kernel_init=resnet.conv_kernel_init, name="conv")(x)
    x = _bn(train, self.axis_name, self.bn_momentum, self.dtype, "bn")(x)
    return nn.relu(x)


class ERFNet(nn.Module):
  """ERFNet with an MLC head; images in, (per-pixel outputs, MLC logits) out.

  Attributes:
    num_outputs: channels of the per-pixel output (K-1 mattes, or K logits).
    num_mlc_logits: outputs of the MLC head (K-1).
    width: multiplier of every channel count (16, 64, 128).
    dtype: compute dtype (parameters and BN statistics stay float32; the
      output convolution and the MLC head compute in float32).
    dropout: (rate of the 64-channel blocks, rate of the 128-channel
      blocks) in training; the paper's (0.03, 0.3).
    mlc_hidden: hidden units of the MLC head before the width multiplier.
    mlc_features: what the MLC head pools: "backbone" (the encoder output)
      or "decoder" (the last decoder features).
    axis_name: mapped axis over which BatchNorm averages batch statistics.
    bn_momentum: decay of the BatchNorm running averages.
    zero_output: start the output conv's kernel at zero (for alpha mattes;
      see the module docstring).
  """
  num_outputs: int
  num_mlc_logits: int
  width: float = 1.0
  dtype: Any = jnp.float32
  dropout: Sequence[float] = (0.03, 0.3)
  mlc_hidden: int = 256
  mlc_features: str = "backbone"
  axis_name: str | None = None
  bn_momentum: float = 0.9
  zero_output: bool = False

  @nn.compact
  def __call__(self, images, train: bool):
    """Forward pass.

    Args:
      images: float32 ``[B, H, W, 3]`` RGB in [0, 1] (normalised inside);
        any H, W.
      train: BatchNorm on batch statistics (``mutable=['batch_stats']``) and
        dropout on (``rngs={'dropout': key}``) when True.

    Returns:
      ``(outputs, mlc_logits)``: float32 ``[B, H, W, num_outputs]`` and float32
      ``[B, num_mlc_logits]``.
    """
    if self.mlc_features not in MLC_FEATURES:
      raise ValueError(f"mlc_features={self.mlc_features!r} is not one of "
                       f"{MLC_FEATURES}")
    height, width_px = images.shape[1], images.shape[2]
    scale = lambda c: resnet.scaled_channels(c, self.width)
    shared = dict(dtype=self.dtype, axis_name=self.axis_name,
                  bn_momentum=self.bn_momentum)
    drop_64, drop_128 = (float(r) for r in self.dropout)
    x = layers.pad_to_multiple(resnet.normalize_images(images),
                               INPUT_MULTIPLE).astype(self.dtype)
    encoder = ERFNetEncoder(scale(16), scale(64), scale(128), drop_64,
                            drop_128, name="backbone", **shared)
    features = encoder(x, train)
    x = Upsampler(scale(64), name="up_0", **shared)(features, train)
    for i in range(2):
      x = NonBottleneck1D(name=f"up_0_block_{i}", **shared)(x, train)
    x = Upsampler(scale(16), name="up_1", **shared)(x, train)
    for i in range(2):
      x = NonBottleneck1D(name=f"up_1_block_{i}", **shared)(x, train)
    mlc_input = x if self.mlc_features == "decoder" else features
    x = output_conv(self.num_outputs, self.zero_output)(
        x.astype(jnp.float32))
    outputs = layers.crop(x, height, width_px)
    mlc_logits = MLCHead(self.num_mlc_logits, scale(self.mlc_hidden),
                         name="mlc_head")(mlc_input)
    return outputs, mlc_logits


def output_conv(num_outputs: int, zero: bool) -> nn.ConvTranspose:
  """The output layer: 2x2 stride-2 transposed conv, float32; its kernel
  starts at zero with `zero` (flax's default initialiser otherwise)."""
  init = {"kernel_init": nn.initializers.zeros} if zero else {}
  return nn.ConvTranspose(num_outputs, (2, 2), strides=(2, 2),
                          padding="VALID", dtype=jnp.float32,
                          param_dtype=jnp.float32, name="output_conv", **init)


class ERFNetEncoder(nn.Module):
  """The ERFNet encoder (output stride 8); see the module docstring."""
  channels_16: int = 16
  channels_64: int = 64
  channels_128: int = 128
  dropout_64: float = 0.03
  dropout_128: float = 0.3
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """x: normalised ``[B, H, W, 3]`` (H, W multiples of 8) -> ``[B, H/8, W/8, C]``."""
    shared = dict(dtype=self.dtype, axis_name=self.axis_name,
                  bn_momentum=self.bn_momentum)
    x = Downsampler(self.channels_16, name="down_0", **shared)(x, train)
    x = Downsampler(self.channels_64, name="down_1", **shared)(x, train)
    for i in range(5):
      x = NonBottleneck1D(1, self.dropout_64, name=f"block_64_{i}",
                          **shared)(x, train)
    x = Downsampler(self.channels_128, name="down_2", **shared)(x, train)
    for i, dilation in enumerate(ENCODER_DILATIONS):
      x = NonBottleneck1D(dilation, self.dropout_128, name=f"block_128_{i}",
                          **shared)(x, train)
    return x
