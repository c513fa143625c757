"""Prepare a scribble dataset (tfds) from a user's directory.

  python data_prep/prepare_dataset.py --name scribble_voc \
      --manual_dir ~/data/voc --builder_config subset6 [--data_dir DIR]
  python data_prep/prepare_dataset.py --name scribble_cityscapes \
      --manual_dir ~/data/cityscapes
  python data_prep/prepare_dataset.py --name scribble_folder \
      --manual_dir ~/data/corrosion [--skip_corrupt]
  python data_prep/prepare_dataset.py --name synthetic_scenes \
      [--num_train 300 --num_val 100 --image_size 128 --seed 0]

Writes the prepared TFRecords to --data_dir (default ~/tensorflow_datasets)
exactly where training (cfcls.data.pipeline) looks for them, and prints the
classes and split sizes. The expected layout of each --manual_dir is in the
builder's module docstring (cfcls/data/builders/). Bad input stops with an
error naming the file; --skip_corrupt logs and leaves such examples out.
--verbose also shows the libraries' notices a user cannot act on and
TensorFlow's C++ banners (cfcls.training.console).
Preparing once here is the way for multi-host training (otherwise the first
use prepares it).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections  # noqa: E402


def data_config_from_args(a) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name=a.name, builder_config=a.builder_config, manual_dir=a.manual_dir,
      data_dir=a.data_dir, skip_corrupt=a.skip_corrupt,
      synthetic=dict(num_train=a.num_train, num_val=a.num_val,
                     image_size=a.image_size, seed=a.seed)))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--name', required=True, choices=(
      'scribble_folder', 'scribble_voc', 'scribble_cityscapes',
      'synthetic_scenes'))
  p.add_argument('--manual_dir', default=None)
  p.add_argument('--data_dir', default='~/tensorflow_datasets')
  p.add_argument('--builder_config', default='full21',
                 help='scribble_voc: full21 | subset6')
  p.add_argument('--skip_corrupt', action='store_true')
  p.add_argument('--num_train', type=int, default=300)
  p.add_argument('--num_val', type=int, default=100)
  p.add_argument('--image_size', type=int, default=128)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--verbose', action='store_true',
                 help="also show the libraries' notices and TensorFlow's "
                 'C++ banners')
  a = p.parse_args(argv)
  if not a.verbose:  # before tensorflow is imported
    from cfcls.training import console  # pylint: disable=g-import-not-at-top
    console.quiet_library_warnings()
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  info = pipeline.dataset_info(data_config_from_args(a))
  print(f'{info.name}: {info.num_classes} classes {list(info.class_names)}')
  for split, n in info.splits.items():
    print(f'  {split}: {n} examples')
  print(f'prepared in {info.data_path}')
  return info


if __name__ == '__main__':
  main()
