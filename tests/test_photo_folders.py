"""benchmarks/photo_folders.py: the photo-textured scribble folders.

The renderer is given stand-in "photographs" (random arrays, colour and
grey), so the test needs no scikit-image; the script itself loads the
bundled photographs.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

import photo_folders  # noqa: E402  pylint: disable=g-import-not-at-top


def _photos():
  rng = np.random.default_rng(0)
  return [rng.random((90, 120, 3), dtype=np.float32),
          rng.random((100, 80), dtype=np.float32)]


def test_render_masks_scribbles_and_determinism():
  photos = _photos()
  for kind, spec in photo_folders.KINDS.items():
    k, size = len(spec['classes']), spec['size']
    seen = set()
    for index in range(6):
      image, mask, scribbles = photo_folders.render(kind, photos, 0, 'train',
                                                    index)
      assert image.shape == (size, size, 3) and image.dtype == np.uint8
      assert mask.shape == scribbles.shape == (size, size)
      assert mask.max() < k
      on = scribbles != 255
      # strokes lie inside their own class's mask, and every class present
      # has one
      np.testing.assert_array_equal(scribbles[on], mask[on])
      assert set(np.unique(scribbles[on])) == set(np.unique(mask))
      seen |= set(np.unique(mask).tolist())
      again = photo_folders.render(kind, photos, 0, 'train', index)
      for a, b in zip((image, mask, scribbles), again):
        np.testing.assert_array_equal(a, b)
    assert len(seen) >= 3, (kind, seen)
    other = photo_folders.render(kind, photos, 0, 'validation', 0)[0]
    assert not np.array_equal(other, photo_folders.render(
        kind, photos, 0, 'train', 0)[0])


def test_short_strokes_of_kind_b_label_fewer_pixels():
  photos = _photos()
  share = {}
  for kind in ('a', 'b'):
    fractions = []
    for index in range(8):
      _, mask, scribbles = photo_folders.render(kind, photos, 0, 'train',
                                                index)
      fg = mask > 0
      fractions.append((scribbles[fg] != 255).sum() / max(fg.sum(), 1))
    share[kind] = float(np.mean(fractions))
  assert share['b'] < share['a'], share


def test_length_factor_changes_only_the_scribbles():
  photos = _photos()
  for index in range(4):
    short = photo_folders.render('a', photos, 0, 'train', index)
    long_ = photo_folders.render('a', photos, 0, 'train', index,
                                 length_factor=1.5)
    np.testing.assert_array_equal(short[0], long_[0])
    np.testing.assert_array_equal(short[1], long_[1])
    on_short, on_long = short[2] != 255, long_[2] != 255
    assert on_long.sum() > on_short.sum(), index
    # the longer strokes still lie inside their own class
    np.testing.assert_array_equal(long_[2][on_long], long_[1][on_long])


def test_photo_texture_crops_a_grey_photo_into_colour():
  rng = np.random.default_rng(1)
  grey = [np.linspace(0, 1, 50 * 60, dtype=np.float32).reshape(50, 60)]
  t = photo_folders.photo_texture(rng, grey, 32)
  assert t.shape == (32, 32, 3) and t.dtype == np.float32
  assert np.all((t >= 0) & (t <= 1))
  assert np.ptp(t) > 0.05


def test_written_folder_holds_the_rendered_examples(tmp_path):
  """synthetic_textures.write_rendered_folder, as photo_folders.write_folder
  calls it: the scribble_folder layout, read back equal to render's."""
  import cv2  # pylint: disable=g-import-not-at-top
  from cfcls.data import synthetic_textures  # pylint: disable=g-import-not-at-top
  photos = _photos()

  def render(split, i):
    return photo_folders.render('a', photos, 0, split, i)

  share = synthetic_textures.write_rendered_folder(
      str(tmp_path), photo_folders.KINDS['a']['classes'], render, 3, 2)
  assert (tmp_path / 'train.txt').read_text().split() == [
      'train_00000', 'train_00001', 'train_00002']
  assert (tmp_path / 'val.txt').read_text().split() == [
      'validation_00000', 'validation_00001']
  assert (tmp_path / 'classes.txt').read_text().split() == list(
      photo_folders.KINDS['a']['classes'])
  scribbled = []
  for split, i in (('train', 2), ('validation', 1)):
    image, mask, scribbles = render(split, i)
    name = f'{split}_{i:05d}.png'
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / 'images' / name))[..., ::-1], image)
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / 'masks' / name), 0), mask)
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / 'scribbles' / name), 0), scribbles)
  for split, n in (('train', 3), ('validation', 2)):
    scribbled += [(render(split, i)[2] != 255).mean() for i in range(n)]
  np.testing.assert_allclose(share, np.mean(scribbled), rtol=1e-6)
