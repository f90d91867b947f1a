"""Reading a zoo needs no trainer: opening one, selecting rows, reading and verifying vectors and exporting its
layout import neither jax, jaxlib, optax nor flax (popnet/arch.py holds the architectures without jax)."""
import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.test_zoo import make_zoo

HEAVY = ('jax', 'jaxlib', 'optax', 'flax', 'orbax', 'tensorflow')

READ = """
import json, sys
from popnet import Zoo
zoo = Zoo.open(sys.argv[1])
rows = zoo.select(snapshot=1)
vectors = zoo.vectors(rows)
zoo.verify()
layout = zoo.layout(sorted(zoo.layouts)[0])
tensors = layout.unflatten(vectors)
from popnet.interop import layout_csv
print(json.dumps({'rows': len(rows), 'values': int(vectors.shape[1]), 'tensors': len(layout.entries),
                  'heavy': sorted(m for m in sys.modules if m.split('.')[0] in %r)}))
""" % (HEAVY,)


def test_reading_a_zoo_imports_no_jax(tmp_path):
  path = make_zoo(str(tmp_path / 'zoo'))
  out = subprocess.run([sys.executable, '-c', READ, path], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT))
  assert out.returncode == 0, out.stderr
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['rows'] > 0 and result['values'] > 0 and result['tensors'] > 0
  assert result['heavy'] == [], f'reading a zoo imported {result["heavy"]}'
