"""Strict JSON files of a run (metrics.json, dataset.json, predictions)."""

import json
import os
from typing import Any, Dict

import jax
import numpy as np


def write_json(path: str, obj):
  """Writes strict JSON (NaN -> null) atomically, from process 0 only."""
  if jax.process_index() != 0:
    return
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(_finite_or_none(obj), f, indent=1, sort_keys=True,
              default=_json_default, allow_nan=False)
  os.replace(tmp, path)


def read_json(path: str, remedy: str):
  """The object in the JSON file `path`.

  Raises:
    ValueError naming the file, what is wrong and `remedy` (what to do)
    if it is not valid JSON (e.g. a write cut short).
  """
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} is not valid JSON ({e}): {remedy}') from e


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


def flatten_config(config) -> Dict[str, Any]:
  """{'model.backbone': 'resnet18', ...}: scalars as they are, others str."""
  flat = {}

  def walk(d, prefix):
    for k, v in d.items():
      if isinstance(v, dict):
        walk(v, f'{prefix}{k}.')
      else:
        flat[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)
  walk(config.to_dict(), '')
  return flat
