"""Scribble tools: ScribbleSup XML, scribble synthesis, dots, class presence.

Pure numpy / OpenCV / scipy (no tensorflow), so the data_prep scripts can use
them without the input pipeline.

Conventions (docs/method.md, section 5): a scribble map is uint8 [H, W]
with the class id of each labelled pixel (0 = background) and 255 =
unlabelled; masks use the same ids with 255 = void.
"""
from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from cfcls.labels import IGNORE

# ScribbleSup tag names in PASCAL VOC class order (id = index).
VOC_SCRIBBLESUP_TAGS = (
    'background', 'plane', 'bike', 'bird', 'boat', 'bottle', 'bus', 'car',
    'cat', 'chair', 'cow', 'table', 'dog', 'horse', 'motorbike', 'person',
    'plant', 'sheep', 'sofa', 'train', 'monitor')


@dataclasses.dataclass(frozen=True)
class Stroke:
  """One annotated polyline: class id and points [P, 2] as (x=col, y=row)."""
  class_id: int
  points: np.ndarray


@dataclasses.dataclass(frozen=True)
class ScribbleAnnotation:
  """Contents of one ScribbleSup XML file."""
  filename: str
  height: int
  width: int
  strokes: tuple[Stroke, ...]


def _xml_text(node, tag, path):
  child = node.find(tag)
  if child is None or child.text is None:
    raise ValueError(f'{path}: missing <{tag}> element')
  return child.text.strip()


def parse_scribblesup_xml(path, tag_names=VOC_SCRIBBLESUP_TAGS
                          ) -> ScribbleAnnotation:
  """Parses one ScribbleSup XML file.

  Layout: <annotation> with <filename>, <size><width/><height/></size> and
  one <polygon> per stroke holding a <tag> (class name) and an ordered list of
  <point><X>col</X><Y>row</Y></point> (0-based).

  Args:
    path: the XML file.
    tag_names: class names; a stroke's class id is the index of its tag.

  Returns:
    ScribbleAnnotation; point coordinates are NOT clamped here (see
    `draw_strokes`).

  Raises:
    ValueError naming the file for malformed XML, a missing size, an unknown
    tag or a non-numeric coordinate.
  """
  path = os.fspath(path)
  try:
    root = ET.parse(path).getroot()
  except (ET.ParseError, OSError) as e:
    raise ValueError(f'{path}: cannot parse ScribbleSup XML ({e})') from e
  lookup = {name: i for i, name in enumerate(tag_names)}
  filename = _xml_text(root, 'filename', path) if root.find(
      'filename') is not None else os.path.splitext(os.path.basename(path))[0]
  size = root.find('size')
  if size is None:
    raise ValueError(f'{path}: missing <size> element')
  try:
    width = int(_xml_text(size, 'width', path))
    height = int(_xml_text(size, 'height', path))
  except ValueError as e:
    raise ValueError(f'{path}: bad <size>: {e}') from e
  if width <= 0 or height <= 0:
    raise ValueError(f'{path}: non-positive size {width}x{height}')
  strokes = []
  for k, poly in enumerate(root.iter('polygon')):
    tag = _xml_text(poly, 'tag', path)
    if tag not in lookup:
      raise ValueError(f'{path}: polygon {k} has unknown tag {tag!r}; '
                       f'expected one of {list(tag_names)}')
    pts = []
    for pt in poly.iter('point'):
      try:
        pts.append((float(_xml_text(pt, 'X', path)),
                    float(_xml_text(pt, 'Y', path))))
      except ValueError as e:
        raise ValueError(f'{path}: polygon {k} has a bad point: {e}') from e
    if pts:
      strokes.append(Stroke(lookup[tag], np.asarray(pts, np.float64)))
  return ScribbleAnnotation(filename, height, width, tuple(strokes))


def draw_polyline(canvas: np.ndarray, points_xy: np.ndarray, value: int,
                  thickness: int = 3) -> None:
  """Draws a polyline `thickness` px wide into canvas (in place).

  A 1-px 8-connected polyline dilated by a thickness x thickness square
  (OpenCV's own thick lines are wider than asked: thickness 3 gives 5 px).

  Args:
    canvas: uint8 [H, W], modified in place.
    points_xy: int [P, 2] (x=col, y=row), already inside the canvas.
  """
  pts = np.asarray(points_xy, np.int64).reshape(-1, 2)
  h, w = canvas.shape
  r = max(thickness, 1) // 2
  x0, y0 = max(pts[:, 0].min() - r, 0), max(pts[:, 1].min() - r, 0)
  x1, y1 = min(pts[:, 0].max() + r + 1, w), min(pts[:, 1].max() + r + 1, h)
  tmp = np.zeros((y1 - y0, x1 - x0), np.uint8)
  local = (pts - np.array([x0, y0])).astype(np.int32).reshape(-1, 1, 2)
  if len(local) == 1:
    tmp[local[0, 0, 1], local[0, 0, 0]] = 1
  else:
    cv2.polylines(tmp, [local], False, 1, 1, lineType=cv2.LINE_8)
  if thickness > 1:
    tmp = cv2.dilate(tmp, np.ones((thickness, thickness), np.uint8))
  canvas[y0:y1, x0:x1][tmp > 0] = value


def draw_strokes(strokes, height, width, thickness=3) -> np.ndarray:
  """Draws polylines into a 255-filled map, later strokes over earlier ones.

  Args:
    strokes: iterable of Stroke; points outside the image are clamped.
    height, width: map size.
    thickness: line width in pixels (ScribbleSup conversion: 3).

  Returns:
    uint8 [height, width] scribble map.
  """
  out = np.full((height, width), IGNORE, np.uint8)
  for s in strokes:
    pts = np.rint(s.points).astype(np.int64)
    pts[:, 0] = np.clip(pts[:, 0], 0, width - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, height - 1)
    draw_polyline(out, pts, int(s.class_id), thickness)
  return out


def scribbles_from_xml(path, tag_names=VOC_SCRIBBLESUP_TAGS, thickness=3,
                       expected_shape=None) -> np.ndarray:
  """Parses a ScribbleSup XML file and draws it: uint8 [H, W].

  If expected_shape (H, W) is given and the XML's <size> differs, the
  error names the file.
  """
  ann = parse_scribblesup_xml(path, tag_names)
  if expected_shape is not None and (ann.height, ann.width) != tuple(
      expected_shape):
    raise ValueError(
        f'{os.fspath(path)}: <size> is {ann.width}x{ann.height} but the image'
        f' is {expected_shape[1]}x{expected_shape[0]}')
  return draw_strokes(ann.strokes, ann.height, ann.width, thickness)


def _geodesic_diameter_path(core: np.ndarray, start, max_length=np.inf
                            ) -> np.ndarray:
  """Approximate geodesic diameter of a pixel set, as a taut polyline.

  Two Dijkstra sweeps over the 8-connected component of `core` containing
  start (steps of length 1 and sqrt 2): farthest pixel A from start, then
  farthest B from A; the pixel path A->B is then pulled taut (greedy
  line-of-sight shortcuts that stay inside core). A path longer than
  max_length is cut to its central max_length.

  Returns:
    [P, 2] polyline vertices (row, col), P >= 1.
  """
  rows, cols = np.nonzero(core)
  n = rows.size
  index = np.full(core.shape, -1, np.int64)
  index[rows, cols] = np.arange(n)
  h, w = core.shape
  src, dst, wts = [], [], []
  for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
    r2, c2 = rows + dr, cols + dc
    ok = (r2 < h) & (c2 >= 0) & (c2 < w)
    j = np.full(n, -1, np.int64)
    j[ok] = index[r2[ok], c2[ok]]
    ok = j >= 0
    src.append(np.arange(n)[ok])
    dst.append(j[ok])
    wts.append(np.full(int(ok.sum()), np.hypot(dr, dc)))
  graph = scipy.sparse.coo_matrix(
      (np.concatenate(wts), (np.concatenate(src), np.concatenate(dst))),
      shape=(n, n)).tocsr()
  dist = scipy.sparse.csgraph.dijkstra(graph, directed=False,
                                       indices=index[start])
  a = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
  dist, pred = scipy.sparse.csgraph.dijkstra(
      graph, directed=False, indices=a, return_predecessors=True)
  b = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
  path = [b]
  while path[-1] != a:
    path.append(int(pred[path[-1]]))
  pts = np.stack([rows[path], cols[path]], axis=1)
  arc = np.concatenate([[0.0], np.cumsum(
      np.hypot(*np.diff(pts, axis=0).T.astype(np.float64)))])
  if arc[-1] > max_length:
    lo = (arc[-1] - max_length) / 2
    keep = (arc >= lo) & (arc <= lo + max_length)
    if not keep.any():
      keep[np.argmin(np.abs(arc - arc[-1] / 2))] = True
    pts = pts[keep]
  return _pull_taut(pts, core)


def _pull_taut(pts: np.ndarray, allowed: np.ndarray) -> np.ndarray:
  """Greedy line-of-sight simplification of a pixel path inside `allowed`."""
  out = [0]
  i, n = 0, len(pts)
  while i < n - 1:
    js = np.arange(i + 1, n)
    steps = int(np.ceil(np.abs(pts[js] - pts[i]).max())) + 1
    t = np.linspace(0, 1, steps)[None, :, None]
    seg = np.rint(pts[i][None, None] + t * (pts[js] - pts[i])[:, None]
                  ).astype(np.int64)
    inside = allowed[seg[..., 0], seg[..., 1]].all(axis=1)
    i = int(js[np.nonzero(inside)[0].max()]) if inside.any() else i + 1
    out.append(i)
  return pts[out]


def _region_stroke(region: np.ndarray, width: int, core_fraction: float,
                   length_factor: float, max_pixels: int) -> np.ndarray:
  """Stroke pixels (bool, region's shape) along the medial path of a region.

  The region is shrunk to its core (distance to the region's edge >= both
  core_fraction * max distance and width // 2 + 1), the core's geodesic
  diameter is followed (at most length_factor * sqrt(area) long, its central
  part), drawn `width` px wide and clipped to the region, so the stroke never
  leaves it. Regions too thin for a core get their ridge pixels.
  Large regions are processed on a subsampled grid (>= max_pixels pixels).
  """
  h, w = region.shape
  f = max(1, int(np.ceil(np.sqrt(region.sum() / max_pixels))))
  small = region[::f, ::f] if f > 1 else region
  padded = np.pad(small.astype(np.uint8), 1)
  dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
  dmax = float(dist.max())
  out = np.zeros_like(region, dtype=bool)
  if dmax <= 0:  # region vanished by subsampling: label its most inner pixel
    padded = np.pad(region.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    out[np.unravel_index(np.argmax(dist), dist.shape)] = True
    return out
  half = width // 2
  thresh = max(core_fraction * dmax, min((half + 1) / f, dmax))
  core = dist >= thresh - 1e-6
  start = np.unravel_index(np.argmax(dist), dist.shape)
  max_length = length_factor * np.sqrt(region.sum()) / f
  path = _geodesic_diameter_path(core, start, max_length) * f + f // 2
  path[:, 0] = np.minimum(path[:, 0], h - 1)
  path[:, 1] = np.minimum(path[:, 1], w - 1)
  canvas = np.zeros((h, w), np.uint8)
  thickness = width if dmax * f >= half + 1 else 1
  draw_polyline(canvas, path[:, ::-1], 1, thickness)
  out = (canvas > 0) & region
  if not out.any():
    out[tuple(path[0])] = region[tuple(path[0])]
  return out


def auto_width(shape, base: int = 3, reference=(375, 500)) -> int:
  """Stroke width for an image size: base px at VOC size, growing with sqrt.

  Keeps the labelled fraction of large images (Cityscapes 1024x2048: 11 px)
  near that of ScribbleSup on VOC (~3 %). Odd, >= base.
  """
  ratio = np.sqrt(shape[0] * shape[1] / (reference[0] * reference[1]))
  width = max(base, int(round(base * ratio)))
  return width if width % 2 else width + 1


def synthesize_scribbles(mask: np.ndarray, *, width: int = 3,
                         core_fraction: float = 0.5,
                         length_factor: float = 0.6,
                         min_region_fraction: float = 0.002,
                         max_pixels: int = 40000) -> np.ndarray:
  """Synthesises scribbles from a full mask, one stroke per connected region.

  Each 8-connected region of each class (255 = void is skipped) gets one
  stroke along the geodesic diameter of its core (the part at least
  core_fraction of the region's maximum distance away from its edge), about
  `width` px wide, clipped to the region: strokes never cross into another
  class or void, and every class present gets at least one stroke (its largest
  region always does, however small). Regions smaller than
  min_region_fraction of the image are skipped otherwise. Deterministic.

  Args:
    mask: uint8/int [H, W] class ids, 255 = void.
    width: stroke width in pixels.
    core_fraction: how far inside the region the stroke runs (0..1).
    length_factor: strokes are at most length_factor * sqrt(region area)
      long (a long region such as a background gets its central part).
    min_region_fraction: smallest region (fraction of H*W) that gets a stroke
      when its class already has a larger one.
    max_pixels: regions larger than this are traced on a subsampled grid.

  Returns:
    uint8 [H, W] scribble map (255 = unlabelled).
  """
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f'mask must be [H, W], got shape {mask.shape}')
  if width < 1:
    raise ValueError(f'width must be >= 1 px, got {width}')
  if not 0 <= core_fraction <= 1:
    raise ValueError(f'core_fraction must be in [0, 1], got {core_fraction}')
  if not length_factor > 0:  # also refuses NaN
    raise ValueError(f'length_factor must be > 0, got {length_factor}')
  out = np.full(mask.shape, IGNORE, np.uint8)
  min_area = min_region_fraction * mask.size
  for c in np.unique(mask):
    if c == IGNORE:
      continue
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        (mask == c).astype(np.uint8), connectivity=8)
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind='stable') + 1
    for rank, comp in enumerate(order):
      area = stats[comp, cv2.CC_STAT_AREA]
      if rank > 0 and area < min_area:
        break
      x, y, bw, bh = stats[comp, :4]
      region = labels[y:y + bh, x:x + bw] == comp
      stroke = _region_stroke(region, width, core_fraction, length_factor,
                              max_pixels)
      out[y:y + bh, x:x + bw][stroke] = c
  return out


def dots_from_scribbles(scribbles: np.ndarray, rng: np.random.Generator, *,
                        dots_per_stroke: int = 3, radius: int = 1
                        ) -> np.ndarray:
  """Samples a few dots on each stroke: a subset of the scribbles.

  Each 8-connected stroke component of each class gets up to dots_per_stroke
  random centre pixels; a dot is the centre's (2 radius + 1)^2 neighbourhood
  intersected with that stroke, so dots always lie on the scribbles with the
  same ids.

  Args:
    scribbles: uint8 [H, W] (255 = unlabelled).
    rng: numpy Generator (determinism is the caller's seed).

  Returns:
    uint8 [H, W] dot map (255 = unlabelled).
  """
  out = np.full(scribbles.shape, IGNORE, np.uint8)
  h, w = scribbles.shape
  for c in np.unique(scribbles):
    if c == IGNORE:
      continue
    n, labels = cv2.connectedComponents((scribbles == c).astype(np.uint8),
                                        connectivity=8)
    for comp in range(1, n):
      rr, cc = np.nonzero(labels == comp)
      pick = rng.choice(rr.size, size=min(dots_per_stroke, rr.size),
                        replace=False)
      for r, col in zip(rr[pick], cc[pick]):
        r0, r1 = max(r - radius, 0), min(r + radius + 1, h)
        c0, c1 = max(col - radius, 0), min(col + radius + 1, w)
        on = labels[r0:r1, c0:c1] == comp
        out[r0:r1, c0:c1][on] = c
  return out


def class_presence(label_map: np.ndarray, num_classes: int) -> np.ndarray:
  """Foreground classes present in a label map: bool [num_classes - 1].

  Entry c-1 is True iff some pixel equals c (1 <= c < num_classes); 0 and 255
  do not count.
  """
  ids = np.unique(np.asarray(label_map))
  ids = ids[(ids >= 1) & (ids < num_classes)]
  presence = np.zeros(num_classes - 1, bool)
  presence[ids.astype(np.int64) - 1] = True
  return presence
