"""Closed-form targets: the matte of every training image, solved once.

alpha* = (L + lam D)^-1 lam D S, the minimiser of the CFM energy of an image
given its scribbles (docs/method.md), is what the CFM loss asks the network
for. Losses that use it as an explicit target (cfm_norm='target',
'two_stage', 'cfm_soft'; cfcls.objectives) read it from a per-dataset cache
written here after the dataset is prepared, for any builder:

  <builder.data_dir>/closed_form_targets/<split>_<fingerprint>/
    alpha.npy    uint8, every image's [H, W, C] targets, clipped to [0, 1]
                 and quantised to 1/255 (round), concatenated flat
    index.json   {file_name: [offset, height, width]}, num_classes, channels

C = K-1 (the mattes), or 2 (K-1) with data.targets.check_radius > 0: the
mattes, then the check mattes min(alpha*, alpha*_check), alpha*_check solved
with windows of radius check_radius. The 'two_stage' loss keeps an object
label of the mattes only where the check mattes give the same label
(`losses.closed_form_labels`, check=): a class is then sure only as far as
both window sizes reach it (docs/method.md, "The vetted teacher").

The fingerprint hashes what the targets depend on (builder name, version and
config, split size, annotation, K, lam, eps, radius, check_radius), so a
changed setting or a re-prepared folder with other examples solves again; an
unchanged one reuses the cache. The training pipeline reads an example's
targets by its file name and augments them with the image (same crop, scale,
flip; bilinear), so a target pixel differs from the matte resampled at the
same point by at most the quantisation, 1/510.

Each image is solved exactly by `solver.solve_alpha`'s direct method (a
multifrontal Cholesky of the image's system in nested-dissection order).
"""
from __future__ import annotations

import hashlib
import json
import os
import time

from absl import logging
import numpy as np

from cfcls import jsonio
from cfcls.matting import solver

DIR_NAME = 'closed_form_targets'
QUANT = 255.0  # alpha* is stored as round(clip(alpha*, 0, 1) * QUANT)


def solve_image(image, scribbles, num_classes: int, lam: float,
                eps: float, radius: int) -> np.ndarray:
  """Closed-form mattes of one image, float32 [H, W, K-1] (not clipped).

  Args:
    image: uint8 or float [H, W, 3] (uint8 is scaled to [0, 1]).
    scribbles: int [H, W], class ids and 255 = unlabelled.
    num_classes: K.
    lam, eps, radius: the matting system's parameters.
  """
  image = np.asarray(image)
  if image.dtype == np.uint8:
    image = image.astype(np.float64) / 255.0
  alpha, _ = solver.solve_alpha(image[None], np.asarray(scribbles)[None],
                                 num_classes, lam=lam, eps=eps, radius=radius,
                                 method='direct')
  return np.asarray(alpha[0], np.float32)


def check_radius(targets_config) -> int:
  """data.targets.check_radius (0, the default: no check mattes)."""
  return int(targets_config.get('check_radius', 0) or 0)


def solve_targets(image, scribbles, num_classes: int, lam: float, eps: float,
                  radius: int, check_radius: int = 0) -> np.ndarray:
  """What the cache holds of one image, float32 [H, W, C] clipped to [0, 1]:
  the mattes (C = K-1), then with check_radius > 0 the check mattes
  min(alpha*, alpha*_check) (C = 2 (K-1)). Arguments as `solve_image`'s.
  """
  alpha = np.clip(solve_image(image, scribbles, num_classes, lam, eps,
                              radius), 0.0, 1.0)
  if check_radius <= 0:
    return alpha
  other = np.clip(solve_image(image, scribbles, num_classes, lam, eps,
                              check_radius), 0.0, 1.0)
  return np.concatenate([alpha, np.minimum(alpha, other)], axis=-1)


def split_checks(targets, num_classes: int):
  """(mattes [..., K-1], check mattes [..., K-1] or None) of targets
  [..., C] as `solve_targets` makes them; raises ValueError on another C."""
  k1, c = num_classes - 1, targets.shape[-1]
  if c == k1:
    return targets, None
  if c == 2 * k1:
    return targets[..., :k1], targets[..., k1:]
  raise ValueError(f'closed-form targets have {c} channels; {num_classes} '
                   f'classes need {k1} (mattes) or {2 * k1} (mattes and '
                   'check mattes, data.targets.check_radius > 0)')


def fingerprint(builder, data_config, split: str, num_classes: int) -> str:
  """Hash of everything the split's targets depend on (12 hex digits)."""
  tc = data_config.targets
  key = dict(builder=builder.name, version=str(builder.version),
             config=builder.builder_config.name if builder.builder_config
             else '', examples=builder.info.splits[split].num_examples,
             annotation=data_config.annotation, num_classes=num_classes,
             lam=float(tc.lam), eps=float(tc.eps), radius=int(tc.radius))
  check = check_radius(tc)
  if check > 0:  # absent at 0: caches made before the check stay valid
    key['check_radius'] = check
  blob = json.dumps(key, sort_keys=True).encode()
  return hashlib.sha256(blob).hexdigest()[:12]


def cache_dir(builder, data_config, split: str, num_classes: int) -> str:
  tag = ''.join(c if c.isalnum() else '_' for c in split)
  return os.path.join(builder.data_dir, DIR_NAME, f'{tag}_' + fingerprint(
      builder, data_config, split, num_classes))


def _examples(builder, split, annotation):
  """(file_name, image uint8 [H, W, 3], annotation [H, W]) of a split."""
  ds = builder.as_dataset(split=split, shuffle_files=False)
  for ex in ds.as_numpy_iterator():
    name = ex['file_name']
    yield (name.decode() if isinstance(name, bytes) else str(name),
           ex['image'], ex[annotation])


def prepare(builder, data_config, split: str, num_classes: int) -> str:
  """Solves and caches the targets of `split` unless cached; returns the dir."""
  out = cache_dir(builder, data_config, split, num_classes)
  if os.path.exists(os.path.join(out, 'index.json')):
    return out
  tc = data_config.targets
  start = time.time()
  index, parts, offset = {}, [], 0
  for name, image, ann in _examples(builder, split, data_config.annotation):
    q = np.rint(solve_targets(image, ann, num_classes, tc.lam, tc.eps,
                              tc.radius, check_radius(tc)) * QUANT).astype(
                                  np.uint8)
    index[name] = [offset, int(q.shape[0]), int(q.shape[1])]
    parts.append(q.reshape(-1))
    offset += q.size
  tmp = out + f'.tmp{os.getpid()}'
  os.makedirs(tmp, exist_ok=True)
  np.save(os.path.join(tmp, 'alpha.npy'), np.concatenate(parts))
  with open(os.path.join(tmp, 'index.json'), 'w') as f:
    json.dump({'num_classes': num_classes, 'channels': channels(
        num_classes, tc), 'index': index}, f)
  try:
    os.replace(tmp, out)
  except OSError:  # another process finished first: keep its copy
    if not os.path.exists(os.path.join(out, 'index.json')):
      raise
  logging.info('Closed-form targets of %s %s: %d images in %.1f s (%s)',
               builder.name, split, len(index), time.time() - start, out)
  return out


def channels(num_classes: int, targets_config) -> int:
  """C of `solve_targets`: K-1, or 2 (K-1) with a check radius."""
  return (num_classes - 1) * (2 if check_radius(targets_config) > 0 else 1)


class Lookup:
  """file name -> uint8 [H, W, C] targets of a prepared cache (memory-mapped).

  Raises KeyError for a file name the cache does not hold.
  """

  def __init__(self, path: str):
    meta = jsonio.read_json(
        os.path.join(path, 'index.json'),
        f'remove the target cache {path}; the next run solves it again')
    self.channels = int(meta.get('channels', int(meta['num_classes']) - 1))
    self.index = meta['index']
    self.alpha = np.load(os.path.join(path, 'alpha.npy'), mmap_mode='r')

  def __call__(self, file_name) -> np.ndarray:
    file_name = np.asarray(file_name).item()  # numpy_function: 0-d array
    if isinstance(file_name, bytes):
      file_name = file_name.decode('utf-8')
    offset, h, w = self.index[str(file_name)]
    size = h * w * self.channels
    return np.array(self.alpha[offset:offset + size]).reshape(
        h, w, self.channels)

  def tf_lookup(self, file_name):
    """The tf op of `__call__`: uint8 [H, W, C] for a string tensor."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    out = tf.numpy_function(self, [file_name], tf.uint8, stateful=False)
    out.set_shape([None, None, self.channels])
    return out
