"""Checkpoints of the train state with orbax.

Two orbax CheckpointManagers under the workdir:
  WORKDIR/checkpoints/<step>  the latest `keep` checkpoints (resume from here)
  WORKDIR/best/<step>         the checkpoint with the best validation mIoU

A checkpoint is the TrainState pytree {step, params, batch_stats, opt_state};
the step is also the input position (the training iterator is a pure function
of (seed, step)).

Resuming takes the newest checkpoint that can be read: one that fails to
restore (e.g. a truncated file) is logged, moved to WORKDIR/corrupt_checkpoints
and the previous one is used. Checkpoints being written when the run was
killed are orbax temporary folders, never listed as steps. With several
processes every process calls save and restore (orbax coordinates them); the
workdir must be on a filesystem all hosts see.
"""

import os
from typing import Optional

import jax
import orbax.checkpoint as ocp
from absl import logging

from cfcls import distributed
from cfcls import parallel

BEST_METRIC = 'miou'


class CheckpointError(RuntimeError):
  """Checkpoints exist but none can be restored."""


def _reason(error: BaseException) -> str:
  """One line: the exception type and the start of its message."""
  text = ' '.join(str(error).split())
  if len(text) > 200:
    text = text[:200] + '...'
  return f'{type(error).__name__}: {text}' if text else type(error).__name__


def abstract_like(tree, sharding=None):
  """ShapeDtypeStructs (with shardings) to restore a tree like `tree` into.

  Leaves keep their sharding; leaves without one (from jax.eval_shape) get
  `sharding`, by default replicated over all devices of all hosts, so that a
  checkpoint written on another topology (other hosts or device counts)
  restores onto this one.
  """
  if sharding is None:
    sharding = parallel.replicated_sharding(parallel.create_mesh())

  def leaf(x):
    out = ocp.utils.to_shape_dtype_struct(x)
    if isinstance(out, jax.ShapeDtypeStruct) and out.sharding is None:
      out = jax.ShapeDtypeStruct(out.shape, out.dtype, sharding=sharding)
    return out

  return jax.tree_util.tree_map(leaf, tree)


class Checkpoints:
  """Latest and best checkpoints of one workdir.

  Args:
    workdir: the run directory.
    keep: how many of the latest checkpoints to keep.
    read_only: never write or delete (evaluation, prediction).
  """

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
    self.workdir = workdir
    self.latest = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'checkpoints'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not read_only, read_only=read_only))
    self.best = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'best'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda m: m[BEST_METRIC], best_mode='max',
            keep_checkpoints_without_metrics=False, create=not read_only,
            read_only=read_only))

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves to checkpoints/ (if not there already)."""
    if step in self.latest.all_steps():
      return False
    return self.latest.save(step, args=ocp.args.StandardSave(state),
                            force=force)

  def save_if_best(self, step: int, state, miou: float) -> bool:
    """Saves to best/ when `miou` beats the best so far."""
    best = self.best.best_step()
    if best is not None:
      previous = self.best.metrics(best)
      if previous is not None and previous[BEST_METRIC] >= miou:
        return False
    if step in self.best.all_steps():
      return False
    return self.best.save(step, args=ocp.args.StandardSave(state),
                          metrics={BEST_METRIC: float(miou)}, force=True)

  def best_metric(self) -> Optional[float]:
    best = self.best.best_step()
    if best is None:
      return None
    m = self.best.metrics(best)
    return None if m is None else float(m[BEST_METRIC])

  def latest_step(self) -> Optional[int]:
    return self.latest.latest_step()

  def restore_latest(self, state):
    """(state restored from the newest readable checkpoint, step) or (state, 0).

    A checkpoint that cannot be restored (truncated, corrupted) is logged
    with the reason and the previous one is tried next; once an older one
    restores, the unreadable newer ones are moved to
    WORKDIR/corrupt_checkpoints (so that their steps can be written again).

    Raises:
      CheckpointError if checkpoints exist but none of them can be read (rather
      than silently starting from scratch).
    """
    steps = sorted(self.latest.all_steps(), reverse=True)
    unreadable = []
    for step in steps:
      restored, error = self._try_restore(self.latest, step, state)
      if error is None:
        # Only checkpoints newer than a readable one are set aside: when none
        # can be read the cause is more likely the run (e.g. another model)
        # than the files, and nothing is moved.
        for bad in unreadable:
          self._set_aside(bad)
        logging.info('Resuming from %s step %d', self.latest.directory, step)
        return restored, step
      reason = error
      logging.error('Checkpoint %s is unreadable (%s); falling back to the '
                    'previous checkpoint', self._path(step), reason)
      unreadable.append(step)
    if steps:
      raise CheckpointError(
          f'none of the checkpoints {sorted(steps)} in {self.latest.directory} '
          f'can be read (last error: {reason}); if they belong to another '
          'config, use another workdir; if they are damaged, remove them to '
          'train from scratch')
    return state, 0

  def _try_restore(self, manager, step: int, state):
    """(restored, None), or (None, reason) if any process cannot read it."""
    try:
      restored = manager.restore(
          step, args=ocp.args.StandardRestore(abstract_like(state)))
      error = None
    except Exception as e:  # pylint: disable=broad-except
      # orbax / tensorstore raise many types (ValueError, OSError, ...).
      restored, error = None, _reason(e)
    if distributed.any_process(error is not None):
      return None, error or 'unreadable on another process'
    return restored, None

  def _path(self, step: int) -> str:
    return os.path.join(str(self.latest.directory), str(step))

  def _corrupt_dir(self) -> str:
    return os.path.join(os.path.abspath(self.workdir), 'corrupt_checkpoints')

  def _set_aside(self, step: int):
    """Moves checkpoints/<step> to corrupt_checkpoints/<step>[.n] (process 0)."""
    if jax.process_index() == 0:
      os.makedirs(self._corrupt_dir(), exist_ok=True)
      target = os.path.join(self._corrupt_dir(), str(step))
      n = 0
      while os.path.exists(target):
        n += 1
        target = os.path.join(self._corrupt_dir(), f'{step}.{n}')
      os.replace(self._path(step), target)
      logging.warning('Moved %s to %s', self._path(step), target)
    distributed.barrier(f'checkpoint_set_aside_{step}')
    self.latest.reload()

  def restore_for_eval(self, state, step: Optional[int] = None):
    """(state, step, source): the best checkpoint, or `step` if given.

    Without a best checkpoint (no evaluation yet) the latest one is used; an
    unreadable best checkpoint is logged and the newest readable of the latest
    ones is used instead (not when `step` is given). Raises FileNotFoundError
    when there is nothing to restore, CheckpointError when nothing can be read.
    """
    fallback = step is None
    if step is None:
      step, manager = self.best.best_step(), self.best
      if step is None:
        step, manager = self.latest.latest_step(), self.latest
    elif step in self.best.all_steps():
      manager = self.best
    elif step in self.latest.all_steps():
      manager = self.latest
    else:
      raise FileNotFoundError(
          f'no checkpoint for step {step} in {self.workdir} (have '
          f'{sorted(set(self.latest.all_steps()) | set(self.best.all_steps()))})')
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.workdir}/checkpoints or '
                              f'{self.workdir}/best: train first')
    candidates = [(manager, step)]
    if fallback:
      candidates += [(self.latest, s) for s in sorted(
          self.latest.all_steps(), reverse=True)
                     if (self.latest, s) != (manager, step)]
    for manager, step in candidates:
      restored, error = self._try_restore(manager, step, state)
      path = os.path.join(str(manager.directory), str(step))
      if error is None:
        return restored, step, os.path.basename(str(manager.directory))
      logging.error('Checkpoint %s is unreadable (%s)%s', path, error,
                    '; falling back to the newest readable one in '
                    f'{self.latest.directory}' if fallback else '')
    if not fallback:
      raise CheckpointError(f'checkpoint {path} cannot be read ({error})')
    raise CheckpointError(f'no checkpoint in {self.workdir} can be read (last '
                          f'error: {error})')

  def wait(self):
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.latest.close()
    self.best.close()
