"""PNG figures of a meta-model run (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import io
import textwrap

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from popnet.files import atomic_write_bytes  # noqa: E402


def _save(fig, path: str) -> str:
  fig.tight_layout()
  _place_legends_below(fig)
  image = io.BytesIO()
  fig.savefig(image, format='png', dpi=110, bbox_inches='tight')  # 'tight': legends below the axes kept whole
  plt.close(fig)
  atomic_write_bytes(path, image.getvalue())  # a stopped run leaves the old figure or the new one, never a part
  return path


def _legend_below(ax) -> None:
  """The legend under the axes (placed under its tick labels and x label when saved), where it cannot cover a
  point, an error bar or the chance line."""
  ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.2), frameon=False)


def _place_legends_below(fig) -> None:
  """Moves every legend anchored below its axes to just under that axes' tick labels and x label."""
  renderer = fig.canvas.get_renderer()
  for ax in fig.axes:
    legend = ax.get_legend()
    if legend is not None and legend.get_bbox_to_anchor().y1 < ax.get_window_extent(renderer).y0:
      bottom = ax.xaxis.get_tightbbox(renderer).y0
      y = ax.transAxes.inverted().transform((0, bottom))[1]
      legend.set_bbox_to_anchor((0.5, y - 0.02), transform=ax.transAxes)


def _fitted_title(title: str, width_inches: float) -> str:
  """`title` wrapped, line by line, to what fits across a figure `width_inches` wide at font size 9."""
  chars = max(20, int(width_inches * 13))
  return '\n'.join(textwrap.fill(line, chars) for line in title.split('\n'))


def confusion(m: dict, path: str, title: str = '') -> str:
  """Row-normalized confusion matrix with counts, from classification metrics."""
  cm = np.asarray(m['confusion'], float)
  norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  classes = m['classes']
  size = max(4.8, 0.6 * len(classes) + 2)
  fig, ax = plt.subplots(figsize=(size, size * 0.85))
  im = ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
  for i in range(len(classes)):
    for j in range(len(classes)):
      ax.text(j, i, f'{int(cm[i, j])}', ha='center', va='center', color='white' if norm[i, j] > 0.5 else 'black')
  ax.set_xticks(range(len(classes)), classes, rotation=45, ha='right')
  ax.set_yticks(range(len(classes)), classes)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(_fitted_title(title or f'accuracy {m["accuracy"]:.3f} (chance {m["chance"]:.3f})', size),
               fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.046)
  return _save(fig, path)


def predictions(y_true, y_pred, m: dict, path: str, label: str) -> str:
  """Predicted vs true values of a regression target."""
  fig, ax = plt.subplots(figsize=(4.5, 4.2))
  ax.scatter(y_true, y_pred, s=10, alpha=0.7)
  lo, hi = float(np.min([np.min(y_true), np.min(y_pred)])), float(np.max([np.max(y_true), np.max(y_pred)]))
  ax.plot([lo, hi], [lo, hi], 'k--', lw=1)
  ax.set_xlabel(f'true {label}')
  ax.set_ylabel(f'predicted {label}')
  lo, hi = m.get('ci95') or (float('nan'), float('nan'))
  ax.set_title(f'R$^2$ {m["r2"]:.3f} [{lo:.2f}, {hi:.2f}]  Kendall $\\tau$ {m["kendall_tau"]:.3f}  '
               f'n={m.get("networks", m["n"])}', fontsize=9)
  return _save(fig, path)


def _yerr(scores, intervals) -> np.ndarray:
  """[2, n] distances from each score to its 95% interval's ends (0 where unknown), for errorbar."""
  s = np.asarray(scores, float)
  ci = np.array([iv if iv and None not in iv else [np.nan, np.nan] for iv in intervals], float).reshape(-1, 2)
  return np.nan_to_num(np.abs(np.stack([s - ci[:, 0], ci[:, 1] - s])))


def where(positions: dict | None, parts: dict | None, path: str, title: str = '') -> str:
  """Score along the vector (DMC windows) and/or per part (conv vs FC), with 95% intervals and n."""
  panels = [p for p in (positions, parts) if p and 'skipped' not in p]
  fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.6), squeeze=False)
  axes = axes[0]
  k = 0
  if positions and 'skipped' not in positions:
    ax = axes[k]
    k += 1
    ax.errorbar(positions['position'], positions['score'], yerr=_yerr(positions['score'], positions['ci95']),
                fmt='o-', ms=3, capsize=2, label=f'{positions["networks"]} test networks, 95% interval')
    ax.axvline(positions['conv_fraction'], color='gray', ls=':', label='conv | FC')
    if positions.get('chance') is not None:
      ax.axhline(positions['chance'], color='red', ls='--', lw=1, label='chance')
    ax.set_xlabel('window centre (fraction of the weight vector)')
    ax.set_ylabel(positions['metric'])
    ax.set_xlim(0, 1)
    _legend_below(ax)
    ax.set_title('per window position')
  elif positions:
    axes[0].text(0.5, 0.5, 'window positions cannot be placed:\n' + positions['skipped'][:90] + '...',
                 ha='center', va='center', wrap=True, fontsize=8, transform=axes[0].transAxes)
    axes[0].set_axis_off()
  if parts:
    ax = axes[k]
    names = [n for n in ('all', 'conv', 'fc') if n in parts and 'score' in parts[n]]
    scores = [parts[n]['score'] for n in names]
    ax.bar([f'{n}\n(n={parts[n]["networks"]})' for n in names], scores, color=['C0', 'C1', 'C2'][:len(names)],
           yerr=_yerr(scores, [parts[n]['ci95'] for n in names]), capsize=4)
    chance = next((parts[n].get('chance') for n in names if parts[n].get('chance') is not None), None)
    if chance is not None:
      ax.axhline(chance, color='red', ls='--', lw=1, label='chance')
      _legend_below(ax)
    ax.set_ylabel('accuracy' if chance is not None else 'R$^2$')
    ax.set_title('network part (95% intervals)')
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def when(snapshots: dict | None, epochs: dict | None, path: str, title: str = '') -> str:
  """Score per snapshot epoch, with 95% intervals: a model per snapshot, and the all-snapshot model per epoch
  (drawn a little left and right of the epoch, so their error bars do not overlap)."""
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  metric, chance = 'score', None
  xs = [x for series in (snapshots, epochs) if series for x in series['epoch']]
  dodge = 0.02 * max(max(xs) - min(xs), 1) if xs else 0  # the two series side by side, their bars apart
  for series, fmt, label, shift in ((snapshots, 'o-', 'trained and tested on that snapshot', -dodge),
                                    (epochs, 's--', 'all-snapshot model, tested per epoch', dodge)):
    if series and series['epoch']:
      n = min(series['networks'])
      ax.errorbar(np.asarray(series['epoch'], float) + shift, series['score'], fmt=fmt, capsize=3,
                  yerr=_yerr(series['score'], series['ci95']), label=f'{label} (>= {n} networks)')
      metric, chance = series['metric'], series.get('chance', chance)
  if chance is not None:
    ax.axhline(chance, color='red', ls='--', lw=1, label='chance')
  if xs and max(xs) - min(xs) < 1:  # one epoch: a readable axis around it, not 1.9 .. 2.1
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_xticks(sorted(set(xs)))
  else:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_xlabel('epoch of the snapshot')
  ax.set_ylabel(metric)
  _legend_below(ax)
  ax.set_title(title or 'when during training')
  return _save(fig, path)


def report(table: dict, path: str) -> str:
  """One panel per target: each meta-model's test score (mean over splits, error bar: sd over splits when there
  are several, else the 95% interval), with chance."""
  rows = table['rows']
  panel = max(1.5, 0.45 * len(table['models']) + 0.9)  # inches per target: its bars, its axis, its title
  fig, axes = plt.subplots(1, max(len(rows), 1), figsize=(0.6 + panel * max(len(rows), 1), 3.6), squeeze=False)
  for ax, row in zip(axes[0], rows):
    names = [m for m in table['models'] if 'score' in row['cells'][m]]
    cells = [row['cells'][m] for m in names]
    scores = [c['score']['mean'] for c in cells]
    spread = [[c['score']['mean'] - c['score']['sd']] * 1 + [c['score']['mean'] + c['score']['sd']]
              if c['score']['splits'] > 1 else c['ci95'] for c in cells]
    ax.bar(names, scores, yerr=_yerr(scores, spread), capsize=3, color=[f'C{i}' for i in range(len(names))])
    if row.get('chance') is not None:
      ax.axhline(row['chance'], color='red', ls='--', lw=1)
    ax.set_title(textwrap.fill(row['target'].replace('_', ' '), 14) + f'\n(n={row["test_members"]})', fontsize=9)
    ax.tick_params(axis='x', rotation=60, labelsize=7)
    ax.set_ylabel('accuracy' if row['kind'] == 'classification' else 'R$^2$', fontsize=8)
  bars = (f'mean and sd over {table["splits"]} member splits' if table['splits'] > 1 else '95% interval')
  fig.suptitle(f'test networks never seen in training; bars: {bars}; red dashes: chance', fontsize=9)
  return _save(fig, path)
