"""Evaluation: small evaluators that see every eval batch and return a dict.

  result = evaluate_state(run, state, split, full=True, writer=w, step=s)

One pass over the split feeds each evaluator (`update(variables, batch)` with
the host's numpy batch); each one's `result()` is a dict, merged into the
split's result:
  Confusion      summed confusion matrices -> mIoU, P/R/F1 per label map
                 (every pixel of the split counts once: padding is masked)
  RefinedConfusion  the same, of the labels refined by the matting system
                 (config.refine='matting'), with the solve time per image
  MattingErrors  network mattes vs the closed-form solve of the same images
                 and scribbles (MSE, mAD, gradient error), on process 0
  SummaryImages  TensorBoard pictures of the first batch, on process 0
"""

from typing import Any, Dict, Optional

from absl import logging
import jax
import numpy as np

from cfcls import inference
from cfcls import metrics as metrics_lib
from cfcls import parallel
from cfcls import visualize

_EVAL_KEYS = ('image', 'mask', 'valid', 'example_mask')


class Confusion:
  """Segmentation metrics from confusion matrices summed over all devices."""

  def __init__(self, run):
    self.run = run
    self.confusion = None  # int64 [T, K, K] on the host

  def update(self, variables, batch):
    # A batch's counts fit int32 on the device; their sum over a split need
    # not (2^31 pixels of one class is ~1,000 full-size Cityscapes images).
    counts = self.run.eval_step(variables, parallel.host_batch_to_global(
        batch, self.run.mesh, keys=_EVAL_KEYS))
    counts = np.asarray(jax.device_get(counts), np.int64)
    self.confusion = counts if self.confusion is None else (
        self.confusion + counts)

  def result(self) -> Dict[str, Any]:
    config, objective = self.run.config, self.run.objective
    confusion = self.confusion
    per_threshold = {}
    for t, key in enumerate(objective.metric_keys(config.thresholds)):
      per_threshold[key] = metrics_lib.segmentation_metrics(confusion[t])
      per_threshold[key]['confusion'] = confusion[t].tolist()
    return {'thresholds': per_threshold,
            'miou': per_threshold[objective.main_key(config.threshold)]['miou'],
            'prediction': objective.prediction,
            'class_names': self.run.class_names}


class RefinedConfusion(Confusion):
  """Confusion of the labels refined by a matting system on the host
  (config.refine in inference.HOST_REFINES).

  The network runs on each host's own examples (`predict_fn`, local
  variables); each image's seeded matting system is solved on the host
  (`inference.refine_on_host`); the hosts' matrices are summed at the end.
  The same labels stand for every threshold (they come from an argmax).
  """

  def __init__(self, run):
    super().__init__(run)
    self.seconds = []

  def update(self, variables, batch):
    run, config = self.run, self.run.config
    keys = run.objective.metric_keys(config.thresholds)
    scores = np.asarray(jax.device_get(
        run.predict_fn(variables, batch['image'])['scores']))
    counts = np.zeros((len(keys), run.num_classes, run.num_classes), np.int64)
    for i in np.flatnonzero(np.asarray(batch['example_mask']) > 0):
      valid = np.asarray(batch['valid'][i])
      labels, _, info = inference.refine_on_host(
          config, batch['image'][i], scores[i], valid)
      self.seconds.append(info['seconds'])
      counts += np.asarray(metrics_lib.confusion_matrix(
          np.asarray(batch['mask'][i], np.int32), labels, run.num_classes,
          weights=valid), np.int64)[None]
    self.confusion = counts if self.confusion is None else (
        self.confusion + counts)

  def result(self) -> Dict[str, Any]:
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      self.confusion = np.asarray(multihost_utils.process_allgather(
          self.confusion)).sum(0)
    out = super().result()
    out['refine'] = self.run.config.refine
    out['refine_seconds_per_image'] = float(np.mean(self.seconds)) if (
        self.seconds) else 0.0
    return out


class MattingErrors:
  """Matting errors of up to `budget` examples against the closed-form solve."""

  def __init__(self, run, budget: int):
    self.run = run
    self.budget = budget
    self.accumulator = metrics_lib.MattingErrorAccumulator()

  def update(self, variables, batch):
    """Adds the matting errors of up to `budget` examples of a host batch."""
    from cfcls.matting import solver  # pylint: disable=g-import-not-at-top
    run, config = self.run, self.run.config
    keep = np.flatnonzero(np.asarray(batch['example_mask']) > 0)[:self.budget]
    if not len(keep):
      return
    self.budget -= len(keep)
    images = batch['image'][keep]
    scribbles = batch['scribbles'][keep]
    valid = batch['valid'][keep].astype(np.float32)
    scores = np.asarray(run.predict_fn(variables, images)['scores'])
    for i in range(len(keep)):
      rows = np.flatnonzero(valid[i].any(axis=1))
      cols = np.flatnonzero(valid[i].any(axis=0))
      present = [c - 1 for c in np.unique(scribbles[i])
                 if 1 <= c < run.num_classes]
      if not len(rows) or not present:
        continue
      region = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
      # The closed-form mattes of the image (its padding cut off), by the
      # default call (exact: the direct method at evaluation sizes).
      alpha_ref, _ = solver.solve_alpha(
          images[i][region][None] / 255.0, scribbles[i][region][None],
          run.num_classes, lam=config.lam, eps=config.laplacian_eps,
          radius=config.laplacian_radius)
      alpha_ref = np.asarray(alpha_ref[0], np.float64)
      self.accumulator.add(metrics_lib.matting_errors(
          scores[i][region][..., present], alpha_ref[..., present],
          sigma=config.matting_gradient_sigma))

  def result(self) -> Dict[str, Any]:
    if not self.accumulator.count:
      return {}
    return {'matting': self.accumulator.result()}


class SummaryImages:
  """TensorBoard images of the first `count` examples of the first batch."""

  def __init__(self, run, count: int):
    self.run = run
    self.count = count
    self.images = {}

  def update(self, variables, batch):
    count = min(self.count, len(batch['image']))
    if self.images or count <= 0:
      return
    config = self.run.config
    out = self.run.predict_fn(variables, batch['image'][:count])
    t = list(config.thresholds).index(config.threshold)
    labels = np.asarray(out['labels'][t])
    scores = np.asarray(out['scores'])
    mattes = np.concatenate([scores[..., c] for c in range(scores.shape[-1])],
                            axis=2)  # [n, H, (K-1) W]
    self.images = {
        'input': batch['image'][:count],
        'scribbles': visualize.colorize(batch['scribbles'][:count]),
        'ground_truth': visualize.colorize(batch['mask'][:count]),
        'prediction': visualize.colorize(labels),
        'mattes': visualize.matte_to_uint8(mattes)[..., None],
    }

  def result(self) -> Dict[str, Any]:
    return {}


def evaluate_state(run, state, split: str, *, full: bool = False,
                   writer=None, step: Optional[int] = None) -> Dict[str, Any]:
  """Segmentation (and, with `full`, matting) metrics of a state on a split.

  Returns:
    {'thresholds': {'0.5': segmentation metrics, ...} (or {'argmax': ...}
    for softmax networks), 'miou': mIoU at config.threshold, 'prediction',
    'class_names', and with `full` and config.matting_metrics: 'matting'.}
  """
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  config = run.config
  matting = config.refine in inference.HOST_REFINES
  confusion = RefinedConfusion(run) if matting else Confusion(run)
  evaluators = [confusion]
  summary = None
  if jax.process_index() == 0:
    if writer is not None:
      summary = SummaryImages(run, config.num_summary_images)
      evaluators.append(summary)
    if full and config.matting_metrics:
      evaluators.append(MattingErrors(
          run, config.matting_max_images or np.iinfo(np.int32).max))
  variables = state.variables()
  local = parallel.local_copy(variables)  # for process 0's own evaluators
  it = pipeline.create_eval_iterator(
      config.data, config.eval_batch_size, split=split,
      process_index=jax.process_index(), process_count=jax.process_count())
  for batch in it:
    confusion.update(local if matting else variables, batch)
    for evaluator in evaluators[1:]:
      evaluator.update(local, batch)
  if confusion.confusion is None:
    raise ValueError(f'evaluation split {split!r} of {config.data.name} is '
                     'empty')
  result = {}
  for evaluator in evaluators:
    result.update(evaluator.result())
  if writer is not None and step is not None:
    _write_summaries(run, writer, step, split, result,
                     summary.images if summary else {})
  return result


def _write_summaries(run, writer, step: int, split: str, result, images):
  config, objective = run.config, run.objective
  main = result['thresholds'][objective.main_key(config.threshold)]
  scalars = {f'{split}/miou': result['miou'], f'{split}/f1': main['f1']}
  if objective.matte:
    for key, metrics in result['thresholds'].items():
      scalars[f'{split}/miou@{key}'] = metrics['miou']
  for name, iou in zip(run.class_names, main['iou']):
    if not np.isnan(iou):
      scalars[f'{split}/iou/{name}'] = iou
  for name, value in (result.get('matting') or {}).items():
    scalars[f'{split}/matting/{name}'] = value
  writer.write_scalars(step, scalars)
  if images:
    writer.write_images(step, {f'{split}/{k}': v for k, v in images.items()})
  writer.flush()


def final_metrics(run, state, step: int, source: str, splits,
                  writer=None) -> Dict[str, Any]:
  """Full evaluation of each split (all thresholds, matting errors)."""
  config = run.config
  out = {'step': int(step), 'checkpoint': source, 'loss': config.loss,
         'dataset': config.data.name, 'splits': {}}
  for split in splits:
    out['splits'][split] = evaluate_state(run, state, split, full=True,
                                          writer=writer, step=step)
    logging.info('%s checkpoint (step %d): %s mIoU %.4f', source, step, split,
                 out['splits'][split]['miou'])
  return out
