"""Segmentation networks with the MLC head: DeepLabV3+ (ResNet), U-Net, ERFNet.

``create_model(config.model, num_classes)`` builds the network that
``config.model.name`` names; all three take the same arguments and return
the same ``(outputs, mlc_logits)``, so the trainer never asks which one it
has. ``cfcls.models.pretrained.init_from(path, variables)`` loads torchvision
ImageNet weights into DeepLabV3+'s backbone.
"""

import jax.numpy as jnp

from cfcls import config_schema
from cfcls.models.deeplab import MLC_FEATURES, DeepLabV3Plus
from cfcls.models.erfnet import ERFNet
from cfcls.models.resnet import RESNET_STAGES, ResNet, normalize_images
from cfcls.models.unet import UNet

MODEL_NAMES = ("deeplabv3plus", "unet", "erfnet")

BACKBONES = {f"resnet{depth}": depth for depth in RESNET_STAGES}
DEEPLAB_OUTPUT_STRIDES = (8, 16)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_CHANNELS = ("aspp_channels", "decoder_channels", "low_level_channels",
             "mlc_hidden")


def config_problems(model_config) -> list[str]:
  """What is wrong with a (complete) ``config.model``, one string each."""
  problems = []
  for name, allowed in (("name", MODEL_NAMES),
                        ("backbone", tuple(BACKBONES)),
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
  for name in _CHANNELS + ("unet_base",):
    if int(model_config[name]) < 1:
      problems.append(f"model.{name}={model_config[name]!r} must be >= 1")
  dropout = model_config["erfnet_dropout"]
  if (not isinstance(dropout, (tuple, list)) or len(dropout) != 2
      or not all(0 <= float(r) < 1 for r in dropout)):
    problems.append(f"model.erfnet_dropout={dropout!r} must be two rates in "
                    "[0, 1) (the 64- and the 128-channel blocks)")
  return problems


def create_model(model_config, num_classes: int, num_outputs: int | None = None,
                 axis_name: str | None = None):
  """The network of ``config.model`` with the MLC head.

  Args:
    model_config: ConfigDict (or mapping) with the fields of
      ``cfcls.config_schema.model_fields()``: ``name``: 'deeplabv3plus' |
      'unet' | 'erfnet'; shared: ``dtype``: 'float32' | 'bfloat16',
      ``width``, ``mlc_hidden``, ``mlc_features``: 'backbone' | 'decoder',
      ``bn_momentum``; DeepLabV3+: ``backbone``: 'resnet18' | 'resnet34' |
      'resnet50' | 'resnet101' | 'resnet152', ``output_stride``: 8 | 16,
      ``aspp_channels``, ``decoder_channels``, ``low_level_channels``;
      U-Net: ``unet_base``; ERFNet: ``erfnet_dropout``. Missing fields take
      the schema's defaults.
    num_classes: K, classes including background (>= 2).
    num_outputs: per-pixel output channels; default K-1 (one linear alpha
      matte per foreground class); pass K for softmax logits (pCE / CE).
      With K-1 mattes U-Net and ERFNet start their output conv at zero
      (``zero_output``: cfcls/models/erfnet.py says why).
    axis_name: mapped axis for cross-device BatchNorm statistics, or None.

  Returns:
    a ``DeepLabV3Plus``, ``UNet`` or ``ERFNet`` module; ``apply(variables,
    images [B,H,W,3] in [0,1], train)`` returns float32
    ``([B,H,W,num_outputs], [B,K-1])`` for any H, W. ERFNet has dropout:
    with ``train=True`` pass ``rngs={'dropout': key}``.

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
  shared = dict(
      num_outputs=num_outputs, num_mlc_logits=int(num_classes) - 1,
      width=float(config["width"]), dtype=DTYPES[config["dtype"]],
      axis_name=axis_name, mlc_hidden=int(config["mlc_hidden"]),
      mlc_features=config["mlc_features"],
      bn_momentum=float(config["bn_momentum"]))
  mattes = num_outputs == int(num_classes) - 1
  if config["name"] == "unet":
    return UNet(base=int(config["unet_base"]), zero_output=mattes, **shared)
  if config["name"] == "erfnet":
    return ERFNet(dropout=tuple(float(r) for r in config["erfnet_dropout"]),
                  zero_output=mattes, **shared)
  return DeepLabV3Plus(
      depth=BACKBONES[config["backbone"]],
      output_stride=int(config["output_stride"]),
      **shared, **{name: int(config[name]) for name in _CHANNELS
                   if name != "mlc_hidden"})


__all__ = ["BACKBONES", "DeepLabV3Plus", "ERFNet", "MODEL_NAMES", "ResNet",
           "UNet", "config_problems", "create_model", "normalize_images"]
