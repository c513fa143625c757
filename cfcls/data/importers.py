"""Scribbles drawn in annotation tools -> a `scribble_folder` dataset folder.

  import_folder('labelme', 'annotations/', 'my_folder')  # see
  data_prep/import_scribbles.py for the command line.

Reads labelme / CVAT / COCO files (cfcls.data.annotation_formats), draws each
image's shapes into a scribble map and writes the scribble_folder layout:
images/<name>.<ext>, scribbles/<name>.png, classes.txt and, when a split is
asked for, train.txt / val.txt. numpy / OpenCV / PIL only (no tensorflow).

Drawing: a point (x, y) lies in pixel (floor(y), floor(x)) (the tools'
continuous coordinates, labelme's own converter agrees); points up to
OUTSIDE_TOLERANCE px outside the image are moved onto its border, farther ones
are bad input. Strokes are `width` px wide (default scribbles.auto_width of the
image size): the 8-connected 1-px polyline dilated by a width x width square
(scribbles.draw_polyline), nearest-neighbour, never anti-aliased; a point is a
width x width dot; a polygon is its closed outline, or with polygons='fill' the
filled region (boundary included). Later shapes are drawn over earlier ones.

Classes: line 0 of classes.txt is the background; labels named in
background_labels also map to class 0. Without a classes file the classes are
the background plus the labels found (COCO: its categories in id order, then
any others; otherwise sorted by name).

Bad input (a missing or unreadable image, an image size other than the one
the tool recorded, a point outside the image, an empty or malformed
annotation file, an image annotated in two files, an unknown label) raises
AnnotationError naming the file; with skip_bad the image (or the whole file)
is left out with a warning and listed in the report. Images whose file has no
shapes are left out and listed. The output folder is written under a
temporary sibling name and renamed when complete: it exists complete or not at
all.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import os
import shutil
import sys

import cv2
import numpy as np
from PIL import Image, ImageOps

from cfcls.data import scribbles as scribbles_lib
from cfcls.data.annotation_formats import (  # noqa: F401 (re-exported)
    FORMATS, AnnotationError, ImageRecord, Shape, annotation_files, read_file)
from cfcls.labels import IGNORE

DEFAULT_BACKGROUND_LABELS = ('background', '_background_')
OUTSIDE_TOLERANCE = 1.0
# PIL formats copied byte for byte (the pipeline decodes them) -> extension.
_COPYABLE = {'JPEG': '.jpg', 'MPO': '.jpg', 'PNG': '.png', 'BMP': '.bmp'}
_COPYABLE_MODES = ('RGB', 'L', 'RGBA', 'P')


@dataclasses.dataclass
class ImportReport:
  """What import_folder wrote and what it left out."""
  output: str
  names: list = dataclasses.field(default_factory=list)
  class_names: list = dataclasses.field(default_factory=list)
  val: list = dataclasses.field(default_factory=list)
  skipped: list = dataclasses.field(default_factory=list)  # error messages
  no_shapes: list = dataclasses.field(default_factory=list)  # names
  unknown: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)  # label -> shapes dropped

  def summary(self) -> str:
    split = (f' (train {len(self.names) - len(self.val)}, validation '
             f'{len(self.val)})' if self.val else '')
    parts = [f'wrote {len(self.names)} images{split}, {len(self.class_names)}'
             f' classes ({", ".join(self.class_names)}) to {self.output}']
    if self.no_shapes:
      parts.append(f'left out {len(self.no_shapes)} images with no shapes '
                   f'({_few(self.no_shapes)})')
    if self.skipped:
      parts.append(f'skipped {len(self.skipped)} bad (see the warnings above)')
    if self.unknown:
      parts.append('dropped shapes with unknown labels: ' + ', '.join(
          f'{k} ({v})' for k, v in sorted(self.unknown.items())))
    return '; '.join(parts)


def _few(names, n=5):
  return ', '.join(names[:n]) + (', ...' if len(names) > n else '')


def read_classes(path: str) -> list[str]:
  """classes.txt: one name per line, line 0 = background."""
  try:
    with open(path, encoding='utf-8') as f:
      names = [line.strip() for line in f if line.strip()]
  except OSError as e:
    raise AnnotationError(f'{path}: cannot read class names ({e})') from e
  dup = sorted({n for n in names if names.count(n) > 1})
  if len(names) < 2 or len(names) > 255 or dup:
    raise AnnotationError(
        f'{path}: needs 2..255 distinct class names (line 0 = background), '
        f'found {len(names)}' + (f', repeated: {dup}' if dup else ''))
  return names


def class_table(records, classes_path=None,
                background_labels=DEFAULT_BACKGROUND_LABELS):
  """(class names, {label: class id}) from a classes file or the labels."""
  background = {b.strip() for b in background_labels if b.strip()}
  if classes_path:
    names = read_classes(classes_path)
  else:
    declared = [n for r in records for n in r.declared]
    found = sorted({s.label for r in records for s in r.shapes})
    names = ['background']
    for label in list(dict.fromkeys(declared)) + found:
      if label not in background and label not in names:
        names.append(label)
    if len(names) < 2:
      raise AnnotationError(
          f'no labels other than the background ({sorted(background)}) in the'
          ' annotations: nothing to train on')
    if len(names) > 255:
      raise AnnotationError(f'{len(names)} classes found; at most 255')
  lookup = {n: i for i, n in enumerate(names)}
  lookup.update({b: 0 for b in background})
  return names, lookup


def load_image(rec: ImageRecord):
  """(file bytes, extension, (H, W)) of a record's image, ready to copy.

  JPEG/PNG/BMP files are copied as they are; other formats, unusual modes
  and images with an EXIF rotation (the tools show them rotated) are
  re-encoded as RGB PNG, rotated.
  """
  where = f'{rec.source}: image {rec.image_name!r}'
  if rec.image_data is not None:
    data, what = rec.image_data, f'{rec.source}: imageData'
  else:
    if not rec.image_path or not os.path.isfile(rec.image_path):
      raise AnnotationError(f'{where}: missing image file '
                            f'({rec.image_path})')
    what = f'{rec.image_path} (annotated in {rec.source})'
    try:
      with open(rec.image_path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise AnnotationError(f'{what}: cannot read image ({e})') from e
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
      orientation = im.getexif().get(0x0112, 1)
      ext = _COPYABLE.get(im.format)
      if ext is None or im.mode not in _COPYABLE_MODES or orientation not in (
          0, 1):
        im = ImageOps.exif_transpose(im).convert('RGB')
        buf = io.BytesIO()
        im.save(buf, format='PNG')
        data, ext = buf.getvalue(), '.png'
      hw = (im.height, im.width)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise AnnotationError(f'{what}: corrupt or unreadable image ({e})') from e
  if hw[0] == 0 or hw[1] == 0:
    raise AnnotationError(f'{what}: empty image')
  if rec.size is not None and tuple(rec.size) != hw:
    rotated = ' (after its EXIF rotation)' if orientation not in (0, 1) else ''
    raise AnnotationError(
        f'{where}: the annotation says {rec.size[1]}x{rec.size[0]} but the '
        f'image is {hw[1]}x{hw[0]}{rotated}')
  return data, ext, hw


def render(shapes, class_ids, shape_hw, width: int, fill_polygons=False,
           source='') -> np.ndarray:
  """Draws shapes into a 255-filled scribble map: uint8 [H, W].

  Args:
    shapes: Shape list (points float [P, 2] as (x, y)).
    class_ids: the class id of each shape.
    shape_hw: (H, W).
    width: stroke width and dot size in px.
    fill_polygons: polygons as filled regions instead of outlines.
    source: the annotation file, for messages.
  """
  h, w = shape_hw
  out = np.full((h, w), IGNORE, np.uint8)
  for s, cid in zip(shapes, class_ids):
    pts = s.points
    bad = ((pts[:, 0] < -OUTSIDE_TOLERANCE) | (pts[:, 1] < -OUTSIDE_TOLERANCE)
           | (pts[:, 0] > w + OUTSIDE_TOLERANCE)
           | (pts[:, 1] > h + OUTSIDE_TOLERANCE))
    if bad.any():
      x, y = pts[int(np.argmax(bad))]
      raise AnnotationError(f'{source}: {s.where} ({s.label!r}): point '
                            f'({x:g}, {y:g}) is outside the {w}x{h} image')
    px = np.floor(pts).astype(np.int64)
    px[:, 0] = np.clip(px[:, 0], 0, w - 1)
    px[:, 1] = np.clip(px[:, 1], 0, h - 1)
    if s.kind == 'polygon' and fill_polygons:
      region = np.zeros((h, w), np.uint8)
      cv2.fillPoly(region, [px.astype(np.int32).reshape(-1, 1, 2)], 1,
                   lineType=cv2.LINE_8)
      out[region > 0] = cid
    elif s.kind == 'points':
      for p in px:
        scribbles_lib.draw_polyline(out, p[None], cid, width)
    else:
      if s.kind == 'polygon':
        px = np.concatenate([px, px[:1]])
      scribbles_lib.draw_polyline(out, px, cid, width)
  return out


def _read_records(fmt, input_path, images_dir, coco_strokes, skip_bad, warn,
                  report):
  records = []
  for path in annotation_files(fmt, input_path):
    try:
      records.extend(read_file(fmt, path, images_dir, coco_strokes))
    except AnnotationError as e:
      if not skip_bad:
        raise
      warn(f'skipping {e}')
      report.skipped.append(str(e))
  by_name = collections.defaultdict(list)
  for r in records:
    by_name[r.name].append(r)
  good = []
  for name, recs in by_name.items():
    if len(recs) == 1:
      good.append(recs[0])
      continue
    where = ' and '.join(f'{r.source} ({r.image_name})' for r in recs[:2])
    same = len({os.path.abspath(r.image_path or r.image_name)
                for r in recs}) == 1
    msg = (f'image {name!r} is annotated twice: in {where}' if same else
           f'two images named {name!r}: {where}; rename one')
    if not skip_bad:
      raise AnnotationError(msg)
    warn(f'skipping {msg}')
    report.skipped.append(msg)
  good.sort(key=lambda r: r.name)
  return good


def _choose_val(names, val_fraction, val_list, seed):
  if val_list:
    try:
      with open(val_list, encoding='utf-8') as f:
        listed = [os.path.splitext(line.strip())[0] for line in f
                  if line.strip()]
    except OSError as e:
      raise AnnotationError(f'{val_list}: cannot read ({e})') from e
    missing = sorted(set(listed) - set(names))
    if missing:
      raise AnnotationError(f'{val_list}: names not among the imported images:'
                            f' {_few(missing)}')
    val = sorted(set(listed))
  elif val_fraction:
    if not 0 < val_fraction < 1:
      raise AnnotationError(f'val_fraction {val_fraction} not in (0, 1)')
    n_val = max(1, int(round(val_fraction * len(names))))
    order = np.random.default_rng(seed).permutation(len(names))
    val = sorted(names[i] for i in order[:n_val])
  else:
    return []
  if len(val) >= len(names):
    raise AnnotationError(f'all {len(names)} images would be validation '
                          'images; none left to train on')
  return val


def import_folder(fmt: str, input_path: str, output: str, *,
                  classes_path: str | None = None, width: int | None = None,
                  polygons: str = 'outline', coco_strokes: bool = False,
                  images_dir: str | None = None, skip_unknown: bool = False,
                  skip_bad: bool = False,
                  background_labels=DEFAULT_BACKGROUND_LABELS,
                  val_fraction: float | None = None,
                  val_list: str | None = None, seed: int = 0,
                  overwrite: bool = False, warn=None) -> ImportReport:
  """Imports annotation files into a new scribble_folder at output.

  Args:
    fmt: 'labelme', 'cvat' or 'coco'.
    input_path: an annotation file, or a folder of them (not recursive).
    output: the folder to create (must not exist unless overwrite).
    classes_path: classes.txt to use (copied); default: from the labels.
    width: stroke width in px; default scribbles.auto_width(image size).
    polygons: 'outline' or 'fill'.
    coco_strokes: COCO segmentation lists are open strokes, not polygons.
    images_dir: where CVAT/COCO images are (default: beside the file).
    skip_unknown: drop shapes whose label is not a class (else an error).
    skip_bad: leave bad images/files out with a warning (else an error).
    background_labels: labels that mean class 0.
    val_fraction / val_list: write train.txt and val.txt (a seeded random
      fraction, or the names listed in a file).
    warn: callable(str) for warnings (default: print to stderr).

  Returns:
    ImportReport. Raises AnnotationError for bad input (see module doc).
  """
  if fmt not in FORMATS:
    raise AnnotationError(f'unknown format {fmt!r}; expected one of {FORMATS}')
  if polygons not in ('outline', 'fill'):
    raise AnnotationError(f"polygons must be 'outline' or 'fill', got "
                          f'{polygons!r}')
  if width is not None and width < 1:
    raise AnnotationError(f'width must be >= 1, got {width}')
  warn = warn or (lambda msg: print(msg, file=sys.stderr))
  output = os.path.abspath(os.path.expanduser(output))
  if os.path.exists(output) and not overwrite:
    raise AnnotationError(f'{output}: already exists; choose a new output '
                          'folder (or overwrite)')
  report = ImportReport(output)
  records = _read_records(fmt, input_path, images_dir, coco_strokes,
                          skip_bad, warn, report)
  names, lookup = class_table(records, classes_path, background_labels)
  report.class_names = names
  os.makedirs(os.path.dirname(output), exist_ok=True)
  tmp = f'{output}.importing-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    for d in ('images', 'scribbles'):
      os.makedirs(os.path.join(tmp, d))
    for rec in records:
      try:
        shapes = [s for s in rec.shapes if s.label in lookup]
        for s in rec.shapes:
          if s.label not in lookup:
            if not skip_unknown:
              raise AnnotationError(
                  f'{rec.source}: {s.where}: unknown label {s.label!r} (not '
                  f'in the classes {names}; skip_unknown drops such shapes)')
            report.unknown[s.label] += 1
        if not shapes:
          report.no_shapes.append(rec.name)
          continue
        data, ext, hw = load_image(rec)
        scrib = render(shapes, [lookup[s.label] for s in shapes], hw,
                       width or scribbles_lib.auto_width(hw),
                       polygons == 'fill', rec.source)
      except AnnotationError as e:
        if not skip_bad:
          raise
        warn(f'skipping {e}')
        report.skipped.append(str(e))
        continue
      with open(os.path.join(tmp, 'images', rec.name + ext), 'wb') as f:
        f.write(data)
      if not cv2.imwrite(os.path.join(tmp, 'scribbles', rec.name + '.png'),
                         scrib):
        raise OSError(f'{tmp}/scribbles/{rec.name}.png: cannot write')
      report.names.append(rec.name)
    if not report.names:
      raise AnnotationError(f'{input_path}: no image with scribbles to import')
    with open(os.path.join(tmp, 'classes.txt'), 'w', encoding='utf-8') as f:
      f.write('\n'.join(names) + '\n')
    report.val = _choose_val(report.names, val_fraction, val_list, seed)
    if report.val:
      val = set(report.val)
      for fname, part in (('train.txt', [n for n in report.names
                                         if n not in val]),
                          ('val.txt', report.val)):
        with open(os.path.join(tmp, fname), 'w', encoding='utf-8') as f:
          f.write('\n'.join(part) + '\n')
    if os.path.exists(output):  # overwrite: swap, then drop the old one
      old = f'{output}.replaced-{os.getpid()}'
      os.rename(output, old)
      os.rename(tmp, output)
      shutil.rmtree(old)
    else:
      os.rename(tmp, output)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return report
