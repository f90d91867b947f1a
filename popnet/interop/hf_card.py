"""The dataset card (README.md) of an `hf` export: the YAML header the Hugging Face `datasets` library reads
(configs with their data_files per split, dataset_info with features and split sizes, license, tags) and a body
that says what a row is, how the zoo was built (command, config, machine, versions) and how to cite it."""
from __future__ import annotations

import json
import re
from typing import Any

from popnet.interop.common import InteropError, json_scalar

LICENSE = re.compile(r'^[a-z0-9][a-z0-9.+-]{0,63}$')  # a Hub license id: apache-2.0, cc-by-4.0, mit, other, unknown
ARROW_DTYPES = {'int8': 'int8', 'int16': 'int16', 'int32': 'int32', 'int64': 'int64', 'uint8': 'uint8',
                'uint16': 'uint16', 'uint32': 'uint32', 'uint64': 'uint64', 'halffloat': 'float16',
                'float': 'float32', 'double': 'float64', 'bool': 'bool', 'string': 'string', 'large_string': 'string'}
POPNET_BIBTEX = """@software{popnet,
  title = {popnet: train populations of small CNNs at once with JAX and write zoos of their weights},
  author = {{The popnet authors}},%s
  license = {Apache-2.0}
}"""


def check_license(license: str) -> None:
  if not isinstance(license, str) or not LICENSE.match(license):
    raise InteropError(f'--license: {license!r} is not a Hugging Face license id (lower case, e.g. apache-2.0, '
                       f'cc-by-4.0, mit, other, unknown)')


def features(schema) -> list[dict[str, Any]]:
  """dataset_info features of an Arrow schema (the `weights` list column first), as datasets writes them."""
  out = [{'name': 'weights', 'list': 'float32'}]
  for field in schema:
    dtype = ARROW_DTYPES.get(str(field.type))
    if dtype is None:
      raise InteropError(f'metadata column {field.name!r}: Arrow type {field.type} has no datasets dtype here; '
                         f'allowed: {sorted(set(ARROW_DTYPES.values()))}')
    out.append({'name': field.name, 'dtype': dtype})
  return out


def header(configs: list[dict[str, Any]], license: str) -> dict[str, Any]:
  return {
      'license': license,
      'tags': ['popnet', 'model-zoo', 'neural-network-weights', 'weight-space-learning'],
      'configs': [{'config_name': c['name'], **({'default': True} if i == 0 else {}),
                   'data_files': [{'split': s, 'path': f'data/{c["name"]}/{s}-*.parquet'} for s in c['splits']]}
                  for i, c in enumerate(configs)],
      'dataset_info': [{'config_name': c['name'], 'features': features(c['schema']),
                        'splits': [{'name': s, **n} for s, n in c['splits'].items()]}
                       for c in configs],
  }


def to_yaml(value, indent: int = 0) -> str:
  """Block-style YAML of dicts, lists and scalars; strings JSON-quoted (valid YAML double-quoted scalars)."""
  pad = ' ' * indent
  if isinstance(value, dict):
    return ''.join(f'{pad}{k}:' + (f'\n{to_yaml(v, indent + 2)}' if isinstance(v, (dict, list)) and v else
                                   f' {_scalar(v)}\n') for k, v in value.items())
  if isinstance(value, list):
    lines = []
    for item in value:
      text = to_yaml(item, indent + 2) if isinstance(item, (dict, list)) else f'{pad}  {_scalar(item)}\n'
      lines.append(f'{pad}- {text[indent + 2:]}')
    return ''.join(lines)
  return f'{pad}{_scalar(value)}\n'


def _scalar(v) -> str:
  if isinstance(v, (dict, list)):
    return '{}' if isinstance(v, dict) else '[]'
  return json.dumps(v, default=json_scalar, ensure_ascii=True)


def _build(m: dict[str, Any]) -> list[str]:
  """The build section: the command (or the import), the machine and the versions the manifest records."""
  if 'config' in m:
    how = ['```', 'python -m popnet.train --config CONFIG --workdir WORKDIR', '```',
           '(`CONFIG` the config below, as the zoo\'s manifest records it.)\n', '<details><summary>config</summary>\n',
           '```json', json.dumps(m['config'], indent=1, default=json_scalar), '```', '</details>\n']
  elif 'imported_from' in m:
    how = [f'Imported by popnet from other files: `{json.dumps(m["imported_from"], default=json_scalar)}`.\n']
  else:
    how = ['The manifest records neither the training config nor an import.\n']
  recorded = {k: m[k] for k in ('machine', 'backend', 'devices', 'host', 'versions') if k in m}
  return how + [f'Machine and versions (the manifest\'s record): `{json.dumps(recorded, default=json_scalar)}`'
                if recorded else 'Machine and versions: not recorded in the manifest.', '']


def _bibtex(m: dict[str, Any]) -> str:
  version = m.get('versions', {}).get('popnet')
  return POPNET_BIBTEX % (f'\n  version = {{{version}}},' if version else '')


def _split_sizes(config: dict[str, Any]) -> str:
  return ', '.join(f'{split} {n["num_examples"]}' for split, n in config['splits'].items())


def card(zoo, configs: list[dict[str, Any]], record: dict[str, Any], license: str) -> str:
  m = zoo.manifest
  names = sorted(set(zoo.metadata['dataset'].astype(str))) if 'dataset' in zoo.metadata else []
  dataset = ', '.join(names) or 'the dataset the config below names'
  lines = [f'---\n{to_yaml(header(configs, license))}---\n', f'# popnet zoo {record["source_zoo_digest"] or ""}\n',
           f'{sum(c["members"] for c in configs)} networks trained together by popnet, one row per snapshot. '
           f'Source zoo digest: `{record["source_zoo_digest"]}` (`python -m popnet.zoo verify` prints it).\n',
           '## Configurations\n', '| config | rows | members | values per row | splits |', '|---|---|---|---|---|']
  lines += [f'| `{c["name"]}` | {c["rows"]} | {c["members"]} | {c["values"]} | '
            f'{_split_sizes(c)} |' for c in configs]
  lines += ['', f'Splits: {record["split_rule"]}.\n', '## Columns\n',
            '`weights`: the network\'s flattened tensors in the order of `layouts/<config>.json` (collection, layer, '
            'name, shape, start, end), popnet\'s shapes: convolution kernels HWIO, dense kernels [in, out]; '
            '`popnet.torch_layout.state_dict` (numpy only) gives PyTorch\'s names and shapes, with the architecture '
            'and input shape of `popnet_export.json`. `weights_crc32`: zlib.crc32 of the row\'s float32 bytes. '
            'The other columns are the zoo\'s metadata (docs/zoo-format.md of popnet).\n',
            '## How it was built\n', *_build(m), '## License\n',
            f'`{license}` (the exporter\'s choice: `--license`). The networks were trained on {dataset}; its '
            f'license applies too.\n', '## Citation\n', f'Cite popnet and the data the networks were trained on '
            f'({dataset}):\n', '```bibtex', _bibtex(m), '```', '']
  return '\n'.join(lines)
