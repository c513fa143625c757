"""What all scribble builders share: features, file checks, example assembly.

Every builder yields the same features:
  image      uint8 [H, W, 3] (stored as the original JPEG/PNG bytes or PNG)
  scribbles  uint8 [H, W] class ids, 255 = unlabelled
  dots       uint8 [H, W] a subset of the scribbles
  mask       uint8 [H, W] ground truth, 255 = void (all 255 if unknown)
  presence   bool [K-1]: foreground classes present in the scribbles
  file_name  text, height / width int32
(label maps are zlib-compressed raw tensors: they decode about twice as fast
as PNGs, which matters for the input pipeline). The class names live in
`info.metadata['class_names']` (line i = class id i, 0 = background).

Bad input raises BadInputError (a ValueError) naming the file and the problem;
with skip_corrupt the builder logs the same message and leaves the example out.
"""
from __future__ import annotations

import dataclasses
import os
import zlib

from absl import logging
import cv2
import numpy as np
from PIL import Image as PILImage
import tensorflow as tf
import tensorflow_datasets as tfds

from cfcls.data import scribbles as scribbles_lib

IGNORE = scribbles_lib.IGNORE
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


class BadInputError(ValueError):
  """An input file is missing, corrupt or inconsistent (message names it)."""


@dataclasses.dataclass(eq=False)
class ScribbleConfig(tfds.core.BuilderConfig):
  """Options every scribble builder understands.

  skip_corrupt: log and leave out a bad example instead of failing.
  scribble_width: stroke width (px) for XML strokes and synthesised scribbles.
  dots_per_stroke: dots sampled on each stroke.
  """
  skip_corrupt: bool = False
  scribble_width: int = 3
  dots_per_stroke: int = 3


def features(num_classes: int) -> tfds.features.FeaturesDict:
  label = lambda: tfds.features.Tensor(shape=(None, None), dtype=np.uint8,
                                       encoding='zlib')
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3)),
      'scribbles': label(),
      'dots': label(),
      'mask': label(),
      'presence': tfds.features.Tensor(shape=(num_classes - 1,),
                                       dtype=np.bool_),
      'file_name': tfds.features.Text(),
      'height': tfds.features.Scalar(dtype=np.int32),
      'width': tfds.features.Scalar(dtype=np.int32),
  })


def dataset_info(builder, description: str, class_names, homepage=None):
  """DatasetInfo with the shared features and class names in metadata."""
  class_names = list(class_names)
  return tfds.core.DatasetInfo(
      builder=builder,
      description=description,
      features=features(len(class_names)),
      homepage=homepage,
      metadata=tfds.core.MetadataDict(class_names=class_names,
                                      num_classes=len(class_names)),
  )


def require_dir(path, what: str) -> str:
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise BadInputError(f'{path}: missing folder ({what})')
  return path


def read_image_bytes(path) -> tuple[bytes, tuple[int, int]]:
  """Reads and validates an RGB/grey image file: (bytes, (H, W)).

  Decodes with the same TF decoder the pipeline uses, so an image that passes
  here decodes at training time.
  """
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise BadInputError(f'{path}: cannot read image ({e})') from e
  try:
    img = tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ''
    raise BadInputError(
        f'{path}: corrupt or undecodable image ({msg})') from e
  h, w = int(img.shape[0]), int(img.shape[1])
  if h == 0 or w == 0:
    raise BadInputError(f'{path}: empty image')
  return data, (h, w)


def read_label_png(path) -> np.ndarray:
  """Reads a class-id map (grey or palette PNG; palette index = id)."""
  path = os.fspath(path)
  try:
    with PILImage.open(path) as im:
      im.load()
      if im.mode in ('P', 'L', 'I', 'I;16'):
        arr = np.asarray(im)
      elif im.mode in ('RGB', 'RGBA'):
        arr = np.asarray(im)[..., :3]
        if not (np.all(arr[..., 0] == arr[..., 1]) and
                np.all(arr[..., 0] == arr[..., 2])):
          raise BadInputError(
              f'{path}: colour label map (mode {im.mode}); expected a grey or'
              ' palette PNG whose values are class ids')
        arr = arr[..., 0]
      else:
        raise BadInputError(f'{path}: unsupported label PNG mode {im.mode}')
  except BadInputError:
    raise
  except (OSError, SyntaxError, ValueError) as e:
    raise BadInputError(f'{path}: corrupt or unreadable label PNG ({e})') from e
  if arr.ndim != 2:
    raise BadInputError(f'{path}: label map has shape {arr.shape}, not [H, W]')
  return arr


def check_label_map(arr: np.ndarray, num_classes: int, shape, path,
                    image_path) -> np.ndarray:
  """Checks size and ids (0..K-1 or 255) of a label map; returns uint8."""
  if tuple(arr.shape) != tuple(shape):
    raise BadInputError(
        f'{os.fspath(path)} is {arr.shape[1]}x{arr.shape[0]} but '
        f'{os.fspath(image_path)} is {shape[1]}x{shape[0]}')
  bad = np.unique(arr[(arr >= num_classes) & (arr != IGNORE)])
  if bad.size:
    raise BadInputError(
        f'{os.fspath(path)}: unknown class ids {bad.tolist()[:10]} '
        f'(num_classes={num_classes}, 255 = unlabelled)')
  return arr.astype(np.uint8)


def encode_png(arr: np.ndarray) -> bytes:
  ok, buf = cv2.imencode('.png', np.asarray(arr, np.uint8))
  if not ok:
    raise RuntimeError('PNG encoding failed')
  return buf.tobytes()


def make_example(*, image_bytes: bytes, shape, scribbles: np.ndarray,
                 mask: np.ndarray | None, num_classes: int, file_name: str,
                 dots_per_stroke: int = 3, dots: np.ndarray | None = None
                 ) -> dict:
  """Assembles one example; dots are sampled from the scribbles if not given.

  The dot sampling is seeded by a hash of file_name, so a rebuild gives the
  same dots.
  """
  h, w = shape
  if mask is None:
    mask = np.full((h, w), IGNORE, np.uint8)
  if dots is None:
    rng = np.random.default_rng(zlib.crc32(file_name.encode()))
    dots = scribbles_lib.dots_from_scribbles(
        scribbles, rng, dots_per_stroke=dots_per_stroke)
  return {
      'image': image_bytes,
      'scribbles': np.ascontiguousarray(scribbles, np.uint8),
      'dots': np.ascontiguousarray(dots, np.uint8),
      'mask': np.ascontiguousarray(mask, np.uint8),
      'presence': scribbles_lib.class_presence(scribbles, num_classes),
      'file_name': file_name,
      'height': np.int32(h),
      'width': np.int32(w),
  }


def guarded(items, build_fn, skip_corrupt: bool, split_desc: str):
  """Yields (key, example) for each item, skipping bad ones if asked.

  build_fn(item) -> (key, example), or None to leave the item out (a filter,
  not an error), may raise BadInputError. Raises BadInputError if the split
  ends up empty.
  """
  n = 0
  for item in items:
    try:
      result = build_fn(item)
    except BadInputError as e:
      if not skip_corrupt:
        raise
      logging.warning('Skipping bad example: %s', e)
      continue
    if result is None:
      continue
    key, example = result
    n += 1
    yield key, example
  if n == 0:
    raise BadInputError(f'{split_desc}: empty split (no usable examples)')


def read_split_list(path) -> list[str]:
  """Names listed one per line in a split file (blank lines ignored)."""
  with open(os.fspath(path)) as f:
    names = [line.strip() for line in f]
  return [n for n in names if n]


def make_builder(builder_cls, config, data_dir):
  """Instantiates builder_cls with a config object or name.

  A config object named like one of the class's BUILDER_CONFIGS is passed by
  name (tfds refuses a second object of the same name); it must then equal it.
  """
  if isinstance(config, tfds.core.BuilderConfig):
    known = builder_cls.builder_configs.get(config.name)
    if known is not None:
      if dataclasses.asdict(known) != dataclasses.asdict(config):
        raise ValueError(f'{builder_cls.__name__}: config {config.name!r} '
                         'differs from the predefined config of that name')
      config = config.name
  return builder_cls(config=config, data_dir=data_dir)
