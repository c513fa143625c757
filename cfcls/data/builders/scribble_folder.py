"""tfds builder 'scribble_folder': a user's own scribble-annotated folder.

Layout of the folder (the builder config's `folder`, also the manual_dir):
  images/<name>.(jpg|jpeg|png|bmp)   photos
  scribbles/<name>.png               class ids, 255 = unlabelled (required)
  masks/<name>.png                   ground truth, 255 = void (optional folder;
                                     if present, every image needs one)
  classes.txt                        line i = name of class id i
                                     (line 0 = background)
  train.txt, val.txt                 optional: one <name> per line. Without
                                     them every image is in 'train'. val.txt
                                     gives the 'validation' split.

Label PNGs may be grey or palette PNGs (palette index = class id).
Each folder is prepared under its own builder config, named
`<folder name>_<hash of the absolute path>` (datasets._folder_config_name),
so different folders never collide in data_dir. A folder whose contents change
after preparation is prepared again on its next use (config.data.
on_folder_change, cfcls/data/fingerprint.py).
"""
from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds

from cfcls import jsonio
from cfcls.data.builders import common


@dataclasses.dataclass(eq=False)
class ScribbleFolderConfig(common.ScribbleConfig):
  folder: str = ''


def read_class_names(folder) -> list[str]:
  path = os.path.join(folder, 'classes.txt')
  if not os.path.isfile(path):
    raise common.BadInputError(f'{path}: missing file (class names, one per '
                               'line, line 0 = background)')
  with open(path) as f:
    names = [line.strip() for line in f if line.strip()]
  if len(names) < 2:
    raise common.BadInputError(
        f'{path}: needs at least 2 class names (background + one class), '
        f'found {len(names)}')
  if len(names) > 255:
    raise common.BadInputError(f'{path}: {len(names)} classes; at most 255')
  return names


def list_images(folder) -> dict[str, str]:
  """name (file stem) -> image path, for images/ of folder."""
  image_dir = common.require_dir(os.path.join(folder, 'images'), 'photos')
  out = {}
  for f in sorted(os.listdir(image_dir)):
    stem, ext = os.path.splitext(f)
    if ext.lower() in common.IMAGE_EXTENSIONS:
      if stem in out:
        raise common.BadInputError(
            f'{image_dir}: two images named {stem!r} '
            f'({os.path.basename(out[stem])} and {f})')
      out[stem] = os.path.join(image_dir, f)
  return out


def build_folder_example(folder, name, image_path, num_classes, has_masks,
                         dots_per_stroke=3):
  """(key, example) for one image of a scribble folder; BadInputError if bad."""
  image_bytes, shape = common.read_image_bytes(image_path)
  scrib_path = os.path.join(folder, 'scribbles', name + '.png')
  if not os.path.isfile(scrib_path):
    raise common.BadInputError(
        f'{image_path}: no scribble file (expected {scrib_path})')
  scribbles = common.check_label_map(common.read_label_png(scrib_path),
                                     num_classes, shape, scrib_path, image_path)
  mask = None
  if has_masks:
    mask_path = os.path.join(folder, 'masks', name + '.png')
    if not os.path.isfile(mask_path):
      raise common.BadInputError(
          f'{image_path}: no mask file (expected {mask_path}; masks/ exists)')
    mask = common.check_label_map(common.read_label_png(mask_path),
                                  num_classes, shape, mask_path, image_path)
  return name, common.make_example(
      image_bytes=image_bytes, shape=shape, scribbles=scribbles, mask=mask,
      num_classes=num_classes, file_name=name,
      dots_per_stroke=dots_per_stroke)


class ScribbleFolder(tfds.core.GeneratorBasedBuilder):
  """A folder of images + scribble PNGs (+ optional masks)."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _folder(self):
    folder = self.builder_config.folder if self.builder_config else ''
    if not folder:
      raise ValueError('scribble_folder needs a ScribbleFolderConfig with '
                       'folder=<path> (data_config.manual_dir)')
    return folder

  def _info(self):
    folder = self._folder()
    stored = os.path.join(os.fspath(self.data_dir), 'metadata.json')
    if os.path.isfile(stored):  # prepared: the class names it was built with
      names = jsonio.read_json(
          stored, f'remove {self.data_dir} and prepare the dataset '
          'again')['class_names']
    else:
      common.require_dir(folder, 'scribble folder')
      names = read_class_names(folder)
    return common.dataset_info(self, f'Scribble folder {folder}', names)

  def _split_generators(self, dl_manager):
    folder = common.require_dir(self._folder(), 'scribble folder')
    images = list_images(folder)
    common.require_dir(os.path.join(folder, 'scribbles'), 'scribble PNGs')
    lists = {}
    for split, fname in (('train', 'train.txt'), ('validation', 'val.txt')):
      path = os.path.join(folder, fname)
      if os.path.isfile(path):
        names = common.read_split_list(path)
        missing = [n for n in names if n not in images]
        if missing:
          raise common.BadInputError(
              f'{path}: lists {len(missing)} names with no image in '
              f'{folder}/images, e.g. {missing[:3]}')
        lists[split] = names
    if 'train' not in lists:
      lists['train'] = sorted(
          set(images) - set(lists.get('validation', [])))
    return {split: self._generate_examples(folder, names, images, split)
            for split, names in lists.items()}

  def _generate_examples(self, folder, names, images, split):
    cfg = self.builder_config
    num_classes = len(self.info.metadata['class_names'])
    has_masks = os.path.isdir(os.path.join(folder, 'masks'))
    return common.guarded(
        names,
        lambda n: build_folder_example(folder, n, images[n], num_classes,
                                       has_masks, cfg.dots_per_stroke),
        cfg.skip_corrupt, f'{folder} split {split!r}')
