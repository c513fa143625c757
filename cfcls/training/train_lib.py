"""The training loop and evaluation from a workdir: what `train.py` runs.

  train_and_evaluate(config, workdir) -> final metrics dict
  evaluate(config, workdir, step=None, splits=None) -> metrics dict
  (prediction: cfcls.training.predict_lib)

The workdir holds:
  checkpoints/<step>, best/<step>   orbax checkpoints (cfcls.training.checkpointing)
  config.json, dataset.json         the run's config and class names
  events.out.tfevents.*             TensorBoard scalars and images (process 0)
  metrics.json                      the last full evaluation, per split and
                                    threshold
  predictions/                      with config.predict_after_training

The model, optimiser and compiled steps come from cfcls.training.run_lib, evaluation
from cfcls.training.evaluators. The input pipeline (cfcls.data, tensorflow) is
imported only inside the functions that read data.
"""

import os
import time
from typing import Any, Dict, Optional, Sequence

from absl import logging
import jax
import numpy as np

from cfcls.training import checkpointing
from cfcls.training import config_utils
from cfcls.training import console
from cfcls.training import distributed
from cfcls.training import evaluators
from cfcls.training import host_memory
from cfcls import jsonio
from cfcls import parallel
from cfcls.training import predict_lib
from cfcls.training import run_lib
from cfcls.training import stopping
from cfcls.training import train_step as train_step_lib

# (targets: the closed-form mattes, with data.targets.enabled; check_targets:
# their check mattes, with data.targets.check_radius > 0)
_TRAIN_KEYS = ('image', 'scribbles', 'mask', 'valid', 'presence', 'targets',
               'check_targets')
# How long the other processes wait while process 0 prepares the dataset.
_PREPARE_TIMEOUT_S = 24 * 3600


class MetricsBuffer:
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


def prepared_dataset_info(data_config):
  """dataset_info, prepared by process 0 while the other processes wait.

  Several processes preparing one dataset at once collide (tfds renames its
  temporary folder into place); so process 0 prepares and the others wait
  at a barrier, then read it (on a filesystem all hosts see) or, if their
  data_dir is a local disk, prepare their own copy, one process per disk.
  """
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top
  with stopping.phase('dataset preparation', 'nothing was written to the '
                      'workdir; an incomplete dataset is prepared again by '
                      'the next run'):
    if jax.process_index() == 0:
      info = pipeline.dataset_info(data_config)
    else:
      logging.info('Waiting for process 0 to prepare the dataset')
    distributed.barrier('cfcls_dataset_prepared', timeout_s=_PREPARE_TIMEOUT_S)
    if jax.process_index() != 0:
      info = pipeline.dataset_info(data_config)
  return info


def _prepare_run(config, workdir: str):
  """Validates the config, prepares the data, builds the run, writes meta."""
  config_utils.validate_config(config, device_count=jax.device_count())
  info = prepared_dataset_info(config.data)
  run = run_lib.build(config, info.num_classes, info.class_names)
  os.makedirs(workdir, exist_ok=True)
  jsonio.write_json(os.path.join(workdir, 'dataset.json'),
                    {'num_classes': run.num_classes,
                     'class_names': run.class_names, 'name': config.data.name})
  jsonio.write_json(os.path.join(workdir, 'config.json'), config.to_dict())
  return run


def train_and_evaluate(config, workdir: str, *,
                       keep_freed_memory: bool = False) -> Dict[str, Any]:
  """Trains (resuming from WORKDIR/checkpoints), evaluates, returns metrics.

  Evaluates on config.data.eval_split every eval_every_steps and at the end,
  keeps the best checkpoint by mIoU at config.threshold, writes the final
  evaluation (all thresholds, matting errors) to WORKDIR/metrics.json and,
  with config.predict_after_training = n, labels n validation images into
  WORKDIR/predictions. With `keep_freed_memory`, from the first training
  step on malloc keeps what the steps free for the next ones, for the rest
  of the process (cfcls.training.host_memory; train.py sets it on the CPU
  backend).
  """
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  from cfcls.data import pipeline  # pylint: disable=g-import-not-at-top

  run = _prepare_run(config, workdir)
  ckpts = checkpointing.Checkpoints(workdir, keep=config.keep_checkpoints)
  resuming = ckpts.latest_step() is not None
  state = run_lib.initial_state(run, None if resuming else config.init_from)
  state, start_step = ckpts.restore_latest(state)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams(jsonio.flatten_config(config))
  logging.info('Training %s (%s) on %d devices (%d hosts), global batch %d, '
               'steps %d..%d', config.loss, config.data.name,
               jax.device_count(), jax.process_count(), config.batch_size,
               start_step + 1, config.num_train_steps)

  split = config.data.eval_split
  with stopping.training_loop():
    stopped = _train_loop(run, state, start_step, workdir, ckpts, writer,
                          periodic_actions, pipeline, keep_freed_memory)
  if isinstance(stopped, dict):
    return stopped
  state = stopped
  final_step = int(jax.device_get(state.step))
  ckpts.wait()  # the last step's checkpoint is complete before evaluating
  with stopping.phase('the final evaluation',
                      f'the checkpoint of step {final_step} is saved; '
                      'metrics.json was not written (run --mode=eval)'):
    final = evaluators.final_metrics(run, state, final_step, 'final', [split],
                                     writer)
    ckpts.save_if_best(final_step, state, final['splits'][split]['miou'])
    ckpts.wait()
  final['best_checkpoint'] = {'step': ckpts.best.best_step(),
                              'miou': ckpts.best_metric()}
  jsonio.write_json(os.path.join(workdir, 'metrics.json'), final)
  ckpts.close()
  writer.close()
  _log_eval(run, final_step, split, final['splits'][split], None)
  if config.predict_after_training:
    inputs = os.path.join(workdir, 'predict_inputs')
    predict_lib.write_eval_images(config, inputs,
                                  config.predict_after_training)
    final['predictions'] = predict_lib.predict(
        config, workdir, inputs, os.path.join(workdir, 'predictions'),
        run=run)
  if jax.process_index() == 0:
    _log_summary(workdir, final)
  return final


def _stop_check_every(config) -> int:
  """Steps between stop checks: each step alone; with several processes a
  collective, so every log_every_steps (all stop at the same step)."""
  return 1 if jax.process_count() == 1 else config.log_every_steps


def _train_loop(run, state, start_step, workdir, ckpts, writer,
                periodic_actions, pipeline, keep_freed_memory):
  """Steps start_step+1..; the final state, or {'stopped': True, ...}."""
  config = run.config
  split = config.data.eval_split
  buffer = MetricsBuffer()
  progress = console.Progress(start_step, config.num_train_steps)
  stop_every = _stop_check_every(config)

  def log_train(step, show):
    scalars = buffer.flush()
    if scalars:
      writer.write_scalars(step, scalars)
    if show:
      logging.info('%s', progress.line(step, scalars))

  if start_step < config.num_train_steps:
    train_iter = pipeline.create_train_iterator(
        config.data, config.batch_size, seed=config.seed,
        start_step=start_step, process_index=jax.process_index(),
        process_count=jax.process_count())
    report = periodic_actions.ReportProgress(
        num_train_steps=config.num_train_steps, writer=writer,
        every_steps=config.log_every_steps)
    if keep_freed_memory:  # after the dataset and its targets are ready
      host_memory.keep_freed_memory()
    for step in range(start_step + 1, config.num_train_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        batch = parallel.host_batch_to_global(next(train_iter), run.mesh,
                                              keys=_TRAIN_KEYS)
        state, metrics = run.train_step(state, batch)
      buffer.add(step, metrics)
      report(step)
      last = step == config.num_train_steps
      if step % config.log_every_steps == 0 or last:
        log_train(step, True)
      if (config.eval_every_steps and step % config.eval_every_steps == 0
          and not last):
        log_train(step, False)
        started = time.monotonic()
        with report.timed('eval'):
          result = evaluators.evaluate_state(run, state, split, writer=writer,
                                             step=step)
        ckpts.save_if_best(step, state, result['miou'])
        progress.pause(time.monotonic() - started)
        _log_eval(run, step, split, result, ckpts)
      if step % config.checkpoint_every_steps == 0 or last:
        log_train(step, False)
        ckpts.save(step, state, force=last)
      # Every process stops at the same step (a signal may reach only one).
      if (not last and step % stop_every == 0
          and distributed.any_process(stopping.stop_requested())):
        log_train(step, True)
        ckpts.save(step, state, force=True)
        ckpts.wait()
        ckpts.close()
        writer.close()
        logging.warning('Stop requested: saved step %d in %s; run again with '
                        'the same workdir to continue', step, workdir)
        return {'step': step, 'stopped': True}
  return state


def _log_eval(run, step: int, split: str, result, ckpts):
  """One line: mIoU at the chosen threshold (and the best so far)."""
  config = run.config
  how = (f'at threshold {config.threshold:g}' if run.objective.matte
         else 'argmax')
  text = f'eval step {step}: {split} mIoU {result["miou"]:.4f} ({how})'
  if ckpts is not None and ckpts.best_metric() is not None:
    text += (f', best {ckpts.best_metric():.4f} at step '
             f'{ckpts.best.best_step()}')
  logging.info('%s', text)


def _log_summary(workdir: str, final):
  best = final['best_checkpoint']
  lines = [f'Done: step {final["step"]}, best checkpoint step {best["step"]} '
           f'(mIoU {best["miou"]:.4f})',
           f'  metrics:     {os.path.join(workdir, "metrics.json")}',
           f'  checkpoints: {os.path.join(workdir, "checkpoints")}, '
           f'{os.path.join(workdir, "best")}',
           f'  TensorBoard: tensorboard --logdir {workdir}']
  if 'predictions' in final:
    lines.append(f'  predictions: {os.path.join(workdir, "predictions")} '
                 f'({len(final["predictions"]["written"])} images)')
  logging.info('%s', '\n'.join(lines))


def evaluate(config, workdir: str, step: Optional[int] = None,
             splits: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Evaluates the best checkpoint (or `step`); writes WORKDIR/metrics.json."""
  run, state, step, source = run_lib.restore_for_eval(config, workdir, step)
  splits = list(splits or [config.data.eval_split])
  with stopping.phase('evaluation', 'metrics.json was not written'):
    result = evaluators.final_metrics(run, state, step, source, splits)
  jsonio.write_json(os.path.join(workdir, 'metrics.json'), result)
  return result
