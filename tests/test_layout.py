"""The package layout: imports point one way (cfcls/__init__.py).

cfcls.matting imports nothing of cfcls outside itself and no learning or
input library; cfcls.data and cfcls.models never import the trainer. Read
from the source (every import statement, at any depth) and, for matting, from
a fresh interpreter's sys.modules.
"""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'cfcls')
LEARNING_LIBRARIES = ('flax', 'optax', 'orbax', 'tensorflow',
                      'tensorflow_datasets', 'clu', 'ml_collections')


def _modules(package):
  for folder, _, files in os.walk(os.path.join(PACKAGE, package)):
    for name in sorted(files):
      if name.endswith('.py'):
        yield os.path.join(folder, name)


def _imports(path):
  """Every module name an import statement of `path` names."""
  tree = ast.parse(open(path, encoding='utf-8').read(), filename=path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: resolve against the file's package
        base = os.path.relpath(os.path.dirname(path), ROOT).split(os.sep)
        base = base[:len(base) - node.level + 1]
        yield '.'.join(base + ([node.module] if node.module else []))
      else:
        for alias in node.names:
          yield f'{node.module}.{alias.name}'


def _offences(package, allowed_cfcls, forbidden_roots):
  found = []
  for path in _modules(package):
    for name in _imports(path):
      root = name.split('.')[0]
      rel = os.path.relpath(path, ROOT)
      if root in forbidden_roots:
        found.append(f'{rel} imports {name}')
      if root == 'cfcls' and not allowed_cfcls(name):
        found.append(f'{rel} imports {name}')
  return found


def test_matting_imports_nothing_outside_itself():
  offences = _offences(
      'matting', lambda n: n.startswith('cfcls.matting'), LEARNING_LIBRARIES)
  assert not offences, offences


@pytest.mark.parametrize('package', ['data', 'models'])
def test_data_and_models_never_import_the_trainer(package):
  offences = _offences(
      package, lambda n: not n.startswith('cfcls.training'), ())
  assert not offences, offences


def test_the_checks_see_a_forbidden_import(tmp_path, monkeypatch):
  """The scanner itself: a planted import of flax and of cfcls.losses."""
  fake = tmp_path / 'cfcls' / 'matting'
  fake.mkdir(parents=True)
  (fake / 'bad.py').write_text(
      'def f():\n  import flax\n  from cfcls import losses\n')
  monkeypatch.setattr(sys.modules[__name__], 'ROOT', str(tmp_path))
  monkeypatch.setattr(sys.modules[__name__], 'PACKAGE',
                      str(tmp_path / 'cfcls'))
  offences = _offences(
      'matting', lambda n: n.startswith('cfcls.matting'), LEARNING_LIBRARIES)
  assert len(offences) == 2, offences


def test_package_root_stays_small():
  root_modules = sorted(n for n in os.listdir(PACKAGE) if n.endswith('.py'))
  assert len(root_modules) <= 10, root_modules


def test_matting_loads_no_learning_library():
  code = ('import sys\nimport cfcls.matting.solver\nimport cfcls.matting.'
          'guided_filter\nbad = sorted(m for m in sys.modules if m.split(".")'
          '[0] in %r or (m.startswith("cfcls.") and not m.startswith('
          '"cfcls.matting")))\nprint(bad)\nassert not bad, bad\n'
          % (LEARNING_LIBRARIES,))
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stdout + out.stderr[-2000:]


def test_scribble_conventions_agree():
  from cfcls import labels  # pylint: disable=g-import-not-at-top
  from cfcls.matting import constraints  # pylint: disable=g-import-not-at-top
  assert labels.IGNORE == constraints.UNLABELLED
