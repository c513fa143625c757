"""Convert a torchvision ResNet checkpoint into cfcls's Flax layout (.npz).

  python data_prep/convert_resnet_weights.py \
      --input resnet101.pth --output resnet101.npz --depth 101

The input is a torchvision state dict: .pth/.pt (needs torch; read with
weights_only=True) or .npz with torchvision's key names. It is checked against
the Flax ResNet of that depth (every backbone variable filled, shapes equal,
only ``fc.*`` left over) and written in the converted format of
``cfcls.models.pretrained``: an uncompressed .npz with keys
``params/<module path>/<name>`` and ``batch_stats/<module path>/<name>``
relative to the ResNet (conv kernels HWIO, e.g. ``params/layer1_0/conv1/kernel``,
``batch_stats/bn1/mean``) and ``__format__ = 'cfcls-resnet-v1'``. Training
loads either file with ``config.init_from`` (``cfcls.models.pretrained.init_from``).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from cfcls.models import pretrained  # noqa: E402
from cfcls.models.resnet import RESNET_STAGES, ResNet  # noqa: E402


def convert(input_path: str, output_path: str, depth: int):
  """Converts and writes; returns the ``ImportReport``."""
  if depth not in RESNET_STAGES:
    raise ValueError(f"--depth={depth} is not supported; allowed: "
                     f"{tuple(RESNET_STAGES)}")
  model = ResNet(depth=depth, output_stride=32)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32), train=False))
  variables, report = pretrained.load_torchvision_resnet(
      input_path, shapes, prefix=(), strict=True)
  arrays = pretrained.converted_arrays(variables, prefix=())
  with open(output_path, "wb") as f:
    np.savez(f, **arrays)
  return report


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--input", required=True,
                      help="torchvision state dict (.pth/.pt/.npz)")
  parser.add_argument("--output", required=True, help="converted .npz to write")
  parser.add_argument("--depth", type=int, required=True,
                      help=f"ResNet depth, one of {tuple(RESNET_STAGES)}")
  args = parser.parse_args(argv)
  try:
    report = convert(args.input, args.output, args.depth)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  print(report.summary())
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
