"""Raw data folders for the data tests: VOC, Cityscapes and scribble folders.

Shared by the builder, data-prep, fault and command-line tests.
"""
import importlib.util
import os

import cv2
import numpy as np
from PIL import Image

from cfcls import visualize
from cfcls.data import scribbles as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_prep_script(name):
  """The module of data_prep/<name>.py (the scripts are not a package)."""
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(ROOT, 'data_prep', name + '.py'))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


# The standard VOC colour map (mask PNGs store indices; the colours only
# make the files look like VOC's).
VOC_PALETTE = visualize.palette(256)


def _photo(rng, h, w):
  base = cv2.resize(rng.integers(0, 255, (4, 4, 3)).astype(np.uint8), (w, h))
  return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(
      np.uint8)


def save_palette_png(path, arr):
  im = Image.fromarray(arr.astype(np.uint8), mode='P')
  im.putpalette(VOC_PALETTE.reshape(-1).tolist())
  im.save(path)


def save_grey_png(path, arr):
  Image.fromarray(arr.astype(np.uint8), mode='L').save(path)


def _xml(path, w, h, polygons):
  parts = [f'<annotation><filename>{os.path.basename(path)[:-4]}.jpg'
           f'</filename><size><width>{w}</width><height>{h}</height></size>']
  for tag, pts in polygons:
    pp = ''.join(f'<point><X>{x}</X><Y>{y}</Y></point>' for x, y in pts)
    parts.append(f'<polygon><tag>{tag}</tag>{pp}</polygon>')
  with open(path, 'w') as f:
    f.write(''.join(parts) + '</annotation>')


# id -> (split, [(voc class, tag, (r0, r1, c0, c1) box)])
VOC_IMAGES = {
    '2007_000001': ('train', [(15, 'person', (4, 22, 6, 20))]),
    '2007_000002': ('train', [(8, 'cat', (3, 15, 3, 18)),
                              (9, 'chair', (16, 27, 22, 37))]),
    '2007_000003': ('train', [(5, 'bottle', (5, 20, 10, 30))]),
    '2007_000004': ('val', [(1, 'plane', (6, 24, 8, 34))]),
    '2007_000005': ('val', [(12, 'dog', (8, 26, 4, 22))]),
}
VOC_H, VOC_W = 30, 40


def make_voc(root, xml=True):
  """VOCdevkit/VOC2012 with palette masks and ScribbleSup XML (or PNGs)."""
  voc = os.path.join(root, 'VOCdevkit', 'VOC2012')
  for d in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
    os.makedirs(os.path.join(voc, d), exist_ok=True)
  sdir = os.path.join(root, 'pascal_2012' if xml else 'scribbles')
  os.makedirs(sdir, exist_ok=True)
  rng = np.random.default_rng(0)
  lists = {'train': [], 'val': []}
  expected = {}
  for name, (split, objs) in VOC_IMAGES.items():
    lists[split].append(name)
    cv2.imwrite(os.path.join(voc, 'JPEGImages', name + '.jpg'),
                _photo(rng, VOC_H, VOC_W))
    mask = np.zeros((VOC_H, VOC_W), np.uint8)
    polys = [('background', [(1, 29), (20, 29), (60, 29)])]  # clamped x
    for cls, tag, (r0, r1, c0, c1) in objs:
      mask[r0 - 1:r1 + 1, c0 - 1:c1 + 1] = 255  # VOC's void outline
      mask[r0:r1, c0:c1] = cls
      rm = (r0 + r1) // 2
      polys.append((tag, [(c0 + 2, rm), ((c0 + c1) // 2, rm - 1),
                          (c1 - 3, rm)]))
    save_palette_png(os.path.join(voc, 'SegmentationClass', name + '.png'),
                      mask)
    if xml:
      _xml(os.path.join(sdir, name + '.xml'), VOC_W, VOC_H, polys)
    else:
      strokes = [S.Stroke(S.VOC_SCRIBBLESUP_TAGS.index(t), np.array(p))
                 for t, p in polys]
      save_grey_png(os.path.join(sdir, name + '.png'),
                     S.draw_strokes(strokes, VOC_H, VOC_W))
    expected[name] = (mask, polys)
  for split, names in lists.items():
    with open(os.path.join(voc, 'ImageSets', 'Segmentation', split + '.txt'),
              'w') as f:
      f.write('\n'.join(names) + '\n')
  return expected


def make_cityscapes(root):
  rng = np.random.default_rng(1)
  files = {}
  for split, city, n in (('train', 'aachen', 2), ('val', 'lindau', 1)):
    for d in ('leftImg8bit', 'gtFine'):
      os.makedirs(os.path.join(root, d, split, city), exist_ok=True)
    for i in range(n):
      stem = f'{city}_{i:06d}_000019'
      h, w = 32, 64
      lab = np.full((h, w), 11, np.uint8)        # building
      lab[:8] = 23                               # sky
      lab[20:] = 7                               # road
      lab[22:28, 10:30] = 26                     # car
      lab[12:18, 40:44] = 4                      # 'static' -> background
      lab[31, :] = 1                             # ego vehicle -> void
      cv2.imwrite(os.path.join(root, 'leftImg8bit', split, city,
                               stem + '_leftImg8bit.png'), _photo(rng, h, w))
      save_grey_png(os.path.join(root, 'gtFine', split, city,
                                  stem + '_gtFine_labelIds.png'), lab)
      files[stem] = lab
  return files


def make_folder(root, names=('a', 'b', 'c'), size=(24, 20), masks=True,
                splits=True):
  for d in ('images', 'scribbles') + (('masks',) if masks else ()):
    os.makedirs(os.path.join(root, d), exist_ok=True)
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('background\nrust\npaint\n')
  rng = np.random.default_rng(2)
  h, w = size
  for i, n in enumerate(names):
    ext = '.png' if i % 2 else '.jpg'
    cv2.imwrite(os.path.join(root, 'images', n + ext), _photo(rng, h, w))
    mask = np.zeros((h, w), np.uint8)
    mask[4:14, 3:12] = 1 + i % 2
    scrib = S.synthesize_scribbles(mask)
    save_grey_png(os.path.join(root, 'scribbles', n + '.png'), scrib)
    if masks:
      save_palette_png(os.path.join(root, 'masks', n + '.png'), mask)
  if splits:
    with open(os.path.join(root, 'train.txt'), 'w') as f:
      f.write('\n'.join(names[:-1]) + '\n')
    with open(os.path.join(root, 'val.txt'), 'w') as f:
      f.write(names[-1] + '\n')
