"""What a SIGTERM or Ctrl-C does, wherever it lands.

  with stopping.training_loop():      # a signal: checkpoint after this step
    ...
  with stopping.phase('evaluation', 'metrics.json was not written'):
    ...                               # a signal: stop now (Interrupted)

Inside the training loop the first signal asks the loop to save a checkpoint
after the current step and return (`stop_requested()`); a second Ctrl-C
stops at once. Anywhere else (dataset preparation, evaluation, prediction,
the final evaluation) the first signal stops at once with an `Interrupted`
whose message says what was and was not written. The flag is cleared when a
training loop starts, so a signal that arrived at the end of one run does
not stop the next one in the same process.
"""

import contextlib
import signal
import threading

from absl import logging

_STOP = threading.Event()
_STATE = {'training': False, 'doing': 'start-up', 'left': 'nothing was written'}


class Interrupted(Exception):
  """A signal stopped the run outside the training loop (message: what)."""


def request_stop():
  """Asks a running training loop to checkpoint and return."""
  _STOP.set()


def stop_requested() -> bool:
  return _STOP.is_set()


@contextlib.contextmanager
def training_loop():
  """Signals ask for a checkpoint after the current step (see module doc)."""
  _STOP.clear()
  before = dict(_STATE)
  _STATE['training'] = True
  try:
    yield
  finally:
    _STATE.update(before)
    _STOP.clear()


@contextlib.contextmanager
def phase(doing: str, left: str):
  """Outside the loop: a signal stops at once, saying `doing` and `left`.

  Args:
    doing: what the run is doing, e.g. 'the final evaluation'.
    left: what a stop now leaves written (and what not).
  """
  before = dict(_STATE)
  _STATE.update(training=False, doing=doing, left=left)
  try:
    yield
  finally:
    _STATE.update(before)


def on_signal(signum: int):
  """The signal handler's work (train.py installs it for SIGTERM, SIGINT)."""
  name = signal.Signals(signum).name
  if _STATE['training'] and not _STOP.is_set():
    logging.warning('Signal %d: saving a checkpoint after this step', signum)
    _STOP.set()
    return
  if _STATE['training']:
    if signum != signal.SIGINT:
      return  # a repeated SIGTERM: the checkpoint is on its way
    raise Interrupted(f'stopped by a second {name} during training: the '
                      'current step is not saved; the newest checkpoint in '
                      'the workdir is where the next run resumes')
  raise Interrupted(f'stopped by {name} during {_STATE["doing"]}: '
                    f'{_STATE["left"]}')
