"""The tf.data pipeline on a tiny synthetic_scenes set."""
import itertools

import cv2
import ml_collections
import numpy as np
import pytest

from cfcls.data import pipeline
from cfcls.data import synthetic

NUM_TRAIN, NUM_VAL, SIZE = 12, 7, 40


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def _config(data_dir, **kw):
  fields = dict(
      name='synthetic_scenes', data_dir=data_dir, manual_dir=None,
      builder_config=None, train_split='train', eval_split='validation',
      crop_size=32, scale_range=(0.5, 2.0), flip=True, eval_pad_size=None,
      annotation='scribbles', shuffle_buffer=64, skip_corrupt=False,
      synthetic=dict(num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=SIZE,
                     seed=5))
  fields.update(kw)
  return ml_collections.ConfigDict(fields)


def _originals(split, n):
  return {f'{split}_{i:05d}': synthetic.generate_example(5, split, i, SIZE)
          for i in range(n)}


def test_dataset_info(data_dir):
  info = pipeline.dataset_info(_config(data_dir))
  assert info.num_classes == 6
  assert info.class_names == synthetic.CLASS_NAMES
  assert info.splits == {'train': NUM_TRAIN, 'validation': NUM_VAL}


def test_train_batches_shapes_padding_presence(data_dir):
  it = pipeline.create_train_iterator(_config(data_dir), 4, seed=0,
                                      process_index=0, process_count=1)
  batches = list(itertools.islice(it, 6))
  b = batches[0]
  assert b['image'].shape == (4, 32, 32, 3) and b['image'].dtype == np.uint8
  for k in ('scribbles', 'mask'):
    assert b[k].shape == (4, 32, 32) and b[k].dtype == np.int32
  assert b['valid'].shape == (4, 32, 32) and b['valid'].dtype == np.float32
  assert b['presence'].shape == (4, 5) and b['presence'].dtype == np.float32
  valid = np.concatenate([x['valid'] for x in batches])
  scrib = np.concatenate([x['scribbles'] for x in batches])
  mask = np.concatenate([x['mask'] for x in batches])
  image = np.concatenate([x['image'] for x in batches])
  assert 0 < valid.mean() < 1  # scale 0.5 makes some crops stick out
  assert np.all(scrib[valid == 0] == 255) and np.all(mask[valid == 0] == 255)
  assert np.all(image[valid == 0] == pipeline.PAD_COLOUR)
  assert np.all(mask[valid == 1] < 6)
  ids = scrib[scrib != 255]
  assert ids.size and ids.max() < 6
  # Image and label maps are warped alike: scribbles agree with the mask.
  both = (scrib != 255)
  assert np.mean(scrib[both] == mask[both]) > 0.97
  presence = np.concatenate([x['presence'] for x in batches])
  for p, s in zip(presence, scrib):
    expected = [float(np.any(s == c)) for c in range(1, 6)]
    np.testing.assert_array_equal(p, expected)


def test_train_resumes_the_same_batch_sequence(data_dir):
  cfg = _config(data_dir)
  kw = dict(seed=3, process_index=0, process_count=1)
  # 3 images per batch, 12 per epoch: steps cross epoch boundaries.
  ref = list(itertools.islice(pipeline.create_train_iterator(cfg, 3, **kw), 9))
  again = list(itertools.islice(pipeline.create_train_iterator(cfg, 3, **kw),
                                9))
  for a, b in zip(ref, again):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  for start in (2, 5):
    resumed = list(itertools.islice(pipeline.create_train_iterator(
        cfg, 3, start_step=start, **kw), 9 - start))
    for a, b in zip(ref[start:], resumed):
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])
  # skip_corrupt (tf.data ignore_errors) passes good data through unchanged.
  skipping = next(pipeline.create_train_iterator(
      _config(data_dir, skip_corrupt=True), 3, **kw))
  for k in skipping:
    np.testing.assert_array_equal(skipping[k], ref[0][k])
  other = next(pipeline.create_train_iterator(cfg, 3, seed=4, process_index=0,
                                              process_count=1))
  assert not np.array_equal(other['image'], ref[0]['image'])
  # Epochs are shuffled differently.
  assert not np.array_equal(ref[0]['image'], ref[4]['image'])


def _match(img, originals):
  for name, ex in originals.items():
    if np.array_equal(img, ex['image']):
      return name
  return None


def test_identity_augmentation_and_host_shards(data_dir):
  # Scale 1, no flip, crop = image size: each crop is an original image.
  cfg = _config(data_dir, scale_range=(1.0, 1.0), flip=False, crop_size=SIZE)
  originals = _originals('train', NUM_TRAIN)
  seen = []
  for host in range(2):
    it = pipeline.create_train_iterator(cfg, 4, seed=0, process_index=host,
                                        process_count=2)
    names = []
    for b in itertools.islice(it, 3):  # 3 batches x 2 = one host epoch
      assert b['image'].shape == (2, SIZE, SIZE, 3)
      np.testing.assert_array_equal(b['valid'], 1.0)
      for i in range(2):
        name = _match(b['image'][i], originals)
        assert name is not None
        np.testing.assert_array_equal(b['scribbles'][i],
                                      originals[name]['scribbles'])
        np.testing.assert_array_equal(b['mask'][i], originals[name]['mask'])
        names.append(name)
    assert len(set(names)) == NUM_TRAIN // 2  # a permutation of the shard
    seen.append(set(names))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(originals)


def test_flip_and_offset_crop_are_exact(data_dir):
  originals = _originals('train', NUM_TRAIN)
  cfg = _config(data_dir, scale_range=(1.0, 1.0), flip=True,
                crop_size=(SIZE, SIZE))
  b = next(pipeline.create_train_iterator(cfg, 4, seed=1, process_index=0,
                                          process_count=1))
  flipped = 0
  for i in range(4):
    name = _match(b['image'][i], originals)
    if name is None:
      name = _match(b['image'][i, :, ::-1], originals)
      flipped += 1
      assert name is not None
      np.testing.assert_array_equal(b['mask'][i, :, ::-1],
                                    originals[name]['mask'])
  # A crop bigger than the image: the image sits whole inside, at an offset.
  cfg = _config(data_dir, scale_range=(1.0, 1.0), flip=False, crop_size=56)
  b = next(pipeline.create_train_iterator(cfg, 4, seed=2, process_index=0,
                                          process_count=1))
  for i in range(4):
    rows, cols = np.nonzero(b['valid'][i])
    assert rows.max() - rows.min() + 1 == SIZE
    assert cols.max() - cols.min() + 1 == SIZE
    inner = b['image'][i, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    name = _match(inner, originals)
    assert name is not None
    np.testing.assert_array_equal(
        b['mask'][i, rows.min():rows.max() + 1, cols.min():cols.max() + 1],
        originals[name]['mask'])


def test_scale_two_label_maps_use_nearest(data_dir):
  cfg = _config(data_dir, scale_range=(2.0, 2.0), flip=False, crop_size=32)
  b = next(pipeline.create_train_iterator(cfg, 4, seed=0, process_index=0,
                                          process_count=1))
  # 80 px scaled >= 32 crop: only the outermost output row/column at an image
  # edge (samples beyond the edge pixel centres) may be padding.
  assert np.all(b['valid'][:, 1:-1, 1:-1] == 1.0)
  for i in range(4):
    # Nearest-neighbour upsampling by 2: label rows come in pairs.
    m = b['mask'][i]
    same_rows = np.mean([np.array_equal(m[r], m[r + 1]) for r in range(31)])
    assert same_rows >= 0.45
    assert set(np.unique(m[b['valid'][i] == 1])) <= set(range(6))


@pytest.mark.parametrize('process_count,batch', [(1, 3), (2, 4)])
def test_eval_covers_every_pixel_once(data_dir, process_count, batch):
  cfg = _config(data_dir)
  originals = _originals('validation', NUM_VAL)
  names, pixels, num_batches = [], 0, []
  for host in range(process_count):
    batches = list(pipeline.create_eval_iterator(
        cfg, batch, process_index=host, process_count=process_count))
    num_batches.append(len(batches))
    for b in batches:
      assert b['image'].shape[1:] == (SIZE, SIZE, 3)
      for i in range(len(b['example_mask'])):
        if b['example_mask'][i] == 0:
          assert np.all(b['valid'][i] == 0) and np.all(b['mask'][i] == 255)
          continue
        name = b['file_name'][i].decode()
        h, w = b['height'][i], b['width'][i]
        ex = originals[name]
        np.testing.assert_array_equal(b['image'][i, :h, :w], ex['image'])
        np.testing.assert_array_equal(b['mask'][i, :h, :w], ex['mask'])
        np.testing.assert_array_equal(b['scribbles'][i, :h, :w],
                                      ex['scribbles'])
        names.append(name)
      pixels += float((b['valid'] * b['example_mask'][:, None, None]).sum())
  assert len(set(num_batches)) == 1
  assert sorted(names) == sorted(originals)
  assert pixels == NUM_VAL * SIZE * SIZE


def test_eval_padding_to_a_fixed_size(data_dir):
  cfg = _config(data_dir, eval_pad_size=(48, 52), annotation='dots')
  b = next(pipeline.create_eval_iterator(cfg, 2, process_index=0,
                                         process_count=1))
  assert b['image'].shape == (2, 48, 52, 3)
  assert np.all(b['valid'][:, :SIZE, :SIZE] == 1)
  assert np.all(b['valid'][:, SIZE:] == 0) and np.all(b['valid'][:, :, SIZE:]
                                                       == 0)
  assert np.all(b['mask'][:, SIZE:] == 255)
  assert np.all(b['scribbles'][:, :, SIZE:] == 255)
  name = b['file_name'][0].decode()
  ex = _originals('validation', NUM_VAL)[name]
  np.testing.assert_array_equal(b['scribbles'][0, :SIZE, :SIZE], ex['dots'])
  small = _config(data_dir, eval_pad_size=30)
  with pytest.raises(Exception, match='larger than eval_pad_size'):
    next(pipeline.create_eval_iterator(small, 2, process_index=0,
                                       process_count=1))


def test_dots_annotation_and_bad_arguments(data_dir):
  cfg = _config(data_dir, annotation='dots', scale_range=(1.0, 1.0),
                flip=False, crop_size=SIZE)
  originals = _originals('train', NUM_TRAIN)
  b = next(pipeline.create_train_iterator(cfg, 2, seed=0, process_index=0,
                                          process_count=1))
  name = _match(b['image'][0], originals)
  np.testing.assert_array_equal(b['scribbles'][0], originals[name]['dots'])
  with pytest.raises(ValueError, match='annotation'):
    pipeline.create_train_iterator(_config(data_dir, annotation='boxes'), 2,
                                   seed=0, process_index=0, process_count=1)
  with pytest.raises(ValueError, match='divisible'):
    pipeline.create_train_iterator(cfg, 3, seed=0, process_index=0,
                                   process_count=2)
  with pytest.raises(ValueError, match='no split'):
    pipeline.create_eval_iterator(cfg, 2, split='test', process_index=0,
                                  process_count=1)
  with pytest.raises(ValueError, match='unknown data_config.name'):
    pipeline.dataset_info(_config(data_dir, name='imagenet'))


def test_eval_of_images_of_different_sizes(tmp_path):
  # A scribble folder whose validation images differ in size: the canvas is
  # the largest size, each image sits top-left, every pixel counts once.
  root = tmp_path / 'site'
  for d in ('images', 'scribbles'):
    (root / d).mkdir(parents=True)
  (root / 'classes.txt').write_text('background\nthing\n')
  rng = np.random.default_rng(0)
  sizes = {'a': (20, 24), 'b': (30, 18), 'c': (25, 25), 'd': (12, 40)}
  images = {}
  for name, (h, w) in sizes.items():
    img = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
    cv2.imwrite(str(root / 'images' / f'{name}.png'), img[..., ::-1])
    scrib = np.full((h, w), 255, np.uint8)
    scrib[h // 2, 2:w - 2] = 1
    scrib[1, 1:4] = 0
    cv2.imwrite(str(root / 'scribbles' / f'{name}.png'), scrib)
    images[name] = (img, scrib)
  (root / 'train.txt').write_text('a\n')
  (root / 'val.txt').write_text('a\nb\nc\nd\n')
  cfg = ml_collections.ConfigDict(dict(
      name='scribble_folder', manual_dir=str(root),
      data_dir=str(tmp_path / 'data'), eval_split='validation',
      eval_pad_size=None, crop_size=16))
  seen, pixels = [], 0
  for host in range(2):
    for b in pipeline.create_eval_iterator(cfg, 2, process_index=host,
                                           process_count=2):
      assert b['image'].shape == (1, 30, 40, 3)
      for i in np.nonzero(b['example_mask'])[0]:
        name = b['file_name'][i].decode()
        h, w = sizes[name]
        assert (b['height'][i], b['width'][i]) == (h, w)
        np.testing.assert_array_equal(b['image'][i, :h, :w], images[name][0])
        np.testing.assert_array_equal(b['scribbles'][i, :h, :w],
                                      images[name][1])
        assert np.all(b['mask'][i] == 255)  # no masks/ folder: unknown
        assert b['valid'][i].sum() == h * w
        assert np.all(b['scribbles'][i][b['valid'][i] == 0] == 255)
        np.testing.assert_array_equal(b['presence'][i], [1.0])
        seen.append(name)
      pixels += float((b['valid'] * b['example_mask'][:, None, None]).sum())
  assert sorted(seen) == sorted(sizes)
  assert pixels == sum(h * w for h, w in sizes.values())
  # Training on the same folder: crops of the requested size.
  b = next(pipeline.create_train_iterator(cfg, 2, seed=0, process_index=0,
                                          process_count=1))
  assert b['image'].shape == (2, 16, 16, 3)
