"""The interchange's defaults, in a module that imports nothing, so that `python -m popnet.interop --help` shows
them without loading numpy, pandas or the zoo (popnet/interop/cli.py); the workers import them from here."""

DEFAULT_BLOCK_BYTES = 256 << 20    # weight rows converted per step (export and import)
DEFAULT_SHARD_BYTES = 256 << 20    # an hf export's weights per Parquet shard
DEFAULT_SPLIT_SEED = 0             # the Small CNN Zoo export's split file: seed of its permutation of members
