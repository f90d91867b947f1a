"""How well a meta-model reads a target: accuracy against chance for classes, R^2 and Kendall tau for values.

Every meta-model reports through these functions so that cells of the report are comparable.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def r2_score(y_true, y_pred) -> float:
  """Coefficient of determination 1 - SS_res / SS_tot (can be negative: worse than predicting the mean)."""
  y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
  ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
  ss_res = float(np.sum((y_true - y_pred) ** 2))
  if ss_tot == 0:
    return float('nan')
  return 1.0 - ss_res / ss_tot


def kendall_tau(y_true, y_pred) -> float:
  """Kendall's tau-b rank correlation (the accuracy-prediction papers' metric); nan when undefined."""
  if len(y_true) < 2:
    return float('nan')
  tau = stats.kendalltau(np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)).statistic
  return float(tau) if tau is not None and not math.isnan(tau) else float('nan')


def regression_metrics(y_true, y_pred) -> dict:
  y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
  return {'r2': r2_score(y_true, y_pred), 'kendall_tau': kendall_tau(y_true, y_pred),
          'mae': float(np.mean(np.abs(y_true - y_pred))) if len(y_true) else float('nan'),
          'rmse': float(np.sqrt(np.mean((y_true - y_pred) ** 2))) if len(y_true) else float('nan'),
          'n': int(len(y_true))}


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
  """[true class, predicted class] counts."""
  m = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(m, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
  return m


def classification_metrics(y_true, probs, classes) -> dict:
  """Accuracy, chance (1 / C: the splits are balanced), per-class accuracy, confusion matrix, log loss."""
  y_true = np.asarray(y_true, np.int64)
  probs = np.asarray(probs, np.float64)
  pred = probs.argmax(-1)
  cm = confusion_matrix(y_true, pred, len(classes))
  support = cm.sum(1)
  per_class = {str(c): (float(cm[i, i] / support[i]) if support[i] else float('nan')) for i, c in enumerate(classes)}
  p_true = probs[np.arange(len(y_true)), y_true] if len(y_true) else np.zeros(0)
  return {'accuracy': float(np.mean(pred == y_true)) if len(y_true) else float('nan'),
          'chance': 1.0 / len(classes), 'per_class_accuracy': per_class, 'confusion': cm.tolist(),
          'classes': [str(c) for c in classes], 'log_loss': float(-np.mean(np.log(np.clip(p_true, 1e-12, 1))))
          if len(y_true) else float('nan'), 'n': int(len(y_true))}


def evaluate(target, y_true, output) -> dict:
  """Metrics of per-network outputs: class probabilities [n, C] or predicted values [n]."""
  if target.is_classification:
    return classification_metrics(y_true, output, target.classes)
  return regression_metrics(y_true, output)


def score(metrics: dict) -> float:
  """The one number for plots and model selection: accuracy, or R^2 for regression."""
  return metrics['accuracy'] if 'accuracy' in metrics else metrics['r2']


def selection_key(metrics: dict) -> tuple:
  """Higher is better; ties in accuracy (frequent on small validation sets) go to the lower log loss."""
  if 'accuracy' in metrics:
    return (metrics['accuracy'], -metrics['log_loss'])
  return (-metrics['rmse'],)


def tau_selection_key(metrics: dict) -> tuple:
  """Regression selected by Kendall tau (NFN's predict_gen keeps the epoch of best validation tau); ties (and a
  nan tau) go to the lower RMSE."""
  tau = metrics.get('kendall_tau')
  return (tau if tau is not None and math.isfinite(tau) else -math.inf, -metrics['rmse'])


def selection(name: str):
  """The selection key of Options.select: 'auto' (selection_key) or 'kendall_tau' (classification keeps auto)."""
  if name not in ('auto', 'kendall_tau'):
    raise ValueError(f'select must be auto or kendall_tau, got {name!r}')
  return selection_key if name == 'auto' else lambda m: selection_key(m) if 'accuracy' in m else tau_selection_key(m)


# --- uncertainty ------------------------------------------------------------------------------------------------
BOOTSTRAP = 1000   # resamples of the 95% intervals
LEVEL = 0.95


def resample_weights(groups, n_boot: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
  """[n_boot, rows] multiplicities of a bootstrap over *networks*: each resample draws the networks (`groups`,
  one id per row) with replacement and keeps all rows of a drawn network, so correlated snapshots of one
  network are never counted as independent evidence."""
  _, inverse = np.unique(np.asarray(groups), return_inverse=True)
  g = int(inverse.max()) + 1 if len(inverse) else 0
  draws = np.random.default_rng(seed).multinomial(g, np.full(g, 1.0 / max(g, 1)), size=n_boot)
  return draws[:, inverse].astype(np.float64)


def _quantiles(values: np.ndarray) -> list[float]:
  values = values[np.isfinite(values)]
  if not len(values):
    return [float('nan'), float('nan')]
  lo, hi = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
  return [float(lo), float(hi)]


def mean_interval(values, groups, n_boot: int = BOOTSTRAP, seed: int = 0) -> list[float]:
  """95% bootstrap interval of the mean of per-row values (1/0 correct, or a fraction of windows correct)."""
  values = np.asarray(values, np.float64)
  if not len(values):
    return [float('nan'), float('nan')]
  w = resample_weights(groups, n_boot, seed)
  return _quantiles((w @ values) / np.maximum(w.sum(1), 1))


def r2_interval(y_true, y_pred, groups, n_boot: int = BOOTSTRAP, seed: int = 0) -> list[float]:
  """95% bootstrap interval of R^2 (resampled networks, rows weighted by their multiplicity)."""
  y, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
  if len(y) < 2:
    return [float('nan'), float('nan')]
  w = resample_weights(groups, n_boot, seed)
  total = w.sum(1)
  mean = (w @ y) / total
  ss_tot = w @ np.square(y) - total * np.square(mean)
  ss_res = w @ np.square(y - p)
  with np.errstate(divide='ignore', invalid='ignore'):
    return _quantiles(np.where(ss_tot > 1e-12, 1 - ss_res / ss_tot, np.nan))


def _r2_weighted(w: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
  total = w.sum(1)
  ss_tot = w @ np.square(y) - total * np.square((w @ y) / total)
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.where(ss_tot > 1e-12, 1 - (w @ np.square(y - p)) / ss_tot, np.nan)


def paired_difference(classification: bool, y_true, pred_a, pred_b, groups, n_boot: int = BOOTSTRAP,
                      seed: int = 0) -> dict:
  """Score of a minus score of b on the same test rows (predicted classes, or values), with its 95% paired
  bootstrap interval over networks (one resample of networks scores both)."""
  y, a, b = (np.asarray(v, np.float64) for v in (y_true, pred_a, pred_b))
  w = resample_weights(groups, n_boot, seed)
  if classification:
    diff = (a == y).astype(np.float64) - (b == y)
    return {'difference': float(diff.mean()), 'ci95': _quantiles((w @ diff) / np.maximum(w.sum(1), 1))}
  ones = np.ones((1, len(y)))
  return {'difference': float(_r2_weighted(ones, y, a)[0] - _r2_weighted(ones, y, b)[0]),
          'ci95': _quantiles(_r2_weighted(w, y, a) - _r2_weighted(w, y, b))}


def percentile_interval(values, n_boot: int = BOOTSTRAP, seed: int = 0) -> list[float]:
  """95% percentile bootstrap interval of the mean of a few values (e.g. one paired difference per split)."""
  v = np.asarray(values, np.float64)
  if len(v) < 2:
    return [float('nan'), float('nan')]
  draws = np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))
  return _quantiles(v[draws].mean(1))


def score_interval(target, y_true, output, groups, n_boot: int = BOOTSTRAP, seed: int = 0) -> list[float]:
  """95% interval of `score` (accuracy, or R^2) over resampled test networks."""
  if target.is_classification:
    correct = np.asarray(output).argmax(-1) == np.asarray(y_true)
    return mean_interval(correct, groups, n_boot, seed)
  return r2_interval(y_true, output, groups, n_boot, seed)


def summarize(values) -> dict:
  """mean, sd (ddof 1) and count of one number over several member splits."""
  v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
  return {'mean': float(v.mean()) if len(v) else float('nan'),
          'sd': float(v.std(ddof=1)) if len(v) > 1 else float('nan'), 'splits': int(len(v)),
          'values': [float(x) for x in v]}
