"""README.md and docs/*.md as written.

Every shell command in a ```bash fence either runs here, verbatim, or its fence is marked `<!-- slow: reason -->`
on the line right above it (comment lines may stack there, e.g. the README's `<!-- test-command -->`). An
unmarked fence may hold only commands this test knows to be quick (QUICK below); anything else fails the test,
so no command is skipped silently. The quick fences run in one temporary directory, with this checkout
importable, `python` being this interpreter, an empty TFDS data dir, and `runs/default` a small zoo in the format
the default run writes (made by `meta.synthetic`, so the commands that read the default run's zoo have one).
Also: the README stays a front door (at most 12,000 bytes), keeps the line `.ci/run` reads as its test command,
and links every docs/ file; every relative link in README.md and docs/ resolves, anchors included.
"""
import dataclasses
import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_LIMIT = 12_000
FENCE_SECONDS = 120

# A command (each part of a `&&`/`;`/`|` chain) is quick when it matches one of these.
QUICK = (
  r'python -m popnet\.train( .*)? --print_config$',  # prints the resolved config, trains nothing
  r'python -m popnet\.train( .*)? --help$',
  r'python -m popnet\.train( .*)? --config\.plan_only=True( .*)?$',  # prints the plan, reads and writes nothing
  r'python -m popnet\.data list$',
  r'python -m popnet\.data prepare digits$',  # scikit-learn's 8x8 digits, offline, seconds
  r'python -m popnet\.zoo verify \S+$',
  r'python -m popnet\.interop (export|import) --format smallcnnzoo --(zoo|src) (runs/default|export/) .*$',
  r'python -m popnet\.zoo export --format hf --zoo runs/default .*$',  # Parquet + card of the small zoo, seconds
  r'python -m meta\.synthetic .*$',  # writes a synthetic zoo, trains nothing
  r'python -m meta\.train --zoo zoos/synthetic .*--model statnn_gbt( .*)?$',  # tensor statistics + boosted trees
)
# Links to files that other branches write; each must go from here once its file exists.
PENDING: dict[str, str] = {}
SLOW_MARKER = re.compile(r'<!-- slow: (\S.*?) -->$')
COMMENT_LINE = re.compile(r'<!--.*-->$')
BASH_FENCE = re.compile(r'^```bash[ \t]*\n(.*?)^```[ \t]*$', re.M | re.S)
ANY_FENCE = re.compile(r'^```.*?^```[ \t]*$', re.M | re.S)
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def documents() -> list[str]:
  return ['README.md'] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))


def read(path: str) -> str:
  with open(os.path.join(ROOT, path), encoding='utf-8') as f:
    return f.read()


@dataclasses.dataclass(frozen=True)
class Fence:
  path: str
  line: int
  text: str
  slow_reason: str | None

  @property
  def where(self) -> str:
    return f'{self.path}:{self.line}'


def markers_above(text: str, start: int) -> list[str]:
  """The HTML comment lines directly above the fence that starts at `start` (no blank line between)."""
  out = []
  for line in reversed(text[:start].split('\n')[:-1]):
    if not COMMENT_LINE.match(line.strip()):
      break
    out.append(line.strip())
  return out


def fences_of(path: str) -> list[Fence]:
  text = read(path)
  out = []
  for match in BASH_FENCE.finditer(text):
    reasons = [m.group(1) for m in map(SLOW_MARKER.match, markers_above(text, match.start())) if m]
    out.append(Fence(path, text.count('\n', 0, match.start()) + 1, match.group(1), reasons[0] if reasons else None))
  return out


def all_fences() -> list[Fence]:
  return [fence for path in documents() for fence in fences_of(path)]


def commands(fence_text: str) -> list[str]:
  """Each command of a fence: continuation lines joined, comments dropped, chains split into their parts."""
  out = []
  for line in fence_text.replace('\\\n', ' ').split('\n'):
    line = re.sub(r'\s+#.*$', '', line).strip()
    if line and not line.startswith('#'):
      out.extend(part.strip() for part in re.split(r'&&|\|\||;|\|', line) if part.strip())
  return [re.sub(r'\s+', ' ', c) for c in out]


def is_quick(command: str) -> bool:
  return any(re.fullmatch(pattern, command) for pattern in QUICK)


QUICK_FENCES = [f for f in all_fences() if f.slow_reason is None]


def test_every_command_is_quick_or_marked_slow():
  unclassified = [f'{f.where}: `{c}`' for f in QUICK_FENCES for c in commands(f.text) if not is_quick(c)]
  assert not unclassified, ('not a known quick command (QUICK in tests/test_docs.py) and its fence is not marked: '
                            'put `<!-- slow: reason -->` right above the fence, or make it quick:\n'
                            + '\n'.join(unclassified))


def test_slow_fences_hold_a_slow_command():
  over_marked = [f.where for f in all_fences()
                 if f.slow_reason is not None and all(is_quick(c) for c in commands(f.text))]
  assert not over_marked, f'marked slow but every command is quick (remove the marker so it runs): {over_marked}'


def test_the_docs_have_commands_to_run():
  assert len(QUICK_FENCES) >= 5, [f.where for f in QUICK_FENCES]
  assert any(f.slow_reason for f in fences_of('README.md'))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A directory like a user's after set-up: `python` on PATH, popnet importable, a zoo in runs/default."""
  work = tmp_path_factory.mktemp('docs')
  bin_dir = work / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'python').write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
  (bin_dir / 'python').chmod(0o755)
  env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}',
             PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH')) if p),
             TFDS_DATA_DIR=str(work / 'tfds'))
  made = subprocess.run([sys.executable, '-m', 'meta.synthetic', '--out', 'runs/default', '--members', '8',
                         '--snapshots', '3'], cwd=work, env=env, capture_output=True, text=True, timeout=FENCE_SECONDS)
  assert made.returncode == 0, made.stderr[-2000:]
  return work, env


@pytest.mark.parametrize('fence', QUICK_FENCES, ids=lambda f: f.where)
def test_quick_commands_run_as_written(fence, workdir):
  work, env = workdir
  proc = subprocess.run(['bash', '-euo', 'pipefail', '-c', fence.text], cwd=work, env=env, capture_output=True,
                        text=True, timeout=FENCE_SECONDS)
  assert proc.returncode == 0, f'{fence.where} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}'


def test_readme_is_a_front_door():
  size = len(read('README.md').encode('utf-8'))
  assert size <= README_LIMIT, f'README.md is {size} bytes; move reference material into docs/ (limit {README_LIMIT})'


def test_ci_reads_the_readme_test_command():
  """`.ci/run` takes the second line after the marker: the README must have the fence and one command there."""
  ci = read('.ci/run')
  program = re.search(r"awk '([^']+)' README\.md", ci).group(1)
  command = subprocess.run(['awk', program, 'README.md'], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()
  lines = read('README.md').split('\n')
  marker = next((i for i, line in enumerate(lines) if '<!-- test-command -->' in line), None)
  assert marker is not None, 'README.md has no `<!-- test-command -->` line; .ci/run reads the command after it'
  assert lines[marker + 1] == '```bash' and lines[marker + 3] == '```', lines[marker:marker + 4]
  assert command == lines[marker + 2] and 'python -m pytest' in command, command


def test_readme_links_every_doc():
  linked = {os.path.normpath(target.split('#')[0]) for target in LINK.findall(read('README.md'))}
  unlinked = [p for p in documents()[1:] if p not in linked]
  assert not unlinked, f'docs not linked from README.md: {unlinked}'


def slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
  return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(path: str) -> set[str]:
  text = ANY_FENCE.sub('', read(path))
  return {slug(m.group(1)) for m in re.finditer(r'^#+ (.+)$', text, re.M)}


def broken_links(path: str) -> list[str]:
  out = []
  for target in LINK.findall(ANY_FENCE.sub('', read(path))):
    if re.match(r'[a-z]+:', target) or target.startswith('#') and not target[1:]:
      continue
    file_part, _, anchor = target.partition('#')
    resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
    if resolved in PENDING and not os.path.exists(os.path.join(ROOT, resolved)):
      continue
    if not os.path.exists(os.path.join(ROOT, resolved)):
      out.append(f'{path}: {target} (no file {resolved})')
    elif anchor and resolved.endswith('.md') and anchor not in anchors(resolved):
      out.append(f'{path}: {target} (no heading #{anchor} in {resolved})')
  return out


def test_every_relative_link_resolves():
  broken = [b for path in documents() for b in broken_links(path)]
  assert not broken, '\n'.join(broken)


def test_pending_links_are_still_pending():
  landed = [p for p in PENDING if os.path.exists(os.path.join(ROOT, p))]
  assert not landed, f'{landed} exist now: remove them from PENDING in tests/test_docs.py'
