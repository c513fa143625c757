"""How tests/conftest.py hands the suite to pytest-xdist's workers.

The README's test command runs 2 workers; conftest keeps each module on one
worker and the modules that start several train.py processes together, and
sends the longest first. A module renamed without updating those lists would
quietly lose its place, so the names are checked against the tree.
"""
import os

import conftest

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_every_named_module_exists():
  for name in conftest.LONGEST_FIRST:
    assert os.path.isfile(os.path.join(TESTS, name + '.py')), name
  assert set(conftest.TRAIN_PROCESS_MODULES) <= set(conftest.LONGEST_FIRST)


def test_a_module_is_one_unit_and_the_train_process_modules_share_one():
  unit = conftest.xdist_unit
  assert unit('tests/test_losses.py::test_a') == 'test_losses'
  assert unit('tests/test_losses.py::test_b[x-1]') == 'test_losses'
  assert unit('tests/test_console.py::test_a[demo]') == 'test_console'
  shared = {unit(f'tests/{name}.py::test_x')
            for name in conftest.TRAIN_PROCESS_MODULES}
  assert shared == {'train_processes'}


def test_collection_puts_the_longest_modules_first(request):
  modules = []
  for item in request.session.items:
    name = conftest.module_name(item.nodeid)
    if not modules or modules[-1] != name:
      modules.append(name)
  # Each module's tests are contiguous, in LONGEST_FIRST's order first.
  assert len(modules) == len(set(modules)), modules
  named = [m for m in modules if m in conftest.LONGEST_FIRST]
  assert named == sorted(named, key=conftest.LONGEST_FIRST.index)
  assert modules[:len(named)] == named
