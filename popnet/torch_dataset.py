"""A zoo as a `torch.utils.data.Dataset` (pip install popnet[torch]; torch is imported here only).

    from popnet.torch_dataset import ZooDataset
    ds = ZooDataset('runs/default', rows=zoo.select(epoch='last', status='ok'), form='nfn', targets='test_accuracy')
    (weights, biases), accuracy = ds[0]     # NFN's tuples: [1, out, in, kh, kw] ..., [1, out] ...
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=4)

Rows are read from the zoo's memory-mapped weights files one at a time, each checked against its recorded
crc32 (`verify=False` skips the check); nothing the size of the zoo is loaded. The dataset pickles as the zoo's
path and its rows, so every DataLoader worker (fork or spawn) maps the files itself. Layouts: popnet/torch_layout.py
and docs/pytorch.md.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from popnet import torch_layout
from popnet.zoo import CHECKSUM_COLUMN, Zoo

FORMS = ('state_dict', 'nfn')
READ_COLUMNS = ('member_id', 'snapshot', 'arch', 'weights_file', 'weights_row', CHECKSUM_COLUMN)


class ZooDataset(torch.utils.data.Dataset):
  """Rows of one architecture of a zoo (`rows`: metadata rows, e.g. zoo.select(...); default every row), each as

  form='state_dict': {'conv_0.weight': [out, in, kh, kw], ..., 'output.bias': [out]} (torch_layout.state_dict)
  form='nfn':        (weights, biases), NFN's tuples with its channel dim (torch_layout.nfn_weights_biases)

  targets: None (the sample alone), a metadata column name (sample, value), or a list of names (sample,
  {name: value}); numbers become tensors (float32 for floats), strings stay strings.
  Also: ds.rows (the metadata rows, in item order), ds.arch, ds.layer_layout, ds.unf_perm_spec, ds.keys."""

  def __init__(self, zoo: Zoo | str, rows: pd.DataFrame | None = None, form: str = 'state_dict',
               targets: str | Sequence[str] | None = None, verify: bool = True):
    self._zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
    self.path = self._zoo.path
    rows = self._zoo.metadata if rows is None else rows
    if form not in FORMS:
      raise ValueError(f'form: got {form!r}; allowed: {list(FORMS)}')
    names = [targets] if isinstance(targets, str) else list(targets or [])
    missing = [n for n in names if n not in rows]
    if missing:
      raise KeyError(f'targets: {missing} are not metadata columns; columns: {list(rows.columns)}')
    archs = list(pd.unique(rows['arch'])) if 'arch' in rows else self._zoo.architectures
    if len(archs) != 1:
      raise ValueError(f'rows span architectures {archs}; select one (zoo.select(arch=...))')
    self.rows, self.form, self.targets, self.verify = rows.reset_index(drop=True), form, targets, verify
    self._read = self.rows[[c for c in READ_COLUMNS if c in self.rows]]  # what zoo.vectors needs: fast to slice
    self._values = {name: self.rows[name].tolist() for name in names}
    self.arch = self._zoo.arch(archs[0])
    self.input_shape = self._zoo.input_shape
    tensors_of = torch_layout.nfn_tensors if form == 'nfn' else torch_layout.torch_tensors  # nfn: no batch norm
    self._tensors = tensors_of(self.arch, self.input_shape)

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index: int):
    return self.__getitems__([index])[0]

  def __getitems__(self, indices: Sequence[int]) -> list:
    """The items at `indices`, their rows read (and checked) in one go: a DataLoader fetches a batch with it."""
    vectors = self._zoo.vectors(self._read.iloc[list(indices)], verify=self.verify)
    return [self._item(i, vector) for i, vector in zip(indices, vectors)]

  def _item(self, index: int, vector: np.ndarray):
    if self.form == 'state_dict':
      sample: Any = {t.key: torch.from_numpy(t.convert(vector)) for t in self._tensors}
    else:
      weights, biases = torch_layout.nfn_weights_biases(self.arch, self.input_shape, vector, self._tensors)
      sample = (tuple(map(torch.from_numpy, weights)), tuple(map(torch.from_numpy, biases)))
    if self.targets is None:
      return sample
    if isinstance(self.targets, str):
      return sample, _target(self._values[self.targets][index])
    return sample, {name: _target(self._values[name][index]) for name in self.targets}

  @property
  def keys(self) -> list[str]:
    return [t.key for t in self._tensors]

  @property
  def layer_layout(self) -> list[int]:
    return torch_layout.layer_layout(self.arch, self.input_shape)

  @property
  def unf_perm_spec(self):
    return torch_layout.unf_perm_spec(self.arch, self.input_shape)

  def __getstate__(self) -> dict[str, Any]:
    """The zoo's path, not its open memory maps (pickling those would copy the weights into every worker)."""
    state = dict(self.__dict__)
    state['_zoo'] = None
    return state

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._zoo = Zoo.open(self.path)


def _target(value):
  if isinstance(value, (bool, np.bool_)):
    return torch.tensor(bool(value))
  if isinstance(value, (int, np.integer)):
    return torch.tensor(int(value), dtype=torch.int64)
  if isinstance(value, (float, np.floating)):
    return torch.tensor(float(value), dtype=torch.float32)
  return value
