"""Readers for annotation-tool files: labelme JSON, CVAT for images 1.1 XML,
COCO JSON. Pure Python / numpy (no tensorflow, no drawing).

Each reader turns one annotation file into ImageRecords: the image it
annotates (a path, or labelme's embedded bytes), the size the tool declared,
and its shapes as (label, kind, points). Kinds: 'line' (an open stroke),
'points' (dots), 'polygon' (outline or filled region, the importer decides).
Points are float (x, y) in the tools' continuous pixel coordinates (pixel
column i spans [i, i + 1)). Malformed files raise AnnotationError naming the
file and the problem; images and labels are checked by the importer
(cfcls.data.importers).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import os
import xml.etree.ElementTree as ET

import numpy as np

FORMATS = ('labelme', 'cvat', 'coco')
EXTENSIONS = {'labelme': '.json', 'cvat': '.xml', 'coco': '.json'}


class AnnotationError(ValueError):
  """A bad annotation file or image (the message names it)."""


@dataclasses.dataclass
class Shape:
  """One annotated shape: points float [P, 2] as (x, y)."""
  label: str
  kind: str  # 'line', 'points' or 'polygon'
  points: np.ndarray
  where: str  # for messages, e.g. 'shape 3'


@dataclasses.dataclass
class ImageRecord:
  """One image and its shapes, as an annotation file describes it."""
  source: str               # the annotation file
  image_name: str           # the image's file name as the file gives it
  image_path: str | None    # first existing candidate (or the first tried)
  image_data: bytes | None  # labelme imageData (preferred when present)
  size: tuple[int, int] | None  # (H, W) the tool declared
  shapes: list[Shape]
  declared: tuple[str, ...] = ()  # class names the file declares (COCO)

  @property
  def name(self) -> str:
    """Output stem: the image's base name without extension."""
    return os.path.splitext(_basename(self.image_name))[0]


def _basename(path: str) -> str:
  return path.replace('\\', '/').rstrip('/').split('/')[-1]


def _find_image(image_name: str, dirs) -> str:
  """The first existing file among dirs x (image_name, its base name)."""
  rel = image_name.replace('\\', '/')
  tried = []
  for d in dirs:
    for cand in (rel, _basename(rel)):
      path = os.path.normpath(os.path.join(d, cand))
      if os.path.isfile(path):
        return path
      tried.append(path)
  return tried[0]


def _points(value, where: str, path: str) -> np.ndarray:
  try:
    pts = np.asarray(value, np.float64).reshape(-1, 2)
  except (TypeError, ValueError) as e:
    raise AnnotationError(f'{path}: {where}: points are not a list of (x, y)'
                          f' numbers ({e})') from e
  if not len(pts) or not np.all(np.isfinite(pts)):
    raise AnnotationError(f'{path}: {where}: no points or non-finite points')
  return pts


def _read_text(path: str) -> str:
  try:
    with open(path, encoding='utf-8-sig') as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise AnnotationError(f'{path}: cannot read annotation file ({e})') from e
  if not text.strip():
    raise AnnotationError(f'{path}: empty annotation file')
  return text


def _read_json(path: str):
  try:
    return json.loads(_read_text(path))
  except json.JSONDecodeError as e:
    raise AnnotationError(f'{path}: not valid JSON ({e})') from e


def _size(h, w, path, where):
  try:
    h, w = int(h), int(w)
  except (TypeError, ValueError) as e:
    raise AnnotationError(f'{path}: {where}: bad image size ({e})') from e
  if h <= 0 or w <= 0:
    raise AnnotationError(f'{path}: {where}: image size {w}x{h}')
  return h, w


_LABELME_KINDS = {'polygon': 'polygon', 'ai_polygon': 'polygon',
                  'line': 'line', 'linestrip': 'line',
                  'point': 'points', 'points': 'points'}


def _labelme_shape(k: int, s, path: str) -> Shape:
  where = f'shape {k}'
  if not isinstance(s, dict):
    raise AnnotationError(f'{path}: {where} is not an object')
  label = str(s.get('label') or '').strip()
  if not label:
    raise AnnotationError(f'{path}: {where} has no label')
  stype = s.get('shape_type') or 'polygon'  # labelme < 3 had no shape_type
  pts = _points(s.get('points'), f'{where} ({label!r})', path)
  if stype == 'rectangle':
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return Shape(label, 'polygon', pts, where)
  if stype == 'circle':
    (cx, cy), edge = pts[0], pts[-1]
    r = float(np.hypot(*(edge - pts[0])))
    t = np.linspace(0, 2 * math.pi, max(8, int(2 * math.pi * r)),
                    endpoint=False)
    pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    return Shape(label, 'polygon', pts, where)
  if stype not in _LABELME_KINDS:
    raise AnnotationError(f'{path}: {where} ({label!r}) has shape_type '
                          f'{stype!r}; supported: '
                          f'{sorted(_LABELME_KINDS) + ["circle", "rectangle"]}')
  kind = _LABELME_KINDS[stype]
  if kind == 'polygon' and len(pts) < 3:
    kind = 'line'
  return Shape(label, kind, pts, where)


def read_labelme(path: str) -> list[ImageRecord]:
  """One labelme JSON: shapes [{label, points, shape_type}], imagePath,
  imageData (base64 of the image file), imageHeight, imageWidth.

  imagePath is relative to the JSON file (Windows backslashes allowed; the
  base name beside the JSON is tried too); imageData, when present, is the
  image (labelme shows it rather than the file).
  """
  doc = _read_json(path)
  if not isinstance(doc, dict) or 'shapes' not in doc:
    raise AnnotationError(f'{path}: not a labelme file (no "shapes")')
  if not isinstance(doc['shapes'], list):
    raise AnnotationError(f'{path}: "shapes" is not a list')
  image_name = str(doc.get('imagePath') or '')
  data = None
  if doc.get('imageData'):
    try:
      data = base64.b64decode(doc['imageData'], validate=False)
    except (binascii.Error, TypeError, ValueError) as e:
      raise AnnotationError(f'{path}: imageData is not base64 ({e})') from e
  if not image_name:
    if data is None:
      raise AnnotationError(f'{path}: neither imagePath nor imageData')
    image_name = os.path.splitext(os.path.basename(path))[0] + '.png'
  image_path = _find_image(image_name, [os.path.dirname(path) or '.'])
  size = None
  if doc.get('imageHeight') is not None and doc.get('imageWidth') is not None:
    size = _size(doc['imageHeight'], doc['imageWidth'], path, 'imageHeight/'
                 'imageWidth')
  shapes = [_labelme_shape(k, s, path) for k, s in enumerate(doc['shapes'])]
  return [ImageRecord(path, image_name, image_path, data, size, shapes)]


def _cvat_points(text, where, path):
  try:
    pairs = [p.split(',') for p in (text or '').strip().split(';') if p]
    return _points([[float(x), float(y)] for x, y in pairs], where, path)
  except ValueError as e:
    raise AnnotationError(f'{path}: {where}: bad points {text!r}') from e


def read_cvat(path: str, images_dir: str | None = None) -> list[ImageRecord]:
  """CVAT for images 1.1: <annotations><image id name width height> holding
  <polyline|points|polygon|box label points="x1,y1;x2,y2" z_order>.

  Images are found under images_dir (default: the XML's folder, then its
  images/ subfolder). Shapes are drawn in z_order, then file order.
  """
  try:
    root = ET.fromstring(_read_text(path))
  except ET.ParseError as e:
    raise AnnotationError(f'{path}: not valid XML ({e})') from e
  if root.tag != 'annotations':
    raise AnnotationError(f'{path}: root <{root.tag}>; expected <annotations>'
                          ' (CVAT for images 1.1)')
  images = root.findall('image')
  if not images and root.find('track') is not None:
    raise AnnotationError(f'{path}: CVAT for video (<track>); export the task'
                          ' as "CVAT for images 1.1"')
  base = os.path.dirname(path) or '.'
  dirs = [images_dir] if images_dir else [base, os.path.join(base, 'images')]
  out = []
  for im in images:
    name = im.get('name') or ''
    if not name:
      raise AnnotationError(f'{path}: <image id="{im.get("id")}"> has no name')
    size = _size(im.get('height'), im.get('width'), path, f'image {name!r}')
    shapes = []
    for k, el in enumerate(im):
      where = f'image {name!r} <{el.tag}> {k}'
      if el.tag == 'tag':  # an image-level tag: no geometry
        continue
      label = (el.get('label') or '').strip()
      if not label:
        raise AnnotationError(f'{path}: {where} has no label')
      z = int(float(el.get('z_order') or 0))
      if el.tag == 'box':
        x0, y0, x1, y1 = (float(el.get(a)) for a in ('xtl', 'ytl', 'xbr',
                                                     'ybr'))
        pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        shapes.append((z, Shape(label, 'polygon', pts, where)))
        continue
      kind = {'polyline': 'line', 'points': 'points',
              'polygon': 'polygon'}.get(el.tag)
      if kind is None:
        raise AnnotationError(f'{path}: {where}: unsupported shape <{el.tag}>'
                              ' (use polyline, points, polygon or box)')
      pts = _cvat_points(el.get('points'), where, path)
      shapes.append((z, Shape(label, kind, pts, where)))
    shapes.sort(key=lambda zs: zs[0])
    out.append(ImageRecord(path, name, _find_image(name, dirs), None, size,
                           [s for _, s in shapes]))
  if not out:
    raise AnnotationError(f'{path}: no <image> elements')
  return out


def read_coco(path: str, images_dir: str | None = None,
              strokes: bool = False) -> list[ImageRecord]:
  """COCO JSON: images [{id, file_name, width, height}], annotations
  [{image_id, category_id, segmentation [[x1, y1, x2, y2, ...], ...],
  keypoints [x, y, v, ...]}], categories [{id, name}].

  Each segmentation list is a polygon, or an open stroke with strokes=True;
  keypoints with v > 0 are dots. RLE segmentations are not supported.
  Images are found under images_dir (default: the JSON's folder, then its
  images/ subfolder).
  """
  doc = _read_json(path)
  if not isinstance(doc, dict) or not isinstance(doc.get('images'), list):
    raise AnnotationError(f'{path}: not a COCO file (no "images" list)')
  try:
    cats = {c['id']: str(c['name']).strip() for c in doc.get('categories', [])}
    images = {im['id']: im for im in doc['images']}
  except (KeyError, TypeError) as e:
    raise AnnotationError(f'{path}: category or image without {e}') from e
  if not images:
    raise AnnotationError(f'{path}: no images')
  shapes = {i: [] for i in images}
  for k, a in enumerate(doc.get('annotations') or []):
    where = f'annotation {a.get("id", k)}'
    if a.get('image_id') not in images:
      raise AnnotationError(f'{path}: {where}: unknown image_id '
                            f'{a.get("image_id")!r}')
    if a.get('category_id') not in cats:
      raise AnnotationError(f'{path}: {where}: category_id '
                            f'{a.get("category_id")!r} not in categories')
    label = cats[a['category_id']]
    seg = a.get('segmentation') or []
    if isinstance(seg, dict):
      raise AnnotationError(f'{path}: {where}: RLE segmentation is not '
                            'supported; export polygons or polylines')
    for j, poly in enumerate(seg):
      if not isinstance(poly, list) or len(poly) % 2:
        raise AnnotationError(f'{path}: {where}: segmentation {j} is not a '
                              'list [x1, y1, x2, y2, ...]')
      pts = _points(poly, f'{where} segmentation {j}', path)
      kind = 'line' if strokes or len(pts) < 3 else 'polygon'
      shapes[a['image_id']].append(Shape(label, kind, pts, where))
    kps = a.get('keypoints') or []
    if kps:
      if len(kps) % 3:
        raise AnnotationError(f'{path}: {where}: keypoints length {len(kps)}'
                              ' is not a multiple of 3')
      kp = np.asarray(kps, np.float64).reshape(-1, 3)
      kp = kp[kp[:, 2] > 0, :2]
      if len(kp):
        shapes[a['image_id']].append(
            Shape(label, 'points', _points(kp, where, path), where))
  base = os.path.dirname(path) or '.'
  dirs = [images_dir] if images_dir else [base, os.path.join(base, 'images')]
  declared = tuple(cats[c] for c in sorted(cats))
  out = []
  for i, im in images.items():
    name = str(im.get('file_name') or '')
    if not name:
      raise AnnotationError(f'{path}: image id {i} has no file_name')
    size = None
    if im.get('height') is not None and im.get('width') is not None:
      size = _size(im['height'], im['width'], path, f'image {name!r}')
    out.append(ImageRecord(path, name, _find_image(name, dirs), None, size,
                           shapes[i], declared))
  return out


def read_file(fmt: str, path: str, images_dir=None, coco_strokes=False
              ) -> list[ImageRecord]:
  if fmt == 'labelme':
    return read_labelme(path)
  if fmt == 'cvat':
    return read_cvat(path, images_dir)
  if fmt == 'coco':
    return read_coco(path, images_dir, coco_strokes)
  raise ValueError(f'unknown format {fmt!r}; expected one of {FORMATS}')


def annotation_files(fmt: str, input_path: str) -> list[str]:
  """input_path itself, or the format's files directly inside that folder."""
  if os.path.isfile(input_path):
    return [input_path]
  if not os.path.isdir(input_path):
    raise AnnotationError(f'{input_path}: no such file or folder (--input)')
  ext = EXTENSIONS[fmt]
  files = sorted(os.path.join(input_path, f) for f in os.listdir(input_path)
                 if f.lower().endswith(ext))
  if not files:
    raise AnnotationError(f'{input_path}: no {ext} files ({fmt} annotations)')
  return files
