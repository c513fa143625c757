"""Segmentation networks: ResNet backbones, DeepLabV3+ with the MLC head.

``create_model(config.model, num_classes)`` builds the network from a config;
``cfcls.models.pretrained.init_from(path, variables)`` loads torchvision
ImageNet weights into its backbone.
"""

import jax.numpy as jnp

from cfcls.models.deeplab import MLC_FEATURES, DeepLabV3Plus
from cfcls.models.resnet import RESNET_STAGES, ResNet, normalize_images

BACKBONES = {f"resnet{depth}": depth for depth in RESNET_STAGES}
DEEPLAB_OUTPUT_STRIDES = (8, 16)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Fields of config.model that may be left out, with their defaults.
MODEL_DEFAULTS = dict(
    backbone="resnet101", output_stride=16, dtype="float32", width=1.0,
    aspp_channels=256, decoder_channels=256, low_level_channels=48,
    mlc_hidden=256, mlc_features="backbone", bn_momentum=0.9)


def create_model(model_config, num_classes: int, num_outputs: int | None = None,
                 axis_name: str | None = None) -> DeepLabV3Plus:
  """DeepLabV3+ with the MLC head from ``config.model``.

  Args:
    model_config: ConfigDict (or mapping) with ``backbone`` ('resnet18' |
      'resnet34' | 'resnet50' | 'resnet101' | 'resnet152'), ``output_stride``
      (8 | 16), ``dtype`` ('float32' | 'bfloat16'), ``width``,
      ``aspp_channels``, ``decoder_channels``, ``low_level_channels``,
      ``mlc_hidden`` and optionally ``mlc_features`` ('backbone' | 'decoder')
      and ``bn_momentum`` (flax decay, default 0.9);
      missing fields take the defaults in ``MODEL_DEFAULTS``.
    num_classes: K, classes including background (>= 2).
    num_outputs: per-pixel output channels; default K-1 (one linear alpha
      matte per foreground class); pass K for softmax logits (pCE / CE).
    axis_name: mapped axis for cross-device BatchNorm statistics, or None.

  Returns:
    a ``DeepLabV3Plus`` module; ``apply(variables, images [B,H,W,3] in [0,1],
    train)`` returns float32 ``([B,H,W,num_outputs], [B,K-1])``.
  """
  get = lambda name: (model_config.get(name, MODEL_DEFAULTS[name])
                      if hasattr(model_config, "get")
                      else getattr(model_config, name, MODEL_DEFAULTS[name]))
  backbone = get("backbone")
  if backbone not in BACKBONES:
    raise ValueError(f"model.backbone={backbone!r} is not supported; allowed: "
                     f"{tuple(BACKBONES)}")
  output_stride = get("output_stride")
  if output_stride not in DEEPLAB_OUTPUT_STRIDES:
    raise ValueError(f"model.output_stride={output_stride!r} is not supported; "
                     f"allowed: {DEEPLAB_OUTPUT_STRIDES}")
  dtype = get("dtype")
  if dtype not in DTYPES:
    raise ValueError(f"model.dtype={dtype!r} is not supported; allowed: "
                     f"{tuple(DTYPES)}")
  mlc_features = get("mlc_features")
  if mlc_features not in MLC_FEATURES:
    raise ValueError(f"model.mlc_features={mlc_features!r} is not supported; "
                     f"allowed: {MLC_FEATURES}")
  width = float(get("width"))
  if not width > 0:
    raise ValueError(f"model.width={width!r} must be positive")
  if int(num_classes) < 2:
    raise ValueError(f"num_classes={num_classes!r} must be >= 2 (background "
                     "plus at least one foreground class)")
  num_outputs = num_classes - 1 if num_outputs is None else int(num_outputs)
  if num_outputs < 1:
    raise ValueError(f"num_outputs={num_outputs!r} must be >= 1")
  channels = {}
  for name in ("aspp_channels", "decoder_channels", "low_level_channels",
               "mlc_hidden"):
    channels[name] = int(get(name))
    if channels[name] < 1:
      raise ValueError(f"model.{name}={channels[name]!r} must be >= 1")
  return DeepLabV3Plus(
      num_outputs=num_outputs, num_mlc_logits=int(num_classes) - 1,
      depth=BACKBONES[backbone], output_stride=int(output_stride), width=width,
      dtype=DTYPES[dtype], axis_name=axis_name,
      mlc_features=mlc_features,
      bn_momentum=float(get("bn_momentum")), **channels)


__all__ = ["BACKBONES", "DeepLabV3Plus", "MODEL_DEFAULTS", "ResNet",
           "create_model", "normalize_images"]
