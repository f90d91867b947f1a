"""The zoo's seal: a sha256 of every file that says what a row means, recorded in the manifest, and the manifest's
own sha256, so that an edited hyper-parameter, metric, layout, architecture or evaluation subset is damage, not
a new truth.

    manifest['seal'] = {'algorithm': 'sha256',
                        'files':    {'metadata.csv': <hex>, 'layouts/<arch>.json': <hex>,
                                     'evaluation/<dataset>.npz': <hex>, ...},
                        'pending':  {<file>: <hex of its previous content, or None>},   # a write in flight
                        'manifest': <hex of the canonical JSON of the manifest without this field>}

The weights themselves are covered row by row by metadata's `weights_crc32` (mandatory in a sealed zoo), and
metadata is covered by its digest, so the manifest's digest covers the whole zoo: it is the one value to
publish with a zoo (`python -m popnet.zoo verify DIR` prints it).

Writes stay atomic against kills: the writer records the new digest, with the file's previous digest as
`pending`, in the manifest (one atomic write) before it replaces the file, so a kill between the two leaves a
zoo whose file holds its previous or its new content, both accepted; the next manifest write drops `pending`.
The manifest seals itself (its digest is inside it), so no second file can fall out of step with it.

A zoo without a seal was written by popnet before seals existed (format_version 1): it opens, but
`verify` says it is unsealed (exit 3) until a user who has checked it runs `python -m popnet.zoo sign DIR`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from popnet.zoo.names import read_regular, safe_name
from popnet.zoo.schema import LAYOUTS_DIR, MANIFEST_FILE, METADATA_FILE, ZooError, layout_file

SEAL_KEY = 'seal'
EVALUATION_DIR = 'evaluation'
_NAME = r'[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}'
SEALED_FILE = re.compile(rf'{re.escape(METADATA_FILE)}|{LAYOUTS_DIR}/{_NAME}\.json|(\.\./)?{EVALUATION_DIR}/{_NAME}\.npz')
_HEX = re.compile(r'[0-9a-f]{64}')
SIGN_COMMAND = 'python -m popnet.zoo sign'


class DamagedZoo(ZooError):
  """A zoo whose files do not match their seal or whose rows do not match their checksums: `problems` holds one
  line per damaged file or row; the message is the first (and how many more)."""

  def __init__(self, problems: list[str]):
    more = f' (and {len(problems) - 1} more damaged files or rows: python -m popnet.zoo verify lists them)' \
        if len(problems) > 1 else ''
    super().__init__(problems[0] + more)
    self.problems = list(problems)


def digest(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def canonical(manifest: dict[str, Any]) -> dict[str, Any]:
  """The manifest as JSON gives it back (numbers, strings, lists), whatever Python types it was built from."""
  return json.loads(json.dumps(manifest, default=str))


def manifest_digest(manifest: dict[str, Any]) -> str:
  """sha256 of the manifest's canonical JSON (sorted keys, no spaces) without seal['manifest']."""
  body = dict(manifest)
  if isinstance(body.get(SEAL_KEY), dict):
    body[SEAL_KEY] = {k: v for k, v in body[SEAL_KEY].items() if k != 'manifest'}
  return digest(json.dumps(body, sort_keys=True, separators=(',', ':'), default=str).encode())


def sealed(manifest: dict[str, Any], files: dict[str, str], pending: dict[str, str | None]) -> dict[str, Any]:
  """The manifest (canonical JSON values) with its seal over `files` (relative path -> sha256)."""
  out = canonical({k: v for k, v in manifest.items() if k != SEAL_KEY})
  out[SEAL_KEY] = {'algorithm': 'sha256', 'files': dict(sorted(files.items())), 'pending': dict(sorted(pending.items()))}
  out[SEAL_KEY]['manifest'] = manifest_digest(out)
  return out


def is_sealed(manifest: dict[str, Any]) -> bool:
  return SEAL_KEY in manifest


def zoo_digest(manifest: dict[str, Any]) -> str:
  return str(manifest.get(SEAL_KEY, {}).get('manifest', ''))


def problems(path: str, manifest: dict[str, Any], contents: dict[str, bytes], on_disk: set[str]) -> list[str]:
  """One line per file of the zoo at `path` that does not match its seal: the manifest itself, every file the
  seal lists, and every file the zoo has (`on_disk`: metadata, layouts, evaluation subsets) that it does not list.
  contents: bytes already read (relative path -> bytes), hashed as read so nothing changes in between."""
  seal = manifest.get(SEAL_KEY)
  where = os.path.join(path, MANIFEST_FILE)
  if not isinstance(seal, dict) or not isinstance(seal.get('files'), dict) or \
      not isinstance(seal.get('pending', {}), dict):
    return [f'{where}: its seal is malformed (edited or damaged)']
  out = []
  if seal.get('manifest') != manifest_digest(manifest):
    out.append(f'{where}: edited or damaged after the zoo was sealed (its sha256 no longer matches the one it '
               f'recorded); every field of a manifest is part of what the rows mean')
  files, pending = seal['files'], seal.get('pending', {})
  for relative in sorted(set(files) | set(on_disk)):
    out += _file_problems(path, relative, files, pending, contents)
  return out


def _file_problems(path, relative, files, pending, contents) -> list[str]:
  full = os.path.normpath(os.path.join(path, relative))
  if not isinstance(relative, str) or not SEALED_FILE.fullmatch(relative):
    return [f'{os.path.join(path, MANIFEST_FILE)}: its seal lists {relative!r}, which is not a file of a zoo']
  if relative not in files:
    return [f'{full}: not sealed (the manifest records no digest for it): added or renamed after the zoo was '
            f'sealed; if you made it, seal it: {SIGN_COMMAND} {path}']
  recorded, previous = files[relative], pending.get(relative, '')
  if not isinstance(recorded, str) or not _HEX.fullmatch(recorded):
    return [f'{os.path.join(path, MANIFEST_FILE)}: the seal of {relative} is not a sha256']
  if relative in contents:
    data = contents[relative]
  elif os.path.lexists(full):
    try:
      data = read_regular(full)
    except ZooError as e:
      return [str(e)]
  else:
    return [] if relative in pending and previous is None else [f'{full}: missing (the zoo\'s seal lists it)']
  actual = digest(data)
  if actual not in (recorded, previous):
    return [f'{full}: edited or damaged after the zoo was sealed (sha256 {actual[:16]}..., sealed '
            f'{recorded[:16]}...)']
  return []


def files_on_disk(path: str, architectures) -> set[str]:
  """The sealable files a zoo directory has: metadata.csv, the layout of every architecture the manifest names,
  every evaluation subset."""
  out = {METADATA_FILE} if os.path.lexists(os.path.join(path, METADATA_FILE)) else set()
  out |= {f'{LAYOUTS_DIR}/{name}.json' for name in architectures}
  return out | evaluation_files(path)


def evaluation_files(path: str, prefix: str = '') -> set[str]:
  """evaluation/<name> of every evaluation subset in `path` (temp files of interrupted writes aside)."""
  directory = os.path.join(path, EVALUATION_DIR)
  if not os.path.isdir(directory):
    return set()
  return {f'{prefix}{EVALUATION_DIR}/{name}' for name in os.listdir(directory) if '.tmp-' not in name}


# --- reading a zoo's sealed files -----------------------------------------------------------------------------
_READ_ATTEMPTS = 20


def read_zoo_files(path: str, check: bool = True) -> tuple[dict[str, Any], dict[str, bytes], dict[str, str]]:
  """(manifest, bytes of metadata.csv and of each layout, sha256 of every sealed file as it is now) of one zoo
  directory, each file checked against the seal (DamagedZoo naming every one that does not match, unless
  check=False). A writer replacing files meanwhile is not damage: when the manifest changed, all is read again."""
  manifest_file = os.path.join(path, MANIFEST_FILE)
  if not os.path.lexists(manifest_file):
    raise ZooError(f'{manifest_file}: not found; is {path!r} a popnet zoo (or a workdir holding zoo/)?')
  for _ in range(_READ_ATTEMPTS):
    raw = read_regular(manifest_file)
    manifest, contents = parse_manifest(manifest_file, raw), {}
    names = [safe_name(n, 'architecture', manifest_file) for n in manifest.get('architectures', {})]
    for relative in [METADATA_FILE] + [layout_file(n) for n in names]:
      if os.path.lexists(os.path.join(path, relative)):
        contents[relative] = read_regular(os.path.join(path, relative))
    damage = _damage(path, manifest, contents, names) if check else []
    if not damage or read_regular(manifest_file) == raw:
      break
  if damage:
    raise DamagedZoo(damage)
  return manifest, contents, _current_digests(path, manifest, contents)


def _damage(path: str, manifest: dict[str, Any], contents: dict[str, bytes], names: list[str]) -> list[str]:
  if is_sealed(manifest):
    return problems(path, manifest, contents, files_on_disk(path, names))
  if manifest.get('format_version', 1) != 1:  # only zoos of popnet before seals lack one
    return [f'{os.path.join(path, MANIFEST_FILE)}: format_version {manifest.get("format_version")!r} but no seal: '
            f'the seal was removed']
  return []


def _current_digests(path: str, manifest: dict[str, Any], contents: dict[str, bytes]) -> dict[str, str]:
  """sha256 of every file the seal lists that exists, as it is now (a write in flight: its old or new content)."""
  out = {k: digest(v) for k, v in contents.items()}
  for relative in manifest.get(SEAL_KEY, {}).get('files', {}):
    full = os.path.join(path, relative)
    if relative not in out and SEALED_FILE.fullmatch(relative) and os.path.lexists(full):
      out[relative] = digest(read_regular(full))
  return out


def parse_manifest(manifest_file: str, raw: bytes) -> dict[str, Any]:
  try:
    manifest = json.loads(raw.decode('utf-8'))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ZooError(f'{manifest_file}: corrupted JSON ({e})') from e
  if not isinstance(manifest, dict) or not isinstance(manifest.get('architectures', {}), dict):
    raise ZooError(f'{manifest_file}: not a zoo manifest (a JSON object with an "architectures" object)')
  return manifest
