"""The package's layout against docs/architecture.md: imports run one way
(no circles, no import of a higher layer, imports inside functions
included), modules stay short, and few modules stand directly in rdvae/."""

import ast
import collections
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, 'rdvae')
MAX_LINES = 400
MAX_TOP_MODULES = 8


def _layers() -> dict[str, int]:
  """{subpackage or top-level module: layer} from the doc's layers block."""
  with open(os.path.join(REPO, 'docs', 'architecture.md')) as f:
    block = re.search(r'```layers\n(.*?)```', f.read(), re.S).group(1)
  layers = {}
  for line in block.strip().splitlines():
    number, *names = line.split()
    for name in names:
      layers[name] = int(number)
  return layers


def _modules() -> dict[str, str]:
  """{dotted module name: path} of every module of the package."""
  out = {}
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(root, name)
        parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
        if parts[-1] == '__init__':
          parts = parts[:-1]
        out['.'.join(parts)] = path
  return out


def _imports(path: str, modules) -> set[str]:
  """The package modules `path` imports, anywhere in the file."""
  with open(path) as f:
    tree = ast.parse(f.read())
  found = set()
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
    for name in names:
      if name in modules and name != 'rdvae':
        found.add(name)
  return found


def _group(module: str) -> str:
  """A module's subpackage, or its own name directly in rdvae/."""
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else parts[0]


@pytest.fixture(scope='module')
def graph():
  modules = _modules()
  return {m: _imports(p, modules) for m, p in modules.items()}


def test_every_subpackage_has_a_layer():
  layers = _layers()
  groups = {_group(m) for m in _modules()} - {'rdvae'}
  assert groups == set(layers), (groups ^ set(layers))


def _check_layers(graph) -> None:
  layers = _layers()
  wrong = []
  for module, imported in graph.items():
    if module == 'rdvae':  # the package's lazy public entry point
      continue
    for other in imported:
      a, b = _group(module), _group(other)
      if a != b and layers[b] >= layers[a]:
        wrong.append(f'{module} (layer {layers[a]}) imports {other} '
                     f'(layer {layers[b]})')
  assert not wrong, '\n'.join(sorted(wrong))


def _check_circles(graph) -> None:
  state = collections.defaultdict(int)  # 0 new, 1 on the stack, 2 done
  stack = []

  def visit(module):
    state[module] = 1
    stack.append(module)
    for other in sorted(graph.get(module, ())):
      if state[other] == 1:
        cycle = stack[stack.index(other):] + [other]
        raise AssertionError('import circle: ' + ' -> '.join(cycle))
      if state[other] == 0:
        visit(other)
    stack.pop()
    state[module] = 2

  for module in sorted(graph):
    if state[module] == 0:
      visit(module)


def test_imports_run_down_the_layers(graph):
  _check_layers(graph)


def test_no_import_circles(graph):
  _check_circles(graph)


def test_the_checks_catch_a_wrong_import():
  """The rules above fail on a graph that breaks them."""
  layers = _layers()
  assert layers['models'] < layers['training']
  assert layers['evaluation'] < layers['training']
  assert layers['analysis'] < layers['training']
  with pytest.raises(AssertionError, match='a -> b -> c -> a'):
    _check_circles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}})
  with pytest.raises(AssertionError, match='imports rdvae.training.loop'):
    _check_layers({'rdvae.models.model': {'rdvae.training.loop'}})
  with pytest.raises(AssertionError, match='imports rdvae.data.sources'):
    _check_layers({'rdvae.objectives.losses': {'rdvae.data.sources'}})


@pytest.mark.parametrize('module', sorted(_modules()))
def test_module_is_short(module):
  with open(_modules()[module]) as f:
    lines = len(f.readlines())
  assert lines <= MAX_LINES, f'{module}: {lines} lines'


def test_few_modules_directly_in_the_package():
  top = [f for f in os.listdir(PACKAGE) if f.endswith('.py')]
  assert len(top) <= MAX_TOP_MODULES, top
