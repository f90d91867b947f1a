"""The zoo on disk: flattened weights as .npy files plus a row-aligned metadata table, and everything that
reads, writes and checks them.

    popnet.zoo.schema        file names, parts, the row rule, metadata columns, npy headers, atomic writes
    popnet.zoo.records       the metadata rows of one snapshot (snapshot_records)
    popnet.zoo.storage       a preallocated weights file written with regular file I/O
    popnet.zoo.writer        ZooWriter: create / resume a zoo, commit snapshots, the manifest
    popnet.zoo.reader        Zoo: open (cheap checks) and verify (every checksum)
    popnet.zoo.integrity     the row-mapping rule and checksum comparison both of them use
    popnet.zoo.seal          the sha256 of every file that says what a row means, recorded in the manifest
    popnet.zoo.signing       legitimate edits: seal a checked zoo (sign), add a column of one's own
    popnet.zoo.names         names read from files (architecture, dataset, weights file) before they build paths
    popnet.zoo.networks      select rows, run their networks on images, the recorded evaluation subsets
    python -m popnet.zoo     verify DIR; sign DIR; export / import (popnet.interop)
"""
from popnet.zoo.networks import read_evaluation_sets, write_evaluation_sets
from popnet.zoo.reader import Zoo
from popnet.zoo.records import snapshot_records
from popnet.zoo.schema import (CHECKSUM_COLUMN, EVAL_SEGMENTS, FORMAT_VERSION, LAYOUTS_DIR, MANIFEST_FILE,
                               METADATA_FILE, METRIC_COLUMNS, ROW_RULE, WEIGHTS_DIR, WEIGHTS_DTYPE, ZooError,
                               arch_from_json, arch_to_json, atomic_write_bytes, atomic_write_text, layout_file,
                               npy_header, part_name, read_metadata, read_npy_header, row_checksums, snapshot_row,
                               weights_file)
from popnet.zoo.storage import WeightsFile
from popnet.zoo.writer import RUN_RECORD_KEYS, ZooWriter

__all__ = ['CHECKSUM_COLUMN', 'EVAL_SEGMENTS', 'FORMAT_VERSION', 'LAYOUTS_DIR', 'MANIFEST_FILE', 'METADATA_FILE',
           'METRIC_COLUMNS', 'ROW_RULE', 'RUN_RECORD_KEYS', 'WEIGHTS_DIR', 'WEIGHTS_DTYPE', 'WeightsFile', 'Zoo',
           'ZooError', 'ZooWriter', 'arch_from_json', 'arch_to_json', 'atomic_write_bytes', 'atomic_write_text',
           'layout_file', 'npy_header', 'part_name', 'read_evaluation_sets', 'read_metadata', 'read_npy_header',
           'row_checksums', 'write_evaluation_sets',
           'snapshot_records', 'snapshot_row', 'weights_file']
