"""The five meta-models, each fitted on the train split and evaluated per network on the other splits.

  dmc         deep meta-classifier on windows of W consecutive raw weights (start drawn at random each step);
              a network's prediction averages the probabilities of N evenly spaced windows; NWS's own score
              (meta_classifier.py, valid_avg: the fraction of 64 evenly spaced windows classified correctly)
              is reported beside it, and every window's output is kept for the "where" analysis
  statnn      per-tensor statistics (meta.features) -> MLP
  statnn_gbt  the same statistics -> scikit-learn HistGradientBoosting
  mlp         the whole (or conv/FC part of the) flattened vector -> MLP; one architecture only
  neurons     per-neuron features (meta.neurons) -> one encoder per layer, pooled over the layer's neurons (mean,
              max) -> MLP: invariant to reordering hidden neurons, which the paper's models are not; one
              architecture only (beyond the paper, issue 14)
  nfn_np      NFN's permutation-equivariant layers (Zhou et al. 2023; meta.nfn, meta.equivariant) on the weight
  nfn_hnp     space of the zoo's layout, pooled invariantly -> MLP head; NP with NFN's input/output embeddings
              (its np_inv), HNP keeping the inputs' and outputs' order; one architecture only (issue 29)

`weight_augment` trains the whole-vector MLP and the DMC on a random hidden-unit permutation of every network at
every draw (the DMC cuts its random window from the permuted vector).

`part` restricts any of them to the conv part or the FC part of the vectors (from the layout). `inputs` (every
model) drops the batch-norm running statistics or every batch-norm tensor from what the model reads
(`with_inputs`: a view of the weight store whose layouts lack them, so the DMC's windows run over the remaining
values and the per-tensor, per-neuron and equivariant models never see them); `dmc_order='nws'` gives the DMC
NWS's value order; `statnn_running_stats` adds the running statistics to StatNN's summarized tensors.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import threadpoolctl

from meta import equivariant, features, fit, metrics, models, neurons, nfn
from meta.windows import dmc_window, evenly_spaced_starts, mixed_batches, permuted_windows, random_starts
from meta.data import SPLITS, MetaData, MetaDataError
from meta.options import METHODS, Options  # noqa: F401  (re-exported: the jax-free home of both)


def fit_config(opts: Options) -> fit.FitConfig:
  """The training loop's settings (meta.fit) from the meta-model options."""
  return fit.FitConfig(opts.epochs, opts.batch_size, opts.learning_rate, opts.lr_decay, opts.loss, seed=opts.seed,
                       min_steps=opts.min_steps, verbose=opts.verbose)


@dataclasses.dataclass
class Result:
  """Per-network outputs on each evaluated split: probabilities [n, C] or values [n] (on the target's scale)."""
  method: str
  part: str
  index: dict[str, np.ndarray]           # split -> row indices into data.rows
  output: dict[str, np.ndarray]
  window_output: dict[str, np.ndarray]   # DMC: split -> [n, N, C] or [n, N]
  window_position: dict[str, np.ndarray] # DMC: split -> [n, N] window centres, fraction of the whole vector
  history: list[dict]
  best_epoch: int
  seconds: float
  info: dict

  def metrics(self, data: MetaData, split: str = 'test') -> dict:
    """Metrics per network, with `networks` (members) and `ci95` (bootstrap over networks) of the score."""
    rows = self.index[split]
    y, groups = data.y[rows], data.rows['member_id'].to_numpy()[rows]
    m = metrics.evaluate(data.target, y, self.output[split])
    m['ci95'] = metrics.score_interval(data.target, y, self.output[split], groups)
    m['networks'] = int(len(np.unique(groups)))
    return m

  def window_metrics(self, data: MetaData, split: str = 'test') -> dict | None:
    """Single-window metrics (each evenly spaced window scored on its own; for classes, NWS's score: the mean
    over networks of the fraction of their windows classified correctly), or None for non-DMC."""
    if split not in self.window_output:
      return None
    out, rows = self.window_output[split], self.index[split]
    n, w = out.shape[:2]
    y, groups = data.y[rows], data.rows['member_id'].to_numpy()[rows]
    m = metrics.evaluate(data.target, np.repeat(y, w), out.reshape((n * w,) + out.shape[2:]))
    if data.target.is_classification:
      m['ci95'] = metrics.mean_interval((out.argmax(-1) == y[:, None]).mean(1), groups)
    else:
      m['ci95'] = metrics.r2_interval(np.repeat(y, w), out.reshape(-1), np.repeat(groups, w))
    m['windows_per_network'] = int(w)
    return m


class _Scaler:
  """Standardizes regression targets for training; outputs are mapped back."""

  def __init__(self, y: np.ndarray, classification: bool):
    self.on = not classification
    self.mean = float(np.mean(y)) if self.on else 0.0
    self.std = (float(np.std(y)) or 1.0) if self.on else 1.0

  def fwd(self, y):
    return ((y - self.mean) / self.std).astype(np.float32) if self.on else y

  def back(self, out):
    return out * self.std + self.mean if self.on else out


def _splits_to_eval(data: MetaData, eval_splits) -> list[str]:
  return [s for s in eval_splits if len(data.splits[s])]


# --- DMC ------------------------------------------------------------------------------------------------------
def _dmc(data: MetaData, opts: Options, part: str, eval_splits) -> Result:
  target, store = data.target, data.store
  lo, hi = store.bounds(part)
  width, info = dmc_window(opts.window, hi - lo, part)
  train = data.splits['train']
  scaler = _Scaler(data.y[train], target.is_classification)
  y_train = scaler.fwd(data.y[train])
  module = models.dmc(target.num_outputs, opts.dmc_size, opts.dmc_eval_norm)
  info.update(dmc_size=opts.dmc_size, eval_norm=opts.dmc_eval_norm, params=models.num_params(module, width),
              weight_augment=opts.weight_augment)

  spaces = {a: _weight_space(l, 'dmc --weight_augment') for a, l in store.layouts.items()} if opts.weight_augment \
      else None

  def batch(rng, idx):
    rows = train[idx]
    starts = random_starts(rng, lo[rows], hi[rows], width)
    if spaces:
      return permuted_windows(store, spaces, rng, rows, starts, width, hi[rows]), y_train[idx]
    return store.windows(rows, starts, width, hi[rows]), y_train[idx]

  def windows_output(variables, rows, n):
    starts = evenly_spaced_starts(lo[rows], hi[rows], width, n)
    window_rows, window_starts = np.repeat(rows, n), starts.reshape(-1)
    order = mixed_batches(len(window_rows), opts.batch_size, opts.seed)
    out = np.zeros((len(window_rows),) + ((target.num_outputs,) if target.is_classification else ()), np.float32)
    per_read = opts.batch_size * max(1, 4096 // opts.batch_size)
    for s in range(0, len(order), per_read):
      i = order[s:s + per_read]
      x = store.windows(window_rows[i], window_starts[i], width, hi[window_rows[i]])
      out[i] = fit.predict(module, variables, x, target.is_classification, batch=opts.batch_size)
    out = scaler.back(out).reshape((len(rows), n) + out.shape[1:])
    centres = (starts + np.minimum(hi[rows] - lo[rows], width)[:, None] / 2) / store.size[rows, None]
    return out, centres

  val = data.splits['val']

  def validate(variables):
    out, _ = windows_output(variables, val, opts.val_windows)
    return metrics.evaluate(target, data.y[val], out.mean(1))

  fitted = fit.fit(module, (width,), len(train), batch, validate if len(val) else None,
                   metrics.selection(opts.select), target.is_classification,
                   dataclasses.replace(fit_config(opts), label=f'dmc {part}'))
  info.update(steps=fitted.steps, repeats=fitted.repeats)
  result = Result('dmc', part, {}, {}, {}, {}, fitted.history, fitted.best_epoch, fitted.seconds, info)
  for s in _splits_to_eval(data, eval_splits):
    rows = data.splits[s]
    out, centres = windows_output(fitted.variables, rows, opts.windows)
    result.index[s], result.output[s] = rows, out.mean(1)
    result.window_output[s], result.window_position[s] = out, centres
  return result


# --- StatNN and the whole-vector MLP ----------------------------------------------------------------------------
def _standardize(x_train: np.ndarray):
  mean = x_train.mean(0)
  std = x_train.std(0)
  std = np.where(std > 1e-8, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


def _mlp_on_arrays(data: MetaData, opts: Options, get_x, input_dim: int, eval_splits, name: str, part: str,
                   info: dict, module=None, train_x=None) -> Result:
  """Fits the MLP (or `module`) on inputs get_x(rows) -> [n, input_dim] (already standardized); training batches
  from train_x(rng, rows) when given (augmentation)."""
  target = data.target
  train, val = data.splits['train'], data.splits['val']
  scaler = _Scaler(data.y[train], target.is_classification)
  y_train = scaler.fwd(data.y[train])
  module = module or models.mlp(target.num_outputs, opts.hidden, opts.dropout)

  def outputs(variables, rows):
    return scaler.back(fit.predict(module, variables, get_x(rows), target.is_classification))

  def validate(variables):
    return metrics.evaluate(target, data.y[val], outputs(variables, val))

  train_x = train_x or (lambda rng, rows: get_x(rows))
  fitted = fit.fit(module, (input_dim,), len(train), lambda rng, idx: (train_x(rng, train[idx]), y_train[idx]),
                   validate if len(val) else None, metrics.selection(opts.select), target.is_classification,
                   dataclasses.replace(fit_config(opts), label=f'{name} {part}'))
  info = dict(info, params=models.num_params(module, input_dim), steps=fitted.steps, repeats=fitted.repeats)
  result = Result(name, part, {}, {}, {}, {}, fitted.history, fitted.best_epoch, fitted.seconds, info)
  for s in _splits_to_eval(data, eval_splits):
    rows = data.splits[s]
    result.index[s], result.output[s] = rows, outputs(fitted.variables, rows)
  return result


def _statnn_features(data: MetaData, part: str, opts: Options):
  """Features of every row in the splits (computed once, from the store), standardized on the train split."""
  used = np.unique(np.concatenate([data.splits[s] for s in SPLITS]))
  x_used, names = features.statnn_features(data.store, used, part, running_stats=opts.statnn_running_stats)
  x = np.zeros((len(data.rows), x_used.shape[1]), np.float32)
  x[used] = x_used
  return x, names


def _statnn(data: MetaData, opts: Options, part: str, eval_splits) -> Result:
  x, names = _statnn_features(data, part, opts)
  mean, std = _standardize(x[data.splits['train']])
  xs = (x - mean) / std
  return _mlp_on_arrays(data, opts, lambda rows: xs[rows], xs.shape[1], eval_splits, 'statnn', part,
                        {'features': len(names)})


def _statnn_gbt(data: MetaData, opts: Options, part: str, eval_splits) -> Result:
  from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
  t0 = time.perf_counter()
  x, names = _statnn_features(data, part, opts)
  train = data.splits['train']
  leaf = min(20, max(2, len(train) // 10))  # sklearn's default leaf of 20 cannot split a small zoo's classes
  common = dict(max_iter=opts.gbt_max_iter, random_state=opts.seed, early_stopping=False, min_samples_leaf=leaf)
  if data.target.is_classification:
    model = HistGradientBoostingClassifier(**common)
  else:
    model = HistGradientBoostingRegressor(loss='absolute_error' if opts.loss == 'l1' else 'squared_error', **common)
  with threadpoolctl.threadpool_limits(1):  # OpenMP threads contend with XLA's thread pool; 1 thread is faster
    model.fit(x[train], data.y[train])
  result = Result('statnn_gbt', part, {}, {}, {}, {}, [], -1, 0.0, {'features': len(names),
                                                                     'max_iter': opts.gbt_max_iter})
  for s in _splits_to_eval(data, eval_splits):
    rows = data.splits[s]
    with threadpoolctl.threadpool_limits(1):
      if data.target.is_classification:  # classes absent from training get probability 0
        out = np.zeros((len(rows), data.target.num_outputs))
        out[:, model.classes_] = model.predict_proba(x[rows])
      else:
        out = model.predict(x[rows])
    result.index[s], result.output[s] = rows, out
  result.seconds = time.perf_counter() - t0
  return result


def _one_layout(data: MetaData, what: str):
  """The selected rows' one layout, or a one-line MetaDataError naming the architectures."""
  if not data.store.single_arch:
    raise MetaDataError(f'{what} needs one architecture; the selected rows span {sorted(data.store.layouts)} '
                        f'(select one with --arch, or use dmc/statnn)')
  return next(iter(data.store.layouts.values()))


def _weight_space(layout, name: str) -> equivariant.WeightSpace:
  try:
    return equivariant.WeightSpace.of_layout(layout)
  except equivariant.WeightSpaceError as e:
    raise MetaDataError(f'{name}: {e}') from None


def _mlp(data: MetaData, opts: Options, part: str, eval_splits) -> Result:
  store = data.store
  layout = _one_layout(data, 'the whole-vector MLP')
  space = _weight_space(layout, 'mlp --weight_augment') if opts.weight_augment else None
  lo, hi = (int(b[0]) for b in store.bounds(part))
  train = data.splits['train']
  mean = np.zeros(hi - lo, np.float64)
  sq = np.zeros(hi - lo, np.float64)
  chunk = max(1, (64 << 20) // (4 * (hi - lo)))
  for s in range(0, len(train), chunk):  # streamed per-coordinate mean and variance of the train split
    v = store.vectors(train[s:s + chunk], lo, hi).astype(np.float64)
    mean += v.sum(0)
    sq += np.square(v).sum(0)
  mean /= len(train)
  std = np.sqrt(np.maximum(sq / len(train) - mean ** 2, 0))
  std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
  mean = mean.astype(np.float32)

  def get_x(rows):
    return (store.vectors(rows, lo, hi) - mean) / std

  def augmented_x(rng, rows):  # a permutation moves values within their tensor, so within [lo, hi)
    index = space.random_indices(rng, len(rows))[:, lo:hi] - lo
    return (np.take_along_axis(store.vectors(rows, lo, hi), index, 1) - mean) / std

  return _mlp_on_arrays(data, opts, get_x, hi - lo, eval_splits, 'mlp', part,
                        {'inputs': hi - lo, 'weight_augment': opts.weight_augment},
                        train_x=augmented_x if opts.weight_augment else None)


def _neurons(data: MetaData, opts: Options, part: str, eval_splits) -> Result:
  store = data.store
  layout = _one_layout(data, 'the neuron-set model')
  if part != 'all':
    raise MetaDataError('the neuron-set model reads whole networks (the last conv filters\' outgoing weights are '
                        'in the FC part); use part "all"')
  sets = neurons.blocks(layout)
  used = np.unique(np.concatenate([data.splits[s] for s in SPLITS]))
  x = np.zeros((len(data.rows), sum(b.units * b.dim for b in sets)), np.float32)
  chunk = max(1, (64 << 20) // (4 * layout.size))
  for s in range(0, len(used), chunk):
    x[used[s:s + chunk]] = neurons.features(layout, store.vectors(used[s:s + chunk]))
  start, train = 0, data.splits['train']
  for b in sets:  # standardize each feature over the training networks and the layer's neurons alike
    block = x[:, start:start + b.units * b.dim].reshape(len(x), b.units, b.dim)
    mean, std = _standardize(block[train].reshape(-1, b.dim))
    x[:, start:start + b.units * b.dim] = ((block - mean) / std).reshape(len(x), -1)
    start += b.units * b.dim
  module = models.NeuronSet(data.target.num_outputs, tuple((b.units, b.dim) for b in sets), hidden=opts.hidden,
                            dropout=opts.dropout)
  return _mlp_on_arrays(data, opts, lambda rows: x[rows], x.shape[1], eval_splits, 'neurons', part,
                        {'layers': [b.layer for b in sets], 'neurons': sum(b.units for b in sets)}, module)


def _nfn(mode: str):
  def run_nfn(data: MetaData, opts: Options, part: str, eval_splits) -> Result:
    name, store = f'nfn_{mode}', data.store
    layout = _one_layout(data, name)
    if part != 'all':
      raise MetaDataError(f'{name} reads whole networks (its weight space spans every layer); use part "all"')
    space = _weight_space(layout, name)
    if mode == 'hnp' and len(space) < 2:
      raise MetaDataError(f'{name}: the network has one layer (no hidden units); use nfn_np')
    train = data.splits['train']
    chunk = max(1, (64 << 20) // (4 * layout.size))
    mean, std = equivariant.tensor_standardizer(
        layout, (store.vectors(train[s:s + chunk]) for s in range(0, len(train), chunk)))
    module = nfn.InvariantNFN(data.target.num_outputs, space, mode, tuple(opts.nfn_channels), opts.nfn_head,
                              io_embed=mode == 'np')
    info = {'layers': [l.layer for l in space.layers], 'channels': list(opts.nfn_channels), 'head': opts.nfn_head}
    return _mlp_on_arrays(data, opts, lambda rows: (store.vectors(rows) - mean) / std, layout.size, eval_splits,
                          name, part, info, module)
  return run_nfn


_RUNNERS = {'dmc': _dmc, 'statnn': _statnn, 'statnn_gbt': _statnn_gbt, 'mlp': _mlp, 'neurons': _neurons,
            'nfn_np': _nfn('np'), 'nfn_hnp': _nfn('hnp')}


def input_order(method: str, opts: Options) -> str:
  """The value order `method` reads: the DMC's `dmc_order`; every other model popnet's (its features are per
  tensor or per neuron, where the order within a tensor is read from the layout)."""
  return opts.dmc_order if method == 'dmc' else 'popnet'


def with_inputs(data: MetaData, method: str, opts: Options) -> MetaData:
  """`data` as `method` reads it under the input controls: its store's view without the entries `opts.inputs`
  drops, in the DMC's `dmc_order` (meta.weights WeightStore.view); the data itself when nothing changes."""
  if opts.statnn_running_stats and opts.inputs != 'all':
    raise MetaDataError(f'statnn_running_stats (StatNN given the running statistics) contradicts inputs '
                        f'{opts.inputs!r}; use inputs "all"')
  store = data.store.view(opts.inputs, input_order(method, opts))
  return data if store is data.store else dataclasses.replace(data, store=store)


def run(method: str, data: MetaData, opts: Options | None = None, part: str = 'all',
        eval_splits=('val', 'test')) -> Result:
  """Fits `method` on data's train split (restricted to `part`, under the input controls `opts.inputs`) and
  predicts per network on `eval_splits`."""
  if method not in _RUNNERS:
    raise ValueError(f'model must be one of {METHODS}, got {method!r}')
  opts = opts or Options()
  result = _RUNNERS[method](with_inputs(data, method, opts), opts, part, eval_splits)
  result.info.update(input_control=opts.inputs, order=input_order(method, opts),
                     statnn_running_stats=opts.statnn_running_stats and method in ('statnn', 'statnn_gbt'))
  return result
