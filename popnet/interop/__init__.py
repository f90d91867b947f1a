"""Interchange with the weight-space datasets researchers already hold: the Small CNN Zoo and NWS.

One module per format (`smallcnnzoo` reads, `smallcnnzoo_export` writes, `nws` reads), what they share
(`common`, `layout_csv`, `release`) and the command line (`cli`). docs/interchange.md
documents the formats, the mapping of every column and the loaders the exports were checked against.
"""
from popnet.interop.cli import main
from popnet.interop.common import DEFAULT_BLOCK_BYTES, InteropError
from popnet.interop.layout_csv import (export_layout, is_smallcnnzoo, keras_varname, permutation, read_layout_csv,
                                       smallcnnzoo_name, varnames, write_layout_csv)
from popnet.interop.nws import (NWS_COLUMNS, NWS_INDEX_COLUMNS, NwsNet, discover_nws, import_nws, nws_hparams,
                                nws_part_sizes, nws_to_popnet, read_nws_net)
from popnet.interop.release import (ARCH_SIDECAR, CHECKPOINT, LAYOUT_FILE, METRICS_FILE, OPTIMIZER_STEP,
                                    RELEASE_COLUMNS, WEIGHTS_FILE)
from popnet.interop.smallcnnzoo import SmallCNNZoo, import_smallcnnzoo, open_smallcnnzoo, release_metadata
from popnet.interop.smallcnnzoo_export import export_smallcnnzoo, split_permutation

__all__ = [
    'ARCH_SIDECAR', 'CHECKPOINT', 'DEFAULT_BLOCK_BYTES', 'InteropError', 'LAYOUT_FILE', 'METRICS_FILE',
    'NWS_COLUMNS', 'NWS_INDEX_COLUMNS', 'NwsNet', 'OPTIMIZER_STEP', 'RELEASE_COLUMNS', 'SmallCNNZoo',
    'WEIGHTS_FILE', 'discover_nws', 'export_layout', 'export_smallcnnzoo', 'import_nws', 'import_smallcnnzoo',
    'is_smallcnnzoo', 'keras_varname', 'main', 'nws_hparams', 'nws_part_sizes', 'nws_to_popnet',
    'open_smallcnnzoo', 'permutation', 'read_layout_csv', 'read_nws_net', 'release_metadata',
    'smallcnnzoo_name', 'split_permutation', 'varnames', 'write_layout_csv',
]
