"""Test helpers that edit a zoo behind popnet's back: recompute its seal as a forger would, or strip it (a zoo
written before seals existed)."""
import json
import os

from popnet.zoo import seal


def forge(path):
  """Recomputes the seal of the zoo at `path` over its files as they are, with none of `sign`'s checks."""
  manifest, contents, _ = seal.read_zoo_files(path, check=False)
  files = {k: seal.digest(contents[k] if k in contents else open(os.path.join(path, k), 'rb').read())
           for k in seal.files_on_disk(path, manifest['architectures'])}
  write_manifest(path, seal.sealed(manifest, files, {}))


def unseal(path):
  """The zoo as popnet wrote it before seals existed: no seal, format_version 1."""
  manifest = read_manifest(path)
  manifest.pop('seal')
  write_manifest(path, dict(manifest, format_version=1))


def read_manifest(path):
  with open(os.path.join(path, 'manifest.json')) as f:
    return json.load(f)


def write_manifest(path, manifest):
  with open(os.path.join(path, 'manifest.json'), 'w') as f:
    json.dump(manifest, f, indent=1)
