"""Config checks run before any work starts.

`validate_config(config)` compares a config against the schema
(cfcls/config_schema.py) and checks that its values are possible, so that a typo or an
impossible setting fails at start with one message instead of hours later:

  config has unknown field(s): learning_rat (did you mean learning_rate?)
  batch_size=10 is not divisible by the 4 devices
"""

import difflib
from typing import List, Optional

import ml_collections

from cfcls import config_schema
from cfcls import inference
from cfcls import labels
from cfcls.matting import laplacian
from cfcls.matting import refine
from cfcls import losses
from cfcls import models
from cfcls import objectives
from cfcls.training import optim
from cfcls.data import fingerprint
from cfcls.data import targets

# Largest training crop side; larger crops are almost surely a typo (and would
# not fit in accelerator memory with any of the supported networks).
MAX_CROP_SIZE = 2048


class ConfigError(ValueError):
  """A config with unknown fields or impossible values (message names them)."""


def default_schema() -> ml_collections.ConfigDict:
  """A fresh copy of the schema's config: the set of valid fields."""
  return config_schema.get_config()


def _is_dict(x) -> bool:
  return isinstance(x, (ml_collections.ConfigDict, dict))


def _field_problems(config, schema, prefix: str) -> List[str]:
  problems = []
  keys = set(config.keys())
  valid = set(schema.keys())
  unknown = sorted(keys - valid)
  for name in unknown:
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    hint = f' (did you mean {prefix}{close[0]}?)' if close else ''
    problems.append(f'unknown field {prefix}{name}{hint}')
  missing = sorted(valid - keys)
  for name in missing:
    problems.append(f'missing field {prefix}{name} (start config files from '
                    'configs/base.py)')
  for name in sorted(keys & valid):
    if not prefix and name == 'per_network':
      problems += _per_network_problems(config[name], schema)
    elif _is_dict(schema[name]):
      if not _is_dict(config[name]):
        problems.append(f'field {prefix}{name} must be a ConfigDict')
      else:
        problems += _field_problems(config[name], schema[name],
                                    f'{prefix}{name}.')
  return problems


def _partial_problems(config, schema, prefix: str) -> List[str]:
  """Unknown fields of a partial config (one that may leave fields out)."""
  problems = []
  for name in sorted(config.keys()):
    if name not in schema:
      close = difflib.get_close_matches(name, sorted(schema.keys()), n=1)
      hint = f' (did you mean {prefix}{close[0]}?)' if close else ''
      problems.append(f'unknown field {prefix}{name}{hint}')
    elif _is_dict(schema[name]) and _is_dict(config[name]):
      problems += _partial_problems(config[name], schema[name],
                                    f'{prefix}{name}.')
    elif _is_dict(schema[name]) or _is_dict(config[name]):
      problems.append(f'field {prefix}{name} must '
                      f'{"" if _is_dict(schema[name]) else "not "}be a '
                      'ConfigDict')
  return problems


def _per_network_problems(table, schema) -> List[str]:
  """per_network: model names, each a partial config of the schema's fields."""
  if not _is_dict(table):
    return ['field per_network must be a ConfigDict']
  problems = []
  for name in sorted(table.keys()):
    if name not in models.MODEL_NAMES:
      problems.append(f'per_network.{name}: not a model.name; allowed: '
                      f'{models.MODEL_NAMES}')
    elif not _is_dict(table[name]):
      problems.append(f'field per_network.{name} must be a ConfigDict')
    else:
      entry = table[name]
      problems += _partial_problems(entry, schema, f'per_network.{name}.')
      if 'per_network' in entry or 'name' in entry.get('model', {}):
        problems.append(f'per_network.{name} cannot set per_network or '
                        'model.name')
  return problems


def _unset_problems(config, schema, prefix: str, network: str) -> List[str]:
  """Fields left None (for per_network) whose schema default is not None."""
  problems = []
  for name in sorted(schema.keys()):
    if name == 'per_network' and not prefix:
      continue
    if _is_dict(schema[name]):
      problems += _unset_problems(config[name], schema[name],
                                  f'{prefix}{name}.', network)
    elif config[name] is None and schema[name] is not None:
      problems.append(f'{prefix}{name} is unset (None) and per_network.'
                      f'{network} does not set it: give '
                      f'--config.{prefix}{name}')
  return problems


def _value_problems(config, device_count: Optional[int]) -> List[str]:
  problems = []

  def check(ok, message):
    if not ok:
      problems.append(message)

  def one_of(name, value, allowed):
    check(value in allowed, f'{name}={value!r} is not one of {allowed}')

  one_of('loss', config.loss, objectives.NAMES)
  one_of('optimizer', config.optimizer, optim.OPTIMIZERS)
  one_of('lr_schedule', config.lr_schedule, optim.LR_SCHEDULES)
  one_of('data.annotation', config.data.annotation, labels.ANNOTATIONS)
  one_of('data.on_folder_change', config.data.on_folder_change,
         fingerprint.ON_FOLDER_CHANGE)
  one_of('cfm_classes', config.cfm_classes, objectives.CFM_CLASSES)
  one_of('cfm_norm', config.cfm_norm, losses.CFM_NORMS)
  one_of('laplacian_precision', config.laplacian_precision,
         laplacian.PRECISIONS)
  if config.loss in objectives.NAMES and config.cfm_norm in losses.CFM_NORMS:
    check(not objectives.needs_targets(config) or config.data.targets.enabled,
          f'loss={config.loss!r} with cfm_norm={config.cfm_norm!r} trains on '
          'closed-form targets: set data.targets.enabled=True')
  check(config.cfm_energy_weight >= 0,
        f'cfm_energy_weight={config.cfm_energy_weight!r} must be >= 0')
  check(config.laplacian_weight >= 0,
        f'laplacian_weight={config.laplacian_weight!r} must be >= 0')
  if config.loss in objectives.NAMES and objectives.get(config.loss).matte:
    check(not config.laplacian_weight,
          f'laplacian_weight={config.laplacian_weight!r} regularises softmax '
          f"losses; loss={config.loss!r} has the matting Laplacian in its own "
          'term: set laplacian_weight=0')
  check(config.laplacian_reg_eps > 0,
        f'laplacian_reg_eps={config.laplacian_reg_eps!r} must be > 0')
  check(0 < config.target_threshold <= 1,
        f'target_threshold={config.target_threshold!r} must be in (0, 1]')
  check(0 <= config.target_margin < 0.5,
        f'target_margin={config.target_margin!r} must be in [0, 0.5)')
  check(targets.check_radius(config.data.targets) >= 0,
        f'data.targets.check_radius={config.data.targets.check_radius!r} '
        'must be >= 0 (0: no check mattes)')
  check(0 <= config.label_drop_prob < 1,
        f'label_drop_prob={config.label_drop_prob!r} must be in [0, 1)')
  check(0 <= config.label_drop_after <= 1,
        f'label_drop_after={config.label_drop_after!r} must be in [0, 1]')
  problems += models.config_problems(config.model)
  check(not config.init_from or config.model.name == 'deeplabv3plus',
        f'init_from={config.init_from!r} loads torchvision ResNet weights: '
        "it needs model.name='deeplabv3plus' (not "
        f'{config.model.name!r})')
  check(config.lam > 0, f'lam={config.lam!r} must be > 0')
  check(config.beta >= 0, f'beta={config.beta!r} must be >= 0')
  check(config.learning_rate > 0,
        f'learning_rate={config.learning_rate!r} must be > 0')
  check(config.head_lr_multiplier > 0,
        f'head_lr_multiplier={config.head_lr_multiplier!r} must be > 0')
  check(config.weight_decay >= 0,
        f'weight_decay={config.weight_decay!r} must be >= 0')
  check(config.grad_clip >= 0,
        f'grad_clip={config.grad_clip!r} must be >= 0 (0 = off)')
  check(0 <= config.ema_decay < 1,
        f'ema_decay={config.ema_decay!r} must be in [0, 1) (0 = off)')
  check(config.num_train_steps >= 1,
        f'num_train_steps={config.num_train_steps!r} must be >= 1')
  check(0 <= config.warmup_steps < max(config.num_train_steps, 1),
        f'warmup_steps={config.warmup_steps!r} must be in '
        f'[0, num_train_steps={config.num_train_steps})')
  for name in ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
               'batch_size', 'eval_batch_size'):
    check(config[name] >= 1, f'{name}={config[name]!r} must be >= 1')
  check(config.eval_every_steps >= 0,
        f'eval_every_steps={config.eval_every_steps!r} must be >= 0 '
        '(0 = only at the end)')
  check(isinstance(config.guided_filter_radius, int)
        and config.guided_filter_radius >= 0,
        f'guided_filter_radius={config.guided_filter_radius!r} must be an '
        'int >= 0 (0 = off)')
  one_of('refine', config.refine, inference.REFINES)
  check(0 < config.refine_threshold <= 1,
        f'refine_threshold={config.refine_threshold!r} must be in (0, 1]')
  check(isinstance(config.refine_erode, int) and config.refine_erode >= 0,
        f'refine_erode={config.refine_erode!r} must be an int >= 0')
  check(config.refine_eps > 0,
        f'refine_eps={config.refine_eps!r} must be > 0')
  check(config.refine_lam > 0,
        f'refine_lam={config.refine_lam!r} must be > 0')
  one_of('refine_weight', config.refine_weight, refine.SOFT_WEIGHTS)
  check(config.guided_filter_eps > 0,
        f'guided_filter_eps={config.guided_filter_eps!r} must be > 0')
  scales = tuple(config.tta_scales)
  check(len(scales) >= 1 and all(
      isinstance(v, (int, float)) and 0.25 <= v <= 4 for v in scales),
        f'tta_scales={scales!r} must be one or more scales in [0.25, 4]')
  thresholds = tuple(config.thresholds)
  check(len(thresholds) >= 1 and all(0 < t <= 1 for t in thresholds),
        f'thresholds={thresholds!r} must be values in (0, 1]')
  check(config.threshold in thresholds,
        f'threshold={config.threshold!r} must be one of thresholds='
        f'{thresholds!r}')
  crop = config.data.crop_size
  sides = tuple(crop) if isinstance(crop, (tuple, list)) else (crop,)
  check(len(sides) in (1, 2) and all(
      isinstance(s, int) and 1 <= s <= MAX_CROP_SIZE for s in sides),
        f'data.crop_size={crop!r} must be an int (or a (height, width) pair) '
        f'in [1, {MAX_CROP_SIZE}]')
  lo, hi = tuple(config.data.scale_range)
  check(0 < lo <= hi, f'data.scale_range={(lo, hi)!r} must be 0 < min <= max')
  if device_count:
    for name in ('batch_size', 'eval_batch_size'):
      check(config[name] % device_count == 0,
            f'{name}={config[name]!r} is not divisible by the {device_count} '
            'devices')
  if config.class_weights is not None:
    check(all(w >= 0 for w in config.class_weights),
          f'class_weights={config.class_weights!r} must be >= 0')
  return problems


def validate_config(config, schema=None, device_count: Optional[int] = None):
  """Raises ValueError naming every unknown field and impossible value.

  First fills the fields the config leaves unset (None) from
  `per_network[model.name]` (`config_schema.apply_per_network`, in place):
  after it the config holds the values the run uses.

  Args:
    config: the ml_collections config to check (and complete).
    schema: the config that defines the valid fields; default
      configs/base.py's `get_config()`.
    device_count: if given, batch sizes must be divisible by it.
  """
  schema = default_schema() if schema is None else schema
  problems = _field_problems(config, schema, '')
  if not problems:  # The rest needs the fields.
    config_schema.apply_per_network(config)
    problems = _unset_problems(config, schema, '', config.model.name)
  if not problems:  # Value checks need the values.
    problems = _value_problems(config, device_count)
  if problems:
    raise ConfigError('invalid config: ' + '; '.join(problems))


def check_class_weights(config, num_classes: int):
  """class_weights, if set, must have one weight per foreground class."""
  if config.class_weights is not None and len(
      config.class_weights) != num_classes - 1:
    raise ConfigError(
        f'invalid config: class_weights has {len(config.class_weights)} '
        f'values but the dataset has {num_classes - 1} foreground classes')
