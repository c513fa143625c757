"""tfds builder 'scribble_voc': PASCAL VOC 2012 with ScribbleSup scribbles.

manual_dir layout (what the downloads unpack to):
  VOCdevkit/VOC2012/JPEGImages/<id>.jpg
  VOCdevkit/VOC2012/SegmentationClassAug/<id>.png  (preferred if present) or
  VOCdevkit/VOC2012/SegmentationClass/<id>.png     palette PNGs: palette
                                                    index = class id, 255 void
  VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt (preferred) or
                                            train.txt, and val.txt
  scribbles, either
    pascal_2012/<id>.xml   ScribbleSup XML (tags: background, plane, ...), or
    scribbles/<id>.png     scribble PNGs already converted
                           (data_prep/scribblesup_to_png.py)
(manual_dir may also be the VOCdevkit or VOC2012 folder itself when the
scribbles sit beside VOC2012's subfolders.)

Configs: 'full21' (all 21 classes) and 'subset6' (the paper's 6 classes:
plane, bike, person, car, dog, cat, + background; the other classes become
background, and only images whose mask or scribbles hold one of the 6 classes
are kept). Images without a ground-truth mask get an all-255 mask; an image
listed in a split without a scribble annotation is an error (or a logged skip
with skip_corrupt).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from cfcls.data import scribbles as scribbles_lib
from cfcls.data.builders import common

VOC_CLASS_NAMES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
    'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
    'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
# The paper's subset, in its order: VOC id of each new id 1..6.
SUBSET6_VOC_IDS = (1, 2, 15, 7, 12, 8)


@dataclasses.dataclass(eq=False)
class ScribbleVocConfig(common.ScribbleConfig):
  voc_ids: tuple[int, ...] | None = None  # kept VOC ids in new-id order


def _subset_lut(voc_ids):
  lut = np.zeros(256, np.uint8)
  lut[255] = 255
  for new, old in enumerate(voc_ids, start=1):
    lut[old] = new
  return lut


_CONFIGS = {
    'full21': dict(voc_ids=None, description='all 21 VOC classes'),
    'subset6': dict(voc_ids=SUBSET6_VOC_IDS,
                    description='plane, bike, person, car, dog, cat + bg'),
}


def make_config(name='full21', skip_corrupt=False):
  if name not in _CONFIGS:
    raise ValueError(f'scribble_voc: unknown builder_config {name!r}; '
                     f'expected one of {list(_CONFIGS)}')
  return ScribbleVocConfig(name=name + ('_skip' if skip_corrupt else ''),
                           skip_corrupt=skip_corrupt, **_CONFIGS[name])


def find_voc_root(manual_dir) -> str:
  for cand in (os.path.join(manual_dir, 'VOCdevkit', 'VOC2012'),
               os.path.join(manual_dir, 'VOC2012'), manual_dir):
    if os.path.isdir(os.path.join(cand, 'JPEGImages')):
      return cand
  raise common.BadInputError(
      f'{manual_dir}: missing folder VOCdevkit/VOC2012/JPEGImages')


def _first_dir(*cands):
  return next((c for c in cands if os.path.isdir(c)), None)


class ScribbleVoc(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 segmentation with ScribbleSup scribbles."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [make_config('full21'), make_config('subset6')]
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _class_names(self):
    ids = self.builder_config.voc_ids
    if ids is None:
      return VOC_CLASS_NAMES
    return ('background',) + tuple(VOC_CLASS_NAMES[i] for i in ids)

  def _info(self):
    return common.dataset_info(
        self, 'PASCAL VOC 2012 with ScribbleSup scribbles.',
        self._class_names(),
        homepage='https://jifengdai.org/downloads/scribble_sup/')

  def _split_generators(self, dl_manager):
    manual = common.require_dir(dl_manager.manual_dir, 'manual_dir')
    root = find_voc_root(manual)
    parent = os.path.dirname(os.path.dirname(root))
    sets = common.require_dir(os.path.join(root, 'ImageSets', 'Segmentation'),
                              'split lists')
    mask_dir = _first_dir(os.path.join(root, 'SegmentationClassAug'),
                          os.path.join(root, 'SegmentationClass'))
    xml_dir = _first_dir(*(os.path.join(d, 'pascal_2012')
                           for d in (manual, root, parent)))
    png_dir = _first_dir(*(os.path.join(d, 'scribbles')
                           for d in (manual, root, parent)))
    if xml_dir is None and png_dir is None:
      raise common.BadInputError(
          f'{manual}: missing scribbles: expected a pascal_2012/ folder of '
          'ScribbleSup XML or a scribbles/ folder of PNGs')
    splits = {}
    for split, files in (('train', ('train_aug.txt', 'train.txt')),
                         ('validation', ('val.txt',))):
      path = next((os.path.join(sets, f) for f in files
                   if os.path.isfile(os.path.join(sets, f))), None)
      if path is None:
        raise common.BadInputError(
            f'{sets}: missing split list {" or ".join(files)}')
      splits[split] = self._generate_examples(
          root, common.read_split_list(path), mask_dir, xml_dir, png_dir,
          f'{path}')
    return splits

  def _build(self, root, name, mask_dir, xml_dir, png_dir):
    cfg = self.builder_config
    image_path = os.path.join(root, 'JPEGImages', name + '.jpg')
    if not os.path.isfile(image_path):
      raise common.BadInputError(f'{image_path}: missing image')
    image_bytes, shape = common.read_image_bytes(image_path)
    num_voc = len(VOC_CLASS_NAMES)
    png = os.path.join(png_dir, name + '.png') if png_dir else None
    xml = os.path.join(xml_dir, name + '.xml') if xml_dir else None
    if png and os.path.isfile(png):
      scrib = common.check_label_map(common.read_label_png(png), num_voc,
                                     shape, png, image_path)
    elif xml and os.path.isfile(xml):
      try:
        scrib = scribbles_lib.scribbles_from_xml(
            xml, thickness=cfg.scribble_width, expected_shape=shape)
      except ValueError as e:
        raise common.BadInputError(str(e)) from e
    else:
      raise common.BadInputError(
          f'{image_path}: no scribble annotation (expected '
          f'{xml or png})')
    mask = None
    if mask_dir and os.path.isfile(os.path.join(mask_dir, name + '.png')):
      mpath = os.path.join(mask_dir, name + '.png')
      mask = common.check_label_map(common.read_label_png(mpath), num_voc,
                                    shape, mpath, image_path)
    if cfg.voc_ids is not None:
      lut = _subset_lut(cfg.voc_ids)
      scrib = lut[scrib]
      mask = lut[mask] if mask is not None else None
    return name, scrib, mask, image_bytes, shape

  def _generate_examples(self, root, names, mask_dir, xml_dir, png_dir, desc):
    cfg = self.builder_config
    num_classes = len(self._class_names())

    def build(name):
      name, scrib, mask, image_bytes, shape = self._build(
          root, name, mask_dir, xml_dir, png_dir)
      if cfg.voc_ids is not None:  # subset6: keep images with a kept class
        labels = scrib if mask is None else mask
        if not np.any((labels > 0) & (labels != 255)):
          return None
      return name, common.make_example(
          image_bytes=image_bytes, shape=shape, scribbles=scrib, mask=mask,
          num_classes=num_classes, file_name=name,
          dots_per_stroke=cfg.dots_per_stroke)

    return common.guarded(names, build, cfg.skip_corrupt, desc)
