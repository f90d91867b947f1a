"""PNG figures of a meta-model run (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def confusion(m: dict, path: str, title: str = '') -> str:
  """Row-normalized confusion matrix with counts, from classification metrics."""
  cm = np.asarray(m['confusion'], float)
  norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  classes = m['classes']
  size = max(3.5, 0.6 * len(classes) + 2)
  fig, ax = plt.subplots(figsize=(size, size * 0.85))
  im = ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
  for i in range(len(classes)):
    for j in range(len(classes)):
      ax.text(j, i, f'{int(cm[i, j])}', ha='center', va='center', color='white' if norm[i, j] > 0.5 else 'black')
  ax.set_xticks(range(len(classes)), classes, rotation=45, ha='right')
  ax.set_yticks(range(len(classes)), classes)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(title or f'accuracy {m["accuracy"]:.3f} (chance {m["chance"]:.3f})')
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
  ax.set_title(f'R$^2$ {m["r2"]:.3f}  Kendall $\\tau$ {m["kendall_tau"]:.3f}')
  return _save(fig, path)


def where(positions: dict | None, parts: dict | None, path: str, title: str = '') -> str:
  """Score along the vector (DMC windows) and/or per part (conv vs FC)."""
  panels = [p for p in (positions, parts) if p]
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
  axes = axes[0]
  k = 0
  if positions:
    ax = axes[k]
    k += 1
    ax.plot(positions['position'], positions['score'], 'o-', ms=3)
    ax.axvline(positions['conv_fraction'], color='gray', ls=':', label='conv | FC')
    if positions.get('chance') is not None:
      ax.axhline(positions['chance'], color='red', ls='--', lw=1, label='chance')
    ax.set_xlabel('window centre (fraction of the weight vector)')
    ax.set_ylabel(positions['metric'])
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title('per window position')
  if parts:
    ax = axes[k]
    names = [n for n in ('all', 'conv', 'fc') if n in parts and 'score' in parts[n]]
    ax.bar(names, [parts[n]['score'] for n in names], color=['C0', 'C1', 'C2'][:len(names)])
    chance = next((parts[n].get('chance') for n in names if parts[n].get('chance') is not None), None)
    if chance is not None:
      ax.axhline(chance, color='red', ls='--', lw=1, label='chance')
      ax.legend(fontsize=8)
    ax.set_ylabel('accuracy' if chance is not None else 'R$^2$')
    ax.set_title('network part')
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def when(snapshots: dict | None, epochs: dict | None, path: str, title: str = '') -> str:
  """Score per snapshot epoch: a model per snapshot, and the all-snapshot model evaluated per epoch."""
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  metric, chance = 'score', None
  if snapshots and snapshots['epoch']:
    ax.plot(snapshots['epoch'], snapshots['score'], 'o-', label='trained and tested on that snapshot')
    metric, chance = snapshots['metric'], snapshots.get('chance')
  if epochs and epochs['epoch']:
    ax.plot(epochs['epoch'], epochs['score'], 's--', label='all-snapshot model, tested per epoch')
    metric = epochs['metric']
  if chance is not None:
    ax.axhline(chance, color='red', ls='--', lw=1, label='chance')
  ax.set_xlabel('epoch of the snapshot')
  ax.set_ylabel(metric)
  ax.legend(fontsize=8)
  ax.set_title(title or 'when during training')
  return _save(fig, path)
