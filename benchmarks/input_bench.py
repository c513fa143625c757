"""Training input pipeline throughput (images/s, and per CPU core).

  python benchmarks/input_bench.py [--num_images 64] [--batch_size 10]
      [--crop_size 321] [--steps 40] [--width 500 --height 375]

Writes a scribble_folder dataset of VOC-like photos (500x375 JPEGs with
smooth colour fields, texture and a few objects; masks and synthesised
scribble PNGs) to a temporary folder, prepares it, then times
cfcls.data.pipeline.create_train_iterator (decode, random scale 0.5-2.0,
321x321 crop with padding, flip, batching) twice: with tf.data's default
thread pool (all cores) and with a private thread pool of one thread (the
per-core figure). Target: >= 100 images/s per core.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import cv2  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from cfcls.data import scribbles as scribbles_lib  # noqa: E402


def make_photo(rng, h, w):
  """A photo-like image: smooth colour fields, texture, a few objects."""
  base = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (w, h),
                    interpolation=cv2.INTER_CUBIC)
  tex = cv2.GaussianBlur(rng.normal(0, 0.08, (h, w, 3)).astype(np.float32),
                         (0, 0), 1.2)
  img = base + tex
  mask = np.zeros((h, w), np.uint8)
  for _ in range(int(rng.integers(1, 4))):
    cls = int(rng.integers(1, 21))
    cx, cy = rng.integers(0, w), rng.integers(0, h)
    ax, ay = rng.integers(30, 140, size=2)
    obj = np.zeros((h, w), np.uint8)
    cv2.ellipse(obj, (int(cx), int(cy)), (int(ax), int(ay)),
                float(rng.uniform(0, 180)), 0, 360, 1, -1)
    img[obj > 0] = rng.random(3) * 0.8 + tex[obj > 0]
    mask[obj > 0] = cls
  img = np.clip(img * 255, 0, 255).astype(np.uint8)
  return img, mask


def make_folder(root, n, h, w, seed=0):
  for d in ('images', 'scribbles', 'masks'):
    os.makedirs(os.path.join(root, d), exist_ok=True)
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('\n'.join(['background'] + [f'class{i}' for i in range(1, 21)]))
  rng = np.random.default_rng(seed)
  for i in range(n):
    img, mask = make_photo(rng, h, w)
    name = f'{i:05d}'
    cv2.imwrite(os.path.join(root, 'images', name + '.jpg'), img,
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    cv2.imwrite(os.path.join(root, 'masks', name + '.png'), mask)
    cv2.imwrite(os.path.join(root, 'scribbles', name + '.png'),
                scribbles_lib.synthesize_scribbles(mask))


def time_pipeline(cfg, batch_size, steps, threads=None):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  ds = pipeline.create_train_dataset(cfg, batch_size, seed=0,
                                     process_index=0, process_count=1)
  if threads:
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    ds = ds.with_options(options)
  it = ds.as_numpy_iterator()
  for _ in range(5):  # warm up: thread pools, autotuning, file cache
    next(it)
  t = time.perf_counter()
  for _ in range(steps):
    b = next(it)
  dt = time.perf_counter() - t
  assert b['image'].shape[0] == batch_size
  return steps * batch_size / dt


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--num_images', type=int, default=64)
  p.add_argument('--batch_size', type=int, default=10)
  p.add_argument('--crop_size', type=int, default=321)
  p.add_argument('--steps', type=int, default=40)
  p.add_argument('--height', type=int, default=375)
  p.add_argument('--width', type=int, default=500)
  a = p.parse_args(argv)
  cores = len(os.sched_getaffinity(0)) if hasattr(
      os, 'sched_getaffinity') else os.cpu_count()
  with tempfile.TemporaryDirectory() as tmp:
    root = os.path.join(tmp, 'voc_like')
    t = time.perf_counter()
    make_folder(root, a.num_images, a.height, a.width)
    print(f'wrote {a.num_images} {a.width}x{a.height} JPEGs + scribble/mask '
          f'PNGs in {time.perf_counter() - t:.1f} s')
    cfg = ml_collections.ConfigDict(dict(
        name='scribble_folder', manual_dir=root,
        data_dir=os.path.join(tmp, 'tfds'), crop_size=a.crop_size,
        scale_range=(0.5, 2.0), flip=True, annotation='scribbles',
        shuffle_buffer=1000, skip_corrupt=False))
    from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
    t = time.perf_counter()
    pipeline.dataset_info(cfg)
    print(f'prepared in {time.perf_counter() - t:.1f} s')
    one = time_pipeline(cfg, a.batch_size, a.steps, threads=1)
    full = time_pipeline(cfg, a.batch_size, a.steps)
  load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
  print(f'crop {a.crop_size}x{a.crop_size}, batch {a.batch_size}, '
        f'{cores} CPU cores visible, load average {load:.1f} (other work on '
        'the machine lowers these figures)')
  print(f'one thread : {one:7.1f} images/s  (per core: {one:.1f})')
  print(f'all cores  : {full:7.1f} images/s  ({full / cores:.1f} per core)')
  print(f'target >= 100 images/s per core: '
        f'{"met" if one >= 100 else "NOT met"} (one-thread figure)')


if __name__ == '__main__':
  main()
