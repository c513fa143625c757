"""What a person sees on the console: cfcls's own lines, not the libraries'.

`quiet_libraries()` keeps INFO lines of cfcls and train.py and drops the INFO
chatter of orbax, clu, tfds and absl, TensorFlow's C++ INFO banners (oneDNN,
CPU instructions; and with them absl's "before absl::InitializeLog()" line)
and the library warnings in LIBRARY_NOTICES, which say nothing a user can act
on. Other warnings and errors, ours and the libraries', still show.
`--verbose` on train.py and data_prep/prepare_dataset.py leaves everything
on. The library warnings cfcls itself caused are fixed where they arose:
tfds's "Variant folder ... has no dataset_info.json" (cfcls.data.datasets
checks for the file first), "`FeatureConnector.dtype` is deprecated" (read
by tfds's own decoder; cfcls.data.pipeline fills the value in first) and
orbax's "read_only=True, setting ..." (cfcls.training.checkpointing passes
the values orbax wants); an evaluation makes one tfds builder, not two.

`Progress` formats the one line per `log_every_steps`:

  step 200/5000  loss 0.0123 (cfm 0.0101, mlc 0.0022)  4.1 steps/s  ETA 19m30s
"""

import logging
import os
import re
import time
from typing import Dict, Optional

# cfcls/ (this file is cfcls/training/console.py) and the repository root
# (train.py, data_prep/ scripts run from it).
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ROOT_DIR = os.path.dirname(_PACKAGE_DIR)


class _OwnInfoOnly(logging.Filter):
  """Passes warnings and errors, and INFO lines logged by cfcls itself."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or _own(record)


# Library warnings (absl logger, WARNING level) that say nothing a user can
# act on, as regular expressions of the message.
LIBRARY_NOTICES = (
    # tfds, for every builder made with a config object; cfcls makes the
    # synthetic_scenes and scribble_folder configs from the data config.
    r'Using custom data configuration: ',
    # orbax, for every read-only checkpoint manager (eval, predict).
    r'Given directory is read only=',
)
_NOTICE = re.compile('|'.join(f'(?:{p})' for p in LIBRARY_NOTICES))


class _NoLibraryNotices(logging.Filter):
  """Drops the warnings of LIBRARY_NOTICES logged outside cfcls."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno != logging.WARNING or _own(record):
      return True
    try:
      message = record.getMessage()
    except Exception:  # pylint: disable=broad-except
      return True
    return not _NOTICE.match(message)


def _own(record: logging.LogRecord) -> bool:
  path = os.path.abspath(record.pathname or '')
  return (path.startswith(_PACKAGE_DIR + os.sep)
          or os.path.dirname(path) == _ROOT_DIR)


def quiet_library_warnings():
  """Drops LIBRARY_NOTICES and TensorFlow's C++ INFO lines (oneDNN, CPU
  instructions); call it before tensorflow is imported.

  (data_prep/prepare_dataset.py: its tfds progress bars stay.)
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  # On CPUs where TensorFlow turns its oneDNN kernels on by default (AMX and
  # AVX-512 machines), it announces them from a static initialiser, before
  # TF_CPP_MIN_LOG_LEVEL is read. TensorFlow only runs the input pipeline
  # here (image crops, flips and resizes): benchmarks/input_bench.py gives
  # the same images/s within 3 % with and without oneDNN (benchmarks/
  # README.md, "Input pipeline"), and without it the pipeline computes the
  # same on every CPU. A value the user set is kept.
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  # tfds and orbax log through absl's Python logger 'absl'.
  logger = logging.getLogger('absl')
  if not any(isinstance(f, _NoLibraryNotices) for f in logger.filters):
    logger.addFilter(_NoLibraryNotices())


def quiet_libraries():
  """Drops other libraries' INFO lines from absl's log handler, and
  quiet_library_warnings().

  Also switches off tfds's progress bars. Call it before tensorflow is
  imported.
  """
  quiet_library_warnings()
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
    handler.addFilter(_OwnInfoOnly())
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    tfds.disable_progress_bar()
  except ImportError:  # the accelerator machines have no tensorflow
    pass


def _duration(seconds: float) -> str:
  seconds = int(round(max(seconds, 0)))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  if h:
    return f'{h}h{m:02d}m'
  return f'{m}m{s:02d}s' if m else f'{s}s'


class Progress:
  """Steps per second and time left, from the steps run in this process."""

  def __init__(self, first_step: int, last_step: int):
    self.last_step = last_step
    self._since = (first_step, time.monotonic())  # the previous line's
    self._paused = 0.0

  def pause(self, seconds: float):
    """Leaves `seconds` (e.g. an evaluation) out of the rate."""
    self._paused += seconds

  def line(self, step: int, scalars: Optional[Dict[str, float]]) -> str:
    """'step 200/5000  loss 0.0123 (cfm ..., mlc ...)  4.1 steps/s  ETA 19m'.

    The rate is that of the steps since the previous line (the first line's
    includes the compilation).
    """
    now = time.monotonic()
    elapsed = now - self._since[1] - self._paused
    done = step - self._since[0]
    self._since, self._paused = (step, now), 0.0
    text = f'step {step}/{self.last_step}'
    scalars = scalars or {}
    if 'train/loss' in scalars:
      text += f'  loss {scalars["train/loss"]:.4g}'
      terms = [f'{k[6:]} {v:.4g}' for k, v in scalars.items()
               if k not in ('train/loss', 'train/grad_norm',
                            'train/learning_rate')]
      if terms:
        text += f' ({", ".join(terms)})'
    if done > 0 and elapsed > 0:
      rate = done / elapsed
      eta = _duration((self.last_step - step) / rate)
      text += f'  {rate:.3g} steps/s  ETA {eta}'
    return text
