"""Segmentation networks: ResNet backbones, DeepLabV3+ with the MLC head.

``create_model(config.model, num_classes)`` builds the network from a config;
``cfcls.models.pretrained.init_from(path, variables)`` loads torchvision
ImageNet weights into its backbone.
"""

import jax.numpy as jnp

from cfcls import config_schema
from cfcls.models.deeplab import MLC_FEATURES, DeepLabV3Plus
from cfcls.models.resnet import RESNET_STAGES, ResNet, normalize_images

BACKBONES = {f"resnet{depth}": depth for depth in RESNET_STAGES}
DEEPLAB_OUTPUT_STRIDES = (8, 16)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_CHANNELS = ("aspp_channels", "decoder_channels", "low_level_channels",
             "mlc_hidden")


def config_problems(model_config) -> list[str]:
  """What is wrong with a (complete) ``config.model``, one string each."""
  problems = []
  for name, allowed in (("backbone", tuple(BACKBONES)),
                        ("output_stride", DEEPLAB_OUTPUT_STRIDES),
                        ("dtype", tuple(DTYPES)),
                        ("mlc_features", MLC_FEATURES)):
    value = model_config[name]
    if value not in allowed:
      problems.append(f"model.{name}={value!r} is not supported; allowed: "
                      f"{allowed}")
  if not float(model_config["width"]) > 0:
    problems.append(f"model.width={model_config['width']!r} must be "
                    "positive")
  for name in _CHANNELS:
    if int(model_config[name]) < 1:
      problems.append(f"model.{name}={model_config[name]!r} must be >= 1")
  return problems


def create_model(model_config, num_classes: int, num_outputs: int | None = None,
                 axis_name: str | None = None) -> DeepLabV3Plus:
  """DeepLabV3+ with the MLC head from ``config.model``.

  Args:
    model_config: ConfigDict (or mapping) with the fields of
      ``cfcls.config_schema.get_model_config()`` (``backbone``: 'resnet18' |
      'resnet34' | 'resnet50' | 'resnet101' | 'resnet152', ``output_stride``:
      8 | 16, ``dtype``: 'float32' | 'bfloat16', ``width``,
      ``aspp_channels``, ``decoder_channels``, ``low_level_channels``,
      ``mlc_hidden``, ``mlc_features``: 'backbone' | 'decoder',
      ``bn_momentum``); missing fields take the schema's defaults.
    num_classes: K, classes including background (>= 2).
    num_outputs: per-pixel output channels; default K-1 (one linear alpha
      matte per foreground class); pass K for softmax logits (pCE / CE).
    axis_name: mapped axis for cross-device BatchNorm statistics, or None.

  Returns:
    a ``DeepLabV3Plus`` module; ``apply(variables, images [B,H,W,3] in [0,1],
    train)`` returns float32 ``([B,H,W,num_outputs], [B,K-1])``.

  Raises:
    ValueError: naming the first bad field.
  """
  config = config_schema.model_fields()
  config.update(model_config.items() if hasattr(model_config, "items")
                else vars(model_config).items())
  problems = config_problems(config)
  if problems:
    raise ValueError(problems[0])
  if int(num_classes) < 2:
    raise ValueError(f"num_classes={num_classes!r} must be >= 2 (background "
                     "plus at least one foreground class)")
  num_outputs = num_classes - 1 if num_outputs is None else int(num_outputs)
  if num_outputs < 1:
    raise ValueError(f"num_outputs={num_outputs!r} must be >= 1")
  return DeepLabV3Plus(
      num_outputs=num_outputs, num_mlc_logits=int(num_classes) - 1,
      depth=BACKBONES[config["backbone"]],
      output_stride=int(config["output_stride"]),
      width=float(config["width"]),
      dtype=DTYPES[config["dtype"]], axis_name=axis_name,
      mlc_features=config["mlc_features"],
      bn_momentum=float(config["bn_momentum"]),
      **{name: int(config[name]) for name in _CHANNELS})


__all__ = ["BACKBONES", "DeepLabV3Plus", "ResNet", "config_problems",
           "create_model", "normalize_images"]
