"""tfds builder 'scribble_cityscapes': Cityscapes in the paper's 9 classes.

manual_dir layout (as the Cityscapes downloads unpack):
  leftImg8bit/{train,val}/<city>/<stem>_leftImg8bit.png
  gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png
  scribbles/<stem>.png   optional: scribble PNGs in the 10 ids below; images
                         without one get scribbles synthesised from gtFine
                         (cfcls.data.scribbles.synthesize_scribbles)

Classes: 0 background, 1 road, 2 building, 3 sidewalk, 4 traffic sign,
5 vegetation, 6 sky, 7 person, 8 car, 9 bicycle. Cityscapes labelIds 0-3
(unlabeled, ego vehicle, rectification border, out of roi) become void (255);
all other labelIds become background. Synthesised strokes are
scribbles.auto_width(image size) wide (11 px at 2048x1024, so about as large
a fraction of the pixels is labelled as ScribbleSup labels on VOC);
synthesising them takes a few tenths of a second per 2048x1024 image.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from cfcls.data import scribbles as scribbles_lib
from cfcls.data.builders import common

CLASS_NAMES = ('background', 'road', 'building', 'sidewalk', 'traffic sign',
               'vegetation', 'sky', 'person', 'car', 'bicycle')
# Cityscapes labelId of each class 1..9.
CITYSCAPES_LABEL_IDS = (7, 11, 8, 20, 21, 23, 24, 26, 33)
VOID_LABEL_IDS = (0, 1, 2, 3)


def label_lut() -> np.ndarray:
  lut = np.zeros(256, np.uint8)
  lut[list(VOID_LABEL_IDS)] = 255
  lut[255] = 255
  for new, old in enumerate(CITYSCAPES_LABEL_IDS, start=1):
    lut[old] = new
  return lut


@dataclasses.dataclass(eq=False)
class ScribbleCityscapesConfig(common.ScribbleConfig):
  pass


def make_config(skip_corrupt=False):
  return ScribbleCityscapesConfig(
      name='paper9' + ('_skip' if skip_corrupt else ''),
      skip_corrupt=skip_corrupt, description="the paper's 9 classes + bg")


class ScribbleCityscapes(tfds.core.GeneratorBasedBuilder):
  """Cityscapes (gtFine) with synthesised or given scribbles."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [make_config()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _info(self):
    return common.dataset_info(
        self, 'Cityscapes, 9 classes + background, with scribbles.',
        CLASS_NAMES, homepage='https://www.cityscapes-dataset.com/')

  def _split_generators(self, dl_manager):
    manual = common.require_dir(dl_manager.manual_dir, 'manual_dir')
    out = {}
    for split, sub in (('train', 'train'), ('validation', 'val')):
      img_dir = common.require_dir(
          os.path.join(manual, 'leftImg8bit', sub), 'Cityscapes images')
      gt_dir = common.require_dir(os.path.join(manual, 'gtFine', sub),
                                  'Cityscapes gtFine')
      items = []
      for city in sorted(os.listdir(img_dir)):
        cdir = os.path.join(img_dir, city)
        if not os.path.isdir(cdir):
          continue
        for f in sorted(os.listdir(cdir)):
          if f.endswith('_leftImg8bit.png'):
            stem = f[:-len('_leftImg8bit.png')]
            items.append((stem, os.path.join(cdir, f), os.path.join(
                gt_dir, city, stem + '_gtFine_labelIds.png')))
      out[split] = self._generate_examples(
          items, os.path.join(manual, 'scribbles'), f'{img_dir}')
    return out

  def _generate_examples(self, items, scribble_dir, desc):
    cfg = self.builder_config
    lut = label_lut()
    k = len(CLASS_NAMES)

    def build(item):
      stem, image_path, gt_path = item
      image_bytes, shape = common.read_image_bytes(image_path)
      if not os.path.isfile(gt_path):
        raise common.BadInputError(
            f'{image_path}: no gtFine label file (expected {gt_path})')
      label_ids = common.read_label_png(gt_path)
      if label_ids.max() > 255:
        raise common.BadInputError(
            f'{gt_path}: labelIds up to {label_ids.max()}; expected < 256')
      mask = common.check_label_map(lut[label_ids], k, shape, gt_path,
                                    image_path)
      spath = os.path.join(scribble_dir, stem + '.png')
      if os.path.isfile(spath):
        scrib = common.check_label_map(common.read_label_png(spath), k, shape,
                                       spath, image_path)
      else:
        scrib = scribbles_lib.synthesize_scribbles(
            mask, width=scribbles_lib.auto_width(shape, cfg.scribble_width))
      return stem, common.make_example(
          image_bytes=image_bytes, shape=shape, scribbles=scrib, mask=mask,
          num_classes=k, file_name=stem, dots_per_stroke=cfg.dots_per_stroke)

    return common.guarded(items, build, cfg.skip_corrupt, desc)
