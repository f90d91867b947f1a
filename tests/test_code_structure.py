"""The code's shape promises (docs/code-layout.md): no import cycle among popnet and meta
modules, no module over 400 lines."""
import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('popnet', 'meta')


def modules():
  for path in sorted(glob.glob(os.path.join(ROOT, '*', '**', '*.py'), recursive=True)):
    relative = os.path.relpath(path, ROOT)
    if relative.split(os.sep)[0] in PACKAGES:
      name = relative[:-3].replace(os.sep, '.')
      yield (name[:-len('.__init__')] if name.endswith('.__init__') else name), path


def top_level_imports(path, known):
  """Modules of this repository imported at module level (imports inside functions are deliberate and lazy)."""
  out = set()
  for node in ast.parse(open(path).read()).body:
    names = []
    if isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    out |= {n for n in names if n in known}
  return out


def test_no_import_cycle():
  paths = dict(modules())
  graph = {m: {d for d in top_level_imports(p, paths) if d != m and not m.startswith(d + '.')}
           for m, p in paths.items()}
  state, stack, cycles = {}, [], []

  def visit(m):
    state[m] = 'open'
    stack.append(m)
    for d in sorted(graph[m]):
      if state.get(d) == 'open':
        cycles.append(stack[stack.index(d):] + [d])
      elif d not in state:
        visit(d)
    stack.pop()
    state[m] = 'done'

  for m in sorted(graph):
    if m not in state:
      visit(m)
  assert not cycles, cycles


def test_no_module_over_400_lines():
  long = {name: n for name, path in modules() if (n := sum(1 for _ in open(path))) > 400}
  assert not long, long
