"""Names read from files that build paths: an architecture, a dataset, a weights file, a split. A zoo may come
from anyone (a paper's page, another cluster), so every such name is checked before it names a file, and every
path it builds must stay inside its directory.

    safe_name(value, what, source)            'tiny', 'fashion_mnist', 'mnist5k' ... else ZooError
    inside(root, relative, source)            root/relative, refused if it leaves root (.., absolute, symlink)
    read_regular(path)                        the bytes of a regular file (a FIFO or device is refused, never opened
                                              blocking)
"""
from __future__ import annotations

import os
import re
import stat

from popnet.zoo.schema import ZooError

SAFE_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}')
SAFE_NAME_RULE = ('1 to 128 characters of letters, digits, "_", ".", "+", "-", starting with a letter or digit, '
                  'and no ".."')


def safe_name(value, what: str, source: str) -> str:
  """`value` as a name that may become one path component: no separators, no '..', not absolute, not empty."""
  text = str(value)
  if not SAFE_NAME.fullmatch(text) or '..' in text:
    raise ZooError(f'{source}: {what} {text!r} is not a safe name ({SAFE_NAME_RULE}); a zoo\'s names become file '
                   f'names, so this one is refused')
  return text


def inside(root: str, relative: str, source: str) -> str:
  """root/relative, after checking that it stays inside root: relative is not absolute, has no '..' component,
  and no symlink on the way leads out of root."""
  text = str(relative)
  parts = text.split('/')
  if os.path.isabs(text) or '\\' in text or any(p in ('', '.', '..') for p in parts):
    raise ZooError(f'{source}: path {text!r} leaves {root} (absolute, empty or ".." components); a zoo names its '
                   f'files relative to itself')
  full = os.path.join(root, *parts)
  real_root, real = os.path.realpath(root), os.path.realpath(full)
  if os.path.commonpath([real_root, real]) != real_root:
    raise ZooError(f'{source}: {full} leads out of {root} (to {real}) through a symlink; refused')
  return full


def check_regular(path: str) -> None:
  """ZooError unless `path` is a regular file (a FIFO would hang a reader, a device would never end)."""
  try:
    mode = os.stat(path).st_mode
  except OSError as e:
    raise ZooError(f'{path}: cannot be read ({e.strerror or e})') from e
  if not stat.S_ISREG(mode):
    raise ZooError(f'{path}: is not a regular file (a FIFO, device or directory); refused')


def read_regular(path: str) -> bytes:
  """The bytes of the regular file `path`, opened without blocking, so a FIFO in its place is refused."""
  try:
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0))
  except OSError as e:
    raise ZooError(f'{path}: cannot be read ({e.strerror or e})') from e
  try:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
      raise ZooError(f'{path}: is not a regular file (a FIFO, device or directory); refused')
    with os.fdopen(fd, 'rb', closefd=False) as f:
      return f.read()
  finally:
    os.close(fd)
