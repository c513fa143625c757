"""Scribble folders textured with real photographs: stand-ins for held-out data.

  python benchmarks/photo_folders.py --kind=a --out=/tmp/photo_a
  python benchmarks/photo_folders.py --kind=b --out=/tmp/photo_b
  python benchmarks/photo_folders.py --kind=a --length_factor=1.5 \
      --out=/tmp/photo_a15    # the same pictures, longer strokes
  python train.py --workdir=W --config.data.name=scribble_folder \
      --config.data.manual_dir=/tmp/photo_a --config.data.eval_pad_size=160 \
      [--config.loss=ce|pce]

The synthetic families of cfcls.data fill their regions with flat colours
(the demo) or fractal noise (synthetic_textures). Here every region, the
background and each instance, is a crop of one of scikit-image's bundled
photographs (astronaut, cat, coffee, rocket, retina, Hubble, stained
tissue; brick, grass, gravel, moon, coins, camera, clock tinted with two
random colours), at a random scale, flip and quarter turn. The edges are
then photo edges: inside a region as well as between regions.

Two kinds, shaped after the held-out folders the product is judged on
(their pictures are not available here; only their description is):

  a  disc, bar, triangle; 160 px; 1-4 instances; scribbles along each
     region's middle (`scribbles.synthesize_scribbles`, as the demo).
  b  wire, ring, star, leaf, blob (6 classes with the background); 192 px;
     2-7 instances; short strokes (0.25 sqrt(area) long, against 0.6) over part
     of each instance.

Writes the `scribble_folder` layout (images, scribbles, masks, classes.txt,
train.txt, val.txt); 240 + 60 images by default. Everything is a pure
function of (kind, seed, split, index). Needs scikit-image
(benchmarks/requirements.txt).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from cfcls.data import scribbles as scribbles_lib  # noqa: E402
from cfcls.data import synthetic_textures  # noqa: E402

COLOUR_PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'retina',
                 'hubble_deep_field', 'immunohistochemistry')
GREY_PHOTOS = ('brick', 'grass', 'gravel', 'moon', 'coins', 'camera', 'clock')
KINDS = {
    'a': dict(classes=('background', 'disc', 'bar', 'triangle'), size=160,
              instances=(1, 5), length_factor=0.6),
    'b': dict(classes=('background', 'wire', 'ring', 'star', 'leaf', 'blob'),
              size=192, instances=(2, 8), length_factor=0.25),
}
_SPLIT_CODES = {'train': 20, 'validation': 21}


def load_photos():
  """The bundled photographs as float32 [H, W, 3] in [0, 1]; grey ones are
  kept grey ([H, W]) and tinted per use."""
  try:
    import skimage.data  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit('photo_folders.py needs scikit-image: pip install -r '
                     'benchmarks/requirements.txt') from e
  photos = []
  for name in COLOUR_PHOTOS + GREY_PHOTOS:
    p = np.asarray(getattr(skimage.data, name)())
    photos.append(p.astype(np.float32) / 255.0)
  return photos


def photo_texture(rng, photos, size):
  """A size x size crop of a random photograph, float32 [size, size, 3]."""
  p = photos[int(rng.integers(len(photos)))]
  h, w = p.shape[:2]
  side = int(min(h, w) * rng.uniform(0.2, 0.6))
  y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
  crop = cv2.resize(np.ascontiguousarray(p[y:y + side, x:x + side]),
                    (size, size), interpolation=cv2.INTER_AREA)
  if crop.ndim == 2:  # tint a grey photo with two random colours
    dark, light = rng.random((2, 3)).astype(np.float32)
    crop = dark + crop[..., None] * (light - dark)
  crop = np.rot90(crop, int(rng.integers(4)))
  if rng.random() < 0.5:
    crop = crop[:, ::-1]
  return np.ascontiguousarray(crop, dtype=np.float32)


def _polygon_cover(size, points, scale=4):
  """Anti-aliased coverage of a polygon (x, y points), [size, size]."""
  canvas = np.zeros((size * scale, size * scale), np.uint8)
  cv2.fillPoly(canvas, [np.round(points * scale).astype(np.int32)], 255)
  return cv2.resize(canvas, (size, size),
                    interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _disc_like(rng, size, xx, yy, r, inner=0.0):
  cx, cy = rng.uniform(r, size - r, 2)
  d = np.hypot(xx - cx, yy - cy)
  cover = np.clip(r + 0.5 - d, 0, 1)
  if inner:
    cover = cover * np.clip(d - inner * r + 0.5, 0, 1)
  return cover


def _bezier_band(rng, size, xx, yy, half):
  curve = synthetic_textures.bezier_curve(rng, size)
  if curve is None:
    return None
  return np.clip(half + 0.5 - synthetic_textures.polyline_distance(
      curve, xx, yy), 0, 1)


def shape_cover(rng, kind, cls, size):
  """Coverage in [0, 1] of one instance of class cls, [size, size]."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  u = size / 160
  theta = rng.uniform(0, 2 * np.pi)
  rot = np.array([[np.cos(theta), -np.sin(theta)],
                  [np.sin(theta), np.cos(theta)]])
  name = KINDS[kind]['classes'][cls]
  if name == 'disc':
    return _disc_like(rng, size, xx, yy, rng.uniform(14, 34) * u)
  if name in ('bar', 'triangle', 'leaf'):
    if name == 'bar':
      hl, hw = rng.uniform(25, 55) * u, rng.uniform(5, 11) * u
      pts = np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]])
    elif name == 'triangle':
      r = rng.uniform(18, 38) * u
      a = np.pi / 2 + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
      pts = r * np.stack([np.cos(a), np.sin(a)], -1)
    else:  # a leaf: a pointed lens
      hl, hw = rng.uniform(18, 34) * u, rng.uniform(6, 13) * u
      t = np.linspace(-1, 1, 40)
      upper = np.stack([hl * t, hw * (1 - t ** 2)], -1)
      pts = np.concatenate([upper, upper[::-1] * [1, -1]])
    pts = pts @ rot.T
    extent = np.abs(pts).max(0) + 2
    centre = rng.uniform(extent, size - extent)
    return _polygon_cover(size, pts + centre)
  if name == 'wire':
    return _bezier_band(rng, size, xx, yy, rng.uniform(1.5, 3.0) * u)
  if name == 'ring':
    return _disc_like(rng, size, xx, yy, rng.uniform(16, 32) * u,
                      inner=rng.uniform(0.55, 0.75))
  # star or blob: star-convex around a centre
  r = rng.uniform(14, 30) * u
  cx, cy = rng.uniform(r, size - r, 2)
  return synthetic_textures.star_convex_cover(
      rng, xx, yy, cx, cy, r, name == 'star', points=(5, 8), phase=theta)


def render(kind, photos, seed, split, index, length_factor=None):
  """image uint8 [S, S, 3], mask uint8 [S, S], scribbles uint8 [S, S].

  length_factor: the strokes' length in sqrt(region area) (default: the
  kind's); it changes the scribbles only, never the image or the mask.
  """
  spec = KINDS[kind]
  if length_factor is None:
    length_factor = spec['length_factor']
  size, k = spec['size'], len(spec['classes'])
  rng = np.random.default_rng([seed, _SPLIT_CODES[split], index, ord(kind)])
  img = photo_texture(rng, photos, size)
  mask = np.zeros((size, size), np.uint8)
  for _ in range(int(rng.integers(*spec['instances']))):
    cls = int(rng.integers(1, k))
    cover = shape_cover(rng, kind, cls, size)
    if cover is None or (cover > 0.5).sum() < 30:
      continue
    img = img * (1 - cover[..., None]) + photo_texture(
        rng, photos, size) * cover[..., None]
    mask[cover > 0.5] = cls
  scribbles = scribbles_lib.synthesize_scribbles(
      mask, length_factor=length_factor)
  image = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
  return image, mask, scribbles


def write_folder(kind, out, num_train=240, num_val=60, seed=0,
                 length_factor=None):
  photos = load_photos()
  share = synthetic_textures.write_rendered_folder(
      out, KINDS[kind]['classes'],
      lambda split, i: render(kind, photos, seed, split, i, length_factor),
      num_train, num_val)
  print(f'{out}: kind {kind}, {num_train} + {num_val} images of '
        f'{KINDS[kind]["size"]} px, {100 * share:.1f} % of the pixels '
        'scribbled')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--kind', choices=tuple(KINDS), required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--num_train', type=int, default=240)
  parser.add_argument('--num_val', type=int, default=60)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--length_factor', type=float, default=None,
                      help='stroke length in sqrt(region area); default: '
                      'the kind\'s (a 0.6, b 0.25). The same images and '
                      'masks with other scribbles')
  args = parser.parse_args()
  if args.length_factor is not None and args.length_factor <= 0:
    parser.error(f'--length_factor must be > 0, got {args.length_factor}')
  write_folder(args.kind, args.out, args.num_train, args.num_val, args.seed,
               args.length_factor)


if __name__ == '__main__':
  main()
