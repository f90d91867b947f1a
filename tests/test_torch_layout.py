"""popnet/torch_layout.py without torch: UNF's perm_spec names true symmetries (permuting the hidden neurons it
ties together leaves the network's function unchanged), the layer_layout lists match the configs ScaleGMN and
Neural Graphs ship, and the module imports neither jax nor torch."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from popnet import arch as arch_lib
from popnet import models, torch_layout
from popnet.layout import _module
from tests.conftest import ROOT


def permuted(tree, spec, perms):
  """`tree` with axis i of every tensor permuted by perms[spec[i]] (axes whose permutation is not given stay)."""
  out = {}
  for collection, layers in tree.items():
    out[collection] = {}
    for layer, leaves in layers.items():
      out[collection][layer] = {}
      for name, x in leaves.items():
        axes = _module(spec[collection], layer)[name]
        assert len(axes) == x.ndim, f'{layer}/{name}: spec {axes} for shape {x.shape}'
        for axis, which in enumerate(axes):
          if which in perms:
            x = np.take(x, perms[which], axis=axis)
        out[collection][layer][name] = x
  return out


@pytest.mark.parametrize('arch', [arch_lib.smallcnnzoo_arch(),
                                  arch_lib.Arch('bn_pool', (arch_lib.ConvLayer(4, 3, 1, pool=True),
                                                            arch_lib.ConvLayer(6, 3, 2)), (5,), 3, True, True)])
def test_unf_perm_spec_names_the_hidden_neuron_symmetry(arch):
  shape = (12, 12, 1)
  layout = arch.layout(shape)
  spec = torch_layout.unf_perm_spec(arch, shape)
  rng = np.random.default_rng(0)
  variables = layout.unflatten(rng.normal(0, 0.5, layout.size).astype(np.float32))
  variables['batch_stats'] = jax.tree.map(np.abs, variables['batch_stats'])  # variances must be positive
  hidden = range(1, len(layout.layers))
  sizes = {k: next(_module(variables['params'], layer)['bias'].shape[0] for layer in layout.layers
                   if _module(spec['params'], layer)['bias'] == (k,)) for k in hidden}
  perms = {k: rng.permutation(n) for k, n in sizes.items()}
  images = rng.uniform(0, 1, (8,) + shape).astype(np.float32)
  before = models.apply(arch, variables, images, train=False, activation=1)[0]
  after = models.apply(arch, permuted(variables, spec, perms), images, train=False, activation=1)[0]
  np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_unf_perm_spec_refuses_a_flatten_after_convolutions():
  with pytest.raises(torch_layout.TorchLayoutError, match='flattens a feature map'):
    torch_layout.unf_perm_spec(arch_lib.nws_arch(3, 3, 2, 1, 8), (16, 16, 1))


def test_layer_layout_matches_the_configs_scalegmn_and_neural_graphs_ship():
  # jkalogero/scalegmn configs/cifar10/*.yml and mkofinas/neural-graphs zoo_cifar_nfn.yaml (Small CNN Zoo, 1 channel)
  assert torch_layout.layer_layout(arch_lib.smallcnnzoo_arch(), (28, 28, 1)) == [1, 16, 16, 16, 10]
  # jkalogero/scalegmn configs/mnist_cls/scalegmn.yml: the SIRENs of NFN's MNIST INR dataset
  assert torch_layout.layer_layout(arch_lib.resolve('siren_nfn'), None) == [2, 32, 32, 1]


def test_a_user_module_is_refused_with_one_line():
  module = arch_lib.ModuleArch('Net', 'examples/models/mlp_nnx.py:Net', '0' * 64)
  with pytest.raises(torch_layout.TorchLayoutError, match="user's Flax module"):
    torch_layout.torch_tensors(module, (8, 8, 1))


def test_the_pure_layout_and_the_hf_export_import_neither_jax_nor_torch():
  code = ('import json, sys; import popnet.torch_layout, popnet.interop.hf; '
          'print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "torch", "flax"))))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT))
  assert out.returncode == 0, out.stderr
  assert json.loads(out.stdout.strip().splitlines()[-1]) == []
