"""Annotation-tool imports (labelme, CVAT, COCO) and the folder inspection.

The annotation files are written here in the tools' own schemas; the expected
scribble maps are drawn independently (axis-aligned and 45-degree segments,
each centre pixel widened to a width x width square), not with the code under
test.
"""
import base64
import io
import json
import os

import cv2
import ml_collections
import numpy as np
from PIL import Image
import pytest

from cfcls import visualize
from cfcls.data import importers
from cfcls.data import inspection
from cfcls.data import scribbles as S
from data_fixtures import data_prep_script as _script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 30, 40




def _photo(seed, h=H, w=W):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 255, (h, w, 3)).astype(np.uint8)


def _png_bytes(rgb):
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format='PNG')
  return buf.getvalue()


def _stroke(canvas, pts, value, width):
  """Reference drawing: pts int (x, y) joined by horizontal, vertical or
  45-degree segments; every centre pixel widened to a width x width square."""
  r = width // 2
  centre = [tuple(pts[0])]
  for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
    dx, dy = x1 - x0, y1 - y0
    assert dx == 0 or dy == 0 or abs(dx) == abs(dy), 'test segment'
    n = max(abs(dx), abs(dy))
    centre += [(x0 + i * np.sign(dx), y0 + i * np.sign(dy))
               for i in range(1, n + 1)]
  for x, y in centre:
    canvas[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1] = value


def _blank(h=H, w=W):
  return np.full((h, w), 255, np.uint8)


def _labelme_shape(label, points, shape_type='linestrip'):
  s = {'label': label, 'points': points, 'group_id': None,
       'description': '', 'flags': {}}
  if shape_type is not None:
    s['shape_type'] = shape_type
  return s


def _labelme(path, shapes, image_path, image=None, hw=(H, W)):
  doc = {'version': '5.2.1', 'flags': {}, 'shapes': shapes,
         'imagePath': image_path,
         'imageData': (base64.b64encode(_png_bytes(image)).decode()
                       if image is not None else None),
         'imageHeight': hw[0], 'imageWidth': hw[1]}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(doc, f)


def _read(path):
  return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _lines(path):
  return open(path).read().split()


def _labelme_a(path):
  """labelme JSON with embedded imageData; returns (image, expected map)."""
  img = _photo(0)
  _labelme(path, [
      _labelme_shape('rust', [[5.5, 5.2], [20.7, 5.9], [20.1, 15.3]]),
      _labelme_shape('paint', [[30.2, 3.0], [36.9, 9.4]], 'line'),
      _labelme_shape('paint', [[10.4, 25.6]], 'point'),
      _labelme_shape('_background_', [[1, 20], [6, 20], [6, 27], [1, 27]],
                     'polygon'),
      _labelme_shape('rust', [[25, 18], [35, 18], [35, 26], [25, 26]],
                     None)], 'a.png', image=img)
  exp = _blank()
  _stroke(exp, [(5, 5), (20, 5), (20, 15)], 2, 3)
  _stroke(exp, [(30, 3), (36, 9)], 1, 3)
  _stroke(exp, [(10, 25)], 1, 3)
  _stroke(exp, [(1, 20), (6, 20), (6, 27), (1, 27), (1, 20)], 0, 3)
  _stroke(exp, [(25, 18), (35, 18), (35, 26), (25, 26), (25, 18)], 2, 3)
  return img, exp


def test_labelme_strokes_pixel_by_pixel(tmp_path):
  ann = tmp_path / 'ann'
  img_a, exp_a = _labelme_a(str(ann / 'a.json'))
  # b: no imageData, imagePath relative to the JSON with Windows separators.
  os.makedirs(tmp_path / 'imgs')
  cv2.imwrite(str(tmp_path / 'imgs' / 'b.jpg'), _photo(1))
  _labelme(str(ann / 'b.json'), [
      _labelme_shape('rust', [[2, 2], [2, 12]], 'linestrip'),
      _labelme_shape('background', [[10, 10], [30, 10]], 'line')],
      '..\\imgs\\b.jpg')
  report = importers.import_folder('labelme', str(ann), str(tmp_path / 'out'),
                                   width=3)
  out = tmp_path / 'out'
  assert report.names == ['a', 'b'] and not report.skipped
  assert _lines(out / 'classes.txt') == ['background', 'paint', 'rust']
  np.testing.assert_array_equal(_read(out / 'scribbles' / 'a.png'), exp_a)
  np.testing.assert_array_equal(
      np.asarray(Image.open(out / 'images' / 'a.png')), img_a)
  exp_b = _blank()
  _stroke(exp_b, [(2, 2), (2, 12)], 2, 3)
  _stroke(exp_b, [(10, 10), (30, 10)], 0, 3)
  np.testing.assert_array_equal(_read(out / 'scribbles' / 'b.png'), exp_b)
  assert (out / 'images' / 'b.jpg').read_bytes() == (
      tmp_path / 'imgs' / 'b.jpg').read_bytes()
  assert not (out / 'train.txt').exists()
  # polygons='fill': the polygons become filled regions (boundary included).
  importers.import_folder('labelme', str(ann / 'a.json'),
                          str(tmp_path / 'fill'), width=3, polygons='fill')
  fill = _read(tmp_path / 'fill' / 'scribbles' / 'a.png')
  exp = _blank()
  _stroke(exp, [(5, 5), (20, 5), (20, 15)], 2, 3)
  _stroke(exp, [(30, 3), (36, 9)], 1, 3)
  _stroke(exp, [(10, 25)], 1, 3)
  exp[20:28, 1:7] = 0
  exp[18:27, 25:36] = 2
  np.testing.assert_array_equal(fill, exp)


def test_labelme_exif_rotation_and_point_shapes(tmp_path):
  # An image file with EXIF orientation 6 (labelme shows it rotated 90 deg
  # clockwise): written rotated as PNG, strokes in the rotated frame.
  raw = _photo(3, 20, 30)
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(raw).save(tmp_path / 'r.jpg', exif=exif, quality=95)
  _labelme(str(tmp_path / 'r.json'), [
      _labelme_shape('dent', [[2.5, 3.5], [10.2, 20.9]], 'points')],
      'r.jpg', hw=(30, 20))
  importers.import_folder('labelme', str(tmp_path / 'r.json'),
                          str(tmp_path / 'out'), width=1)
  out = tmp_path / 'out'
  assert os.listdir(out / 'images') == ['r.png']
  assert Image.open(out / 'images' / 'r.png').size == (20, 30)
  exp = _blank(30, 20)
  exp[3, 2] = exp[20, 10] = 1
  np.testing.assert_array_equal(_read(out / 'scribbles' / 'r.png'), exp)


CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>site</name><labels>
    <label><name>rust</name><color>#ff0000</color></label>
    <label><name>paint</name><color>#00ff00</color></label>
  </labels></task></meta>
  <image id="0" name="site/c.png" width="40" height="30">
    <polyline label="rust" occluded="0" source="manual"
        points="3.00,4.00;30.00,4.00" z_order="1"/>
    <points label="paint" occluded="0" source="manual"
        points="10.50,4.50;30.20,22.70" z_order="0"/>
    <polygon label="background" occluded="0" source="manual"
        points="2.00,10.00;12.00,10.00;12.00,20.00" z_order="0"/>
    <tag label="inspected" source="manual"/>
  </image>
  <image id="1" name="big.png" width="1000" height="750">
    <polyline label="paint" occluded="0" source="manual"
        points="100,100;900,100" z_order="0"/>
  </image>
</annotations>
"""


def test_cvat_strokes_pixel_by_pixel(tmp_path):
  os.makedirs(tmp_path / 'images')
  cv2.imwrite(str(tmp_path / 'images' / 'c.png'), _photo(4))
  cv2.imwrite(str(tmp_path / 'images' / 'big.png'),
              np.full((750, 1000, 3), 90, np.uint8))
  (tmp_path / 'ann.xml').write_text(CVAT)
  (tmp_path / 'classes.txt').write_text('background\nrust\npaint\n')
  importers.import_folder('cvat', str(tmp_path / 'ann.xml'),
                          str(tmp_path / 'out'),
                          classes_path=str(tmp_path / 'classes.txt'))
  out = tmp_path / 'out'
  assert _lines(out / 'classes.txt') == ['background', 'rust', 'paint']
  exp = _blank()  # auto width at 40x30: 3 px; z_order 1 drawn last
  _stroke(exp, [(10, 4)], 2, 3)
  _stroke(exp, [(30, 22)], 2, 3)
  _stroke(exp, [(2, 10), (12, 10), (12, 20), (2, 10)], 0, 3)
  _stroke(exp, [(3, 4), (30, 4)], 1, 3)
  np.testing.assert_array_equal(_read(out / 'scribbles' / 'c.png'), exp)
  assert S.auto_width((750, 1000)) == 7
  big = _read(out / 'scribbles' / 'big.png')
  exp = np.full((750, 1000), 255, np.uint8)
  exp[97:104, 97:904] = 2
  np.testing.assert_array_equal(big, exp)


def _coco(path, file_name='d.png'):
  doc = {
      'info': {'description': 'test'}, 'licenses': [],
      'images': [{'id': 7, 'file_name': file_name, 'width': W, 'height': H,
                  'license': 0}],
      'annotations': [
          {'id': 1, 'image_id': 7, 'category_id': 3, 'iscrowd': 0,
           'segmentation': [[5, 5, 20, 5, 20, 20]], 'area': 0.0,
           'bbox': [5, 5, 15, 15]},
          {'id': 2, 'image_id': 7, 'category_id': 1, 'iscrowd': 0,
           'segmentation': [], 'num_keypoints': 2, 'area': 0.0,
           'bbox': [30, 20, 5, 5],
           'keypoints': [30.4, 20.6, 2, 0, 0, 0, 35, 25, 1]}],
      'categories': [{'id': 1, 'name': 'paint', 'supercategory': ''},
                     {'id': 3, 'name': 'rust', 'supercategory': ''},
                     {'id': 2, 'name': 'mud', 'supercategory': ''}]}
  with open(path, 'w') as f:
    json.dump(doc, f)


@pytest.mark.parametrize('strokes', [False, True])
def test_coco_polylines_and_keypoints(tmp_path, strokes):
  os.makedirs(tmp_path / 'images')
  cv2.imwrite(str(tmp_path / 'images' / 'd.png'), _photo(5))
  _coco(tmp_path / 'coco.json')
  importers.import_folder('coco', str(tmp_path / 'coco.json'),
                          str(tmp_path / 'out'), coco_strokes=strokes)
  out = tmp_path / 'out'
  assert _lines(out / 'classes.txt') == ['background', 'paint', 'mud', 'rust']
  exp = _blank()
  _stroke(exp, [(5, 5), (20, 5), (20, 20)] + ([] if strokes else [(5, 5)]),
          3, 3)
  _stroke(exp, [(30, 20)], 1, 3)
  _stroke(exp, [(35, 25)], 1, 3)
  np.testing.assert_array_equal(_read(out / 'scribbles' / 'd.png'), exp)


def test_round_trip_through_the_builder_and_pipeline(tmp_path):
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  ann = tmp_path / 'ann'
  expected = {}
  for i, name in enumerate(('p', 'q', 'r')):
    img = _photo(10 + i)
    y = 4 + 6 * i
    _labelme(str(ann / f'{name}.json'), [
        _labelme_shape('crack', [[3, y], [30, y], [30, 25]]),
        _labelme_shape('background', [[36, 2]], 'point')],
        f'{name}.png', image=img)
    exp = _blank()
    _stroke(exp, [(3, y), (30, y), (30, 25)], 1, 3)
    _stroke(exp, [(36, 2)], 0, 3)
    expected[name] = (img, exp)
  folder = tmp_path / 'site'
  report = importers.import_folder('labelme', str(ann), str(folder),
                                   val_fraction=0.34, seed=1)
  assert len(report.val) == 1
  assert sorted(_lines(folder / 'train.txt') + report.val) == ['p', 'q', 'r']
  cfg = ml_collections.ConfigDict(dict(
      name='scribble_folder', manual_dir=str(folder),
      data_dir=str(tmp_path / 'data'), crop_size=(H, W),
      scale_range=(1.0, 1.0), flip=False))
  info = pipeline.dataset_info(cfg)
  assert info.class_names == ('background', 'crack')
  assert info.splits == {'train': 2, 'validation': 1}
  batch = next(pipeline.create_train_iterator(cfg, 2, seed=0, process_index=0,
                                              process_count=1))
  seen = []
  for i in range(2):
    name = [n for n, (img, _) in expected.items()
            if np.array_equal(batch['image'][i], img)]
    assert len(name) == 1
    np.testing.assert_array_equal(batch['scribbles'][i], expected[name[0]][1])
    np.testing.assert_array_equal(batch['valid'][i], 1.0)
    seen += name
  assert sorted(seen) == sorted(set(expected) - set(report.val))


def _good_pair(ann):
  _labelme(str(ann / 'a.json'), [_labelme_shape('rust', [[2, 2], [9, 2]])],
           'a.png', image=_photo(20))
  _labelme(str(ann / 'b.json'), [_labelme_shape('paint', [[2, 5], [9, 5]])],
           'b.png', image=_photo(21))


def _bad_missing(ann):
  _labelme(str(ann / 'c.json'), [_labelme_shape('rust', [[1, 1], [5, 1]])],
           'nothere.png')


def _bad_unreadable(ann):
  (ann / 'c.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
  _labelme(str(ann / 'c.json'), [_labelme_shape('rust', [[1, 1], [5, 1]])],
           'c.png')


def _bad_outside(ann):
  _labelme(str(ann / 'c.json'), [_labelme_shape('rust', [[1, 1], [45.5, 1]])],
           'c.png', image=_photo(22))


def _bad_empty(ann):
  (ann / 'c.json').write_text('')


def _bad_twice(ann):
  _labelme(str(ann / 'c.json'), [_labelme_shape('rust', [[1, 1], [5, 1]])],
           'a.png', image=_photo(20))


def _bad_size(ann):
  _labelme(str(ann / 'c.json'), [_labelme_shape('rust', [[1, 1], [5, 1]])],
           'c.png', image=_photo(22), hw=(H, W + 1))


def _bad_unknown(ann):
  _labelme(str(ann / 'c.json'), [_labelme_shape('mud', [[1, 1], [5, 1]])],
           'c.png', image=_photo(22))


BAD = {
    'missing image': (_bad_missing, r'c\.json: image .nothere\.png.: missing '
                      r'image file \(.*nothere\.png\)', ['a', 'b']),
    'unreadable image': (_bad_unreadable, r'c\.png \(annotated in .*c\.json\):'
                         r' corrupt or unreadable image', ['a', 'b']),
    'outside': (_bad_outside, r"c\.json: shape 0 \('rust'\): point \(45\.5, "
                r'1\) is outside the 40x30 image', ['a', 'b']),
    'empty file': (_bad_empty, r'c\.json: empty annotation file', ['a', 'b']),
    'annotated twice': (_bad_twice, r"image 'a' is annotated twice: in "
                        r'.*a\.json \(a\.png\) and .*c\.json', ['b']),
    'size mismatch': (_bad_size, r'c\.json: image .c\.png.: the annotation '
                      r'says 41x30 but the image is 40x30', ['a', 'b']),
    'unknown label': (_bad_unknown, r"c\.json: shape 0: unknown label 'mud'",
                      ['a', 'b']),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_names_the_file_and_writes_nothing(tmp_path, case):
  make_bad, message, good = BAD[case]
  ann = tmp_path / 'ann'
  os.makedirs(ann)
  _good_pair(ann)
  make_bad(ann)
  (tmp_path / 'classes.txt').write_text('background\nrust\npaint\n')
  out = tmp_path / 'out'
  kw = dict(classes_path=str(tmp_path / 'classes.txt'))
  with pytest.raises(importers.AnnotationError, match=message):
    importers.import_folder('labelme', str(ann), str(out), **kw)
  assert sorted(os.listdir(tmp_path)) == ['ann', 'classes.txt']  # no temp
  warnings = []
  report = importers.import_folder('labelme', str(ann), str(out),
                                   skip_bad=True, warn=warnings.append, **kw)
  assert report.names == good
  assert len(report.skipped) == 1 and len(warnings) == 1
  assert 'skipping' in warnings[0] and ('c.json' in warnings[0])
  assert sorted(f[:-4] for f in os.listdir(out / 'scribbles')) == good


def test_cli_skip_unknown_and_errors(tmp_path, capsys):
  ann = tmp_path / 'ann'
  os.makedirs(ann)
  _good_pair(ann)
  _bad_unknown(ann)
  (tmp_path / 'classes.txt').write_text('background\nrust\npaint\n')
  cli = _script('import_scribbles')
  args = ['--format=labelme', '--input', str(ann), '--output',
          str(tmp_path / 'out'), '--classes', str(tmp_path / 'classes.txt')]
  with pytest.raises(SystemExit, match=r"c\.json: shape 0: unknown label"):
    cli.main(args)
  assert not (tmp_path / 'out').exists()
  report = cli.main(args + ['--skip-unknown'])
  text = capsys.readouterr().out
  assert report.names == ['a', 'b'] and report.no_shapes == ['c']
  assert 'left out 1 images with no shapes (c)' in text
  assert 'dropped shapes with unknown labels: mud (1)' in text
  # 2 strokes of 10 x 3 px in 2 images of 40 x 30
  assert f'{tmp_path / "out"}: 2 images (train 2), 3 classes, 2.50 % of ' \
         'pixels labelled\n' in text
  with pytest.raises(SystemExit, match='already exists'):
    cli.main(args + ['--skip-unknown'])


def _inspect_folder(root):
  for d in ('images', 'scribbles', 'masks'):
    os.makedirs(root / d)
  (root / 'classes.txt').write_text('background\nrust\npaint\nmud\n')
  h, w = 20, 30
  scribs = {n: np.full((h, w), 255, np.uint8) for n in 'abc'}
  masks = {n: np.zeros((h, w), np.uint8) for n in 'abc'}
  _stroke(scribs['a'], [(3, 5), (12, 5)], 1, 3)  # 36 px, 12 on background
  masks['a'][:10, :10] = 1
  scribs['a'][15:18, 20:26] = 0                  # 18 px background
  _stroke(scribs['b'], [(15, 2), (15, 11)], 2, 1)  # 10 px
  masks['b'][:, 12:18] = 2
  for i, n in enumerate('abc'):
    cv2.imwrite(str(root / 'images' / f'{n}.png'), _photo(30 + i, h, w))
    cv2.imwrite(str(root / 'scribbles' / f'{n}.png'), scribs[n])
    cv2.imwrite(str(root / 'masks' / f'{n}.png'), masks[n])


def test_inspect_scribbles(tmp_path, capsys):
  root = tmp_path / 'site'
  _inspect_folder(root)
  report = _script('inspect_scribbles').main(
      [str(root), '--out', str(tmp_path / 'look'), '--tile', '60',
       '--no-teacher'])  # the teacher: tests/test_inspect_teacher.py
  text = capsys.readouterr().out
  stats = {c.name: (c.images, c.pixels, round(c.length, 3))
           for c in report.classes}
  assert stats == {'background': (1, 18, 6.0), 'rust': (1, 36, 12.0),
                   'paint': (1, 10, 10.0), 'mud': (0, 0, 0.0)}
  assert report.no_scribble == ['c']
  assert report.classes_without_scribble == ['mud']
  assert report.outside_mask == [('a', 'rust', 12, 36)]
  assert not report.problems
  line = inspection.summary_line(str(root))
  assert line == f'{root}: 3 images (train 3), 4 classes, 3.56 % of pixels ' \
                 'labelled, 1 images without a scribble'
  assert line in text and 'a: rust 12 of 36 px' in text
  assert 'classes with no scribble anywhere: mud' in text
  assert (tmp_path / 'look' / 'report.txt').read_text().startswith(line)
  sheet = np.asarray(Image.open(tmp_path / 'look' / 'contact_sheet.png'))
  top = 4 * 18 + 6  # a legend row per class (180 px wide: one per row)
  assert sheet.shape == (top + 60 + 14, 180, 3)
  colours = visualize.palette(4)
  for i in range(4):  # legend swatches
    np.testing.assert_array_equal(sheet[i * 18 + 4:i * 18 + 16, 4:16],
                                  np.broadcast_to(colours[i], (12, 12, 3)))
  # Tile 'a' (scale 2, nearest): the rust stroke's pixels in rust colour,
  # the untouched pixels of the photo as they are.
  tile = sheet[top:top + 40, 0:60]
  np.testing.assert_array_equal(tile[2 * 5, 2 * 8], colours[1])
  photo = _photo(30, 20, 30)[..., ::-1]  # written by cv2 as BGR
  np.testing.assert_array_equal(tile[2 * 12, 2 * 3], photo[12, 3])
  tile_b = sheet[top:top + 40, 60:120]
  np.testing.assert_array_equal(tile_b[2 * 6, 2 * 15], colours[2])


def test_cvat_and_coco_bad_input_per_image(tmp_path):
  # CVAT: one XML for many images; a missing image is skipped alone with
  # skip_bad. The same image in a second XML is annotated twice.
  os.makedirs(tmp_path / 'x' / 'images')
  cv2.imwrite(str(tmp_path / 'x' / 'images' / 'c.png'), _photo(4))
  (tmp_path / 'x' / 'ann.xml').write_text(CVAT)  # big.png is missing
  with pytest.raises(importers.AnnotationError,
                     match=r"ann\.xml: image 'big\.png': missing image file"):
    importers.import_folder('cvat', str(tmp_path / 'x'), str(tmp_path / 'o'))
  report = importers.import_folder('cvat', str(tmp_path / 'x'),
                                   str(tmp_path / 'o'), skip_bad=True,
                                   warn=lambda m: None)
  assert report.names == ['c'] and len(report.skipped) == 1
  (tmp_path / 'x' / 'more.xml').write_text(CVAT.replace('big.png', 'e.png'))
  with pytest.raises(importers.AnnotationError,
                     match=r"image 'c' is annotated twice: in .*ann\.xml "
                     r'\(site/c\.png\) and .*more\.xml'):
    importers.import_folder('cvat', str(tmp_path / 'x'), str(tmp_path / 'o2'))
  # COCO: a stated size that differs from the file, a file that is not JSON.
  os.makedirs(tmp_path / 'y' / 'images')
  cv2.imwrite(str(tmp_path / 'y' / 'images' / 'd.png'), _photo(5, H, W + 2))
  _coco(tmp_path / 'y' / 'coco.json')
  with pytest.raises(importers.AnnotationError,
                     match=r"coco\.json: image 'd\.png': the annotation says "
                     r'40x30 but the image is 42x30'):
    importers.import_folder('coco', str(tmp_path / 'y' / 'coco.json'),
                            str(tmp_path / 'o3'))
  (tmp_path / 'y' / 'coco.json').write_text('{"images": [')
  with pytest.raises(importers.AnnotationError,
                     match=r'coco\.json: not valid JSON'):
    importers.import_folder('coco', str(tmp_path / 'y'), str(tmp_path / 'o3'))
  assert not (tmp_path / 'o2').exists() and not (tmp_path / 'o3').exists()
