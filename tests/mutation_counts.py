"""Counts the mutation cases of tests/test_zoo_mutations.py that `verify` blesses (exit 0), run through the
popnet checkout named by $POPNET (an older one to count "before", this one for "after"):

    POPNET=/path/to/old/checkout python tests/mutation_counts.py
"""
import contextlib, io, os, shutil, sys, tempfile, types
sys.path.insert(0, os.environ['POPNET'])
HERE = os.path.dirname(os.path.abspath(__file__))
import popnet.zoo as zoo_lib
if not hasattr(zoo_lib, 'seal'):
  stub = types.ModuleType('popnet.zoo.seal'); sys.modules['popnet.zoo.seal'] = stub; zoo_lib.seal = stub
  from popnet.zoo import networks
  zoo_lib.ZooWriter.write_evaluation_sets = lambda self, root, *a: networks.write_evaluation_sets(root, *a)
import popnet; print('popnet from', popnet.__file__)
import importlib.util; spec = importlib.util.spec_from_file_location('mut', os.path.join(HERE, 'test_zoo_mutations.py')); m = importlib.util.module_from_spec(spec); sys.modules['tests.zoo_forgery'] = importlib.util.module_from_spec(s2 := importlib.util.spec_from_file_location('tests.zoo_forgery', os.path.join(HERE, 'zoo_forgery.py'))); s2.loader.exec_module(sys.modules['tests.zoo_forgery']); spec.loader.exec_module(m)
from popnet.zoo.__main__ import main
root = tempfile.mkdtemp()
pristine = m.build_zoo(os.path.join(root, 'pristine'))
blessed, refused, na = [], [], []
for i, (name, (mutate, _)) in enumerate(m.CASES.items()):
  path = os.path.join(root, f'c{i}'); shutil.copytree(pristine, path)
  try:
    mutate(path)
  except Exception as e:
    na.append(name); continue
  import signal
  signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError()))
  signal.alarm(20)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      code = main(['verify', path])
    signal.alarm(0)
  except TimeoutError:
    na.append(name + ' (hangs)'); continue
  except Exception as e:
    code = 'traceback'; na.append(name + ' (traceback)'); continue
  (blessed if code == 0 else refused).append(name)
print(f'{len(blessed)} blessed (exit 0), {len(refused)} refused, {len(na)} not applicable of {len(m.CASES)}')
print('blessed:', blessed); print('n/a:', na)
