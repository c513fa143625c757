"""tfds builder 'synthetic_scenes': the generated demo dataset (no download).

A builder config per (num_train, num_val, image_size, seed), named
`n{num_train}_v{num_val}_s{image_size}_seed{seed}`, so differently sized sets
never collide in data_dir. See cfcls.data.synthetic for what a scene holds.
"""
from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from cfcls.data import synthetic
from cfcls.data.builders import common


@dataclasses.dataclass(eq=False)
class SyntheticScenesConfig(common.ScribbleConfig):
  num_train: int = 300
  num_val: int = 100
  image_size: int = 128
  seed: int = 0


def make_config(num_train=300, num_val=100, image_size=128, seed=0):
  return SyntheticScenesConfig(
      name=f'n{num_train}_v{num_val}_s{image_size}_seed{seed}',
      num_train=int(num_train), num_val=int(num_val),
      image_size=int(image_size), seed=int(seed),
      description='synthetic shapes on textured backgrounds')


class SyntheticScenes(tfds.core.GeneratorBasedBuilder):
  """Shapes with random colours on textured backgrounds, with scribbles."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Class = shape; random colours.',
      '2.0.0': 'Class patterns on the object cores (extent from colour '
               'edges only).',
  }
  BUILDER_CONFIGS = [make_config()]

  def _info(self):
    return common.dataset_info(
        self, 'Synthetic scenes: object class = shape + core pattern, colours random.',
        synthetic.CLASS_NAMES)

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    return {'train': self._generate_examples('train', cfg.num_train),
            'validation': self._generate_examples('validation', cfg.num_val)}

  def _generate_examples(self, split, num):
    cfg = self.builder_config
    for i in range(num):
      ex = synthetic.generate_example(cfg.seed, split, i, cfg.image_size)
      h, w = ex['mask'].shape
      yield i, common.make_example(
          image_bytes=common.encode_png(ex['image'][..., ::-1]),
          shape=(h, w), scribbles=ex['scribbles'], mask=ex['mask'],
          dots=ex['dots'], num_classes=synthetic.NUM_CLASSES,
          file_name=ex['file_name'])
