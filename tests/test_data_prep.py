"""data_prep scripts: ScribbleSup XML -> PNG, scribble synthesis, prepare."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cfcls.data import scribbles as S
import data_fixtures as fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_script = fixtures.data_prep_script


def test_scribblesup_to_png(tmp_path):
  fixtures.make_voc(tmp_path / 'm')
  xml_dir = tmp_path / 'm' / 'pascal_2012'
  images = tmp_path / 'm' / 'VOCdevkit' / 'VOC2012' / 'JPEGImages'
  conv = _script('scribblesup_to_png')
  written, skipped = conv.convert(str(xml_dir), str(tmp_path / 'png'),
                                  str(images))
  assert len(written) == len(fixtures.VOC_IMAGES) and not skipped
  for name in written:
    png = cv2.imread(str(tmp_path / 'png' / (name + '.png')),
                     cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(
        png, S.scribbles_from_xml(xml_dir / (name + '.xml')))
  # A wrong <size> is an error naming the file, or a skip if asked.
  bad = xml_dir / '2007_000003.xml'
  bad.write_text(bad.read_text().replace('<width>40</width>',
                                         '<width>41</width>'))
  with pytest.raises(ValueError, match=r'2007_000003\.xml: <size> is 41x30'):
    conv.convert(str(xml_dir), str(tmp_path / 'png2'), str(images))
  written, skipped = conv.convert(str(xml_dir), str(tmp_path / 'png3'),
                                  str(images), skip_corrupt=True)
  assert skipped == ['2007_000003'] and len(written) == 4


def test_synthesize_scribbles_script_and_prepare_folder(tmp_path):
  root = tmp_path / 'site'
  fixtures.make_folder(root, names=('a', 'b', 'c', 'd'))
  for f in os.listdir(root / 'scribbles'):
    os.remove(root / 'scribbles' / f)
  out = subprocess.run(
      [sys.executable, 'data_prep/synthesize_scribbles.py', '--masks_dir',
       str(root / 'masks'), '--out_dir', str(root / 'scribbles'),
       '--dots_dir', str(tmp_path / 'dots'), '--num_classes', '3'],
      cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  assert 'wrote 4 scribble PNGs' in out.stdout
  for n in 'abcd':
    mask = np.asarray(fixtures.Image.open(root / 'masks' / (n + '.png')))
    scrib = cv2.imread(str(root / 'scribbles' / (n + '.png')),
                       cv2.IMREAD_UNCHANGED)
    dots = cv2.imread(str(tmp_path / 'dots' / (n + '.png')),
                      cv2.IMREAD_UNCHANGED)
    lab = scrib != 255
    assert np.all(scrib[lab] == mask[lab])
    assert set(np.unique(scrib[lab])) == set(np.unique(mask))
    assert np.all(dots[dots != 255] == scrib[dots != 255])
  synth = _script('synthesize_scribbles')
  with pytest.raises(ValueError,
                     match=r'masks/b\.png: unknown class ids \[2\]'):
    synth.synthesize_folder(str(root / 'masks'), str(tmp_path / 'x'),
                            num_classes=2)
  prep = _script('prepare_dataset')
  info = prep.main(['--name', 'scribble_folder', '--manual_dir', str(root),
                    '--data_dir', str(tmp_path / 'data')])
  assert info.class_names == ('background', 'rust', 'paint')
  assert info.splits == {'train': 3, 'validation': 1}
  assert os.path.isdir(info.data_path)
