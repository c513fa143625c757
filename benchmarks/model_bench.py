"""Forward + backward throughput of DeepLabV3+ (images/s).

  python benchmarks/model_bench.py                      # ResNet-101, batch 16, 321x321
  python benchmarks/model_bench.py --batch 2 --steps 2  # a quick CPU figure

One step is a train-mode forward (BatchNorm on batch statistics, running stats
updated), a scalar loss on the per-pixel outputs and the MLC logits, and its
gradient with respect to all parameters, jitted; the optimiser update is not
included. The compute dtype defaults to bfloat16 on GPU/TPU and float32 on the
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

from cfcls.models import create_model  # noqa: E402


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--backbone", default="resnet101")
  parser.add_argument("--output_stride", type=int, default=16)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--size", type=int, default=321)
  parser.add_argument("--num_classes", type=int, default=21)
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"),
                      default="auto",
                      help="auto: bfloat16 on GPU/TPU, float32 on the CPU")
  parser.add_argument("--steps", type=int, default=3, help="timed steps")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  platform = jax.default_backend()
  dtype = args.dtype
  if dtype == "auto":
    dtype = "float32" if platform == "cpu" else "bfloat16"
  config = ml_collections.ConfigDict(dict(
      backbone=args.backbone, output_stride=args.output_stride, dtype=dtype,
      width=args.width))
  model = create_model(config, args.num_classes)
  images = jax.random.uniform(jax.random.key(1),
                              (args.batch, args.size, args.size, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(0, impl="unsafe_rbg"), images[:1])
  params, batch_stats = variables["params"], variables["batch_stats"]

  def loss_fn(params, batch_stats, images):
    (outputs, mlc_logits), state = model.apply(
        {"params": params, "batch_stats": batch_stats}, images, train=True,
        mutable=["batch_stats"])
    loss = jnp.mean(jnp.square(outputs)) + jnp.mean(jnp.square(mlc_logits))
    return loss, state["batch_stats"]

  @jax.jit
  def step(params, batch_stats, images):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, images)
    return loss, batch_stats, grads

  device = jax.devices()[0]
  print(f"device: {platform} ({device.device_kind}, {jax.device_count()} "
        f"device(s), {os.cpu_count()} CPU cores), compute dtype {dtype}")
  print(f"model: DeepLabV3+ {args.backbone} OS{args.output_stride} width "
        f"{args.width}, K={args.num_classes}; batch {args.batch} at "
        f"{args.size}x{args.size}")
  start = time.perf_counter()
  compiled = step.lower(params, batch_stats, images).compile()
  print(f"compile: {time.perf_counter() - start:.1f} s")
  out = compiled(params, batch_stats, images)  # warm-up
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(args.steps):
    out = compiled(params, out[1], images)
  jax.block_until_ready(out)
  elapsed = time.perf_counter() - start
  per_step = elapsed / args.steps
  print(f"forward+backward: {per_step:.3f} s/step, "
        f"{args.batch / per_step:.2f} images/s ({args.steps} timed steps)")


if __name__ == "__main__":
  main()
