"""Checkpoints of the train state with orbax.

Two orbax CheckpointManagers under the workdir:
  WORKDIR/checkpoints/<step>  the latest `keep` checkpoints (resume from here)
  WORKDIR/best/<step>         the checkpoint with the best validation mIoU

A checkpoint is the TrainState pytree {step, params, batch_stats, opt_state};
the step is also the input position (the training iterator is a pure function
of (seed, step)).

Resuming takes the newest checkpoint that can be read: one that fails to
restore because its data is damaged (e.g. a truncated file) is logged, moved
to WORKDIR/corrupt_checkpoints and the previous one is used. A failure that
says nothing about the data (out of memory, a missing mount or folder, a
permission or network error) is retried, and if it persists the run stops
with that error and moves nothing: resuming from an older step would lose
work. Checkpoints being written when the run was
killed are orbax temporary folders, never listed as steps. With several
processes every process calls save and restore (orbax coordinates them); the
workdir must be on a filesystem all hosts see.
"""

import errno
import os
import time
from typing import Optional

import jax
import orbax.checkpoint as ocp
from absl import logging

from cfcls.training import distributed
from cfcls import parallel

BEST_METRIC = 'miou'
# Restore attempts per checkpoint, and the pause between them (seconds).
RESTORE_ATTEMPTS = 3
RETRY_PAUSE_S = 2.0
# Words in an error that say the machine, not the checkpoint, failed.
_TRANSIENT_WORDS = ('RESOURCE_EXHAUSTED', 'out of memory', 'Out of memory',
                    'OOM', 'UNAVAILABLE', 'DEADLINE_EXCEEDED',
                    'Permission denied', 'Stale file handle',
                    'Transport endpoint is not connected')
_TRANSIENT_ERRNOS = (errno.ENOMEM, errno.EACCES, errno.EPERM, errno.ESTALE,
                     errno.ENOTCONN, errno.ETIMEDOUT, errno.EAGAIN,
                     errno.ENODEV)


class CheckpointError(RuntimeError):
  """Checkpoints exist but none can be restored."""


class NoCheckpointError(CheckpointError, FileNotFoundError):
  """There is no checkpoint (of the asked step) to restore."""


class TransientRestoreError(CheckpointError):
  """A checkpoint could not be read for a reason outside its data."""


def is_transient(error: BaseException, path: str) -> bool:
  """True if `error` does not show that checkpoint `path` is damaged.

  Out of memory, a checkpoint folder that is not there (a missing mount),
  permission, stale-handle and network errors say nothing about the data;
  anything else (decoding errors, truncated or missing files inside the
  checkpoint, shape mismatches) counts as damage.
  """
  if isinstance(error, (MemoryError, PermissionError, TimeoutError,
                        ConnectionError)):
    return True
  if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
    return True
  if not os.path.isdir(path):
    return True
  text = str(error)
  return any(word in text for word in _TRANSIENT_WORDS)


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
    # Read-only managers get the values orbax would force on them (no saving
    # interval, no deletion), so that it does not warn that it changed them.
    writes = dict(save_interval_steps=0) if read_only else {}
    self.latest = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'checkpoints'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep, create=not read_only,
            read_only=read_only, **writes))
    self.best = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'best'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else 1,
            best_fn=lambda m: m[BEST_METRIC], best_mode='max',
            keep_checkpoints_without_metrics=False, create=not read_only,
            read_only=read_only, **writes))

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
      restored, error = self._restore_or_raise(self.latest, step, state)
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
    """(restored, None, False), or (None, reason, transient) if any process
    cannot read it (transient: no process saw damage, see is_transient)."""
    path = os.path.join(str(manager.directory), str(step))
    try:
      restored = manager.restore(
          step, args=ocp.args.StandardRestore(abstract_like(state)))
      error, transient = None, False
    except Exception as e:  # pylint: disable=broad-except
      # orbax / tensorstore raise many types (ValueError, OSError, ...).
      restored, error, transient = None, _reason(e), is_transient(e, path)
    if distributed.any_process(error is not None):
      damaged = distributed.any_process(error is not None and not transient)
      return None, error or 'unreadable on another process', not damaged
    return restored, None, False

  def _restore_or_raise(self, manager, step: int, state):
    """(restored, None) or (None, reason of damage), retrying other errors.

    Raises:
      TransientRestoreError: the error persisted over RESTORE_ATTEMPTS tries
        and says nothing about the checkpoint's data; nothing is moved.
    """
    path = os.path.join(str(manager.directory), str(step))
    for attempt in range(1, RESTORE_ATTEMPTS + 1):
      restored, error, transient = self._try_restore(manager, step, state)
      if error is None or not transient:
        return restored, error
      logging.warning('Checkpoint %s could not be read (%s), attempt %d of '
                      '%d; retrying', path, error, attempt, RESTORE_ATTEMPTS)
      if attempt < RESTORE_ATTEMPTS:
        time.sleep(RETRY_PAUSE_S)
    raise TransientRestoreError(
        f'checkpoint {path} could not be read after {RESTORE_ATTEMPTS} '
        f'attempts ({error}); this error does not show damage (memory, '
        'mount, permission or network), so nothing was moved: fix the cause '
        'and run again')

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

  def require_any(self):
    """Raises NoCheckpointError if the workdir holds no checkpoint at all."""
    if not self.latest.all_steps() and not self.best.all_steps():
      raise NoCheckpointError(f'no checkpoint in {self.workdir}/checkpoints '
                              f'or {self.workdir}/best: train first')

  def restore_for_eval(self, state, step: Optional[int] = None):
    """(state, step, source): the best checkpoint, or `step` if given.

    Without a best checkpoint (no evaluation yet) the latest one is used; an
    unreadable best checkpoint is logged and the newest readable of the latest
    ones is used instead (not when `step` is given). Raises FileNotFoundError
    (NoCheckpointError) when there is nothing to restore, CheckpointError when nothing can be read.
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
      raise NoCheckpointError(
          f'no checkpoint for step {step} in {self.workdir} (have '
          f'{sorted(set(self.latest.all_steps()) | set(self.best.all_steps()))})')
    if step is None:
      raise NoCheckpointError(f'no checkpoint in {self.workdir}/checkpoints or '
                              f'{self.workdir}/best: train first')
    candidates = [(manager, step)]
    if fallback:
      candidates += [(self.latest, s) for s in sorted(
          self.latest.all_steps(), reverse=True)
                     if (self.latest, s) != (manager, step)]
    for manager, step in candidates:
      restored, error = self._restore_or_raise(manager, step, state)
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
