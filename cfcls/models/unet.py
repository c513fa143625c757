"""U-Net (Ronneberger et al. 2015) with BatchNorm and same-padding, and the MLC head.

As the CFM paper's code uses it on its inspection data (the common PyTorch
layout, e.g. milesial/Pytorch-UNet with transposed-conv upsampling):

* double conv ``c``: (3x3 conv without bias, padding 1, BN, ReLU) twice;
* ``backbone`` (the contracting path): double conv at ``base``, then four
  levels of 2x2 max pool + double conv at 2, 4, 8, 16 x ``base``; the last
  one is the bottleneck (output stride 16);
* expanding path: four levels of a 2x2 stride-2 transposed conv (with bias)
  halving the channels, concatenation with the skip of the same level (skip
  first), double conv;
* ``output_conv``: a 1x1 conv with bias to ``num_outputs`` (linear, float32);
  with ``zero_output`` (``create_model`` sets it for alpha-matte outputs) its
  kernel starts at zero, so the mattes start flat: measured on the demo with
  the end-to-end CFM loss (2000 steps, x 0.125) it gave 0.704 network only
  against 0.614 with flax's initialiser, and gained on the textured family
  too (docs/method.md, section 8);
* ``mlc_head`` (as in DeepLabV3+): global average pool of the bottleneck
  (``mlc_features='decoder'``: of the last decoder features), Dense + ReLU,
  Dense to K-1 logits.

At base 64 the network has 31,037,568 parameters plus ``65 * num_outputs``
for the output conv (tests/test_light_models.py derives the number). Every
channel count is ``base * 2^level`` times ``width``.

Any input size: the images are padded (edge) to a multiple of 16 and the
outputs cropped back. No dropout: deterministic given the BN mode.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cfcls.models import layers
from cfcls.models import resnet
from cfcls.models.deeplab import MLC_FEATURES, MLCHead

NUM_LEVELS = 4
INPUT_MULTIPLE = 2 ** NUM_LEVELS


class DoubleConv(nn.Module):
  """(3x3 conv, BN, ReLU) x 2; submodules ``conv_0``, ``bn_0``, ``conv_1``, ``bn_1``."""
  features: int
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """x: ``[B, H, W, C]`` -> ``[B, H, W, features]``."""
    for i in range(2):
      x = resnet.conv(self.features, 3, dtype=self.dtype, name=f"conv_{i}")(x)
      x = resnet.batch_norm(train, axis_name=self.axis_name,
                            momentum=self.bn_momentum, dtype=self.dtype,
                            name=f"bn_{i}")(x)
      x = nn.relu(x)
    return x


class UNetEncoder(nn.Module):
  """The contracting path; returns the skips (levels 0..3) and the bottleneck."""
  base: int = 64
  dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool):
    """x: normalised ``[B, H, W, 3]`` (H, W multiples of 16).

    Returns:
      ``(skips, bottleneck)``: ``skips[l]`` is ``[B, H/2^l, W/2^l,
      base*2^l]`` for l = 0..3, the bottleneck ``[B, H/16, W/16, 16*base]``.
    """
    shared = dict(dtype=self.dtype, axis_name=self.axis_name,
                  bn_momentum=self.bn_momentum)
    skips = []
    x = DoubleConv(self.base, name="down_0", **shared)(x, train)
    for level in range(1, NUM_LEVELS + 1):
      skips.append(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
      x = DoubleConv(self.base * 2 ** level, name=f"down_{level}",
                     **shared)(x, train)
    return skips, x


class UNet(nn.Module):
  """U-Net with an MLC head; images in, (per-pixel outputs, MLC logits) out.

  Attributes:
    num_outputs: channels of the per-pixel output (K-1 mattes, or K logits).
    num_mlc_logits: outputs of the MLC head (K-1).
    base: channels of the first level before the width multiplier.
    width: multiplier of every channel count.
    dtype: compute dtype (parameters and BN statistics stay float32; the
      output convolution and the MLC head compute in float32).
    mlc_hidden: hidden units of the MLC head before the width multiplier.
    mlc_features: what the MLC head pools: "backbone" (the bottleneck) or
      "decoder" (the last decoder features).
    axis_name: mapped axis over which BatchNorm averages batch statistics.
    bn_momentum: decay of the BatchNorm running averages.
    zero_output: start the output conv's kernel at zero (for alpha mattes;
      the module docstring says why).
  """
  num_outputs: int
  num_mlc_logits: int
  base: int = 64
  width: float = 1.0
  dtype: Any = jnp.float32
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
      train: BatchNorm uses and updates batch statistics when True (call
        ``apply`` with ``mutable=['batch_stats']`` then).

    Returns:
      ``(outputs, mlc_logits)``: float32 ``[B, H, W, num_outputs]`` and float32
      ``[B, num_mlc_logits]``.
    """
    if self.mlc_features not in MLC_FEATURES:
      raise ValueError(f"mlc_features={self.mlc_features!r} is not one of "
                       f"{MLC_FEATURES}")
    height, width_px = images.shape[1], images.shape[2]
    base = resnet.scaled_channels(self.base, self.width)
    shared = dict(dtype=self.dtype, axis_name=self.axis_name,
                  bn_momentum=self.bn_momentum)
    x = layers.pad_to_multiple(resnet.normalize_images(images),
                               INPUT_MULTIPLE).astype(self.dtype)
    skips, bottleneck = UNetEncoder(base, name="backbone", **shared)(x, train)
    x = bottleneck
    for level in reversed(range(NUM_LEVELS)):
      features = base * 2 ** level
      x = nn.ConvTranspose(features, (2, 2), strides=(2, 2), padding="VALID",
                           dtype=self.dtype, param_dtype=jnp.float32,
                           kernel_init=resnet.conv_kernel_init,
                           name=f"up_{level}_transpose")(x)
      x = jnp.concatenate([skips[level].astype(x.dtype), x], axis=-1)
      x = DoubleConv(features, name=f"up_{level}", **shared)(x, train)
    mlc_input = x if self.mlc_features == "decoder" else bottleneck
    init = {"kernel_init": nn.initializers.zeros} if self.zero_output else {}
    x = nn.Conv(self.num_outputs, (1, 1), dtype=jnp.float32,
                param_dtype=jnp.float32, name="output_conv", **init)(
                    x.astype(jnp.float32))
    outputs = layers.crop(x, height, width_px)
    mlc_logits = MLCHead(self.num_mlc_logits,
                         resnet.scaled_channels(self.mlc_hidden, self.width),
                         name="mlc_head")(mlc_input)
    return outputs, mlc_logits
