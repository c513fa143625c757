"""Forward + backward throughput of the segmentation networks (images/s).

  python benchmarks/model_bench.py                      # DeepLabV3+ ResNet-101, batch 16, 321x321
  python benchmarks/model_bench.py --model all          # DeepLabV3+, U-Net and ERFNet
  python benchmarks/model_bench.py --model all --batch 2 --size 128 --steps 2  # a quick CPU figure

One step is a train-mode forward (BatchNorm on batch statistics, running stats
updated), a scalar loss on the per-pixel outputs and the MLC logits, and its
gradient with respect to all parameters, jitted; the optimiser update is not
included; ERFNet's dropout is on (a fixed key). The compute dtype defaults to bfloat16 on GPU/TPU and float32 on the
CPU (XLA's CPU bfloat16 convolutions are emulated and slower than float32).
Compilation is timed separately; images/s is over the timed steps only.
"""

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

from cfcls.models import MODEL_NAMES, create_model  # noqa: E402


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="deeplabv3plus",
                      choices=MODEL_NAMES + ("all",),
                      help="config.model.name, or all three one after the "
                      "other")
  parser.add_argument("--backbone", default="resnet101",
                      help="DeepLabV3+ only")
  parser.add_argument("--unet_base", type=int, default=64, help="U-Net only")
  parser.add_argument("--output_stride", type=int, default=16,
                      help="DeepLabV3+ only")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--size", type=int, default=321)
  parser.add_argument("--num_classes", type=int, default=21)
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"),
                      default="auto",
                      help="auto: bfloat16 on GPU/TPU, float32 on the CPU")
  parser.add_argument("--steps", type=int, default=3, help="timed steps")
  return parser.parse_args(argv)


def describe(name, args):
  if name == "deeplabv3plus":
    return f"DeepLabV3+ {args.backbone} OS{args.output_stride}"
  if name == "unet":
    return f"U-Net base {args.unet_base}"
  return "ERFNet"


def bench(name, args, dtype):
  """Compiles and times one network; returns images/s."""
  config = ml_collections.ConfigDict(dict(
      name=name, backbone=args.backbone, output_stride=args.output_stride,
      unet_base=args.unet_base, dtype=dtype, width=args.width))
  model = create_model(config, args.num_classes)
  images = jax.random.uniform(jax.random.key(1),
                              (args.batch, args.size, args.size, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(0, impl="unsafe_rbg"), images[:1])
  params, batch_stats = variables["params"], variables["batch_stats"]
  dropout_key = jax.random.key(2)

  def loss_fn(params, batch_stats, images):
    (outputs, mlc_logits), state = model.apply(
        {"params": params, "batch_stats": batch_stats}, images, train=True,
        mutable=["batch_stats"], rngs={"dropout": dropout_key})
    loss = jnp.mean(jnp.square(outputs)) + jnp.mean(jnp.square(mlc_logits))
    return loss, state["batch_stats"]

  @jax.jit
  def step(params, batch_stats, images):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, images)
    return loss, batch_stats, grads

  num_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
  print(f"model: {describe(name, args)} width {args.width}, "
        f"K={args.num_classes}, {num_params:,} parameters; batch "
        f"{args.batch} at {args.size}x{args.size}")
  start = time.perf_counter()
  compiled = step.lower(params, batch_stats, images).compile()
  print(f"  compile: {time.perf_counter() - start:.1f} s")
  out = compiled(params, batch_stats, images)  # warm-up
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(args.steps):
    out = compiled(params, out[1], images)
  jax.block_until_ready(out)
  elapsed = time.perf_counter() - start
  per_step = elapsed / args.steps
  print(f"  forward+backward: {per_step:.3f} s/step, "
        f"{args.batch / per_step:.2f} images/s ({args.steps} timed steps)")
  return args.batch / per_step


def main(argv=None):
  args = parse_args(argv)
  platform = jax.default_backend()
  dtype = args.dtype
  if dtype == "auto":
    dtype = "float32" if platform == "cpu" else "bfloat16"
  device = jax.devices()[0]
  print(f"device: {platform} ({device.device_kind}, {jax.device_count()} "
        f"device(s), {os.cpu_count()} CPU cores), compute dtype {dtype}")
  names = MODEL_NAMES if args.model == "all" else (args.model,)
  rates = {name: bench(name, args, dtype) for name in names}
  if len(rates) > 1:
    print("images/s: " + ", ".join(f"{describe(n, args)} {r:.2f}"
                                   for n, r in rates.items()))
  return rates


if __name__ == "__main__":
  main()
