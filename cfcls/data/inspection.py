"""A look at a scribble_folder before training: statistics and a contact sheet.

  report = inspect_folder('my_folder'); print(report.format())
  sheet = contact_sheet('my_folder')        # uint8 [H, W, 3] RGB
  summary_line('my_folder')  # 'my_folder: 12 images (train 10, validation
                             #  2), 3 classes, 2.31 % of pixels labelled'
  t = teacher_report('my_folder', teacher.Settings.from_config(config))
  print(t.format())          # the closed-form labels training would use:
                             # solve time, unsure share, IoU with masks/
  contact_sheet('my_folder', teacher_labels=t.labels)  # scribbles | teacher

Reads the folder as the scribble_folder builder does (images/, scribbles/,
masks/, classes.txt, train.txt/val.txt; label PNGs grey or palette) with PIL
and numpy only (no tensorflow). Problems the builder would reject (a missing
or unreadable scribble PNG, a size mismatch, an unknown class id) are listed
instead of raised, so the whole folder gets looked at.
"""
from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
from PIL import Image

from cfcls import visualize
from cfcls.labels import IGNORE

# The teacher (cfcls.data.teacher) imports jax: loaded on first use, so the
# statistics and the plain contact sheet stay numpy-only.

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')  # as the builder


@dataclasses.dataclass
class ClassStats:
  name: str
  images: int = 0      # images with a stroke of this class
  pixels: int = 0      # labelled pixels
  length: float = 0.0  # stroke length in px (pixels / stroke width)


@dataclasses.dataclass
class FolderReport:
  """inspect_folder's findings."""
  folder: str
  classes: list          # ClassStats per class id
  names: list            # image names (file stems)
  splits: dict           # split -> number of images
  total_pixels: int = 0
  labelled_pixels: int = 0
  no_scribble: list = dataclasses.field(default_factory=list)
  outside_mask: list = dataclasses.field(default_factory=list)
  # (name, class name, scribble pixels where masks/ has another class, of)
  problems: list = dataclasses.field(default_factory=list)
  teacher: object = None  # a TeacherReport, where one was made

  @property
  def classes_without_scribble(self) -> list:
    return [c.name for c in self.classes if c.pixels == 0]

  def summary_line(self) -> str:
    splits = ', '.join(f'{k} {v}' for k, v in self.splits.items())
    pct = 100.0 * self.labelled_pixels / max(self.total_pixels, 1)
    line = (f'{self.folder}: {len(self.names)} images ({splits}), '
            f'{len(self.classes)} classes, {pct:.2f} % of pixels labelled')
    if self.no_scribble:
      line += f', {len(self.no_scribble)} images without a scribble'
    return line

  def format(self) -> str:
    n = len(self.names)
    lines = [self.summary_line(), '',
             f'{"id":>3}  {"class":<20} {"images":>9} {"pixels":>10} '
             f'{"length px":>10}']
    for i, c in enumerate(self.classes):
      lines.append(f'{i:>3}  {c.name[:20]:<20} {f"{c.images}/{n}":>9} '
                   f'{c.pixels:>10} {c.length:>10.0f}')
    lines.append('')
    lines.append(f'images with no scribble ({len(self.no_scribble)}): '
                 + (', '.join(self.no_scribble) or 'none'))
    lines.append('classes with no scribble anywhere: '
                 + (', '.join(self.classes_without_scribble) or 'none'))
    if self.outside_mask:
      lines.append(f'scribbles outside masks/ of their class '
                   f'({len(self.outside_mask)}):')
      lines += [f'  {name}: {cls} {bad} of {total} px' for name, cls, bad,
                total in self.outside_mask]
    if self.problems:
      lines.append(f'problems ({len(self.problems)}):')
      lines += ['  ' + p for p in self.problems]
    return '\n'.join(lines)


def read_labels(path: str) -> np.ndarray:
  """A grey or palette label PNG (palette index = id): uint8 [H, W]."""
  with Image.open(path) as im:
    im.load()
    arr = np.asarray(im)
  if arr.ndim == 3:  # a grey image stored as RGB(A)
    arr = arr[..., 0]
  return arr.astype(np.uint8)


def _class_names(folder):
  path = os.path.join(folder, 'classes.txt')
  if not os.path.isfile(path):
    raise ValueError(f'{path}: missing file (class names, line 0 = '
                     'background)')
  with open(path, encoding='utf-8') as f:
    return [line.strip() for line in f if line.strip()]


def _images(folder):
  image_dir = os.path.join(folder, 'images')
  if not os.path.isdir(image_dir):
    raise ValueError(f'{image_dir}: missing folder (photos)')
  return {os.path.splitext(f)[0]: os.path.join(image_dir, f)
          for f in sorted(os.listdir(image_dir))
          if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS}


def _splits(folder, names):
  lists = {}
  for split, fname in (('train', 'train.txt'), ('validation', 'val.txt')):
    path = os.path.join(folder, fname)
    if os.path.isfile(path):
      with open(path, encoding='utf-8') as f:
        lists[split] = len([line for line in f if line.strip()])
  if 'train' not in lists:
    lists = {'train': len(names) - lists.get('validation', 0), **lists}
  return lists


def stroke_length(binary: np.ndarray) -> float:
  """Length (px) of the strokes in a bool [H, W] map: per 8-connected
  component, its pixels / its width (2 * max chessboard distance - 1)."""
  b = np.pad(binary.astype(np.uint8), 1)
  n, lab = cv2.connectedComponents(b, connectivity=8)
  if n < 2:
    return 0.0
  dist = cv2.distanceTransform(b, cv2.DIST_C, 3)
  on = b > 0
  widest = np.zeros(n)
  np.maximum.at(widest, lab[on], dist[on])
  area = np.bincount(lab[on], minlength=n)
  return float(np.sum(area[1:] / np.maximum(2 * widest[1:] - 1, 1)))


def _image_size(path):
  with Image.open(path) as im:
    return im.height, im.width


def inspect_folder(folder: str, lengths: bool = True) -> FolderReport:
  """Per-class statistics, images without scribbles, scribbles off masks/."""
  folder = os.fspath(folder)
  class_names = _class_names(folder)
  images = _images(folder)
  k = len(class_names)
  report = FolderReport(folder, [ClassStats(n) for n in class_names],
                        sorted(images), _splits(folder, images))
  has_masks = os.path.isdir(os.path.join(folder, 'masks'))
  for name in report.names:
    path = os.path.join(folder, 'scribbles', name + '.png')
    if not os.path.isfile(path):
      report.no_scribble.append(name)
      report.problems.append(f'{images[name]}: no scribble file ({path})')
      continue
    try:
      scrib = read_labels(path)
      hw = _image_size(images[name])
    except (OSError, ValueError, SyntaxError) as e:
      report.problems.append(f'{path} or {images[name]}: unreadable ({e})')
      continue
    if scrib.shape != hw:
      report.problems.append(f'{path} is {scrib.shape[1]}x{scrib.shape[0]} '
                             f'but {images[name]} is {hw[1]}x{hw[0]}')
    report.total_pixels += scrib.size
    ids, counts = np.unique(scrib, return_counts=True)
    unknown = [int(i) for i in ids if i >= k and i != IGNORE]
    if unknown:
      report.problems.append(f'{path}: unknown class ids {unknown[:10]} '
                             f'(classes.txt has {k})')
    labelled = [(int(i), int(c)) for i, c in zip(ids, counts) if i < k]
    if not labelled:
      report.no_scribble.append(name)
    mask = None
    mask_path = os.path.join(folder, 'masks', name + '.png')
    if has_masks and os.path.isfile(mask_path):
      mask = read_labels(mask_path)
      if mask.shape != scrib.shape:
        report.problems.append(f'{mask_path}: size differs from {path}')
        mask = None
    for i, count in labelled:
      stats = report.classes[i]
      stats.images += 1
      stats.pixels += count
      report.labelled_pixels += count
      on = scrib == i
      if lengths:
        stats.length += stroke_length(on)
      if mask is not None:
        bad = int(np.sum(on & (mask != i) & (mask != IGNORE)))
        if bad:
          report.outside_mask.append((name, class_names[i], bad, count))
  return report


def summary_line(folder: str) -> str:
  """One line: images (per split), classes, % of pixels labelled."""
  return inspect_folder(folder, lengths=False).summary_line()


def _tile(image, scrib, size):
  """image uint8 [H, W, 3] with its scribbles in class colours, fitted into
  size x size; thin strokes stay visible when shrunk (area-averaged colour,
  coverage boosted by the shrink factor)."""
  h, w = scrib.shape
  s = min(size / h, size / w)
  tw, th = max(1, int(round(w * s))), max(1, int(round(h * s)))
  interp = cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST
  on = (scrib != IGNORE).astype(np.float32)
  colour = visualize.colorize(scrib).astype(np.float32) * on[..., None]
  img = cv2.resize(image, (tw, th), interpolation=interp).astype(np.float32)
  cover = cv2.resize(on, (tw, th), interpolation=interp)
  colour = cv2.resize(colour, (tw, th), interpolation=interp)
  colour /= np.maximum(cover, 1e-6)[..., None]
  alpha = np.clip(cover / min(s, 1.0), 0, 1)[..., None]
  return np.clip(img * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)


def _text(canvas, text, x, y, colour=(0, 0, 0)):
  cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
              cv2.LINE_AA)


@dataclasses.dataclass
class TeacherImage:
  name: str
  seconds: float          # the solve's wall time
  unsure: float           # share of pixels the margin leaves out
  iou: float | None       # the teacher's decision against masks/ (mIoU of
                          # the image's classes); None without a mask
  scribbled: bool         # has a stroke


@dataclasses.dataclass
class TeacherReport:
  """teacher_report's findings: the closed-form labels of every image."""
  settings: object                    # teacher.Settings
  images: list                        # TeacherImage, in name order
  labels: dict                        # name -> uint8 [H, W] sure labels
  num_classes: int
  confusion: np.ndarray | None = None       # decision vs masks, [K, K]
  sure_confusion: np.ndarray | None = None  # sure labels vs masks
  skipped: list = dataclasses.field(default_factory=list)  # (name, why)

  def miou(self, sure: bool = False) -> float | None:
    """The teacher's mIoU over the images with masks (every pixel's
    decision; sure=True: the sure labels, unsure pixels not counted)."""
    conf = self.sure_confusion if sure else self.confusion
    if conf is None:
      return None
    from cfcls import metrics  # pylint: disable=g-import-not-at-top
    return metrics.segmentation_metrics(conf)['miou']

  def ranked(self) -> list:
    """Images where one more stroke helps most, first: those without a
    stroke, then (with masks) the lowest IoU, else the largest unsure
    share."""
    def key(t):
      worst = (t.iou if t.iou is not None and not np.isnan(t.iou)
               else 2.0) if self.confusion is not None else -t.unsure
      return (t.scribbled, worst, -t.unsure, t.name)
    return sorted(self.images, key=key)

  def format(self, top: int = 10) -> str:
    s = self.settings
    times = [t.seconds for t in self.images]
    lines = [f'closed-form teacher ({s.describe()}): {len(self.images)} '
             f'images solved in {sum(times):.1f} s (median '
             f'{np.median(times) if times else 0:.2f} s, max '
             f'{max(times, default=0):.2f} s per image)']
    if self.images:
      unsure = np.mean([t.unsure for t in self.images])
      lines.append(f'unsure pixels (left out of training): '
                   f'{100 * unsure:.1f} % on average')
    if self.confusion is not None:
      sure = self.sure_confusion
      share = sure.sum() / max(self.confusion.sum(), 1)
      lines.append(f'teacher mIoU against masks/: {self.miou():.4f} (every '
                   f'pixel, threshold {s.threshold:g}); sure labels: '
                   f'{self.miou(sure=True):.4f} on the {100 * share:.1f} % '
                   'of pixels they keep')
    ranked = self.ranked()[:top]
    if ranked:
      what = ('lowest IoU' if self.confusion is not None
              else 'most unsure')
      lines.append(f'where one more stroke helps most ({what} first):')
      for t in ranked:
        iou = '' if t.iou is None else f', IoU {t.iou:.3f}'
        note = '' if t.scribbled else ' (no stroke)'
        lines.append(f'  {t.name}: unsure {100 * t.unsure:.1f} %{iou}'
                     f'{note}')
    if self.skipped:
      lines.append(f'not solved ({len(self.skipped)}): ' + ', '.join(
          f'{n} ({why})' for n, why in self.skipped))
    return '\n'.join(lines)


def teacher_report(folder: str, settings, names=None, max_pixels=None,
                   progress=None) -> TeacherReport:
  """Solves the closed-form labels of each image (`cfcls.data.teacher`).

  Args:
    folder: a scribble folder.
    settings: `teacher.Settings` (e.g. `Settings.from_config(config)`).
    names: the images to solve (default: all, sorted).
    max_pixels: solve downscaled copies (`teacher.solve`); default exact.
    progress: optional callable(TeacherImage), called after each solve.

  Images the builder would reject (no scribble file, unreadable, a size
  mismatch, unknown class ids) are skipped and listed.
  """
  from cfcls import metrics  # pylint: disable=g-import-not-at-top
  from cfcls.data import teacher  # pylint: disable=g-import-not-at-top
  folder = os.fspath(folder)
  class_names = _class_names(folder)
  k = len(class_names)
  images = _images(folder)
  names = sorted(images) if names is None else list(names)
  report = TeacherReport(settings, [], {}, k)
  for name in names:
    path = os.path.join(folder, 'scribbles', name + '.png')
    if not os.path.isfile(path):
      report.skipped.append((name, 'no scribble file'))
      continue
    try:
      with Image.open(images[name]) as im:
        image = np.asarray(im.convert('RGB'))
      scrib = read_labels(path)
    except (OSError, ValueError, SyntaxError) as e:
      report.skipped.append((name, f'unreadable: {e}'))
      continue
    if scrib.shape != image.shape[:2]:
      report.skipped.append((name, 'scribble size differs from the image'))
      continue
    if np.any((scrib >= k) & (scrib != IGNORE)):
      report.skipped.append((name, 'unknown class ids'))
      continue
    result = teacher.solve(image, scrib, k, settings, max_pixels=max_pixels)
    iou = None
    mask_path = os.path.join(folder, 'masks', name + '.png')
    if os.path.isfile(mask_path):
      mask = read_labels(mask_path)
      if mask.shape == scrib.shape:
        if report.confusion is None:
          report.confusion = np.zeros((k, k), np.int64)
          report.sure_confusion = np.zeros((k, k), np.int64)
        confusion = _confusion(mask, result.decision, k)
        report.confusion += confusion
        report.sure_confusion += _confusion(mask, result.labels, k)
        iou = metrics.segmentation_metrics(confusion)['miou']
    item = TeacherImage(name, result.seconds, result.unsure_share, iou,
                        bool(np.any(scrib != IGNORE)))
    report.images.append(item)
    report.labels[name] = result.labels
    if progress is not None:
      progress(item)
  return report


def _confusion(mask, labels, k):
  """int64 [K, K] counts (rows: mask); 255 or ids >= K in either are not
  counted (`cfcls.metrics.confusion_matrix`)."""
  from cfcls import metrics  # pylint: disable=g-import-not-at-top
  return np.asarray(metrics.confusion_matrix(mask, labels, k), np.int64)


def contact_sheet(folder: str, names=None, tile: int = 160, columns: int = 6,
                  max_images: int = 48, teacher_labels=None) -> np.ndarray:
  """Images with their scribbles in class colours, a legend on top.

  Args:
    teacher_labels: optional {name: uint8 [H, W]} (`TeacherReport.labels`):
      each image's tile is followed by one of its closed-form labels over
      the image, unsure pixels (255) hatched black and white.

  Returns:
    uint8 [H, W, 3] RGB: a legend row (class colour swatch + id and name),
    then a grid of `columns` tiles of tile x tile px (image fitted, name
    below; with teacher_labels, `columns` pairs), the first max_images names
    (default: all, sorted).
  """
  folder = os.fspath(folder)
  class_names = _class_names(folder)
  images = _images(folder)
  names = sorted(images) if names is None else list(names)
  names = names[:max_images]
  colours = visualize.palette(256)
  cap, legend_w = 14, 150
  cols = max(1, min(columns, len(names)))
  rows = -(-len(names) // cols)
  cell = tile * (2 if teacher_labels is not None else 1)
  width = max(cols * cell, legend_w)
  per_row = max(1, width // legend_w)
  legend = list(enumerate(class_names))
  if teacher_labels is not None:
    legend.append((IGNORE, 'unsure (teacher)'))
  top = -(-len(legend) // per_row) * 18 + 6
  sheet = np.full((top + rows * (tile + cap), width, 3), 255, np.uint8)
  for n, (i, cname) in enumerate(legend):
    x, y = (n % per_row) * legend_w + 4, (n // per_row) * 18 + 4
    if i == IGNORE:
      from cfcls.data import teacher  # pylint: disable=g-import-not-at-top
      sheet[y:y + 12, x:x + 12] = teacher.blend(
          sheet[y:y + 12, x:x + 12], np.full((12, 12), IGNORE, np.uint8))
      _text(sheet, cname, x + 16, y + 11)
    else:
      sheet[y:y + 12, x:x + 12] = colours[i]
      _text(sheet, f'{i} {cname}'[:22], x + 16, y + 11)
  for j, name in enumerate(names):
    x, y = (j % cols) * cell, top + (j // cols) * (tile + cap)
    with Image.open(images[name]) as im:
      image = np.asarray(im.convert('RGB'))
    path = os.path.join(folder, 'scribbles', name + '.png')
    scrib = (read_labels(path) if os.path.isfile(path) else
             np.full(image.shape[:2], IGNORE, np.uint8))
    if scrib.shape != image.shape[:2]:
      scrib = np.full(image.shape[:2], IGNORE, np.uint8)
    t = _tile(image, scrib, tile)
    sheet[y:y + t.shape[0], x:x + t.shape[1]] = t
    _text(sheet, name[:24], x + 2, y + tile + cap - 3)
    taught = (teacher_labels or {}).get(name)
    if taught is not None and taught.shape == image.shape[:2]:
      from cfcls.data import teacher  # pylint: disable=g-import-not-at-top
      t = _tile(teacher.blend(image, taught), np.full_like(taught, IGNORE),
                tile - 2)
      sheet[y:y + t.shape[0], x + tile + 1:x + tile + 1 + t.shape[1]] = t
  return sheet


def write_contact_sheet(folder: str, path: str, **kw) -> str:
  sheet = contact_sheet(folder, **kw)
  Image.fromarray(sheet).save(path)
  return path
