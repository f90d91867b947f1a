"""The zoo from PyTorch (popnet/torch_dataset.py, popnet/torch_layout.py): the tensors are the zoo's rows, a
network written here in torch.nn.functional from the state dict computes zoo.predict's logits, NFN's tuples have
the shapes NFN's layers take (its pools, tests/nfn_reference.py, run on them), and DataLoader workers read the
memory-mapped zoo themselves."""
import pickle

import numpy as np
import pytest

torch = pytest.importorskip('torch')
F = torch.nn.functional
nn = torch.nn

from popnet import torch_layout  # noqa: E402
from popnet.torch_dataset import ZooDataset  # noqa: E402
from popnet.zoo import Zoo  # noqa: E402
from tests.helpers import space  # noqa: E402
from tests.test_interop import make_popnet_zoo  # noqa: E402

SMALLCNNZOO_SHAPE = (28, 28, 1)
NWS_SPACE = space(architecture='nws', filter_size=3, depth_conv=4, width_conv=2, depth_fc=2, width_fc=8,
                  batch_norm=True)
ACTIVATIONS = {'relu': F.relu, 'elu': F.elu, 'sigmoid': torch.sigmoid, 'tanh': torch.tanh}


@pytest.fixture(scope='module')
def cnn_zoo(tmp_path_factory):
  return make_popnet_zoo(str(tmp_path_factory.mktemp('torch_cnn_zoo')), space(), SMALLCNNZOO_SHAPE)[0]


@pytest.fixture(scope='module')
def nws_zoo(tmp_path_factory):
  """16 x 16 inputs: the conv part ends in a 2 x 2 map, so the flatten order matters."""
  return make_popnet_zoo(str(tmp_path_factory.mktemp('torch_nws_zoo')), NWS_SPACE, (16, 16, 1), members=3,
                         snapshots=2, seed=1)[0]


# --- a forward pass written from the layout (popnet/models.py's order), in PyTorch --------------------------------
def same_pad(x, kernel, stride):
  """XLA's SAME padding (more on the high side when odd), which F.conv2d's padding='same' has no stride for."""
  pads = []
  for size in (x.shape[3], x.shape[2]):  # F.pad takes the last axis first
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    pads += [total // 2, total - total // 2]
  return F.pad(x, pads)


def batch_norm(x, sd, name):
  return F.batch_norm(x, sd[f'{name}_bn.running_mean'], sd[f'{name}_bn.running_var'], sd[f'{name}_bn.weight'],
                      sd[f'{name}_bn.bias'], training=False, eps=1e-5)


def torch_forward(arch, sd, images_nchw, activation):
  """conv + bias -> batch norm -> activation (-> 2x2 max-pool); global mean or flatten; dense + bias ->
  activation -> batch norm; a linear output layer."""
  act, x = ACTIVATIONS[activation], images_nchw
  for i, layer in enumerate(arch.conv):
    name = f'conv_{i}'
    if layer.padding == 'SAME':
      x = same_pad(x, layer.kernel, layer.stride)
    x = F.conv2d(x, sd[f'{name}.weight'], sd[f'{name}.bias'], stride=layer.stride)
    x = act(batch_norm(x, sd, name) if arch.batch_norm else x)
    if layer.pool:
      x = F.max_pool2d(x, 2, 2, ceil_mode=True)
  x = x.mean((2, 3)) if arch.global_pool else x.flatten(1)
  for i in range(len(arch.dense)):
    x = act(F.linear(x, sd[f'dense_{i}.weight'], sd[f'dense_{i}.bias']))
    x = batch_norm(x, sd, f'dense_{i}') if arch.batch_norm else x
  return F.linear(x, sd['output.weight'], sd['output.bias'])


def check_forward_equals_predict(path, n_images=16):
  zoo = Zoo.open(path)
  rows = zoo.select(status='ok')
  ds = ZooDataset(zoo, rows)
  arch = zoo.arch(rows['arch'].iloc[0])
  images = np.random.default_rng(0).integers(0, 256, (n_images,) + zoo.input_shape, dtype=np.uint8)
  expected = zoo.predict(rows, images)
  x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
  with torch.no_grad():
    got = np.stack([torch_forward(arch, ds[i], x, ds.rows['activation'].iloc[i]).numpy() for i in range(len(ds))])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  return ds


def test_dataset_tensors_are_the_zoo_rows(cnn_zoo):
  zoo = Zoo.open(cnn_zoo)
  rows = zoo.select(epoch='last')
  ds = ZooDataset(cnn_zoo, rows, targets=['test_accuracy', 'activation', 'member_id'])
  vectors = zoo.vectors(rows)
  layout = zoo.layout(rows['arch'].iloc[0])
  assert len(ds) == len(rows) == 4
  for i in range(len(ds)):
    sd, target = ds[i]
    assert list(sd) == ds.keys == ['conv_0.weight', 'conv_0.bias', 'conv_1.weight', 'conv_1.bias', 'conv_2.weight',
                                   'conv_2.bias', 'output.weight', 'output.bias']
    tree = layout.unflatten(vectors[i])['params']
    np.testing.assert_array_equal(sd['conv_1.weight'].numpy(), tree['conv_1']['kernel'].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(sd['output.weight'].numpy(), tree['output']['kernel'].T)
    flat = np.concatenate([sd[t.key].numpy().ravel() for t in torch_layout.torch_tensors(ds.arch, ds.input_shape)])
    assert sorted(flat) == sorted(vectors[i])  # every value of the row, once
    assert target['test_accuracy'].dtype == torch.float32
    assert target['test_accuracy'].item() == pytest.approx(rows['test_accuracy'].iloc[i], rel=1e-7)
    assert target['activation'] == rows['activation'].iloc[i] and target['member_id'].item() == rows['member_id'].iloc[i]
  assert ds.layer_layout == [1, 16, 16, 16, 10]


def test_torch_forward_of_a_smallcnnzoo_row_equals_zoo_predict(cnn_zoo):
  ds = check_forward_equals_predict(cnn_zoo)
  assert len(ds) == 11  # the diverged snapshot is left out


def test_torch_forward_with_batch_norm_and_flatten_equals_zoo_predict(nws_zoo):
  """The dense layer after a flatten has its inputs in torch.flatten's (c, h, w) order; batch norm by name."""
  ds = check_forward_equals_predict(nws_zoo)
  assert ds[0]['dense_0.weight'].shape == (8, 8 * 2 * 2) and 'dense_0_bn.running_var' in ds.keys
  assert ds.layer_layout == [1, 2, 4, 8, 8, 8, 4, 20]


def test_state_dict_loads_into_torch_modules(nws_zoo):
  ds = ZooDataset(nws_zoo)
  arch, shapes = ds.arch, {t.key: t.shape for t in torch_layout.torch_tensors(ds.arch, ds.input_shape)}
  modules = {}
  for i, layer in enumerate(arch.conv):
    modules[f'conv_{i}'] = torch.nn.Conv2d(shapes[f'conv_{i}.weight'][1], layer.features, layer.kernel)
    modules[f'conv_{i}_bn'] = torch.nn.BatchNorm2d(layer.features)
  for i, units in enumerate(arch.dense):
    modules[f'dense_{i}'] = torch.nn.Linear(shapes[f'dense_{i}.weight'][1], units)
    modules[f'dense_{i}_bn'] = torch.nn.BatchNorm1d(units)
  modules['output'] = torch.nn.Linear(arch.dense[-1], arch.num_outputs)
  net = torch.nn.ModuleDict(modules)
  result = net.load_state_dict(ds[0], strict=False)
  assert not result.unexpected_keys and all(k.endswith('num_batches_tracked') for k in result.missing_keys)


# --- NFN: its own ArraySpec / WeightSpaceFeatures / pools (tests/nfn_reference.py, copied from NFN) run on a batch ----
def test_nfn_tuples_have_nfn_shapes_and_a_loader_batches_them(cnn_zoo):
  pytest.importorskip('einops')
  from tests.nfn_reference import HNPPool, NPPool, WeightSpaceFeatures, network_spec_from_wsfeat
  zoo = Zoo.open(cnn_zoo)
  rows = zoo.select(status='ok')
  ds = ZooDataset(cnn_zoo, rows, form='nfn', targets='test_accuracy')
  (weights, biases), accuracy = ds[0]
  assert [tuple(w.shape) for w in weights] == [(1, 16, 1, 3, 3), (1, 16, 16, 3, 3), (1, 16, 16, 3, 3), (1, 10, 16)]
  assert [tuple(b.shape) for b in biases] == [(1, 16)] * 3 + [(1, 10)]
  sd = ZooDataset(cnn_zoo, rows)[0]
  for w, key in zip(weights, ['conv_0.weight', 'conv_1.weight', 'conv_2.weight', 'output.weight']):
    torch.testing.assert_close(w[0], sd[key], rtol=0, atol=0)
  loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)
  (bw, bb), acc = next(iter(loader))
  assert bw[1].shape == (4, 1, 16, 16, 3, 3) and bb[3].shape == (4, 1, 10) and acc.shape == (4,)
  wsfeat = WeightSpaceFeatures(bw, bb)
  spec = network_spec_from_wsfeat(wsfeat)
  assert [w.shape for w in spec.weight_spec] == [(-1, 1, 3, 3), (-1, -1, 3, 3), (-1, -1, 3, 3), (10, -1)]
  assert [b.shape for b in spec.bias_spec] == [(-1,), (-1,), (-1,), (10,)] and spec.get_io() == (1, 10)
  for pool in (NPPool, HNPPool):  # NFN's invariant pooling layers, on the batch as NFN's ZooDataset gives it
    pooled = pool(spec)(wsfeat)
    assert pooled.shape == (4, 1, pool.get_num_outs(spec)) and torch.isfinite(pooled).all()
  hnp = HNPPool(spec)(wsfeat)[:, 0]
  torch.testing.assert_close(hnp[:, -10:], bb[3][:, 0], rtol=0, atol=0)  # HNP keeps the output biases as they are


def test_nfn_tuples_refuse_batch_norm(nws_zoo):
  with pytest.raises(torch_layout.TorchLayoutError, match='batch norm'):
    ZooDataset(nws_zoo, form='nfn')


def test_dataloader_workers_reopen_the_memory_mapped_zoo(cnn_zoo):
  zoo = Zoo.open(cnn_zoo)
  ds = ZooDataset(cnn_zoo, targets='member_id')
  blob = pickle.dumps(ds)
  assert len(blob) < zoo.layout(zoo.architectures[0]).size * 4  # not even one row of weights travels
  loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=1, multiprocessing_context='spawn')
  got = torch.cat([torch.cat([v.flatten(1) for v in sd.values()], 1) for sd, _ in loader])
  want = np.concatenate([np.concatenate([v.numpy().reshape(1, -1) for v in ds[i][0].values()], 1)
                         for i in range(len(ds))])
  np.testing.assert_array_equal(got.numpy(), want)


# --- SIRENs (INR zoos) ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('family', ['dws', 'nfn'])
def test_siren_rows_have_their_family_names_and_nfn_tuples(tmp_path, family):
  pytest.importorskip('einops')
  from tests.nfn_reference import state_dict_to_tensors
  from popnet.arch import SirenArch
  from popnet.zoo import ZooWriter
  arch = SirenArch(f'siren_{family}', family)
  writer = ZooWriter(str(tmp_path / 'zoo'), {arch.name: arch}, (28, 28, 1), {arch.name: 3}, {'members': 3})
  vectors = np.random.default_rng(0).normal(size=(3, writer.layouts[arch.name].size)).astype(np.float32)
  writer.write(arch.name, np.arange(3), vectors,
               [dict(member_id=i, snapshot=0, arch=arch.name, label=i % 2, weights_file=f'weights/{arch.name}.npy',
                     weights_row=i) for i in range(3)])
  writer.write_manifest(complete=True)
  sd = ZooDataset(str(tmp_path / 'zoo'))[1]
  names = [f'{layer}.{kind}' for layer in arch.layer_names for kind in ('weight', 'bias')]
  assert list(sd) == names and sd[names[0]].shape == (32, 2) and sd[names[-2]].shape == (1, 32)
  (weights, biases), label = ZooDataset(str(tmp_path / 'zoo'), form='nfn', targets='label')[1]
  expected_w, expected_b = state_dict_to_tensors(sd)  # NFN's SirenDataset's conversion
  assert label.item() == 1 and len(weights) == len(expected_w) == 3
  for got, want in zip(weights + biases, expected_w + expected_b):
    torch.testing.assert_close(got, want, rtol=0, atol=0)
