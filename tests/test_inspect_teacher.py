"""The closed-form teacher in data_prep/inspect_scribbles.py (issue 28).

Its labels are `losses.closed_form_labels` of the quantised targets (what
'two_stage' trains on); its mIoU on demo scenes equals the figure that
benchmarks/demo_closed_form.py prints for the same scenes and settings.
"""
import os
import re
import subprocess
import sys

import cv2
import numpy as np
from PIL import Image
import pytest

import data_fixtures
from cfcls import config_schema, losses
from cfcls.data import synthetic, synthetic_textures, targets, teacher

ROOT = data_fixtures.ROOT
NUM_VAL = 4


def _demo_folder(root, n=NUM_VAL, masks=True, blank=()):
  """The demo's first n validation scenes as a scribble folder."""
  for sub in ('images', 'scribbles') + (('masks',) if masks else ()):
    os.makedirs(os.path.join(root, sub))
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('\n'.join(synthetic.CLASS_NAMES) + '\n')
  for i in range(n):
    ex = synthetic.generate_example(0, 'validation', i, 128)
    name = f'v{i}'
    cv2.imwrite(os.path.join(root, 'images', name + '.png'),
                ex['image'][..., ::-1])
    scrib = ex['scribbles'] if name not in blank else np.full(
        ex['scribbles'].shape, 255, np.uint8)
    cv2.imwrite(os.path.join(root, 'scribbles', name + '.png'), scrib)
    if masks:
      cv2.imwrite(os.path.join(root, 'masks', name + '.png'), ex['mask'])
  return root


def test_teacher_miou_equals_demo_closed_form(tmp_path, capsys):
  """Same 4 scenes, configs/demo.py's settings: the same printed mIoU."""
  config_path = tmp_path / 'demo4.py'
  config_path.write_text(
      'from cfcls import config_schema\n'
      'def get_config():\n'
      f'  c = config_schema.load_config_file({os.path.join(ROOT, "configs", "demo.py")!r})\n'
      f'  c.data.synthetic.num_val = {NUM_VAL}\n'
      '  return c\n')
  env = dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES='')
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'benchmarks', 'demo_closed_form.py'),
       f'--config={config_path}'], capture_output=True, text=True, env=env,
      timeout=300, check=True).stdout
  bench = re.search(r'threshold 0\.6: mIoU (\d\.\d{4})', out).group(1)
  folder = _demo_folder(str(tmp_path / 'demo'))
  report = data_fixtures.data_prep_script('inspect_scribbles').main(
      [folder, '--out', str(tmp_path / 'look'), '--config',
       os.path.join(ROOT, 'configs', 'demo.py'), '--tile', '64'])
  printed = capsys.readouterr().out
  taught = report.teacher
  assert f'{taught.miou():.4f}' == bench, (taught.miou(), out)
  assert f'teacher mIoU against masks/: {bench}' in printed
  # The solve time of every image is printed, one line each.
  for i in range(NUM_VAL):
    assert re.search(rf'^  v{i}: \d+\.\d\d s, unsure \d+\.\d %, IoU '
                     r'\d\.\d{3}$', printed, re.M), printed
  # The ranked list, worst IoU first.
  ious = [t.iou for t in taught.ranked()]
  assert ious == sorted(ious) and len(ious) == NUM_VAL
  sheet = np.asarray(Image.open(tmp_path / 'look' / 'contact_sheet.png'))
  assert sheet.shape[1] == NUM_VAL * 2 * 64  # scribbles | teacher per image


def test_labels_are_what_two_stage_trains_on(tmp_path):
  """The sure labels: closed_form_labels of the quantised cached targets
  (the margin's unsure pixels 255, scribbles kept); hatched in the sheet."""
  cfg = config_schema.load_config_file(
      os.path.join(ROOT, 'configs', 'folder.py'))
  settings = teacher.Settings.from_config(cfg)
  assert (settings.threshold, settings.margin, settings.eps) == (
      cfg.target_threshold, cfg.target_margin, cfg.data.targets.eps)
  ex = synthetic.generate_example(0, 'validation', 1, 128)
  k = synthetic.NUM_CLASSES
  result = teacher.solve(ex['image'], ex['scribbles'], k, settings)
  alpha = targets.solve_image(ex['image'], ex['scribbles'], k, settings.lam,
                              settings.eps, settings.radius)
  cached = np.rint(np.clip(alpha, 0, 1) * 255).astype(np.uint8)  # as stored
  expected = losses.closed_form_labels(
      (cached / 255.0)[None].astype(np.float32), ex['scribbles'][None],
      np.ones((1, 128, 128), np.float32), cfg.target_threshold,
      cfg.target_margin)[0]
  np.testing.assert_array_equal(result.labels, expected)
  assert 0 < result.unsure_share < 0.5
  scribbled = ex['scribbles'] != 255
  np.testing.assert_array_equal(result.labels[scribbled],
                                ex['scribbles'][scribbled])
  # The unsure pixels are hatched black and white in the overlay.
  rgba = teacher.overlay_rgba(result.labels)
  unsure = rgba[result.labels == 255]
  assert set(map(tuple, unsure[:, :3])) == {(0, 0, 0), (255, 255, 255)}


def test_without_masks_ranks_by_unsure_share(tmp_path, capsys):
  folder = _demo_folder(str(tmp_path / 'nomask'), n=4, masks=False,
                        blank=('v2',))
  os.remove(os.path.join(folder, 'scribbles', 'v3.png'))
  report = data_fixtures.data_prep_script('inspect_scribbles').main(
      [folder, '--out', str(tmp_path / 'look'), '--tile', '48'])
  printed = capsys.readouterr().out
  taught = report.teacher
  assert taught.miou() is None and 'teacher mIoU' not in printed
  ranked = taught.ranked()
  # The image without a stroke first, then the most unsure.
  assert ranked[0].name == 'v2' and not ranked[0].scribbled
  assert ranked[1].unsure >= ranked[2].unsure and len(ranked) == 3
  assert taught.skipped == [('v3', 'no scribble file')]
  assert 'not solved (1): v3 (no scribble file)' in printed
  assert '  v2: unsure 0.0 % (no stroke)' in printed
  assert 'where one more stroke helps most (most unsure first):' in printed
  text = (tmp_path / 'look' / 'report.txt').read_text()
  assert 'closed-form teacher (lam=100, eps=1e-05, radius=1, threshold 0.6, '\
         'margin 0.2, object labels checked at radius 2)' in text


def test_set_changes_the_teacher_and_refuses_typos(tmp_path, capsys):
  folder = _demo_folder(str(tmp_path / 'strict'), n=2, masks=False)
  inspect = data_fixtures.data_prep_script('inspect_scribbles')
  base = inspect.main([folder, '--out', str(tmp_path / 'a'), '--tile', '32'])
  strict = inspect.main([folder, '--out', str(tmp_path / 'b'), '--tile', '32',
                         '--set', 'target_threshold=0.55',
                         '--set', 'target_margin=0.35'])
  assert 'threshold 0.55, margin 0.35' in capsys.readouterr().out
  # The stricter rule leaves more pixels out, image by image.
  for a, b in zip(base.teacher.images, strict.teacher.images):
    assert b.unsure > a.unsure, (a, b)
  for bad, message in (
      ('target_margn=0.3', "target_margn: the config has no field"),
      ('target_margin=wide', "target_margin='wide'"),
      ('target_margin', 'give KEY=VALUE')):
    with pytest.raises(SystemExit) as e:
      inspect.main([folder, '--out', str(tmp_path / 'c'), '--set', bad])
    assert message in str(e.value), str(e.value)


def test_overrides_set_nested_fields_and_name_bad_ones():
  cfg = config_schema.load_config_file(
      os.path.join(ROOT, 'configs', 'folder.py'))
  overrides = config_schema.parse_overrides(
      ['data.targets.eps=1e-6', 'model.name=erfnet', 'tta_scales=(1.0, 1.5)'])
  assert overrides == {'data.targets.eps': 1e-6, 'model.name': 'erfnet',
                       'tta_scales': (1.0, 1.5)}
  config_schema.apply_overrides(cfg, overrides)
  assert (cfg.data.targets.eps, cfg.model.name) == (1e-6, 'erfnet')
  assert tuple(cfg.tta_scales) == (1.0, 1.5)
  with pytest.raises(ValueError, match="no field 'epss'"):
    config_schema.apply_overrides(cfg, {'data.targets.epss': 1.0})
  with pytest.raises(ValueError, match='eps is a value, not a group'):
    config_schema.apply_overrides(cfg, {'data.targets.eps.x': 1.0})
  assert not hasattr(cfg.data.targets, 'epss')  # nothing was added


def test_preview_solve_is_close_to_the_exact_one():
  """The annotation page's downscaled preview (max_pixels): same labels on
  most pixels, and strokes thinner than the factor still count."""
  ex = synthetic.generate_example(0, 'validation', 2, 128)
  k = synthetic.NUM_CLASSES
  settings = teacher.Settings()
  exact = teacher.solve(ex['image'], ex['scribbles'], k, settings)
  preview = teacher.solve(ex['image'], ex['scribbles'], k, settings,
                          max_pixels=64 * 64)
  assert preview.factor == 2 and preview.labels.shape == (128, 128)
  assert np.mean(preview.decision == exact.decision) > 0.9
  one_px = np.full((128, 128), 255, np.uint8)
  one_px[40, 41] = 1  # odd row and column: one pixel of a 2x2 block
  small = teacher.solve(ex['image'], one_px, k, settings, max_pixels=64 * 64)
  assert small.alpha[..., 0].max() > 0.5


def test_check_radius_labels_are_the_vetted_training_labels():
  """Settings.check_radius (data.targets.check_radius): the labels of the
  quantised mattes vetted by the quantised check mattes min(r1, r2), as
  'two_stage' takes them from the cache; the preview path solves both."""
  cfg = config_schema.load_config_file(
      os.path.join(ROOT, 'configs', 'folder.py'))
  cfg.data.targets.check_radius = 2
  settings = teacher.Settings.from_config(cfg)
  assert settings.check_radius == 2 and 'radius 2' in settings.describe()
  # A textures scene where the radius-1 teacher labels background as objects
  ex = synthetic_textures.generate_example(0, 'validation', 0, 128)
  k = synthetic_textures.NUM_CLASSES
  result = teacher.solve(ex['image'], ex['scribbles'], k, settings)

  def stored(a):
    return (np.rint(a * 255) / 255.0)[None].astype(np.float32)

  r1, r2 = (np.clip(targets.solve_image(ex['image'], ex['scribbles'], k,
                                        settings.lam, settings.eps, r), 0, 1)
            for r in (1, 2))
  args = (ex['scribbles'][None], np.ones((1, 128, 128), np.float32),
          cfg.target_threshold, cfg.target_margin)
  expected = losses.closed_form_labels(stored(r1), *args,
                                       check=stored(np.minimum(r1, r2)))[0]
  np.testing.assert_array_equal(result.labels, expected)
  unchecked = np.asarray(losses.closed_form_labels(stored(r1), *args)[0])

  def wrong(labels):
    return np.sum((labels != 255) & (labels != ex['mask']))

  # here the check removes most of the wrong labels (121 -> 34 when written)
  assert wrong(result.labels) < 0.5 * wrong(unchecked)
  np.testing.assert_allclose(result.alpha, stored(r1)[0], atol=1e-6)
  preview = teacher.solve(ex['image'], ex['scribbles'], k, settings,
                          max_pixels=64 * 64)
  assert preview.labels.shape == (128, 128)
  assert np.mean(preview.labels == result.labels) > 0.8
