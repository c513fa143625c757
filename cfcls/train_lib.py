"""Training, evaluation and prediction: what `train.py` runs.

  train_and_evaluate(config, workdir) -> final metrics dict
  evaluate(config, workdir, step=None, splits=None) -> metrics dict
  predict(config, workdir, input_path, output_dir, step=None) -> report dict

The workdir holds:
  checkpoints/<step>, best/<step>   orbax checkpoints (cfcls.checkpointing)
  config.json, dataset.json         the run's config and class names
  events.out.tfevents.*             TensorBoard scalars and images (process 0)
  metrics.json                      the last full evaluation, per split and
                                    threshold

Data parallelism, the loss dispatch and the compiled steps live in
cfcls.train_step; this module is the loop around them (input, logging,
evaluation, checkpoints). The input pipeline (cfcls.data, tensorflow) is
imported only inside the functions that read data.
"""

import dataclasses
import functools
import json
import os
import threading
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from cfcls import checkpointing
from cfcls import config_utils
from cfcls import distributed
from cfcls import inference
from cfcls import metrics as metrics_lib
from cfcls import models
from cfcls import optim
from cfcls import parallel
from cfcls import train_step as train_step_lib
from cfcls import visualize

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')

# Set by request_stop() (train.py calls it on SIGTERM / Ctrl-C): the training
# loop saves a checkpoint after the current step and returns.
_STOP = threading.Event()


def request_stop():
  """Asks a running train_and_evaluate to checkpoint and return."""
  _STOP.set()


def stop_requested() -> bool:
  return _STOP.is_set()


# ----------------------------------------------------------------------------
# Building the model, optimiser and state.


@dataclasses.dataclass
class Run:
  """Everything built from a config for one run."""
  config: Any
  num_classes: int
  class_names: List[str]
  mesh: Any
  model: Any  # training model (synchronised BN over 'data')
  eval_model: Any  # same variables, BN in inference mode only
  tx: Any
  learning_rate_fn: Any


def _data_pipeline():
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline


def build(config, num_classes: int, class_names: Sequence[str],
          mesh=None) -> Run:
  """Model, optimiser and mesh from a validated config."""
  config_utils.check_class_weights(config, num_classes)
  mesh = parallel.create_mesh() if mesh is None else mesh
  num_outputs = inference.num_outputs_for_loss(config.loss, num_classes)
  model = models.create_model(config.model, num_classes, num_outputs,
                              axis_name=parallel.DATA_AXIS)
  eval_model = models.create_model(config.model, num_classes, num_outputs)
  lr_fn = optim.create_learning_rate_fn(config)
  tx = optim.create_optimizer(config, lr_fn)
  return Run(config, num_classes, list(class_names), mesh, model, eval_model,
             tx, lr_fn)


def initial_state(run: Run, pretrained: Optional[str] = None):
  """Freshly initialised train state (replicated), optionally with weights."""
  config = run.config
  crop = config_utils.crop_shape(config)
  variables = None
  if pretrained:
    from cfcls.models import pretrained as pretrained_lib  # pylint: disable=g-import-not-at-top
    dummy = jnp.zeros((1,) + crop + (3,), jnp.float32)
    variables = jax.jit(lambda r: run.eval_model.init(r, dummy, train=False))(
        jax.random.key(config.seed))
    variables, report = pretrained_lib.load_torchvision_resnet(pretrained,
                                                               variables)
    logging.info('Loaded %s: %s', pretrained, report.summary())
  return compiled('init', run)(jax.random.key(config.seed), variables)


@functools.lru_cache(maxsize=8)
def _compiled(kind: str, config_json: str, num_classes: int, devices: tuple):
  """Compiled steps, shared by the calls of one process with the same config.

  (A restarted run, or evaluate / predict after training, reuses the jitted
  functions, and so the XLA executables, instead of compiling again.)
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(json.loads(config_json))
  config.lock()
  run = build(config, num_classes, [''] * num_classes,
              parallel.create_mesh(list(devices)))
  if kind == 'init':
    crop = config_utils.crop_shape(config)
    return train_step_lib.make_init_fn(run.model, run.tx, crop, run.mesh)
  if kind == 'train':
    return train_step_lib.make_train_step(config, run.model, run.tx,
                                          num_classes, run.mesh,
                                          run.learning_rate_fn)
  if kind == 'eval':
    return train_step_lib.make_eval_step(config, run.eval_model, num_classes,
                                         run.mesh)
  if kind == 'predict':
    return train_step_lib.make_predict_fn(config, run.eval_model)
  raise ValueError(kind)


def compiled(kind: str, run: Run):
  """The 'init', 'train', 'eval' or 'predict' function of a run (memoised)."""
  return _compiled(kind, run.config.to_json(sort_keys=True), run.num_classes,
                   tuple(run.mesh.devices.flat))


def _abstract_state(run: Run):
  """The state's structure without computing it (for restoring)."""
  return jax.eval_shape(lambda: initial_state(run))


def _dataset_meta(config, workdir: Optional[str]):
  """(num_classes, class_names): from WORKDIR/dataset.json, else the data."""
  path = os.path.join(workdir, 'dataset.json') if workdir else None
  if path and os.path.exists(path):
    with open(path) as f:
      meta = json.load(f)
    return int(meta['num_classes']), list(meta['class_names'])
  info = _data_pipeline().dataset_info(config.data)
  return int(info.num_classes), list(info.class_names)


def _write_json(path: str, obj):
  """Writes strict JSON (NaN -> null) atomically, from process 0 only."""
  if jax.process_index() != 0:
    return
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(_finite_or_none(obj), f, indent=1, sort_keys=True,
              default=_json_default, allow_nan=False)
  os.replace(tmp, path)


def _finite_or_none(obj):
  if isinstance(obj, dict):
    return {k: _finite_or_none(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_finite_or_none(v) for v in obj]
  if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
    return None
  return obj


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


# ----------------------------------------------------------------------------
# Evaluation.


def _summary_images(run: Run, variables, batch, predict_fn, count: int):
  """TensorBoard images of the first `count` examples of an eval batch."""
  count = min(count, len(batch['image']))
  if count <= 0:
    return {}
  out = predict_fn(variables, batch['image'][:count])
  t = list(run.config.thresholds).index(run.config.threshold)
  labels = np.asarray(out['labels'][t])
  scores = np.asarray(out['scores'])
  mattes = np.concatenate([scores[..., c] for c in range(scores.shape[-1])],
                          axis=2)  # [n, H, (K-1) W]
  return {
      'input': batch['image'][:count],
      'scribbles': visualize.colorize(batch['scribbles'][:count]),
      'ground_truth': visualize.colorize(batch['mask'][:count]),
      'prediction': visualize.colorize(labels),
      'mattes': visualize.matte_to_uint8(mattes)[..., None],
  }


def _matting_errors(run: Run, variables, batch, predict_fn, budget: int,
                    accumulator: metrics_lib.MattingErrorAccumulator):
  """Adds the matting errors of up to `budget` examples of a host batch."""
  from cfcls import matting  # pylint: disable=g-import-not-at-top
  config = run.config
  keep = np.flatnonzero(np.asarray(batch['example_mask']) > 0)[:budget]
  if not len(keep):
    return 0
  images = batch['image'][keep]
  scribbles = batch['scribbles'][keep]
  valid = batch['valid'][keep].astype(np.float32)
  scores = np.asarray(predict_fn(variables, images)['scores'])
  alpha_ref, _ = matting.solve_alpha(
      jnp.asarray(images, jnp.float32) / 255.0, jnp.asarray(scribbles),
      run.num_classes, lam=config.lam, eps=config.laplacian_eps,
      radius=config.laplacian_radius, tol=config.solver_tol,
      max_iters=config.solver_max_iters, valid=jnp.asarray(valid))
  alpha_ref = np.asarray(alpha_ref)
  for i in range(len(keep)):
    rows = np.flatnonzero(valid[i].any(axis=1))
    cols = np.flatnonzero(valid[i].any(axis=0))
    present = [c - 1 for c in np.unique(scribbles[i])
               if 1 <= c < run.num_classes]
    if not len(rows) or not present:
      continue
    region = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    accumulator.add(metrics_lib.matting_errors(
        scores[i][region][..., present], alpha_ref[i][region][..., present],
        sigma=config.matting_gradient_sigma))
  return len(keep)


def evaluate_state(run: Run, state, split: str, *, full: bool = False,
                   writer=None, step: Optional[int] = None,
                   eval_step=None, predict_fn=None) -> Dict[str, Any]:
  """Segmentation (and, with `full`, matting) metrics of a state on a split.

  Every pixel of the split counts once (padded images and examples are masked).

  Returns:
    {'thresholds': {'0.5': segmentation metrics, ...} (or {'argmax': ...}
    for softmax networks), 'miou': mIoU at config.threshold, and with `full`
    and config.matting_metrics: 'matting': matting errors}.
  """
  config = run.config
  pipeline = _data_pipeline()
  eval_step = eval_step or compiled('eval', run)
  predict_fn = predict_fn or compiled('predict', run)
  variables = state.variables()
  it = pipeline.create_eval_iterator(
      config.data, config.eval_batch_size, split=split,
      process_index=jax.process_index(), process_count=jax.process_count())
  confusion = None
  images = {}
  matting_acc = metrics_lib.MattingErrorAccumulator()
  matting_budget = 0
  if full and config.matting_metrics and jax.process_index() == 0:
    matting_budget = config.matting_max_images or np.iinfo(np.int32).max
  for i, batch in enumerate(it):
    c = eval_step(variables, parallel.host_batch_to_global(
        batch, run.mesh, keys=('image', 'mask', 'valid', 'example_mask')))
    confusion = c if confusion is None else confusion + c
    if i == 0 and writer is not None and jax.process_index() == 0:
      images = _summary_images(run, variables, batch, predict_fn,
                               config.num_summary_images)
    if matting_budget > 0:
      matting_budget -= _matting_errors(run, variables, batch, predict_fn,
                                        matting_budget, matting_acc)
  if confusion is None:
    raise ValueError(f'evaluation split {split!r} of {config.data.name} is '
                     'empty')
  confusion = np.asarray(jax.device_get(confusion), np.int64)
  matte = inference.is_matte_loss(config.loss)
  keys = ([f'{t:g}' for t in config.thresholds] if matte else ['argmax'])
  per_threshold = {}
  for t, key in enumerate(keys):
    per_threshold[key] = metrics_lib.segmentation_metrics(confusion[t])
    per_threshold[key]['confusion'] = confusion[t].tolist()
  main_key = f'{config.threshold:g}' if matte else 'argmax'
  result = {'thresholds': per_threshold,
            'miou': per_threshold[main_key]['miou'],
            'prediction': 'threshold' if matte else 'argmax',
            'class_names': run.class_names}
  if matting_acc.count:
    result['matting'] = matting_acc.result()
  if writer is not None and step is not None:
    scalars = {f'{split}/miou': result['miou'],
               f'{split}/f1': per_threshold[main_key]['f1']}
    if matte:
      for key in keys:
        scalars[f'{split}/miou@{key}'] = per_threshold[key]['miou']
    for name, iou in zip(run.class_names, per_threshold[main_key]['iou']):
      if not np.isnan(iou):
        scalars[f'{split}/iou/{name}'] = iou
    for name, value in (result.get('matting') or {}).items():
      scalars[f'{split}/matting/{name}'] = value
    writer.write_scalars(step, scalars)
    if images:
      writer.write_images(step, {f'{split}/{k}': v for k, v in images.items()})
    writer.flush()
  return result


def _final_metrics(run: Run, state, step: int, source: str, splits,
                   writer=None) -> Dict[str, Any]:
  config = run.config
  out = {'step': int(step), 'checkpoint': source, 'loss': config.loss,
         'dataset': config.data.name, 'splits': {}}
  for split in splits:
    out['splits'][split] = evaluate_state(run, state, split, full=True,
                                          writer=writer, step=step)
    logging.info('%s step %d %s mIoU %.4f', source, step, split,
                 out['splits'][split]['miou'])
  return out


# ----------------------------------------------------------------------------
# Training.


def _flatten_config(config) -> Dict[str, Any]:
  flat = {}

  def walk(d, prefix):
    for k, v in d.items():
      if isinstance(v, dict):
        walk(v, f'{prefix}{k}.')
      else:
        flat[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)
  walk(config.to_dict(), '')
  return flat


class _MetricsBuffer:
  """Per-step device metrics, fetched only every log_every_steps."""

  def __init__(self):
    self.first_step = None
    self.items = []

  def add(self, step: int, metrics):
    if self.first_step is None:
      self.first_step = step
    self.items.append(metrics)

  def flush(self) -> Optional[Dict[str, float]]:
    """Host means of the buffered steps; raises on a NaN/Inf loss."""
    if not self.items:
      return None
    host = jax.device_get(self.items)
    first, self.items, self.first_step = self.first_step, [], None
    bad = train_step_lib.first_nonfinite(host, first)
    if bad is not None:
      bad_step, name = bad
      raise FloatingPointError(
          f'{name} is {host[bad_step - first][name]} at step {bad_step}: '
          'training stopped (try a lower learning_rate or grad_clip; the '
          'last good checkpoint is in the workdir)')
    return {f'train/{k}': float(np.mean([m[k] for m in host]))
            for k in host[0]}


def train_and_evaluate(config, workdir: str) -> Dict[str, Any]:
  """Trains (resuming from WORKDIR/checkpoints), evaluates, returns metrics.

  Evaluates on config.data.eval_split every eval_every_steps and at the end,
  keeps the best checkpoint by mIoU at config.threshold, and writes the final
  evaluation (all thresholds, matting errors) to WORKDIR/metrics.json.
  """
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top

  config_utils.validate_config(config, device_count=jax.device_count())
  pipeline = _data_pipeline()
  info = pipeline.dataset_info(config.data)
  run = build(config, info.num_classes, info.class_names)
  os.makedirs(workdir, exist_ok=True)
  _write_json(os.path.join(workdir, 'dataset.json'),
              {'num_classes': run.num_classes, 'class_names': run.class_names,
               'name': config.data.name})
  _write_json(os.path.join(workdir, 'config.json'), config.to_dict())

  ckpts = checkpointing.Checkpoints(workdir, keep=config.keep_checkpoints)
  resuming = ckpts.latest_step() is not None
  state = initial_state(run, None if resuming else config.init_from)
  state, start_step = ckpts.restore_latest(state)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams(_flatten_config(config))
  logging.info('%s on %d devices (%d hosts), global batch %d, steps %d..%d',
               config.loss, jax.device_count(), jax.process_count(),
               config.batch_size, start_step + 1, config.num_train_steps)

  train_step = compiled('train', run)
  eval_step = compiled('eval', run)
  predict_fn = compiled('predict', run)
  split = config.data.eval_split
  buffer = _MetricsBuffer()

  def log_train(step):
    scalars = buffer.flush()
    if scalars:
      writer.write_scalars(step, scalars)

  if start_step < config.num_train_steps:
    train_iter = pipeline.create_train_iterator(
        config.data, config.batch_size, seed=config.seed,
        start_step=start_step, process_index=jax.process_index(),
        process_count=jax.process_count())
    report = periodic_actions.ReportProgress(
        num_train_steps=config.num_train_steps, writer=writer,
        every_steps=config.log_every_steps)
    for step in range(start_step + 1, config.num_train_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        batch = parallel.host_batch_to_global(
            next(train_iter), run.mesh,
            keys=('image', 'scribbles', 'mask', 'valid', 'presence'))
        state, metrics = train_step(state, batch)
      buffer.add(step, metrics)
      report(step)
      last = step == config.num_train_steps
      if step % config.log_every_steps == 0 or last:
        log_train(step)
      if (config.eval_every_steps and step % config.eval_every_steps == 0
          and not last):
        log_train(step)
        with report.timed('eval'):
          result = evaluate_state(run, state, split, writer=writer, step=step,
                                  eval_step=eval_step, predict_fn=predict_fn)
        ckpts.save_if_best(step, state, result['miou'])
      if step % config.checkpoint_every_steps == 0 or last:
        log_train(step)
        ckpts.save(step, state, force=last)
      # Every process stops at the same step (a signal may reach only one).
      if not last and distributed.any_process(stop_requested()):
        _STOP.clear()
        log_train(step)
        ckpts.save(step, state, force=True)
        ckpts.wait()
        ckpts.close()
        writer.close()
        logging.warning('Stop requested: saved step %d in %s; run again with '
                        'the same workdir to continue', step, workdir)
        return {'step': step, 'stopped': True}
  final_step = int(jax.device_get(state.step))
  final = _final_metrics(run, state, final_step, 'final', [split], writer)
  ckpts.save_if_best(final_step, state, final['splits'][split]['miou'])
  ckpts.wait()
  final['best_checkpoint'] = {'step': ckpts.best.best_step(),
                              'miou': ckpts.best_metric()}
  _write_json(os.path.join(workdir, 'metrics.json'), final)
  ckpts.close()
  writer.close()
  return final


# ----------------------------------------------------------------------------
# Evaluation and prediction from a workdir.


def _restore_for_eval(config, workdir: str, step: Optional[int]):
  config_utils.validate_config(config, device_count=jax.device_count())
  num_classes, class_names = _dataset_meta(config, workdir)
  run = build(config, num_classes, class_names)
  ckpts = checkpointing.Checkpoints(workdir, read_only=True)
  try:
    state, step, source = ckpts.restore_for_eval(_abstract_state(run), step)
  finally:
    ckpts.close()
  logging.info('Restored %s checkpoint of step %d from %s', source, step,
               workdir)
  return run, state, step, source


def evaluate(config, workdir: str, step: Optional[int] = None,
             splits: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Evaluates the best checkpoint (or `step`); writes WORKDIR/metrics.json."""
  run, state, step, source = _restore_for_eval(config, workdir, step)
  splits = list(splits or [config.data.eval_split])
  result = _final_metrics(run, state, step, source, splits)
  _write_json(os.path.join(workdir, 'metrics.json'), result)
  return result


def _list_images(input_path: str) -> List[str]:
  if os.path.isfile(input_path):
    return [input_path]
  if not os.path.isdir(input_path):
    raise FileNotFoundError(f'--input {input_path} is neither an image nor a '
                            'folder')
  files = sorted(os.path.join(input_path, f) for f in os.listdir(input_path)
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise ValueError(f'--input {input_path} holds no images '
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
  colour = np.asarray(_data_pipeline().PAD_COLOUR, np.uint8)
  out = np.empty((h + ph, w + pw, 3), np.uint8)
  out[...] = colour
  out[:h, :w] = image
  return out


def predict(config, workdir: str, input_path: str, output_dir: str,
            step: Optional[int] = None) -> Dict[str, Any]:
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
  run, state, step, source = _restore_for_eval(config, workdir, step)
  os.makedirs(output_dir, exist_ok=True)
  predict_fn = compiled('predict', run)
  variables = state.variables()
  t = list(config.thresholds).index(config.threshold)
  matte = inference.is_matte_loss(config.loss)
  written, failed = [], {}
  for path in files if jax.process_index() == 0 else []:
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    image = _read_rgb(path)
    if image is None:
      failed[name] = 'unreadable or corrupt image'
      logging.warning('predict: skipping %s: unreadable or corrupt image',
                      path)
      continue
    h, w = image.shape[:2]
    padded = _pad_to_multiple(image, config.predict_pad_multiple)
    out = jax.device_get(predict_fn(variables, padded[None]))
    labels = np.asarray(out['labels'][t, 0, :h, :w]).astype(np.uint8)
    scores = np.asarray(out['scores'][0, :h, :w])
    probs = np.asarray(out['probs'][0])
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
    _write_json(os.path.join(output_dir, f'{stem}.json'), {
        'file': name, 'height': h, 'width': w,
        'class_probabilities': {run.class_names[c + 1]: float(p)
                                for c, p in enumerate(probs)},
        'present_classes': [run.class_names[c] for c in present],
        'pixel_fractions': {run.class_names[c]: float(np.mean(labels == c))
                            for c in range(run.num_classes)},
        'threshold': config.threshold if matte else None,
        'checkpoint': {'step': step, 'source': source},
    })
    written.append(name)
  if failed:
    _write_json(os.path.join(output_dir, 'errors.json'), failed)
  logging.info('predict: wrote %d images to %s, %d failed', len(written),
               output_dir, len(failed))
  return {'written': written, 'failed': failed, 'step': step}


def write_eval_images(config, output_dir: str, count: int) -> List[str]:
  """Writes the first `count` images of the eval split as PNGs (for demos).

  Process 0 writes; every process returns once the files are there.
  """
  if jax.process_index() != 0:
    distributed.barrier('write_eval_images')
    return []
  pipeline = _data_pipeline()
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
