"""Which tfds dataset a data config names, prepared on first use.

  get_builder(data_config) -> prepared tfds builder
  dataset_info(data_config) -> DatasetInfo (classes, split sizes)

Builders are prepared on first use into data_config.data_dir from
data_config.manual_dir. Where a folder dataset lands:
data_dir/scribble_folder/<folder name>_<hash of its absolute path>/.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import shutil

from absl import logging
import tensorflow_datasets as tfds

from cfcls import config_schema
from cfcls import labels as labels_lib
from cfcls.data import fingerprint
from cfcls.data import inspection
from cfcls.data.builders import common
from cfcls.data.builders import scribble_cityscapes
from cfcls.data.builders import scribble_folder
from cfcls.data.builders import scribble_voc
from cfcls.data.builders import synthetic_scenes


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer needs to know about a dataset."""
  name: str
  num_classes: int
  class_names: tuple[str, ...]
  splits: dict  # split name -> number of examples
  data_path: str

  def split_size(self, split: str) -> int:
    return self.splits[split]


def complete_config(data_config):
  """data_config with the schema's defaults for the fields it lacks.

  (Configs that train.py runs are validated at start; this also catches a
  bad annotation in a data config built by hand.)
  """
  data_config = config_schema.complete(data_config,
                                       config_schema.get_data_config())
  if data_config.annotation not in labels_lib.ANNOTATIONS:
    raise ValueError(f'data_config.annotation must be one of '
                     f'{labels_lib.ANNOTATIONS}, got '
                     f'{data_config.annotation!r}')
  return data_config


def _folder_config_name(folder: str, skip: bool) -> str:
  folder = os.path.abspath(os.path.expanduser(folder))
  base = ''.join(c if c.isalnum() else '_' for c in os.path.basename(
      folder.rstrip('/')) or 'root')[:40]
  digest = hashlib.sha1(folder.encode()).hexdigest()[:8]
  return f'{base}_{digest}' + ('_skip' if skip else '')


def _builder_and_config(data_config):
  """(builder class, config object or name, manual_dir) for a data_config."""
  name = data_config.name
  skip = bool(data_config.skip_corrupt)
  manual_dir = data_config.manual_dir
  if manual_dir:
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
  if name == 'synthetic_scenes':
    syn = data_config.synthetic
    cfg = synthetic_scenes.make_config(
        num_train=syn.num_train, num_val=syn.num_val,
        image_size=syn.image_size, seed=syn.seed)
    return synthetic_scenes.SyntheticScenes, cfg, None
  if name == 'scribble_folder':
    if not manual_dir:  # the folder names the dataset
      raise common.BadInputError('data_config.manual_dir must be set for '
                                 'scribble_folder')
    cfg = scribble_folder.ScribbleFolderConfig(
        name=_folder_config_name(manual_dir, skip), folder=manual_dir,
        skip_corrupt=skip, description=f'scribble folder {manual_dir}')
    return scribble_folder.ScribbleFolder, cfg, manual_dir
  if name == 'scribble_voc':
    cfg = data_config.builder_config
    return scribble_voc.ScribbleVoc, scribble_voc.make_config(cfg, skip), (
        manual_dir)
  if name == 'scribble_cityscapes':
    return scribble_cityscapes.ScribbleCityscapes, (
        scribble_cityscapes.make_config(skip)), manual_dir
  raise common.BadInputError(
      f'unknown data_config.name {name!r}; expected synthetic_scenes, '
      'scribble_folder, scribble_voc or scribble_cityscapes')


def _is_prepared(builder) -> bool:
  """builder.is_prepared(), without tfds's warning 'Variant folder ... has
  no dataset_info.json' for a dataset not prepared yet (tfds logs it for
  every such check; a prepared dataset has that file)."""
  if not (builder.data_path / 'dataset_info.json').exists():
    return False
  return builder.is_prepared()


def get_builder(data_config, prepare: bool = True):
  """The tfds builder for data_config, prepared (with a log line) if needed."""
  data_config = complete_config(data_config)
  cls, cfg, manual_dir = _builder_and_config(data_config)
  data_dir = os.path.expanduser(data_config.data_dir)
  builder = common.make_builder(cls, cfg, data_dir)
  if prepare and cls is scribble_folder.ScribbleFolder:
    builder = _reprepare_if_changed(builder, data_config, cls, cfg, data_dir)
  if prepare and not _is_prepared(builder):
    if cls is not synthetic_scenes.SyntheticScenes and not manual_dir:
      raise common.BadInputError(
          f'data_config.manual_dir must be set to prepare {builder.name} (not '
          f'prepared in {data_dir})')
    if manual_dir and not os.path.isdir(manual_dir):
      raise common.BadInputError(
          f'{manual_dir}: missing folder (data_config.manual_dir for '
          f'{builder.name})')
    logging.info('Preparing %s into %s (manual_dir=%s)', builder.name,
                 builder.data_dir, manual_dir)
    # tfds prints "Downloading and preparing dataset Unknown size ..." for
    # data generated here: our log line above says what happens instead.
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    logging.info('Prepared %s: %s', builder.name, ', '.join(
        f'{k} {v.num_examples}' for k, v in builder.info.splits.items()))
    if cls is scribble_folder.ScribbleFolder:
      fingerprint.write(os.fspath(builder.data_dir),
                        fingerprint.folder_fingerprint(manual_dir))
      logging.info('%s', inspection.summary_line(manual_dir))
  return builder


def _reprepare_if_changed(builder, data_config, cls, cfg, data_dir):
  """A prepared folder dataset whose folder changed: prepare it again
  (data.on_folder_change='prepare') or stop saying what changed ('error')."""
  if not _is_prepared(builder):
    return builder
  prepared = os.fspath(builder.data_dir)
  folder = data_config.manual_dir
  if not os.path.isdir(folder):  # the prepared copy stands on its own
    logging.warning('%s is gone: using its prepared copy in %s', folder,
                    prepared)
    return builder
  old = fingerprint.read(prepared)
  new = fingerprint.folder_fingerprint(folder)
  if old is None:  # prepared before fingerprints existed: record it now
    fingerprint.write(prepared, new)
    return builder
  changed = fingerprint.changes(old, new)
  if not changed:
    return builder
  if data_config.on_folder_change == 'error':
    raise common.BadInputError(
        f'{folder} changed since it was prepared into {prepared}: {changed}; '
        "set data.on_folder_change='prepare' (or delete that folder) to "
        'prepare it again')
  logging.warning('%s changed since it was prepared (%s): preparing it again',
                  folder, changed)
  shutil.rmtree(prepared)
  return common.make_builder(cls, cfg, data_dir)


def dataset_info(data_config) -> DatasetInfo:
  """num_classes, class_names and split sizes (prepares the builder)."""
  builder = get_builder(data_config)
  names = tuple(builder.info.metadata['class_names'])
  return DatasetInfo(
      name=builder.name, num_classes=len(names), class_names=names,
      splits={k: v.num_examples for k, v in builder.info.splits.items()},
      data_path=os.fspath(builder.data_dir))
