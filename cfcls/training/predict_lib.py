"""Prediction: label maps, overlays and mattes for image files.

  predict(config, workdir, input_path, output_dir, step=None) -> report
  write_eval_images(config, output_dir, count) -> names

Images are read with OpenCV, padded at the bottom/right to a multiple of
config.predict_pad_multiple (fewer compiles), labelled by the run's one
inference path (`cfcls.inference.forward`) and cropped back.
"""

import os
from typing import Any, Dict, List, Optional

from absl import logging
import jax
import numpy as np

from cfcls.training import distributed
from cfcls import inference
from cfcls import jsonio
from cfcls import parallel
from cfcls.training import run_lib
from cfcls.training import stopping
from cfcls import visualize

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class InputError(FileNotFoundError):
  """--input is neither an image nor a folder, or holds no images."""


def _list_images(input_path: str) -> List[str]:
  if os.path.isfile(input_path):
    return [input_path]
  if not os.path.isdir(input_path):
    raise InputError(f'--input {input_path} is neither an image nor a folder')
  files = sorted(os.path.join(input_path, f) for f in os.listdir(input_path)
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise InputError(f'--input {input_path} holds no images '
                     f'({", ".join(IMAGE_EXTENSIONS)})')
  return files


def _read_rgb(path: str) -> Optional[np.ndarray]:
  import cv2  # pylint: disable=g-import-not-at-top
  try:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
  except cv2.error:
    return None
  if image is None or image.ndim != 3 or min(image.shape[:2]) < 1:
    return None
  return np.ascontiguousarray(image[..., ::-1])


def _write_png(path: str, image: np.ndarray):
  import cv2  # pylint: disable=g-import-not-at-top
  if image.ndim == 3:
    image = np.ascontiguousarray(image[..., ::-1])
  if not cv2.imwrite(path, image):
    raise OSError(f'could not write {path}')


def _pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
  """Pads bottom/right with the eval pipeline's padding colour."""
  h, w = image.shape[:2]
  ph, pw = -h % multiple, -w % multiple
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  colour = np.asarray(pipeline.PAD_COLOUR, np.uint8)
  out = np.empty((h + ph, w + pw, 3), np.uint8)
  out[...] = colour
  out[:h, :w] = image
  return out


def predict(config, workdir: str, input_path: str, output_dir: str,
            step: Optional[int] = None,
            run: Optional[run_lib.Run] = None) -> Dict[str, Any]:
  """Label maps, overlays, mattes and class probabilities for images.

  For each image NAME.ext in `input_path` (a folder, or one image) writes to
  `output_dir`: NAME_labels.png (uint8 class ids), NAME_overlay.png (colours
  over the image), NAME_alpha_<id>_<class>.png (uint8 matte) for each class
  present (MLC probability >= 0.5, or in the label map) and NAME.json (class
  probabilities). Unreadable images are skipped, logged by name and listed in
  output_dir/errors.json. With several processes all restore the checkpoint
  and process 0 alone labels the images and writes.

  Returns:
    {'written': [names], 'failed': {name: reason}, 'step': checkpoint step}.
  """
  files = _list_images(input_path)
  run, state, step, source = run_lib.restore_for_eval(config, workdir, step,
                                                      run)
  os.makedirs(output_dir, exist_ok=True)
  predict_fn = run.predict_fn
  variables = parallel.local_copy(state.variables())  # process 0 alone
  written, failed = [], {}
  with stopping.phase('prediction', f'the images before the current one '
                      f'are in {output_dir}; errors.json was not written'):
    for path in files if jax.process_index() == 0 else []:
      _predict_one(run, predict_fn, variables, step, source, path, output_dir,
                   written, failed)
  if failed:
    jsonio.write_json(os.path.join(output_dir, 'errors.json'), failed)
  logging.info('predict: wrote %d images to %s, %d failed', len(written),
               output_dir, len(failed))
  return {'written': written, 'failed': failed, 'step': step}


def _predict_one(run, predict_fn, variables, step, source, path, output_dir,
                 written, failed):
  """Labels one image file; appends its name to `written` or `failed`."""
  config = run.config
  t = list(config.thresholds).index(config.threshold)
  matte = run.objective.matte
  name = os.path.basename(path)
  stem = os.path.splitext(name)[0]
  image = _read_rgb(path)
  if image is None:
    failed[name] = 'unreadable or corrupt image'
    logging.warning('predict: skipping %s: unreadable or corrupt image',
                    path)
    return
  h, w = image.shape[:2]
  padded = _pad_to_multiple(image, config.predict_pad_multiple)
  out = jax.device_get(predict_fn(variables, padded[None]))
  labels = np.asarray(out['labels'][t, 0, :h, :w]).astype(np.uint8)
  scores = np.asarray(out['scores'][0, :h, :w])
  probs = np.asarray(out['probs'][0])
  refine_seconds = None
  if config.refine in inference.HOST_REFINES:
    # The matting system's labels, and its mattes as the pictures.
    refined, mattes, info = inference.refine_on_host(config, image, scores)
    labels, scores = refined.astype(np.uint8), mattes[..., 1:]
    refine_seconds = info['seconds']
  present = sorted(set(int(c) for c in np.unique(labels) if c > 0)
                   | (set(int(c) + 1 for c in np.flatnonzero(probs >= 0.5))
                      if matte else set()))
  _write_png(os.path.join(output_dir, f'{stem}_labels.png'), labels)
  _write_png(os.path.join(output_dir, f'{stem}_overlay.png'),
             visualize.overlay(image, labels))
  for c in present:
    _write_png(os.path.join(output_dir,
                            f'{stem}_alpha_{c}_{run.class_names[c]}.png'),
               visualize.matte_to_uint8(scores[..., c - 1]))
  jsonio.write_json(os.path.join(output_dir, f'{stem}.json'), {
      'file': name, 'height': h, 'width': w,
      'class_probabilities': {run.class_names[c + 1]: float(p)
                              for c, p in enumerate(probs)},
      'present_classes': [run.class_names[c] for c in present],
      'pixel_fractions': {run.class_names[c]: float(np.mean(labels == c))
                          for c in range(run.num_classes)},
      'threshold': config.threshold if matte else None,
      'refine': config.refine,
      'refine_seconds': refine_seconds,
      'checkpoint': {'step': step, 'source': source},
  })
  written.append(name)


def write_eval_images(config, output_dir: str, count: int) -> List[str]:
  """Writes the first `count` images of the eval split as PNGs (for demos).

  Process 0 writes; every process returns once the files are there.
  """
  if jax.process_index() != 0:
    distributed.barrier('write_eval_images')
    return []
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  os.makedirs(output_dir, exist_ok=True)
  names = []
  it = pipeline.create_eval_iterator(config.data, config.eval_batch_size,
                                     split=config.data.eval_split,
                                     process_index=0, process_count=1)
  for batch in it:
    for i in range(len(batch['image'])):
      if len(names) >= count or not batch['example_mask'][i]:
        continue
      valid = np.asarray(batch['valid'][i]) > 0
      rows, cols = np.flatnonzero(valid.any(1)), np.flatnonzero(valid.any(0))
      image = batch['image'][i][rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
      raw = batch['file_name'][i] if 'file_name' in batch else f'{len(names)}'
      raw = raw.decode() if isinstance(raw, bytes) else str(raw)
      name = os.path.splitext(os.path.basename(raw))[0] or str(len(names))
      _write_png(os.path.join(output_dir, f'{name}.png'), np.asarray(image))
      names.append(f'{name}.png')
    if len(names) >= count:
      break
  distributed.barrier('write_eval_images')
  return names
