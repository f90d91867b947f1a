"""`python -m popnet.zoo merge WORKDIR --out ZOO`: the shards of a sharded workdir as one sealed zoo.

Every check of `Zoo.open(WORKDIR)` (popnet/zoo/sharded.py) and every row's checksum first; then the rows are
copied into new weights files laid out by popnet.train's row rule (rank of the member by member_id within its
architecture * snapshots + snapshot), each copied row's crc32 compared again with the one its shard recorded,
and metadata committed once, sorted as the trainer sorts it. The zoo is built in `ZOO.merging` (locked) and
renamed to ZOO when complete, so ZOO never holds a partial merge; a merge that was killed leaves ZOO.merging,
which the next merge starts afresh. When the members' bits do not depend on their shard (docs/distributed.md),
weights/*.npy and metadata.csv are byte for byte those of the same config trained unsharded.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd

from popnet.zoo import seal
from popnet.zoo.reader import Zoo
from popnet.zoo.schema import CHECKSUM_COLUMN, WEIGHTS_DIR, ZooError, arch_from_json, row_checksums, snapshot_row
from popnet.zoo.sharded import Part, read_parts, summary
from popnet.zoo.writer import ZooWriter

BLOCK = 4096  # rows copied at a time
PER_SHARD_KEYS = ('seal', 'processes', 'timings', 'summary', 'shard', 'host', 'devices', 'machine', 'process_index',
                  'process_count', 'complete', 'format_version', 'architectures', 'input_shape', 'row_rule')


def merge(workdir: str, out: str) -> dict:
  """Writes the merged zoo at `out`; {'rows', 'digest', 'already'} (already: `out` is this merge, nothing done)."""
  parts = read_parts(workdir)
  digests = [seal.zoo_digest(p.manifest) for p in parts]
  if os.path.lexists(out):
    return {'already': True, **_existing(out, digests)}
  for part in parts:
    try:
      Zoo.open(part.path).verify()
    except ZooError as e:
      raise ZooError(f'{part.label}: {e}') from e
  from popnet.workdir import WorkdirLock
  building = out.rstrip(os.sep) + '.merging'
  with WorkdirLock(building):
    for name in os.listdir(building):  # what a killed merge left
      if name != '.lock':
        path = os.path.join(building, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    try:
      rows = _write(parts, building)
    except BaseException:
      shutil.rmtree(building, ignore_errors=True)  # a refused merge leaves nothing behind
      raise
    os.remove(os.path.join(building, '.lock'))
    os.rename(building, out)
  zoo = Zoo.open(out)
  zoo.verify()
  return {'already': False, 'rows': rows, 'digest': seal.zoo_digest(zoo.manifest)}


def _existing(out: str, digests: list[str]) -> dict:
  """`out` when it is the merge of exactly these shards; else a ZooError (merge never writes over anything)."""
  try:
    zoo = Zoo.open(out)
  except ZooError:
    zoo = None
  if zoo is None or [s.get('digest') for s in zoo.manifest.get('shards', [])] != digests:
    raise ZooError(f'{out}: exists and is not the merge of these shards; merge writes a new zoo (give --out a '
                   f'directory that does not exist)')
  return {'rows': len(zoo), 'digest': seal.zoo_digest(zoo.manifest)}


def _write(parts: list[Part], path: str) -> int:
  first = parts[0].manifest
  archs = {name: arch_from_json(spec) for p in parts for name, spec in p.manifest['architectures'].items()}
  snapshots = len(first['snapshot_epochs'])
  table = pd.concat([p.metadata.assign(_part=i) for i, p in enumerate(parts)], ignore_index=True)
  table['_arch'] = table['weights_file'].str.slice(len(WEIGHTS_DIR) + 1, -len('.npy'))
  table['_from'] = table['weights_row']
  rank = table.groupby('_arch')['member_id'].rank(method='dense').astype(np.int64) - 1
  table['weights_row'] = snapshot_row(rank.to_numpy(), table['snapshot'].to_numpy(np.int64), snapshots)
  rows_per_arch = {a: int((table['_arch'] == a).sum()) for a in archs}
  manifest = {k: v for k, v in first.items() if k not in PER_SHARD_KEYS}
  manifest.update(members=sum(int(p.manifest['members']) for p in parts), shards=[summary(p) for p in parts],
                  shard_rule=first['shard']['rule'], code=first['shard']['code'])
  writer = ZooWriter(path, archs, tuple(first['input_shape']), rows_per_arch, manifest, row_rule=True)
  try:
    for (i, file), group in table.groupby(['_part', 'weights_file'], sort=True):
      _copy(parts[i], file, group, writer)
    writer.commit_rows(table.drop(columns=['_part', '_arch', '_from']))
    for relative, data in _evaluation_files(parts[0]).items():
      writer.write_evaluation_bytes(path, os.path.splitext(os.path.basename(relative))[0], data)
    processes = [dict(entry, shard=f'{p.index}/{p.count}') for p in parts for entry in p.manifest.get('processes', [])]
    from popnet.progress import build_totals
    writer.write_manifest(complete=True, processes=processes, summary={'build': build_totals(processes)})
  finally:
    writer.close()
  return len(table)


def _copy(part: Part, file: str, group: pd.DataFrame, writer: ZooWriter) -> None:
  """Copies one shard file's rows into the merged zoo, BLOCK at a time, each checked against its recorded crc32."""
  source = np.load(os.path.join(part.path, file), mmap_mode='r')
  arch = group['_arch'].iloc[0]
  for start in range(0, len(group), BLOCK):
    block = group.iloc[start:start + BLOCK]
    weights = np.asarray(source[block['_from'].to_numpy(np.int64)])
    bad = row_checksums(weights) != block[CHECKSUM_COLUMN].to_numpy(np.int64)
    if bad.any():
      row = block[bad].iloc[0]
      raise ZooError(f'{part.label}: {file} row {int(row._from)} (member {int(row.member_id)} snapshot '
                     f'{int(row.snapshot)}) changed while it was merged; nothing was merged')
    writer.write_rows(arch, block['weights_row'].to_numpy(np.int64), weights)


def _evaluation_files(part: Part) -> dict[str, bytes]:
  """The evaluation subsets every shard recorded (read_parts checked that they are the same), as sealed."""
  from popnet.zoo.names import read_regular
  files = part.manifest.get(seal.SEAL_KEY, {}).get('files', {})
  out = {}
  for relative, digest in files.items():
    if relative.startswith(f'{seal.EVALUATION_DIR}/'):
      data = read_regular(os.path.join(part.path, relative))
      if seal.digest(data) != digest:
        raise ZooError(f'{part.label}: {relative} changed while it was merged; nothing was merged')
      out[relative] = data
  return out
