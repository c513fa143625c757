"""The README runs as written: its library example, its commands, its Layout.

Cheap checks only (about 20 s): the ```python blocks run; every `python` /
`bash` command line of the other code blocks names a file that exists, its
flags are ones the script accepts (train.py's config overrides load and
validate as train.py would load them), and each script's help runs; the
Layout table matches the tree.
"""

import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

from cfcls.training import config_utils
import test_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
MAX_LINES = 300
# The packages a reader must find in the Layout table, besides cfcls's own
# subpackages (found on disk).
TOP_LEVEL = ('configs/', 'data_prep/', 'benchmarks/', 'tests/', 'docs/',
             'train.py')


def readme():
  with open(README, encoding='utf-8') as f:
    return f.read()


def code_blocks(text):
  """[(language, body)] of the fenced code blocks of a markdown text."""
  return re.findall(r'^```(\w*)\n(.*?)^```', text, flags=re.M | re.S)


def command_lines(text):
  """Every `python ...` / `python3 ...` / `bash ...` command of the README's
  shell blocks, as argv lists (continuation lines joined, `&&`, `;` and `&`
  split, comments dropped)."""
  commands = []
  for language, body in code_blocks(text):
    if language not in ('', 'bash', 'sh', 'shell'):
      continue
    for line in body.replace('\\\n', ' ').splitlines():
      lexer = shlex.shlex(line, posix=True, punctuation_chars=';&|')
      lexer.whitespace_split = True
      lexer.commenting = '#'
      argv = []
      for token in list(lexer) + [';']:
        if token and set(token) <= set(';&|'):
          if argv and argv[0] in ('python', 'python3', 'bash'):
            commands.append(argv)
          argv = []
        else:
          argv.append(token)
  return commands


def script_commands(text):
  """{script path: [argv after the script, ...]} (not `python -m`)."""
  scripts = {}
  for argv in command_lines(text):
    if argv[1] == '-m':
      continue
    scripts.setdefault(argv[1], []).append(argv[2:])
  return scripts


def run_help(script):
  """The script's help text; argparse's --help exits 0, absl's (train.py) 1."""
  flag, expected = ('--helpshort', 1) if script == 'train.py' else ('--help', 0)
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='3')
  result = subprocess.run([sys.executable, script, flag], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=env)
  output = result.stdout + result.stderr
  assert result.returncode == expected, (
      f'python {script} {flag} exited {result.returncode}:\n{output[-3000:]}')
  # absl prints its help and exits 1: make sure that is what happened.
  assert ('usage:' in output) if expected == 0 else ('--helpfull' in output), (
      output[-3000:])
  return output


def test_commands_are_found():
  commands = command_lines(readme())
  found = {' '.join(argv[:2]) for argv in commands}
  # The parser sees the quick start's two commands and the user's steps.
  assert {'python train.py', 'python -m',
          'python data_prep/inspect_scribbles.py',
          'python data_prep/import_scribbles.py'} <= found, found
  # A line joined from continuation lines and one after `&&`.
  assert ['python', 'train.py'] in commands
  assert ['python', '-m', 'pytest', '-q', '-n', '2', 'tests'] in commands


def test_every_command_names_what_exists():
  for argv in command_lines(readme()):
    if argv[1] == '-m':
      assert importlib.util.find_spec(argv[2]) is not None, argv
      # `-m venv DIR` names what it creates; other modules' paths must exist.
      # (pytest's `-n N` takes a value, the worker count)
      paths = [a for i, a in enumerate(argv[3:], 3)
               if not a.startswith('-') and argv[i - 1] != '-n']
      for path in paths if argv[2] != 'venv' else ():
        assert os.path.exists(os.path.join(ROOT, path)), argv
    else:
      assert os.path.isfile(os.path.join(ROOT, argv[1])), (
          f'README command names a missing file: {" ".join(argv)}')


@pytest.mark.parametrize('script', sorted(
    s for s in script_commands(readme()) if s != 'train.py'))
def test_script_help_runs_and_knows_the_flags(script):
  help_text = run_help(script)
  for args in script_commands(readme())[script]:
    for arg in args:
      if arg.startswith('--'):
        name = arg[2:].split('=')[0]
        assert re.search(rf'--{re.escape(name)}(?![\w-])', help_text), (
            f'README: python {script} ... {arg}: not an option of {script}')


def test_train_commands_parse_as_train_py_parses_them():
  help_text = run_help('train.py')
  known = set(re.findall(r'--(?:\[no\])?([a-z_]+)', help_text))
  assert {'workdir', 'mode', 'input', 'config'} <= known
  commands = script_commands(readme())['train.py']
  assert len(commands) >= 5
  for args in commands:
    overrides, path = [], os.path.join(ROOT, 'configs', 'demo.py')
    for arg in args:
      assert arg.startswith('--'), f'train.py {args}: {arg}'
      name = arg[2:].split('=')[0].split('.')[0]
      assert name in known or name.startswith('no') and name[2:] in known, (
          f'README: python train.py ... {arg}: train.py has no flag {name}')
      if arg.startswith('--config='):
        path = os.path.join(ROOT, arg.split('=', 1)[1])
        assert os.path.isfile(path), arg
      elif arg.startswith('--config.'):
        overrides.append(arg)
      elif arg.startswith('--mode='):
        assert arg.split('=', 1)[1] in ('train', 'eval', 'predict'), arg
    config = test_train_config.load(path, *overrides)
    config_utils.validate_config(config, device_count=1)


def test_python_examples_run():
  blocks = [body for language, body in code_blocks(readme())
            if language == 'python']
  assert blocks, 'the README has no library example'
  for body in blocks:
    # Each block is self-contained: a fresh namespace; its own asserts
    # check its results.
    exec(compile(body, 'README.md', 'exec'), {'__name__': 'readme_example'})  # pylint: disable=exec-used


def test_readme_is_short_and_its_links_exist():
  text = readme()
  assert text.count('\n') <= MAX_LINES
  for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', text):
    if '://' not in target:
      assert os.path.exists(os.path.join(ROOT, target)), target


def layout_rows(text):
  """{first-column path: the row's text} of the README's Layout table."""
  section = text.split('\n## Layout\n', 1)[1].split('\n## ', 1)[0]
  rows = {}
  for line in section.splitlines():
    match = re.match(r'\| `([^`]+)` \|(.*)\|$', line)
    if match:
      rows[match.group(1)] = match.group(2)
  return rows


def test_layout_table_matches_the_tree():
  rows = layout_rows(readme())
  for path in rows:
    assert glob.glob(os.path.join(ROOT, path)), f'Layout: {path} not found'
  packages = sorted(
      os.path.relpath(os.path.dirname(p), ROOT) + '/'
      for p in glob.glob(os.path.join(ROOT, 'cfcls', '**', '__init__.py'),
                         recursive=True)
      if os.path.dirname(p) != os.path.join(ROOT, 'cfcls'))
  assert 'cfcls/matting/' in packages and 'cfcls/data/builders/' in packages
  missing = [p for p in packages + list(TOP_LEVEL) if p not in rows]
  assert not missing, f'packages missing from the Layout table: {missing}'
  # Every module at the package root is named in its row.
  modules = [os.path.basename(p)[:-3]
             for p in glob.glob(os.path.join(ROOT, 'cfcls', '*.py'))
             if not p.endswith('__init__.py')]
  unnamed = [m for m in modules if f'`{m}`' not in rows['cfcls/*.py']]
  assert not unnamed, f'root modules missing from the Layout table: {unnamed}'
