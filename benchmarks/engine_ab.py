"""A/B timing of two checkouts' population program: the same 16 mixed-choice Small-CNN-Zoo members (per-member
optimizer, activation, init, dropout, augmentation as arrays), 60 steps on synthetic 28x28 data, 2 host devices.

    python benchmarks/engine_ab.py CHECKOUT      # prints the first call (with compilation) and the best of 3

Run it alternately on two checkouts (e.g. before and after a refactor) so both see the same machine drift.
It uses each checkout's own tests/helpers.py run_cohort, so it measures exactly what the tests train.
"""
import os, sys, time
tree = sys.argv[1]
sys.path.insert(0, tree)
os.chdir(tree)
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
import jax
from popnet import hparams
from tests import helpers
try:
  from popnet import population as pop
  mesh = pop.make_mesh()
except ImportError:
  from popnet import engine
  mesh = engine.make_mesh()
data = helpers.synthetic_data(mesh, n_train=2000, shape=(28, 28, 1))
table = hparams.sample_members(helpers.space(batch_size=32), 16, seed=0)
kw = dict(input_shape=(28, 28, 1), steps=60, steps_per_epoch=60, conv_impl='auto', static=False)
t = time.perf_counter(); helpers.run_cohort(table, mesh, data, **kw); first = time.perf_counter() - t
best = 1e9
for _ in range(3):
  t = time.perf_counter(); helpers.run_cohort(table, mesh, data, **kw); best = min(best, time.perf_counter() - t)
print(f'{tree}: first {first:.2f} s, best of 3 {best:.3f} s')
