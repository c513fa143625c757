"""tf.data input pipeline: training and evaluation iterators of numpy batches.

Training (`create_train_iterator`): batch s is a pure function of
(seed, s, host). The host's examples are read undecoded (tfds SkipDecoding),
shuffled per epoch with seed (seed, host, epoch), numbered with `enumerate`,
and only then decoded and augmented with stateless random ops seeded by
(seed, host, example number). Resuming at start_step=k skips whole epochs
without reading them and the rest of one epoch before decoding, so it is cheap
and gives exactly the batches an uninterrupted run would have seen.

Augmentation, as one `tf.image.crop_and_resize` of the image and one of the
stacked label maps (cost set by the crop size, not the image size): random
scale in scale_range (bilinear for the image, nearest for label maps), random
crop of crop_size whose window may stick out of the scaled image (the image
is padded with PAD_COLOUR (black), label maps with 255, valid = 0
there; samples beyond the outermost pixel centres count as outside, so an
upscaled crop loses at most one output row/column at an image edge), random
horizontal flip. presence[c-1] = 1 iff class c has an annotated pixel in the
crop.

Evaluation (`create_eval_iterator`): every image whole, at the top-left of an
eval_pad_size canvas (image padded with PAD_COLOUR, label maps with 255,
valid = 0), in a fixed order; the last batch is filled with padding examples
(example_mask 0). Every host gets the same number of batches.

Bad data: preparation checks every file (see cfcls.data.builders.common). At
training time an example whose decoding still fails (e.g. data changed after
preparation) is, with data_config.skip_corrupt, dropped (tf.data
`ignore_errors`; it shifts the later examples of that run by one) and logged
with its file name; without it a BadInputError names the file. At eval time
skip_corrupt replaces it by a padding example (tf.data's own warning, no
file name), so the batches keep their shape and count.

Builders are prepared on first use (cfcls.data.datasets).
"""
from __future__ import annotations

import functools
import inspect
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cfcls import config_schema
from cfcls import labels as labels_lib
from cfcls.data import datasets
from cfcls.data import read_errors
from cfcls.data import targets as targets_lib
# The dataset of a data config (re-exported: the pipeline's entry points).
from cfcls.data.datasets import DatasetInfo, dataset_info, get_builder  # noqa: F401

# Image padding colour (train crops and eval canvases). Black: padding with
# the mean colour costs a select over every crop pixel (~15 % of the
# per-image time); the `valid` mask tells the loss where padding is anyway.
PAD_COLOUR = (0, 0, 0)
_LABEL_KEYS = ('scribbles', 'dots', 'mask')
_INT64_MAX = np.iinfo(np.int64).max


def _process(process_index, process_count):
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else (
        process_index)
    process_count = jax.process_count() if process_count is None else (
        process_count)
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in '
                     f'[0, {process_count})')
  return int(process_index), int(process_count)


def _per_host_batch(global_batch_size, process_count):
  if global_batch_size % process_count:
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible'
                     f' by process_count {process_count}')
  return global_batch_size // process_count


def _presence(ann, num_classes):
  """float32 [K-1]: 1 where class c (1..K-1) has a pixel in ann (int32)."""
  counts = tf.math.bincount(tf.reshape(ann, [-1]), minlength=256,
                            maxlength=256)
  return tf.cast(counts[1:num_classes] > 0, tf.float32)


def _host_split(builder, split, process_index, process_count):
  """(subsplit for this host, its size, the largest host's size)."""
  try:  # also accepts tfds slicing syntax: 'train[:80%]', 'train+validation'
    total = builder.info.splits[split].num_examples
  except (KeyError, ValueError) as e:
    raise ValueError(f'{builder.name}: no split {split!r}; available: '
                     f'{list(builder.info.splits.keys())}') from e
  subsplits = tfds.even_splits(split, n=process_count)
  sizes = [builder.info.splits[s].num_examples for s in subsplits]
  if min(sizes) == 0:
    raise ValueError(f'{builder.name}: split {split!r} has {total} examples, '
                     f'too few for {process_count} hosts')
  return subsplits[process_index], sizes[process_index], max(sizes)


def _read(builder, split):
  """Undecoded examples of split in a fixed order."""
  decoders = {k: tfds.decode.SkipDecoding() for k in ('image',) + _LABEL_KEYS}
  read_config = tfds.ReadConfig(try_autocache=False, add_tfds_id=False)
  return builder.as_dataset(split=split, shuffle_files=False,
                            decoders=decoders, read_config=read_config)


def _options():
  options = tf.data.Options()
  options.deterministic = True
  return options


def _decoder(builder):
  """decode(example, key): decodes a feature read with SkipDecoding."""
  feats = builder.info.features
  for feature in feats.values():
    _fill_dtype(feature)

  def decode(example, key):
    value = feats[key].decode_example(example[key])
    if key == 'image':
      value.set_shape([None, None, 3])
    return value

  return decode


def _fill_dtype(feature):
  """Fills a feature's deprecated `dtype` with its value (tf_dtype).

  tfds 4.9's own Tensor.decode_example reads `self.dtype`, a
  functools.cached_property that logs "`FeatureConnector.dtype` is
  deprecated" when first read, for every builder made (up to 10 lines a
  process). Filling the cache first gives decode_example the same value and
  drops the warning; a tfds whose `dtype` is no cached property is left as is.
  """
  if isinstance(inspect.getattr_static(type(feature), 'dtype', None),
                functools.cached_property):
    feature.__dict__.setdefault('dtype', feature.tf_dtype)


def _augment(example, decode, seed, crop_size, scale_range, flip, annotation,
             num_classes, target=None):
  """Decode + random scale/crop/flip of one example; seed: int64 [2].

  target: optional uint8 `[H, W, C]` closed-form targets of the example
  (cfcls.data.targets), cropped like the image (bilinear, 0 outside) into
  'targets' float32 `[h, w, K-1]` in [0, 1], and with C = 2 (K-1) the check
  mattes into 'check_targets' (same shape).
  """
  image = decode(example, 'image')
  ann = decode(example, annotation)
  labels = tf.stack([ann, decode(example, 'mask'), tf.zeros_like(ann)],
                    axis=-1)
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  ch, cw = crop_size
  s_scale, s_y, s_x, s_flip = tf.unstack(
      tf.random.experimental.stateless_split(seed, 4))
  scale = tf.random.stateless_uniform([], s_scale, scale_range[0],
                                      scale_range[1])
  sh, sw = h * scale, w * scale
  # Top-left of the crop window in scaled-image pixels; negative = padding.
  y0 = tf.random.stateless_uniform([], s_y, tf.minimum(0.0, sh - ch),
                                   tf.maximum(0.0, sh - ch))
  x0 = tf.random.stateless_uniform([], s_x, tf.minimum(0.0, sw - cw),
                                   tf.maximum(0.0, sw - cw))
  y0, x0 = tf.floor(y0), tf.floor(x0)
  # Output pixel i samples source row (y0 + i + 0.5) / scale - 0.5 (pixel
  # centres, like tf.image.resize); in crop_and_resize terms row
  # y1 * (h-1) + i * (y2-y1) * (h-1) / (ch-1). Samples outside [0, h-1]
  # (beyond the outermost pixel centres) are padding: valid = 0 there. The
  # third label channel is 0 in the image and 255 (extrapolated) outside.
  hm1, wm1 = tf.maximum(h - 1, 1.0), tf.maximum(w - 1, 1.0)
  y1 = ((y0 + 0.5) / scale - 0.5) / hm1
  y2 = y1 + (ch - 1) / scale / hm1
  x1 = ((x0 + 0.5) / scale - 0.5) / wm1
  x2 = x1 + (cw - 1) / scale / wm1
  if flip:
    do_flip = tf.random.stateless_uniform([], s_flip) < 0.5
    x1, x2 = tf.where(do_flip, x2, x1), tf.where(do_flip, x1, x2)
  # Pull the box towards the image centre by a relative 1e-5 so that float32
  # rounding never pushes a sample on the image edge outside; this moves
  # samples by < 0.01 px, so at scale 1 the crop is exact.
  boxes = 0.5 + (tf.stack([y1, x1, y2, x2])[None] - 0.5) * (1 - 1e-5)
  img = tf.image.crop_and_resize(image[None], boxes, [0], [ch, cw],
                                 method='bilinear', extrapolation_value=0.0)[0]
  lab = tf.image.crop_and_resize(
      labels[None], boxes, [0], [ch, cw], method='nearest',
      extrapolation_value=float(labels_lib.IGNORE))[0]
  lab = tf.cast(lab, tf.int32)
  ann, mask, inside = lab[..., 0], lab[..., 1], tf.equal(lab[..., 2], 0)
  if any(PAD_COLOUR):
    img = tf.where(inside[..., None], img,
                   tf.constant(PAD_COLOUR, tf.float32))
  img = tf.cast(img + 0.5, tf.uint8)  # bilinear of uint8 stays in [0, 255]
  out = {'image': img, 'scribbles': ann, 'mask': mask,
         'valid': tf.cast(inside, tf.float32),
         'presence': _presence(ann, num_classes)}
  if target is not None:
    cropped = tf.image.crop_and_resize(
        target[None], boxes, [0], [ch, cw], method='bilinear',
        extrapolation_value=0.0)[0] / targets_lib.QUANT
    out['targets'], check = targets_lib.split_checks(cropped, num_classes)
    if check is not None:
      out['check_targets'] = check
  return out


def _train_dataset(data_config, global_batch_size, *, seed, start_step=0,
                   process_index=None, process_count=None):
  """(batched dataset with 'index' int64 [b], FaultNamer) for this host."""
  data_config = datasets.complete_config(data_config)
  process_index, process_count = _process(process_index, process_count)
  batch = _per_host_batch(global_batch_size, process_count)
  annotation = data_config.annotation
  builder = get_builder(data_config)
  num_classes = len(builder.info.metadata['class_names'])
  split_name = data_config.train_split
  split, n, _ = _host_split(builder, split_name, process_index, process_count)
  base = _read(builder, split)
  buffer = int(min(data_config.shuffle_buffer, n))
  seed = int(seed)
  host_seed = seed * 1_000_003 + process_index

  first = start_step * batch
  first_epoch = first // n

  def epoch(e):
    return base.shuffle(buffer, seed=host_seed * 7919 + e,
                        reshuffle_each_iteration=False)

  ds = tf.data.Dataset.range(first_epoch, _INT64_MAX).flat_map(epoch)
  ds = ds.enumerate(start=first_epoch * n).skip(first - first_epoch * n)
  crop = config_schema.pair(data_config.crop_size)
  scale_range = tuple(float(v) for v in data_config.scale_range)
  flip = bool(data_config.flip)

  decode = _decoder(builder)
  lookup = None
  if data_config.targets.enabled:
    lookup = targets_lib.Lookup(targets_lib.prepare(
        builder, data_config, split_name, num_classes))

  def fn(index, example):
    ex_seed = tf.stack([tf.constant(host_seed, tf.int64), index])
    target = lookup.tf_lookup(example['file_name']) if lookup else None
    out = _augment(example, decode, ex_seed, crop, scale_range, flip,
                   annotation, num_classes, target)
    out['index'] = index
    return out

  ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  skip = bool(data_config.skip_corrupt)
  if skip:
    ds = ds.ignore_errors(log_warning=True)
  ds = ds.batch(batch, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(_options())
  return ds, read_errors.FaultNamer(epoch, n, fn, first, batch, skip,
                                    builder.name, split_name,
                                    os.fspath(builder.data_dir))


def create_train_dataset(data_config, global_batch_size, *, seed,
                         start_step=0, process_index=None, process_count=None):
  """The endless training tf.data.Dataset for this host (see module doc)."""
  ds, _ = _train_dataset(data_config, global_batch_size, seed=seed,
                         start_step=start_step, process_index=process_index,
                         process_count=process_count)
  return ds.map(lambda b: {k: v for k, v in b.items() if k != 'index'})


def create_train_iterator(data_config, global_batch_size, *, seed,
                          start_step=0, process_index=None,
                          process_count=None):
  """Endless iterator of numpy training batches for this host.

  Returns dicts with image uint8 [b, h, w, 3], scribbles int32 [b, h, w] (the
  annotation data_config.annotation selects), mask int32 [b, h, w], valid
  float32 [b, h, w], presence float32 [b, K-1] (and targets float32
  [b, h, w, K-1] with data_config.targets.enabled); b = global_batch_size //
  process_count, (h, w) = crop_size. Batch s depends only on (seed, s, host).
  An image that fails to decode is logged by file name and skipped with
  data_config.skip_corrupt, else raises BadInputError naming it.
  """
  ds, namer = _train_dataset(data_config, global_batch_size, seed=seed,
                             start_step=start_step,
                             process_index=process_index,
                             process_count=process_count)
  return namer(ds.as_numpy_iterator())


def max_image_size(builder, split) -> tuple[int, int]:
  """Largest height and width over a split (reads no pixels)."""
  ds = _read(builder, split).map(lambda ex: (ex['height'], ex['width']))
  hw = np.array([(int(h), int(w)) for h, w in ds.as_numpy_iterator()])
  return int(hw[:, 0].max()), int(hw[:, 1].max())


def create_eval_dataset(data_config, global_batch_size, *, split=None,
                        process_index=None, process_count=None):
  """(finite eval tf.data.Dataset for this host, number of batches)."""
  ds, num_batches, _ = _eval_dataset(data_config, global_batch_size,
                                     split=split, process_index=process_index,
                                     process_count=process_count)
  return ds, num_batches


def _eval_dataset(data_config, global_batch_size, *, split, process_index,
                  process_count):
  """(eval dataset, number of batches, its builder)."""
  data_config = datasets.complete_config(data_config)
  process_index, process_count = _process(process_index, process_count)
  batch = _per_host_batch(global_batch_size, process_count)
  annotation = data_config.annotation
  builder = get_builder(data_config)
  num_classes = len(builder.info.metadata['class_names'])
  split = split or data_config.eval_split
  host_split, n, n_max = _host_split(builder, split, process_index,
                                     process_count)
  pad_size = data_config.eval_pad_size
  ph, pw = (config_schema.pair(pad_size) if pad_size
            else max_image_size(builder, split))
  num_batches = -(-n_max // batch)
  pad = tf.constant(PAD_COLOUR, tf.uint8)

  decode = _decoder(builder)

  def fn(ex):
    image = decode(ex, 'image')
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    check = tf.debugging.Assert(
        tf.logical_and(h <= ph, w <= pw),
        ['eval image', ex['file_name'], 'is larger than eval_pad_size',
         ph, pw, 'height/width:', h, w])
    with tf.control_dependencies([check]):
      h, w = tf.identity(h), tf.identity(w)
    paddings = [[0, ph - h], [0, pw - w]]
    image = tf.stack([tf.pad(image[..., c], paddings,
                             constant_values=pad[c]) for c in range(3)], -1)
    labels = {k: tf.pad(tf.cast(decode(ex, src), tf.int32), paddings,
                        constant_values=labels_lib.IGNORE)
              for k, src in (('scribbles', annotation), ('mask', 'mask'))}
    valid = tf.pad(tf.ones([h, w], tf.float32), paddings)
    return dict(image=image, valid=valid, example_mask=tf.constant(1.0),
                presence=_presence(labels['scribbles'], num_classes),
                file_name=ex['file_name'], height=ex['height'],
                width=ex['width'], **labels)

  ds = _read(builder, host_split).map(fn, num_parallel_calls=tf.data.AUTOTUNE,
                                      deterministic=True)
  if data_config.skip_corrupt:
    ds = ds.ignore_errors(log_warning=True)
  filler = dict(
      image=tf.broadcast_to(pad, [ph, pw, 3]),
      valid=tf.zeros([ph, pw], tf.float32), example_mask=tf.constant(0.0),
      presence=tf.zeros([num_classes - 1], tf.float32),
      file_name=tf.constant(b''), height=tf.constant(0, tf.int32),
      width=tf.constant(0, tf.int32),
      scribbles=tf.fill([ph, pw], labels_lib.IGNORE),
      mask=tf.fill([ph, pw], labels_lib.IGNORE))
  # Fillers without end, then exactly num_batches full batches: an example
  # that skip_corrupt dropped is replaced by a padding example, so every host
  # still yields num_batches batches of the same shape.
  ds = ds.concatenate(tf.data.Dataset.from_tensors(filler).repeat())
  ds = ds.batch(batch).take(num_batches)
  return (ds.prefetch(tf.data.AUTOTUNE).with_options(_options()), num_batches,
          builder)


def create_eval_iterator(data_config, global_batch_size, *, split=None,
                         process_index=None, process_count=None):
  """Finite iterator of numpy eval batches for this host.

  Dicts with image uint8 [b, H, W, 3], scribbles / mask int32 [b, H, W]
  (255 in the padding), valid float32 [b, H, W], example_mask float32 [b]
  (0 = padding example), presence float32 [b, K-1], file_name bytes [b],
  height / width int32 [b] (original size: crop [:height, :width] to undo
  the padding). (H, W) = eval_pad_size, or the split's largest image size.
  Every host yields the same number of batches; the hosts' examples together
  are the split, each exactly once.
  """
  ds, _, builder = _eval_dataset(data_config, global_batch_size, split=split,
                                 process_index=process_index,
                                 process_count=process_count)
  return read_errors.eval_batches(ds, os.fspath(builder.data_dir))
