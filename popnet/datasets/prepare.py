"""Prepares a dataset from local files (its original archives) or arrays: reads and checks the sources first,
then writes the splits into a TFDS data dir through one of our builders (popnet/datasets/builders.py), quietly.

TFDS's own output (nested "Generating splits / Shuffling <data_dir>/<name>/incomplete.*" bars, "Downloading and
preparing dataset Unknown size" lines, absl's OpenCV warning) is kept off the terminal; instead one progress bar
per dataset (on a terminal only) and one line when it is written.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import time

import numpy as np

from popnet.datasets import archives


class PrepareError(RuntimeError):
  """`prepare` cannot get the dataset's source data on this machine; the message says what is missing."""


@contextlib.contextmanager
def quiet_tfds():
  """TFDS's progress bars off, its stdout lines dropped and absl at ERROR while inside."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top

  level, bars = logging.get_verbosity(), tqdm_utils._active  # pylint: disable=protected-access
  logging.set_verbosity(logging.ERROR)
  tqdm_utils.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tqdm_utils.display_progress_bar(bars)
    logging.set_verbosity(level)


def write(builder_cls, splits: dict[str, tuple[np.ndarray, np.ndarray]], data_dir: str, what: str) -> str:
  """Writes `splits` ({split: (uint8 images, labels)}) with builder_cls under data_dir; returns the summary line.

  what: where the data came from, for the line (e.g. 'from /data/cifar').
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  name, start = builder_cls.name, time.perf_counter()
  counts = ' + '.join(f'{len(labels):,} {split}' for split, (_, labels) in splits.items())
  bar = tqdm(total=sum(len(labels) for _, labels in splits.values()), desc=f'preparing {name}', unit=' images',
             file=sys.stderr, leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty())
  with quiet_tfds():
    builder = builder_cls(splits=splits, progress=bar.update, data_dir=data_dir, file_format='array_record')
    builder.download_and_prepare()
  bar.close()
  line = f'prepared {name} {what}: {counts} images in {time.perf_counter() - start:.1f} s -> {builder.data_dir}'
  print(line, file=sys.stderr)
  return line


def from_sources(builder_cls, data_dir: str, source: str | None) -> None:
  """Reads and checks builder_cls's source files (in `source`, a folder or one of its files, else the builder's
  default folder), then writes them; nothing is written when a check fails.

  Raises archives.SourceError (bad input: a file missing from `source`, or malformed) or PrepareError (no
  `source` given and the default folder lacks the files).
  """
  if source is not None and not builder_cls.SOURCE_FILES:
    raise archives.SourceError(f'source: {builder_cls.name} is built from a Python package and takes no --from')
  source_dir = builder_cls.default_source_dir() if source is None else os.fspath(source)
  if source_dir is not None and os.path.isfile(source_dir):  # --from one of the files: its folder
    source_dir = os.path.dirname(source_dir)
  missing = builder_cls.missing_sources(source_dir)
  if missing:
    where = f'{", ".join(missing)} not found in {source_dir or "(no source dir)"}; {builder_cls.SOURCE_HELP}'
    raise (archives.SourceError(f'source: {where}') if source is not None else
           PrepareError(f'cannot prepare {builder_cls.name}: {where}'))
  write(builder_cls, builder_cls.read_sources(source_dir), data_dir, f'from {source_dir or "its Python package"}')
