"""`python train.py` with the closed-form targets passed to the train step.

cfcls/train_lib.py hands the train step only the batch entries named in its
`_TRAIN_KEYS`; until that list holds 'targets' (the closed-form mattes of
the pipeline, cfcls.data.targets), runs whose loss reads them
(cfm_norm='target', 'two_stage', 'cfm_soft') go through this script, with
train.py's flags:

  python benchmarks/train_targets.py --config=configs/demo.py --workdir=...
"""
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cfcls import train_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

if 'targets' not in getattr(train_lib, '_TRAIN_KEYS', ('targets',)):
  train_lib._TRAIN_KEYS = tuple(train_lib._TRAIN_KEYS) + ('targets',)  # pylint: disable=protected-access
sys.argv[0] = os.path.join(ROOT, 'train.py')
runpy.run_path(sys.argv[0], run_name='__main__')
