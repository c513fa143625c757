"""Fingerprints of a raw data folder: has it changed since preparation?

A prepared `scribble_folder` dataset is a copy of the user's folder. The
fingerprint (every file's relative path, size and modification time) is
written beside the prepared copy; a later run compares it with the folder
and says what changed (added, removed, edited files).
"""
from __future__ import annotations

import json
import os
from typing import Dict, List

from cfcls import jsonio

FILE_NAME = 'cfcls_folder_fingerprint.json'
# config.data.on_folder_change: prepare a changed folder again, or stop.
ON_FOLDER_CHANGE = ('prepare', 'error')


def folder_fingerprint(folder: str) -> Dict[str, List[int]]:
  """{relative path: [size, mtime in ns]} of every file below `folder`."""
  out = {}
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(root, name)
      st = os.stat(path)
      out[os.path.relpath(path, folder)] = [int(st.st_size),
                                            int(st.st_mtime_ns)]
  return out


def changes(old: Dict[str, List[int]], new: Dict[str, List[int]]) -> str:
  """'' if equal, else e.g. '2 added (images/x.jpg, ...), 1 edited (...)'."""
  parts = []
  for what, names in (
      ('added', sorted(set(new) - set(old))),
      ('removed', sorted(set(old) - set(new))),
      ('edited', sorted(k for k in set(old) & set(new)
                        if list(old[k]) != list(new[k])))):
    if names:
      shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
      parts.append(f'{len(names)} {what} ({shown})')
  return '; '.join(parts)


def read(prepared_dir: str):
  """The fingerprint stored with a prepared dataset, or None."""
  path = os.path.join(prepared_dir, FILE_NAME)
  if not os.path.isfile(path):
    return None
  return jsonio.read_json(path, 'remove the prepared folder '
                          f'{prepared_dir} and prepare the data again')


def write(prepared_dir: str, fingerprint: Dict[str, List[int]]):
  path = os.path.join(prepared_dir, FILE_NAME)
  with open(path + '.tmp', 'w') as f:
    json.dump(fingerprint, f)
  os.replace(path + '.tmp', path)
