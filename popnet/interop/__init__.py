"""Interchange with the weight-space datasets researchers already hold: the Small CNN Zoo, NWS and the INR data
sets of DWS and NFN (.pth trees, docs/inr.md); and publishing a zoo as a Hugging Face dataset.

One module per format (`smallcnnzoo` reads, `smallcnnzoo_export` writes, `nws` reads, `inr_export` / `inr_import`
write and read the DWS and NFN trees, `inr_trees` names their files, `inr_state_dict` converts one SIREN, `hf`
writes Parquet and `hf_card` its dataset card), what they share
(`common`, `layout_csv`, `release`, `defaults`) and the command line (`cli`). README "Interchange: Small CNN Zoo
and NWS" documents the formats, the mapping of every column and the loaders the exports were checked against.
The names below are imported on first use, so `import popnet.interop` (and the command line's --help) stays light.
"""
import importlib

_HOMES = {  # module -> the names it contributes to the package
    'cli': ('main',),
    'common': ('DEFAULT_BLOCK_BYTES', 'InteropError'),
    'inr_export': ('export_inr',),
    'inr_import': ('import_inr',),
    'hf': ('export_hf', 'member_splits'),
    'layout_csv': ('export_layout', 'is_smallcnnzoo', 'keras_varname', 'permutation', 'read_layout_csv',
                   'smallcnnzoo_name', 'varnames', 'write_layout_csv'),
    'nws': ('NWS_COLUMNS', 'NWS_INDEX_COLUMNS', 'NwsNet', 'discover_nws', 'import_nws', 'nws_hparams',
            'nws_part_sizes', 'nws_to_popnet', 'read_nws_net'),
    'release': ('ARCH_SIDECAR', 'CHECKPOINT', 'LAYOUT_FILE', 'METRICS_FILE', 'OPTIMIZER_STEP', 'RELEASE_COLUMNS',
                'WEIGHTS_FILE'),
    'smallcnnzoo': ('SmallCNNZoo', 'import_smallcnnzoo', 'open_smallcnnzoo', 'release_metadata'),
    'smallcnnzoo_export': ('export_smallcnnzoo', 'split_permutation'),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME, key=str.lower)


def __getattr__(name):
  if name in _HOME:
    return getattr(importlib.import_module(f'{__name__}.{_HOME[name]}'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(set(globals()) | set(_HOME))
