"""Legitimate edits of a zoo: sealing one that its user has checked, and adding a column of one's own.

    sign(path)                       seals a zoo as it is now: `python -m popnet.zoo sign DIR`
    add_column(path, name, values)   adds a metadata column and seals the result (Zoo.add_column)

Sealing is a user's statement that the zoo is what it should be: it is for zoos written before seals existed
and for edits the user made on purpose. It still refuses what no one can vouch for: a structure that does not
hold (row mapping, layouts against their architecture, file shapes) and rows that no longer match the
checksum they carry. Rows without a checksum (zoos older than checksums, imports) get one over their bytes as
they are now; the line printed says how many.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from popnet.files import atomic_write_bytes
from popnet.zoo import seal
from popnet.zoo.names import read_regular
from popnet.zoo.schema import CHECKSUM_COLUMN, FORMAT_VERSION, MANIFEST_FILE, METADATA_FILE, ZooError, row_checksums


def sign(path: str) -> dict:
  """Seals the zoo (or every part of a multi-process zoo) at `path`; {'rows', 'checksums_added', 'digests'}."""
  from popnet.zoo.reader import Zoo, zoo_directory
  path = zoo_directory(path)
  parts = sorted(p for p in os.listdir(path) if p.startswith('part-'))
  if parts and not os.path.lexists(os.path.join(path, MANIFEST_FILE)):
    results = [sign(os.path.join(path, part)) for part in parts]
    _seal_shared_evaluation(path, parts)
    Zoo.open(path)
    return {'rows': sum(r['rows'] for r in results), 'checksums_added': sum(r['checksums_added'] for r in results),
            'digests': [d for r in results for d in r['digests']]}
  zoo = Zoo.open(path, check_seal=False)
  added = _fill_checksums(zoo)
  _seal_as_is(path, zoo.metadata if added else None)
  sealed = Zoo.open(path)
  return {'rows': len(sealed), 'checksums_added': added, 'digests': [seal.zoo_digest(sealed.manifest)]}


def add_column(path: str, name: str, values) -> None:
  """Adds the metadata column `name` (one value per row, in metadata's order) to a sealed, intact zoo and seals
  the result. Existing columns are what the trainer recorded: they are refused."""
  from popnet.zoo.reader import Zoo
  zoo = Zoo.open(path)
  if 'parts' in zoo.manifest:
    raise ZooError(f'{zoo.path}: a multi-process zoo; add the column to each part (Zoo.open(part).add_column)')
  if name in zoo.metadata:
    raise ZooError(f'{zoo.path}: {name!r} is already a metadata column; add_column adds a new one')
  if not isinstance(name, str) or not name or name != name.strip() or any(c in name for c in ',"\n\r'):
    raise ZooError(f'{name!r}: a column name must be non-empty text without commas, quotes or line breaks')
  values = list(values)
  if len(values) != len(zoo.metadata):
    raise ZooError(f'{name}: {len(values)} values for the {len(zoo.metadata)} rows of {zoo.path}')
  zoo.verify()  # the weights too: sealing blesses what is there
  _seal_as_is(zoo.path, zoo.metadata.assign(**{name: values}))


def _fill_checksums(zoo) -> int:
  """Gives every row without a checksum the crc32 of its bytes as they are now; returns how many."""
  if CHECKSUM_COLUMN not in zoo.metadata:
    zoo.metadata[CHECKSUM_COLUMN] = pd.NA
  zoo.verify()  # rows that carry a checksum must match it
  missing = zoo.metadata[zoo.metadata[CHECKSUM_COLUMN].isna()]
  for file, group in missing.groupby('weights_file', sort=False):
    rows = group['weights_row'].to_numpy(np.int64)
    zoo.metadata.loc[group.index, CHECKSUM_COLUMN] = row_checksums(zoo._memmap(file)[rows])
  if len(zoo.metadata):
    zoo.metadata[CHECKSUM_COLUMN] = zoo.metadata[CHECKSUM_COLUMN].astype(np.int64)
  return len(missing)


def _seal_as_is(path: str, metadata: pd.DataFrame | None) -> None:
  """Writes `metadata` (unless None), then the manifest sealed over the zoo's files as they are now."""
  manifest_file = os.path.join(path, MANIFEST_FILE)
  manifest, contents, _ = seal.read_zoo_files(path, check=False)
  if metadata is not None:
    contents[METADATA_FILE] = metadata.to_csv(index=False).encode()
    atomic_write_bytes(os.path.join(path, METADATA_FILE), contents[METADATA_FILE])
  names = list(manifest.get('architectures', {}))
  files = {relative: seal.digest(contents[relative]) if relative in contents else
           seal.digest(read_regular(os.path.join(path, relative)))
           for relative in seal.files_on_disk(path, names) | _listed_shared(manifest, path)}
  manifest = dict(manifest, format_version=FORMAT_VERSION)
  atomic_write_bytes(manifest_file, json.dumps(seal.sealed(manifest, files, {}), indent=1).encode())


def _listed_shared(manifest: dict, path: str) -> set[str]:
  """The shared evaluation subsets (../evaluation/) a part's seal lists and that still exist."""
  listed = manifest.get(seal.SEAL_KEY, {}).get('files', {})
  return {k for k in listed if k.startswith('../') and seal.SEALED_FILE.fullmatch(k)
          and os.path.lexists(os.path.join(path, k))}


def _seal_shared_evaluation(path: str, parts: list[str]) -> None:
  """The evaluation subsets beside the parts that no part seals are sealed by the first part."""
  listed = set()
  for part in parts:
    manifest, _, _ = seal.read_zoo_files(os.path.join(path, part), check=False)
    listed |= set(manifest.get(seal.SEAL_KEY, {}).get('files', {}))
  unlisted = seal.evaluation_files(path, '../') - listed
  if unlisted:
    first = os.path.join(path, parts[0])
    manifest, _, _ = seal.read_zoo_files(first, check=False)
    files = dict(manifest[seal.SEAL_KEY]['files'])
    files.update({k: seal.digest(read_regular(os.path.join(first, k))) for k in unlisted})
    atomic_write_bytes(os.path.join(first, MANIFEST_FILE), json.dumps(seal.sealed(manifest, files, {}),
                                                                      indent=1).encode())
