"""meta.nfn against NFN's own PyTorch code (tests/nfn_reference.py, copied from AllanYangZhou/nfn at ce78322):
the same parameters, the same weight-space inputs, the same outputs to 1e-5.

Every Flax Dense of meta.nfn is one NFN map of the same name; its kernel is the map's weight [out, in(, 1, 1)]
reshaped to [out, in] and transposed, its bias the map's bias (`_torch_to_flax`); NP-PosEmb's embeddings are
transposes too. Inputs: random flat rows of popnet layouts, split by meta.equivariant into our weight space and
reshaped into NFN's WeightSpaceFeatures ([B, 1, out, in] dense, [B, 1, out, in, kh, kw] conv). Layouts: a SIREN
(NFN's family, 3 layers), a 2-layer MLP (HNP's L = 2 branches), the Small CNN Zoo CNN (3 convs + dense: NFN's own
CNN zoo) and the NWS CNN without batch norm (a flattened 2 x 2 map, given to NFN as a [out, c, 4, 1] weight).
"""
import numpy as np
import pytest

torch = pytest.importorskip('torch')
pytest.importorskip('einops')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from meta import equivariant, nfn  # noqa: E402
from popnet import arch as arch_lib  # noqa: E402
from popnet.layout import Layout  # noqa: E402
from tests import nfn_reference as ref  # noqa: E402

TOL = 1e-5
LAYOUTS = {
    'siren': lambda: arch_lib.SirenArch('s', 'nfn', hidden=8, hidden_layers=1).layout(),
    'mlp_L2': lambda: Layout.from_specs([('params', 'a', 'kernel', (3, 5)), ('params', 'a', 'bias', (5,)),
                                         ('params', 'b', 'kernel', (5, 2)), ('params', 'b', 'bias', (2,))]),
    'smallcnnzoo_cnn': lambda: arch_lib.smallcnnzoo_arch(num_outputs=4).layout((8, 8, 1)),
    'nws_cnn_flatten': lambda: arch_lib.nws_arch(filter_size=3, depth_conv=3, width_conv=2, depth_fc=2, width_fc=6,
                                                 batch_norm=False, num_outputs=3).layout((12, 12, 1)),
}


def _spec(space):
  """NFN's NetworkSpec of our weight space (a flattened map: a [out, c, s, 1] 'conv' weight)."""
  shapes = []
  for l in space.layers:
    if l.kind == 'conv':
      shapes.append((l.n_out, l.n_in) + tuple(l.kernel.shape[:2]))
    elif l.kind == 'flatten':
      shapes.append((l.n_out, l.n_in, l.spatial, 1))
    else:
      shapes.append((l.n_out, l.n_in))
  return ref.NetworkSpec([ref.ArraySpec(s) for s in shapes], [ref.ArraySpec((l.n_out,)) for l in space.layers])


def _to_torch(space, spec, weights, biases):
  """Our features [B, o, i, (c, s)] / [B, o, c] -> NFN's unshaped [B, c, o, i(, h, w)] / [B, c, o]."""
  out_w, out_b = [], []
  for w, b, s in zip(weights, biases, spec.weight_spec):
    w = np.asarray(w)
    c = np.asarray(b).shape[-1]
    w = w.reshape(w.shape[:3] + (c,) + tuple(s.shape[2:])).transpose((0, 3, 1, 2) + tuple(range(4, 2 + len(s.shape))))
    out_w.append(torch.from_numpy(np.ascontiguousarray(w)))
    out_b.append(torch.from_numpy(np.ascontiguousarray(np.swapaxes(np.asarray(b), 1, 2))))
  return ref.WeightSpaceFeatures(out_w, out_b)


def _from_torch(wsfeat):
  """NFN's unshaped features -> ours (the inverse of _to_torch)."""
  weights, biases = [], []
  for w, b in wsfeat:
    w = w.detach().numpy()
    w = w.reshape(w.shape[:4] + (-1,)).transpose(0, 2, 3, 1, 4)  # b c o i (h w) -> b o i c (h w)
    weights.append(w.reshape(w.shape[:3] + (-1,)))
    biases.append(np.swapaxes(b.detach().numpy(), 1, 2))
  return weights, biases


def _layer_params(module):
  """Our parameters of one NFN layer (NPLinear / HNPLinear) from the torch module's."""
  out = {}
  for name, child in module.named_children():
    if isinstance(child, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
      w = child.weight.detach().numpy()
      out[name] = {'kernel': w.reshape(w.shape[0], -1).T, 'bias': child.bias.detach().numpy()}
  if getattr(module, 'io_embed', False):
    out['in_embed'] = module.in_embed.detach().numpy()[0, :, 0, :].T
    out['out_embed'] = module.out_embed.detach().numpy()[0, :, :, 0].T
    out['out_bias_embed'] = module.out_bias_embed.detach().numpy()[0].T
  return out


def _assign(ours, theirs, where=''):
  """Our init's tree with every leaf replaced by NFN's value; the two trees must have the same keys and shapes."""
  assert set(ours) == set(theirs), (where, sorted(ours), sorted(theirs))
  out = {}
  for k, v in ours.items():
    if isinstance(v, dict):
      out[k] = _assign(v, theirs[k], f'{where}/{k}')
    else:
      assert np.shape(v) == np.shape(theirs[k]), (f'{where}/{k}', np.shape(v), np.shape(theirs[k]))
      out[k] = jnp.asarray(theirs[k])
  return out


def _check(what, ours, theirs):
  """Max abs difference <= TOL (relative to the output's scale when that is above 1); printed with -s."""
  ours, theirs = np.concatenate([np.ravel(x) for x in ours]), np.concatenate([np.ravel(x) for x in theirs])
  gap, scale = float(np.abs(ours - theirs).max()), float(np.abs(theirs).max())
  line = f'{what}: max abs diff {gap:.2e}, relative to max |output| {scale:.2f}: {gap / scale:.2e}'
  print(line)
  assert gap <= TOL * max(1.0, scale), line


def _rows(space, n=4, seed=0):
  return np.random.default_rng(seed).normal(size=(n, space.size)).astype(np.float32)


MODES = {'NP': ('np', False), 'NP-PosEmb': ('np', True), 'HNP': ('hnp', False)}


@pytest.mark.parametrize('name', sorted(LAYOUTS))
@pytest.mark.parametrize('mode', ['HNP', 'NP-PosEmb'])
def test_equivariant_layers_match_nfn(name, mode):
  """Two stacked layers (1 -> 3 -> 2 channels) with ReLU: each layer's output equals NFN's (plain NP is
  NP-PosEmb without the embeddings; test_invariant_nfn_matches_nfn runs it)."""
  space = equivariant.WeightSpace.of_layout(LAYOUTS[name](), batch_norm=False)
  spec, (ours_mode, io_embed) = _spec(space), MODES[mode]
  torch.manual_seed(0)
  theirs = [ref.MODE2LAYER[mode](spec, in_channels=c_in, out_channels=c_out) for c_in, c_out in ((1, 3), (3, 2))]
  x = _rows(space)
  weights, biases = space.split(x)
  wsfeat = _to_torch(space, spec, weights, biases)
  for j, (layer, c) in enumerate(zip(theirs, (3, 2))):
    ours = (nfn.NPLinear(space, c, io_embed) if ours_mode == 'np' else nfn.HNPLinear(space, c))
    params = _assign(ours.init(jax.random.key(j), weights, biases)['params'], _layer_params(layer), mode)
    weights, biases = ours.apply({'params': params}, weights, biases)
    with torch.no_grad():
      wsfeat = layer(wsfeat)
    tw, tb = _from_torch(wsfeat)
    _check(f'{mode} layer {j} on {name}', list(weights) + list(biases), tw + tb)
    weights, biases = tuple(map(jax.nn.relu, weights)), tuple(map(jax.nn.relu, biases))
    wsfeat = ref.TupleOp(torch.nn.ReLU())(wsfeat)


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_pools_match_nfn(name):
  space = equivariant.WeightSpace.of_layout(LAYOUTS[name](), batch_norm=False)
  spec, rng, c = _spec(space), np.random.default_rng(1), 3
  weights = [rng.normal(size=(2, l.n_out, l.n_in, c * l.spatial)).astype(np.float32) for l in space.layers]
  biases = [rng.normal(size=(2, l.n_out, c)).astype(np.float32) for l in space.layers]
  wsfeat = _to_torch(space, spec, weights, biases)
  for ours, pool in ((nfn.np_pool, ref.NPPool), (nfn.hnp_pool, ref.HNPPool)):
    theirs = torch.flatten(pool(spec)(wsfeat), start_dim=-2).numpy()  # MlpHead's nn.Flatten(start_dim=-2)
    got = np.asarray(ours(tuple(map(jnp.asarray, weights)), tuple(map(jnp.asarray, biases))))
    assert got.shape == theirs.shape == (2, c * pool.get_num_outs(spec))
    _check(f'{pool.__name__} on {name}', [got], [theirs])


@pytest.mark.parametrize('mode,pool,name', [('HNP', 'hnp', 'siren'), ('HNP', 'hnp', 'mlp_L2'),
                                            ('NP-PosEmb', 'hnp', 'smallcnnzoo_cnn'), ('NP', 'np', 'nws_cnn_flatten')])
def test_invariant_nfn_matches_nfn(mode, pool, name):
  """The whole model: NFN's InvariantNFN + MlpHead (predict_gen hnp_inv / np_inv keep pool_mode HNP) against
  meta.nfn.InvariantNFN, three equivariant layers and the three-Linear head."""
  space = equivariant.WeightSpace.of_layout(LAYOUTS[name](), batch_norm=False)
  spec, (ours_mode, io_embed) = _spec(space), MODES[mode]
  channels, head = (4, 3, 2), 16
  torch.manual_seed(1)
  head_cls = lambda *a: ref.MlpHead(*a, num_out=3, h_size=head, pool_mode=pool.upper())  # noqa: E731
  theirs = ref.InvariantNFN(spec, channels, head_cls, mode=mode)
  ours = nfn.InvariantNFN(3, space, ours_mode, channels, head, io_embed=io_embed, pool=pool)
  x = _rows(space, seed=2)
  init = ours.init(jax.random.key(0), jnp.asarray(x))['params']
  linears = [m for m in theirs.head.head if isinstance(m, torch.nn.Linear)]
  mapped = {'features': {f'{ours_mode}_{j}': _layer_params(theirs.nfnet_features[2 * j]) for j in range(3)}}
  mapped |= {f'head_{j}': {'kernel': m.weight.detach().numpy().T, 'bias': m.bias.detach().numpy()}
             for j, m in enumerate(linears)}
  params = _assign(init, mapped)
  got = np.asarray(ours.apply({'params': params}, x))
  with torch.no_grad():
    want = theirs(_to_torch(space, spec, *space.split(x))).numpy()
  assert got.shape == want.shape == (4, 3)
  _check(f'InvariantNFN {mode} pool {pool} on {name}', [got], [want])
