"""Scribble tools and the synthetic scene generator (numpy only, no TF)."""
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from cfcls.data import scribbles as S
from cfcls.data import synthetic


def _write_xml(path, width, height, polygons, filename='img.jpg'):
  parts = [f'<annotation><filename>{filename}</filename>'
           f'<size><width>{width}</width><height>{height}</height></size>']
  for tag, pts in polygons:
    pp = ''.join(f'<point><X>{x}</X><Y>{y}</Y></point>' for x, y in pts)
    parts.append(f'<polygon><tag>{tag}</tag>{pp}</polygon>')
  parts.append('</annotation>')
  with open(path, 'w') as f:
    f.write(''.join(parts))


def test_xml_polylines_drawn_where_their_points_are(tmp_path):
  path = tmp_path / 'a.xml'
  # plane (1): horizontal line at row 10; person (15): vertical line at
  # col 20 crossing it later (drawn over it); background with a point
  # outside the image (clamped to the last column / row).
  _write_xml(path, 40, 30, [
      ('plane', [(5, 10), (30, 10)]),
      ('person', [(20, 2), (20, 25)]),
      ('background', [(2, 28), (100, 28)]),
  ])
  ann = S.parse_scribblesup_xml(path)
  assert (ann.height, ann.width) == (30, 40)
  assert [s.class_id for s in ann.strokes] == [1, 15, 0]
  m = S.draw_strokes(ann.strokes, ann.height, ann.width, thickness=3)
  assert m.shape == (30, 40) and m.dtype == np.uint8
  for x in range(5, 31):
    if abs(x - 20) > 1:
      assert m[10, x] == 1 and m[9, x] == 1 and m[11, x] == 1
  assert m[7, 12] == 255 and m[13, 12] == 255  # 3 px wide, not more
  assert all(m[y, 20] == 15 for y in range(2, 26))  # later stroke on top
  assert m[28, 39] == 0 and m[28, 2] == 0  # clamped point drawn at border
  assert set(np.unique(m)) == {0, 1, 15, 255}
  frac = (m != 255).mean()
  assert 0.1 < frac < 0.3


def test_xml_errors_name_the_file(tmp_path):
  path = tmp_path / 'bad_tag.xml'
  _write_xml(path, 10, 10, [('unicorn', [(1, 1), (5, 5)])])
  with pytest.raises(ValueError, match='bad_tag.xml.*unicorn'):
    S.parse_scribblesup_xml(path)
  broken = tmp_path / 'broken.xml'
  broken.write_text('<annotation><size>')
  with pytest.raises(ValueError, match='broken.xml'):
    S.parse_scribblesup_xml(broken)
  ok = tmp_path / 'ok.xml'
  _write_xml(ok, 10, 8, [('cat', [(1, 1), (5, 5)])])
  with pytest.raises(ValueError, match='ok.xml.*10x8.*12x9'):
    S.scribbles_from_xml(ok, expected_shape=(9, 12))


def _check_synthesised(mask, scrib):
  labelled = scrib != 255
  # Never crosses into another class or void.
  assert np.all(scrib[labelled] == mask[labelled])
  # Every class present gets a stroke.
  present = set(np.unique(mask)) - {255}
  assert set(np.unique(scrib[labelled])) == present
  return labelled.mean()


def test_synthesised_scribbles_on_hand_made_mask():
  mask = np.zeros((120, 160), np.uint8)
  mask[20:80, 30:90] = 1                      # square
  yy, xx = np.mgrid[:120, :160]
  mask[(yy - 70) ** 2 + (xx - 125) ** 2 < 25 ** 2] = 2  # disc
  mask[100:104, 10:60] = 3                    # thin bar, 4 px high
  mask[5:7, 140:142] = 4                      # tiny 2x2 region
  mask[0, :] = 255                            # void row
  scrib = S.synthesize_scribbles(mask)
  frac = _check_synthesised(mask, scrib)
  assert 0.01 <= frac <= 0.06
  # The square's stroke stays in its middle: away from its border.
  rr, cc = np.nonzero(scrib == 1)
  assert rr.min() > 25 and rr.max() < 75 and cc.min() > 35 and cc.max() < 85
  # Subsampled tracing of big regions keeps the same guarantees.
  scrib2 = S.synthesize_scribbles(mask, max_pixels=300)
  _check_synthesised(mask, scrib2)


@pytest.mark.parametrize('kwargs, name', [
    ({'width': 0}, 'width'), ({'core_fraction': 1.5}, 'core_fraction'),
    ({'length_factor': 0.0}, 'length_factor'),
    ({'length_factor': float('nan')}, 'length_factor')])
def test_synthesised_scribbles_refuse_impossible_strokes(kwargs, name):
  # Before the check, a length of 0 or a width of 0 gave silent dots.
  mask = np.zeros((40, 40), np.uint8)
  mask[10:30, 10:30] = 1
  with pytest.raises(ValueError, match=name):
    S.synthesize_scribbles(mask, **kwargs)


def test_synthesised_scribbles_on_synthetic_scenes():
  fracs = []
  for i in range(12):
    ex = synthetic.generate_example(3, 'train', i, size=128)
    fracs.append(_check_synthesised(ex['mask'], ex['scribbles']))
  assert 0.01 <= min(fracs) and max(fracs) <= 0.06


def test_dots_are_a_subset_of_scribbles_and_every_stroke_has_one():
  ex = synthetic.generate_example(0, 'train', 1, size=96)
  scrib = ex['scribbles']
  dots = S.dots_from_scribbles(scrib, np.random.default_rng(0),
                               dots_per_stroke=2, radius=1)
  on = dots != 255
  assert on.any() and np.all(scrib[on] == dots[on])
  assert on.sum() < (scrib != 255).sum() / 2
  assert set(np.unique(dots)) == set(np.unique(scrib))
  again = S.dots_from_scribbles(scrib, np.random.default_rng(0),
                                dots_per_stroke=2, radius=1)
  np.testing.assert_array_equal(dots, again)


def test_class_presence():
  m = np.array([[0, 3, 255], [3, 5, 0]], np.uint8)
  np.testing.assert_array_equal(S.class_presence(m, 6),
                                [False, False, True, False, True])
  np.testing.assert_array_equal(S.class_presence(np.full((2, 2), 255), 3),
                                [False, False])


def test_synthetic_class_patterns_differ_and_sit_on_object_cores(monkeypatch):
  yy, xx = np.mgrid[0:24, 0:24].astype(np.float32)
  pats = [synthetic.class_pattern(c, xx, yy)
          for c in range(1, synthetic.NUM_CLASSES)]
  for a in range(len(pats)):
    assert set(np.unique(pats[a])) == {-1.0, 1.0}
    for b in range(a):
      assert np.mean(pats[a] != pats[b]) > 0.25, (a, b)
  # The same scenes without the patterns differ only on the object cores:
  # never on the background nor within 1 px of an object's edge, and the
  # objects' scribbles run mostly over the patterned cores.
  on_scribbles = []
  for i in range(6):
    ex = synthetic.generate_example(2, 'train', i, size=128)
    with monkeypatch.context() as m:
      m.setattr(synthetic, 'PATTERN_AMPLITUDE', 0.0)
      plain = synthetic.generate_example(2, 'train', i, size=128)
    np.testing.assert_array_equal(ex['mask'], plain['mask'])
    changed = np.any(ex['image'] != plain['image'], axis=-1)
    depth = cv2.distanceTransform((ex['mask'] > 0).astype(np.uint8), cv2.DIST_L2, 3)
    assert changed.any() and not np.any(changed & (depth <= 1))
    obj_scribbles = (ex['scribbles'] > 0) & (ex['scribbles'] != 255)
    on_scribbles.append(np.mean(changed[obj_scribbles]))
  assert np.mean(on_scribbles) > 0.6, on_scribbles


def test_synthetic_scenes_deterministic_and_varied():
  a = synthetic.generate_example(7, 'train', 4, size=64)
  b = synthetic.generate_example(7, 'train', 4, size=64)
  c = synthetic.generate_example(7, 'validation', 4, size=64)
  for k in ('image', 'mask', 'scribbles', 'dots'):
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a['image'], c['image'])
  assert a['image'].shape == (64, 64, 3) and a['image'].dtype == np.uint8
  assert a['mask'].max() < synthetic.NUM_CLASSES
  np.testing.assert_array_equal(
      a['presence'], S.class_presence(a['scribbles'], synthetic.NUM_CLASSES))


def test_synthetic_colour_does_not_give_away_the_class():
  # Mean colour of each object class over many instances: all classes share
  # the same colour distribution, so the per-class means are close while
  # single instances vary a lot.
  means = {c: [] for c in range(1, synthetic.NUM_CLASSES)}
  for i in range(60):
    ex = synthetic.generate_example(1, 'train', i, size=64)
    for c in means:
      sel = ex['mask'] == c
      if sel.sum() > 20:
        means[c].append(ex['image'][sel].mean(axis=0))
  per_class = np.array([np.mean(v, axis=0) for v in means.values()])
  spread = np.array([np.std(np.array(v), axis=0).mean()
                     for v in means.values()])
  assert np.all(spread > 40)  # instances of one class vary widely
  assert np.ptp(per_class, axis=0).max() < 60


def test_soft_edges():
  ex = synthetic.generate_example(0, 'train', 0, size=128)
  img = ex['image'].astype(np.float64)
  edges = ex['mask'] != np.roll(ex['mask'], 1, axis=1)
  # Anti-aliasing: at object edges, some pixels lie strictly between the
  # colours of their left and right neighbours.
  left, mid, right = np.roll(img, 1, 1), img, np.roll(img, -1, 1)
  between = ((mid > np.minimum(left, right) + 3) &
             (mid < np.maximum(left, right) - 3)).any(-1)
  assert between[edges].mean() > 0.1


def test_import_cfcls_does_not_import_tensorflow():
  code = textwrap.dedent('''
      import sys
      import cfcls, cfcls.data, cfcls.data.scribbles, cfcls.data.synthetic
      assert 'tensorflow' not in sys.modules, 'tensorflow imported'
      print('ok')''')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, '-c', code], cwd=root,
                       capture_output=True, text=True, check=False)
  assert out.returncode == 0 and 'ok' in out.stdout, out.stderr


def test_colour_edges_determine_what_scribbles_leave_open():
  # The closed-form matting solution (image + scribbles only) recovers the
  # masks of synthetic scenes, though the scribbles label only a few percent
  # of the pixels: the data is the kind the CFM loss can learn from.
  from cfcls.matting import solver  # pylint: disable=g-import-not-at-top
  k = synthetic.NUM_CLASSES
  conf = np.zeros((k, k))
  labelled = []
  for i in range(4):
    ex = synthetic.generate_example(0, 'validation', i, size=64)
    alpha = np.clip(solver.solve_alpha_direct(
        ex['image'] / 255.0, ex['scribbles'], k), 0, 1)
    pred = np.where(alpha.max(-1) >= 0.5, alpha.argmax(-1) + 1, 0)
    conf += np.bincount(ex['mask'].ravel() * k + pred.ravel(),
                        minlength=k * k).reshape(k, k)
    labelled.append(np.mean(ex['scribbles'] != 255))
  present = conf.sum(1) > 0
  iou = np.diag(conf)[present] / (conf.sum(0) + conf.sum(1) -
                                  np.diag(conf))[present]
  assert iou.mean() > 0.85, iou
  assert max(labelled) < 0.08


def test_auto_width_keeps_large_images_near_voc_density():
  assert S.auto_width((375, 500)) == 3 and S.auto_width((1024, 2048)) == 11
  rng = np.random.default_rng(0)
  h, w = 400, 800
  seeds = rng.integers(0, [w, h], size=(20, 2))
  yy, xx = np.mgrid[:h, :w]
  dist = (xx[None] - seeds[:, 0, None, None]) ** 2 + (
      yy[None] - seeds[:, 1, None, None]) ** 2
  mask = (np.argmin(dist, axis=0) % 7).astype(np.uint8)  # Voronoi regions
  width = S.auto_width(mask.shape)
  assert width == 5
  scrib = S.synthesize_scribbles(mask, width=width)
  frac = _check_synthesised(mask, scrib)
  assert 0.01 <= frac <= 0.06
