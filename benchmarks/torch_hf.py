"""Times reading a zoo from PyTorch and publishing it: one DataLoader pass over popnet.torch_dataset.ZooDataset
(state dicts, then NFN tuples), `export --format hf`, and the first datasets.load_dataset of the export (which
builds its Arrow cache), on a meta.synthetic zoo (Small CNN Zoo rows, 4,970 values). docs/pytorch.md quotes it.

    python -m benchmarks.torch_hf --members 512 --snapshots 3 --workdir /tmp/torch_hf
"""
from __future__ import annotations

import argparse
import json
import os
import time

from popnet import usage

def measure(workdir: str, members: int, snapshots: int, batch_size: int = 64) -> dict:
  import datasets
  import torch

  from meta.synthetic import make_zoo
  from popnet import Zoo
  from popnet.interop.hf import export_hf
  from popnet.torch_dataset import ZooDataset
  result = {'load_average_before': os.getloadavg()[0]}
  zoo = Zoo.open(make_zoo(os.path.join(workdir, 'zoo'), members=members, snapshots=snapshots))
  result.update(rows=len(zoo), values=zoo.layout(zoo.architectures[0]).size)
  for form in ('state_dict', 'nfn'):
    start = time.perf_counter()
    for _ in torch.utils.data.DataLoader(ZooDataset(zoo, form=form, targets='test_accuracy'), batch_size=batch_size):
      pass
    result[f'dataloader_pass_{form}_s'] = round(time.perf_counter() - start, 3)
  start = time.perf_counter()
  export_hf(zoo, os.path.join(workdir, 'hf'))
  result['export_hf_s'] = round(time.perf_counter() - start, 3)
  start = time.perf_counter()
  loaded = datasets.load_dataset(os.path.join(workdir, 'hf'), cache_dir=os.path.join(workdir, 'hf_cache'))
  result['first_load_dataset_s'] = round(time.perf_counter() - start, 3)
  result['loaded_rows'] = sum(d.num_rows for d in loaded.values())
  result['load_average_after'] = os.getloadavg()[0]
  return result


def main(argv=None) -> int:
  p = usage.ArgumentParser(prog='python -m benchmarks.torch_hf', description=__doc__.split('\n')[0])
  p.add_argument('--members', type=int, default=512)
  p.add_argument('--snapshots', type=int, default=3)
  p.add_argument('--workdir', required=True, help='an empty or new directory for the zoo, the export and its cache')
  a = p.parse_args(argv)
  usage.check_ranges(p, a, (('members', dict(low=1)), ('snapshots', dict(low=1))))
  usage.check_out(p, a.workdir, '--workdir')
  if os.path.isdir(a.workdir) and os.listdir(a.workdir):
    p.error(f'--workdir {a.workdir}: exists and is not empty; give a new (or empty) directory')
  os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
  print(json.dumps(measure(a.workdir, a.members, a.snapshots)))
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
