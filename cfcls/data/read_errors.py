"""Read errors of the input pipeline, named for the user.

  damaged_data_error(path, error)   a prepared tfrecord that no longer reads
  eval_batches(ds, path)            numpy batches, damaged files named
  FaultNamer(...)(batches)          training images that fail to decode:
                                    skipped and logged by file name, or a
                                    BadInputError naming the file
"""
from __future__ import annotations

from absl import logging
import tensorflow as tf

from cfcls.data.builders import common


def damaged_data_error(data_path: str, error) -> common.BadInputError:
  """The error for a prepared (tfrecord) file that no longer reads."""
  message = ' '.join((getattr(error, 'message', None) or str(error)).split())
  return common.BadInputError(
      f'the prepared data in {data_path} is damaged ({message[:300]}); '
      'delete that folder and run again to prepare it anew')


def eval_batches(ds, data_path):
  """Numpy batches of ds; a damaged prepared file is a BadInputError."""
  it = ds.as_numpy_iterator()
  while True:
    try:
      batch = next(it)
    except StopIteration:
      return
    except tf.errors.DataLossError as e:
      raise damaged_data_error(data_path, e) from e
    yield batch


class FaultNamer:
  """Names the training examples that fail to decode.

  Examples carry their number (`index`) through the pipeline; a number
  missing from the batches is an example that tf.data `ignore_errors`
  dropped. Its file name is read back from the (undecoded) shuffled epoch,
  which is a pure function of the epoch number, and logged. Without
  skip_corrupt the error is raised as a BadInputError naming the file (the
  failing example is found by decoding the batch's examples one by one).
  """

  def __init__(self, epoch_fn, size, example_fn, first, batch, skip,
               dataset_name, split, data_path):
    self.epoch_fn, self.size, self.example_fn = epoch_fn, size, example_fn
    self.expected, self.batch, self.skip = first, batch, skip
    self.where = f'{dataset_name} {split}'
    self.data_path = data_path

  def example(self, index):
    e, pos = divmod(int(index), self.size)
    return next(iter(self.epoch_fn(e).skip(pos).take(1)))

  def file_name(self, example) -> str:
    name = example['file_name'].numpy()
    return name.decode('utf-8', 'replace') if isinstance(name, bytes) else (
        str(name))

  def failure(self, index):
    """(file name, error message) if example `index` fails, else None."""
    example = self.example(index)
    try:
      self.example_fn(tf.constant(int(index), tf.int64), example)
    except (tf.errors.OpError, ValueError) as e:
      message = getattr(e, 'message', None) or str(e)
      return self.file_name(example), ' '.join(message.split())[:200]
    return None

  def __call__(self, batches):
    """Yields the batches (without 'index'), naming skipped examples."""
    while True:
      try:
        batch = next(batches)
      except StopIteration:
        return
      except tf.errors.DataLossError as e:
        raise damaged_data_error(self.data_path, e) from e
      except tf.errors.OpError as e:
        if not self.skip:
          for index in range(self.expected, self.expected + self.batch):
            failed = self.failure(index)
            if failed:
              raise common.BadInputError(
                  f'training image {failed[0]!r} of {self.where} could not '
                  f'be decoded ({failed[1]}); set data.skip_corrupt=True to '
                  'skip such images') from e
        raise
      for index in batch.pop('index'):
        for missing in range(self.expected, int(index)):
          name = self.file_name(self.example(missing))
          logging.warning('Skipped corrupt training image %r of %s (example '
                          '%d): it could not be decoded', name, self.where,
                          missing)
        self.expected = int(index) + 1
      yield batch
