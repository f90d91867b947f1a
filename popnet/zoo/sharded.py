"""A sharded workdir read as one zoo: <workdir>/shards/shard-<k>-of-<n>/zoo/, each a sealed zoo of its own members
(popnet/shards.py), checked together before anything reads them as one (Zoo.open, `python -m popnet.zoo merge`).

    read_parts(workdir)    every shard's zoo, checked: all n present and complete, each one's seal, layouts, row
                           mapping and checksums present; one config, member table, shard rule and code version;
                           every member in exactly one shard. A ZooError of one line names the shard otherwise.
    combined(parts)        (manifest, metadata, layouts) of the parts as one zoo
    states(workdir)        each shard done / running (its lock holder) / stopped / missing
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pandas as pd

from popnet.zoo import seal
from popnet.zoo.reader import read_part
from popnet.zoo.schema import (MANIFEST_FILE, METADATA_FILE, SHARDS_DIR, ZooError, shard_dirs, shard_name)

RECORD_FIELDS = {'rule': 'by another shard rule', 'member_table': 'from another member table',
                 'members': 'from another member table', 'code': 'by other code (popnet source sha256)'}


@dataclasses.dataclass
class Part:
  index: int
  count: int
  workdir: str               # the shard's workdir, <workdir>/shards/shard-<k>-of-<n>
  manifest: dict[str, Any]
  metadata: pd.DataFrame
  layouts: dict

  @property
  def path(self) -> str:     # its zoo
    return os.path.join(self.workdir, 'zoo')

  @property
  def label(self) -> str:
    return f'shard {self.index}/{self.count} ({self.workdir})'


def split_of(workdir: str) -> int:
  """n of the workdir's k/n shards; ZooError when it has none or mixes splits."""
  found = shard_dirs(workdir)
  counts = sorted({n for _, n in found.values()})
  if not counts:
    raise ZooError(f'{os.path.join(workdir, SHARDS_DIR)}: no shards (python -m popnet.train --shard k/n '
                   f'--workdir {workdir} trains one)')
  if len(counts) > 1:
    names = [next(name for name, (_, n) in found.items() if n == c) for c in counts]
    raise ZooError(f'{os.path.join(workdir, SHARDS_DIR)}: mixes splits into {" and ".join(map(str, counts))} '
                   f'shards ({", ".join(names)}); a workdir holds one split')
  return counts[0]


def read_parts(workdir: str) -> list[Part]:
  count = split_of(workdir)
  parts = [_read_shard(workdir, k, count) for k in range(count)]
  for part in parts[1:]:
    _check_same(parts[0], part)
  _check_exactly_once(parts)
  return parts


def _read_shard(workdir: str, index: int, count: int) -> Part:
  path = os.path.join(workdir, SHARDS_DIR, shard_name(index, count))
  if not os.path.isdir(path):
    raise ZooError(f'shard {index}/{count} is missing: {path} not found; train it: python -m popnet.train '
                   f'--shard {index}/{count} --workdir {workdir} (with the config of the other shards)')
  try:
    manifest, metadata, layouts = read_part(os.path.join(path, 'zoo'))
  except ZooError as e:
    raise ZooError(f'shard {index}/{count}: {e}') from e
  part = Part(index, count, path, manifest, metadata, layouts)
  record = manifest.get('shard') or {}
  if (record.get('index'), record.get('count')) != (index, count):
    held = f'shard {record["index"]}/{record["count"]}' if 'index' in record else 'an unsharded run'
    raise ZooError(f'{part.label}: a duplicate: its zoo holds {held}, not shard {index}/{count} (copied or '
                   f'renamed?); train shard {index}/{count} there afresh')
  if not manifest.get('complete'):
    raise ZooError(f'{part.label}: not complete ({len(metadata)} of {_expected_rows(manifest)} rows, '
                   f'{_activity(path)}); python -m popnet.zoo status {workdir} shows every shard')
  return part


def _expected_rows(manifest: dict[str, Any]) -> int:
  return int(manifest.get('members', 0)) * len(manifest.get('snapshot_epochs', []))


def _activity(path: str) -> str:
  from popnet import workdir as workdir_lib  # light; imported here: popnet.workdir itself imports popnet.zoo
  holder = workdir_lib.lock_holder(path)
  return f'running: {holder}' if holder else 'stopped: rerun its command to resume it'


def _check_same(first: Part, part: Part) -> None:
  """The part trained what the first did: the same config (but runtime-only fields), member table, shard rule,
  code and library versions, and evaluation subsets."""
  from popnet.workdir import RUNTIME_ONLY_FIELDS, differing_fields
  a, b = ({k: v for k, v in p.manifest.get('config', {}).items() if k not in RUNTIME_ONLY_FIELDS} for p in (first, part))
  if differing_fields(a, b):
    raise ZooError(f'{part.label}: trained another config than shard {first.index}/{first.count} (fields that '
                   f'differ: {differing_fields(a, b)}); every shard of a workdir trains one config')
  for field, how in RECORD_FIELDS.items():
    if first.manifest['shard'].get(field) != part.manifest['shard'].get(field):
      raise ZooError(f'{part.label}: built {how} than shard {first.index}/{first.count} '
                     f'({str(part.manifest["shard"].get(field))[:16]} vs {str(first.manifest["shard"].get(field))[:16]}); '
                     f'retrain it with the code of the others')
  if first.manifest.get('versions') != part.manifest.get('versions'):
    fields = differing_fields(first.manifest.get('versions', {}), part.manifest.get('versions', {}))
    raise ZooError(f'{part.label}: built with other library versions than shard {first.index}/{first.count} '
                   f'(differ: {fields}); retrain it with the versions of the others')
  if _evaluation_digests(first) != _evaluation_digests(part):
    raise ZooError(f'{part.label}: recorded other evaluation subsets than shard {first.index}/{first.count}')


def _evaluation_digests(part: Part) -> dict[str, str]:
  files = part.manifest.get(seal.SEAL_KEY, {}).get('files', {})
  return {k: v for k, v in files.items() if k.startswith(f'{seal.EVALUATION_DIR}/')}


def _check_exactly_once(parts: list[Part]) -> None:
  """Every member of the member table in exactly one shard (each shard's zoo is complete: all its snapshots)."""
  owner: dict[int, Part] = {}
  for part in parts:
    for member in sorted(set(part.metadata['member_id'].astype(int))):
      if member in owner:
        raise ZooError(f'{part.label}: member {member} is also in {owner[member].label}: a member trained twice '
                       f'(a duplicated or foreign shard)')
      owner[member] = part
  total = int(parts[0].manifest['shard']['members'])
  missing = sorted(set(range(total)) - set(owner))
  stray = sorted(set(owner) - set(range(total)))
  if missing or stray:
    shown = (f'members {missing[:5]}{"..." if len(missing) > 5 else ""} are in no shard' if missing else
             f'members {stray[:5]} are not in the member table of {total}')
    raise ZooError(f'{os.path.dirname(os.path.dirname(parts[0].workdir))}: {shown}; every member must be in exactly one shard')


def combined(parts: list[Part]) -> tuple[dict[str, Any], pd.DataFrame, dict]:
  """The parts as one zoo: the first shard's manifest with every member and architecture (its seal covers the
  evaluation subsets all shards share), metadata with weights_file paths relative to the workdir."""
  tables = [p.metadata.assign(weights_file=f'{SHARDS_DIR}/{shard_name(p.index, p.count)}/zoo/'
                              + p.metadata['weights_file'].astype(str)) for p in parts]
  manifest = dict(parts[0].manifest, members=sum(int(p.manifest['members']) for p in parts), complete=True,
                  shards=[summary(p) for p in parts],
                  architectures={k: v for p in parts for k, v in p.manifest.get('architectures', {}).items()})
  manifest.pop('shard')
  metadata = pd.concat(tables, ignore_index=True).sort_values(['member_id', 'snapshot'], kind='stable')
  return manifest, metadata.reset_index(drop=True), {k: v for p in parts for k, v in p.layouts.items()}


def summary(part: Part) -> dict[str, Any]:
  """What a merged zoo records of one shard: which, its digest, members and where it ran."""
  m = part.manifest
  return {'shard': f'{part.index}/{part.count}', 'digest': seal.zoo_digest(m), 'members': m.get('members'),
          **{k: m[k] for k in ('host', 'backend', 'devices', 'machine') if k in m}}


# --- status ----------------------------------------------------------------------------------------------------------
def states(workdir: str) -> list[dict[str, Any]]:
  """One entry per shard: {'shard', 'state' (done, running, stopped, missing), 'rows', 'expected', 'detail'}."""
  from popnet import workdir as workdir_lib
  count, out = split_of(workdir), []
  for k in range(count):
    path = os.path.join(workdir, SHARDS_DIR, shard_name(k, count))
    entry = {'shard': f'{k}/{count}', 'path': path, 'rows': 0, 'expected': None, 'detail': ''}
    if not os.path.isdir(path):
      out.append(dict(entry, state='missing', detail=f'python -m popnet.train --shard {k}/{count} --workdir '
                                                     f'{workdir} (the config of the others)'))
      continue
    manifest, rows = _light_read(os.path.join(path, 'zoo'))
    holder = workdir_lib.lock_holder(path)
    entry.update(rows=rows, expected=_expected_rows(manifest) if manifest else None)
    if holder:
      out.append(dict(entry, state='running', detail=holder))
    elif manifest.get('complete'):
      out.append(dict(entry, state='done'))
    else:
      out.append(dict(entry, state='stopped', detail='rerun its command to resume it'))
  return out


def _light_read(zoo: str) -> tuple[dict[str, Any], int]:
  """(manifest, committed rows) of a zoo being written, read without checking (status only)."""
  try:
    with open(os.path.join(zoo, MANIFEST_FILE)) as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return {}, 0
  try:
    with open(os.path.join(zoo, METADATA_FILE), 'rb') as f:
      return manifest, max(sum(1 for _ in f) - 1, 0)
  except OSError:
    return manifest, 0
