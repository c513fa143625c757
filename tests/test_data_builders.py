"""tfds builders from small fixture directories in the real layouts."""
import logging
import os

import cv2
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from cfcls.data import pipeline
from cfcls.data import scribbles as S
from cfcls.data.builders import common
from cfcls.data.builders import scribble_cityscapes
from cfcls.data.builders import scribble_voc

from data_fixtures import (VOC_H, VOC_W, make_cityscapes, make_folder, make_voc,
                           save_grey_png)


def _prepare(builder_cls, config, manual_dir, data_dir):
  builder = common.make_builder(builder_cls, config, str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir)))
  return builder


def _examples(builder, split):
  out = {}
  for ex in tfds.as_numpy(builder.as_dataset(split=split)):
    out[ex['file_name'].decode()] = ex
  return out


def _check_example(ex, num_classes):
  h, w = ex['image'].shape[:2]
  assert ex['image'].dtype == np.uint8 and ex['image'].shape == (h, w, 3)
  assert (ex['height'], ex['width']) == (h, w)
  for k in ('scribbles', 'dots', 'mask'):
    assert ex[k].shape == (h, w) and ex[k].dtype == np.uint8
    v = ex[k][ex[k] != 255]
    assert v.size == 0 or v.max() < num_classes
  scrib, mask, dots = ex['scribbles'], ex['mask'], ex['dots']
  on = dots != 255
  assert on.any() and np.all(dots[on] == scrib[on])
  np.testing.assert_array_equal(ex['presence'],
                                S.class_presence(scrib, num_classes))
  return scrib, mask


@pytest.mark.parametrize('xml', [True, False])
def test_voc_full21(tmp_path, xml):
  expected = make_voc(tmp_path / 'manual', xml=xml)
  b = _prepare(scribble_voc.ScribbleVoc, scribble_voc.make_config('full21'),
               tmp_path / 'manual', tmp_path / 'data')
  assert b.info.metadata['class_names'] == list(scribble_voc.VOC_CLASS_NAMES)
  assert b.info.splits['train'].num_examples == 3
  assert b.info.splits['validation'].num_examples == 2
  for split in ('train', 'validation'):
    for name, ex in _examples(b, split).items():
      scrib, mask = _check_example(ex, 21)
      exp_mask, polys = expected[name]
      np.testing.assert_array_equal(mask, exp_mask)  # palette index = id
      # Each scribble pixel lies inside the mask of its class.
      lab = scrib != 255
      assert np.all(scrib[lab] == mask[lab])
      # Polylines are drawn where their points are (clamped at the border).
      for tag, pts in polys:
        cid = S.VOC_SCRIBBLESUP_TAGS.index(tag)
        for x, y in pts:
          assert scrib[min(y, VOC_H - 1), min(x, VOC_W - 1)] == cid
      assert set(np.unique(scrib)) - {255} == set(np.unique(mask)) - {255}


def test_voc_subset6(tmp_path):
  make_voc(tmp_path / 'manual')
  b = _prepare(scribble_voc.ScribbleVoc, scribble_voc.make_config('subset6'),
               tmp_path / 'manual', tmp_path / 'data')
  assert b.info.metadata['class_names'] == [
      'background', 'aeroplane', 'bicycle', 'person', 'car', 'dog', 'cat']
  train = _examples(b, 'train')
  assert set(train) == {'2007_000001', '2007_000002'}  # bottle-only dropped
  scrib, mask = _check_example(train['2007_000001'], 7)
  assert set(np.unique(mask)) == {0, 3, 255}  # person -> 3
  scrib, mask = _check_example(train['2007_000002'], 7)
  assert set(np.unique(mask)) == {0, 6, 255}  # cat -> 6, chair -> 0
  assert set(np.unique(scrib)) == {0, 6, 255}
  val = _examples(b, 'validation')
  assert {n: set(np.unique(e['mask'])) - {255} for n, e in val.items()} == {
      '2007_000004': {0, 1}, '2007_000005': {0, 5}}


def test_cityscapes(tmp_path):
  files = make_cityscapes(tmp_path / 'manual')
  b = _prepare(scribble_cityscapes.ScribbleCityscapes,
               scribble_cityscapes.make_config(), tmp_path / 'manual',
               tmp_path / 'data')
  assert b.info.metadata['num_classes'] == 10
  exs = {**_examples(b, 'train'), **_examples(b, 'validation')}
  assert set(exs) == set(files)
  lut = {7: 1, 11: 2, 23: 6, 26: 8, 4: 0, 1: 255}
  for stem, ex in exs.items():
    scrib, mask = _check_example(ex, 10)
    for old, new in lut.items():
      assert np.all(mask[files[stem] == old] == new)
    lab = scrib != 255
    assert np.all(scrib[lab] == mask[lab])
    assert set(np.unique(scrib)) - {255} == set(np.unique(mask)) - {255}
    assert 0.01 <= lab.mean() <= 0.3


def _folder_config(manual, data, **kw):
  return ml_collections.ConfigDict(dict(
      name='scribble_folder', manual_dir=str(manual), data_dir=str(data),
      skip_corrupt=kw.pop('skip_corrupt', False)))


def test_folder_builder_and_dataset_info(tmp_path):
  make_folder(tmp_path / 'x' / 'site')
  make_folder(tmp_path / 'y' / 'site', names=('p', 'q', 'r', 's'))
  data = tmp_path / 'data'
  info = pipeline.dataset_info(_folder_config(tmp_path / 'x' / 'site', data))
  assert info.class_names == ('background', 'rust', 'paint')
  assert info.num_classes == 3
  assert info.splits == {'train': 2, 'validation': 1}
  # Same folder name elsewhere: its own builder config, no collision.
  info2 = pipeline.dataset_info(_folder_config(tmp_path / 'y' / 'site', data))
  assert info2.splits == {'train': 3, 'validation': 1}
  assert info2.data_path != info.data_path
  b = pipeline.get_builder(_folder_config(tmp_path / 'x' / 'site', data))
  for ex in _examples(b, 'train').values():
    scrib, mask = _check_example(ex, 3)
    assert np.all(scrib[scrib != 255] == mask[scrib != 255])
  # Once prepared, the data no longer needs the folder.
  moved = tmp_path / 'x' / 'moved'
  os.rename(tmp_path / 'x' / 'site', moved)
  try:
    again = pipeline.dataset_info(_folder_config(tmp_path / 'x' / 'site',
                                                 data))
  finally:
    os.rename(moved, tmp_path / 'x' / 'site')
  assert again == info
  # A damaged metadata.json of the prepared data is named, with the way out.
  with open(os.path.join(info.data_path, 'metadata.json'), 'w') as f:
    f.write('{"class_na')
  with pytest.raises(ValueError, match='metadata.json is not valid JSON.*'
                     'prepare the dataset again'):
    pipeline.dataset_info(_folder_config(tmp_path / 'x' / 'site', data))
  # Without split lists or masks: everything is train, masks all 255.
  make_folder(tmp_path / 'z', masks=False, splits=False)
  b = pipeline.get_builder(_folder_config(tmp_path / 'z', data))
  assert list(b.info.splits.keys()) == ['train']
  exs = _examples(b, 'train')
  assert len(exs) == 3 and all(np.all(e['mask'] == 255) for e in exs.values())


def _build_folder(manual, data, skip=False):
  return pipeline.get_builder(_folder_config(manual, data, skip_corrupt=skip))


@pytest.mark.parametrize('problem,match', [
    ('corrupt', r'b\.png: corrupt or undecodable image'),
    ('size', r'scribbles/b\.png is 25x20 but .*images/b\.png is 20x24'),
    ('ids', r'scribbles/b\.png: unknown class ids \[7\]'),
    ('no_scribble', r'images/b\.png: no scribble file'),
    ('empty', r'empty split'),
    ('no_classes', r'classes\.txt: missing file'),
])
def test_folder_bad_input(tmp_path, problem, match):
  root = tmp_path / 'f'
  make_folder(root)
  if problem == 'corrupt':
    (root / 'images' / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
  elif problem == 'size':
    save_grey_png(root / 'scribbles' / 'b.png', np.full((20, 25), 255))
  elif problem == 'ids':
    s = np.full((24, 20), 255, np.uint8)
    s[3, 3] = 7
    save_grey_png(root / 'scribbles' / 'b.png', s)
  elif problem == 'no_scribble':
    os.remove(root / 'scribbles' / 'b.png')
  elif problem == 'empty':
    (root / 'train.txt').write_text('\n')
  elif problem == 'no_classes':
    os.remove(root / 'classes.txt')
  with pytest.raises(ValueError, match=match):
    _build_folder(root, tmp_path / 'data')


def test_missing_folders(tmp_path):
  with pytest.raises(ValueError, match=r'nowhere: missing folder'):
    pipeline.dataset_info(_folder_config(tmp_path / 'nowhere', tmp_path))
  make_voc(tmp_path / 'voc')
  os.rename(tmp_path / 'voc' / 'pascal_2012', tmp_path / 'voc' / 'other')
  with pytest.raises(ValueError, match='missing scribbles'):
    _prepare(scribble_voc.ScribbleVoc, scribble_voc.make_config('full21'),
             tmp_path / 'voc', tmp_path / 'data')
  make_cityscapes(tmp_path / 'cs')
  os.rename(tmp_path / 'cs' / 'gtFine', tmp_path / 'cs' / 'gt')
  with pytest.raises(ValueError, match=r'gtFine/train: missing folder'):
    _prepare(scribble_cityscapes.ScribbleCityscapes,
             scribble_cityscapes.make_config(), tmp_path / 'cs',
             tmp_path / 'data')


def test_voc_missing_scribble_and_skip(tmp_path, caplog):
  make_voc(tmp_path / 'm')
  os.remove(tmp_path / 'm' / 'pascal_2012' / '2007_000002.xml')
  with pytest.raises(ValueError, match=r'2007_000002\.jpg: no scribble'):
    _prepare(scribble_voc.ScribbleVoc, scribble_voc.make_config('full21'),
             tmp_path / 'm', tmp_path / 'data')
  with caplog.at_level(logging.WARNING):
    b = _prepare(scribble_voc.ScribbleVoc,
                 scribble_voc.make_config('full21', skip_corrupt=True),
                 tmp_path / 'm', tmp_path / 'data2')
  assert b.info.splits['train'].num_examples == 2
  assert '2007_000002.jpg: no scribble' in caplog.text


def test_folder_skip_corrupt_logs_and_skips(tmp_path, caplog):
  root = tmp_path / 'f'
  make_folder(root, names=('a', 'b', 'c', 'd'))
  (root / 'images' / 'b.png').write_bytes(b'not an image at all')
  with caplog.at_level(logging.WARNING):
    b = _build_folder(root, tmp_path / 'data', skip=True)
  assert b.info.splits['train'].num_examples == 2
  assert set(_examples(b, 'train')) == {'a', 'c'}
  assert 'b.png: corrupt or undecodable image' in caplog.text


def test_voc_prefers_aug_masks_and_train_aug_list(tmp_path):
  expected = make_voc(tmp_path / 'm')
  voc = tmp_path / 'm' / 'VOCdevkit' / 'VOC2012'
  (voc / 'ImageSets' / 'Segmentation' / 'train_aug.txt').write_text(
      '2007_000001\n2007_000002\n')
  # SegmentationClassAug ships grey PNGs; mark them so the test can tell.
  os.makedirs(voc / 'SegmentationClassAug')
  for name in expected:
    aug = expected[name][0].copy()
    aug[0, 0] = 255
    save_grey_png(voc / 'SegmentationClassAug' / f'{name}.png', aug)
  # manual_dir may be the VOCdevkit folder itself (scribbles beside it).
  os.rename(tmp_path / 'm' / 'pascal_2012', voc.parent / 'pascal_2012')
  b = _prepare(scribble_voc.ScribbleVoc, scribble_voc.make_config('full21'),
               voc.parent, tmp_path / 'data')
  train = _examples(b, 'train')
  assert set(train) == {'2007_000001', '2007_000002'}
  for name, ex in train.items():
    assert ex['mask'][0, 0] == 255
    np.testing.assert_array_equal(ex['mask'][1:], expected[name][0][1:])
