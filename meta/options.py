"""What the meta command lines offer, without JAX: the meta-models, their knobs (`Options`) and every flag's
choices and defaults.

The modules that use them re-export them (meta.methods: METHODS, Options; meta.models: EVAL_NORMS; meta.weights:
PARTS, DEFAULT_MEMORY_BUDGET; meta.train: ANALYSES; meta.report: ARCH_TARGETS, DEFAULT_TARGETS). They live here
so that `--help` and a bad flag are answered (meta/cli.py) before JAX and Flax load.
"""
from __future__ import annotations

import dataclasses

METHODS = ('dmc', 'statnn', 'statnn_gbt', 'mlp', 'neurons', 'nfn_np', 'nfn_hnp')
# meta.report's default models, cheapest first (default zoo, 2-core CPU: 0.6-2.2 s and 11-22 s per cell); mlp and
# neurons (49-76 s per cell there) and the DMC (about an hour) run when asked for: --models statnn_gbt,statnn,dmc
DEFAULT_MODELS = ('statnn_gbt', 'statnn')
SELECTIONS = ('auto', 'kendall_tau')  # meta.metrics.selection: what the epoch kept is best on (val)
AUGMENTED = ('mlp', 'dmc')  # the models --weight_augment applies to (meta.equivariant's random permutations)
DMC_SIZE_NAMES = ('tiny', 'small', 'paper')  # the keys of meta.models.DMC_SIZES (tests/test_meta_cli.py checks)
EVAL_NORMS = ('batch', 'running')  # the DMC's batch norm at evaluation: batch statistics (NWS) or running averages
PARTS = ('all', 'conv', 'fc')
# input controls (meta.weights WeightStore.view): every value, or without the batch-norm running statistics, or
# without any batch-norm tensor (popnet/layout.py Layout.running_stats / batchnorm)
INPUTS = ('all', 'no_running_stats', 'no_batchnorm')
ORDERS = ('popnet', 'nws')  # the DMC's value order within tensors (popnet/layout.py Layout.columns)
DEFAULT_MEMORY_BUDGET = 2 << 30  # bytes of selected weights kept in memory; beyond it, stream from the memmap
ANALYSES = ('where', 'parts', 'when')
ARCH_TARGETS = ('architecture', 'filter_size', 'depth_conv', 'width_conv', 'depth_fc', 'width_fc', 'batch_norm')
DEFAULT_TARGETS = ('dataset', 'optimizer', 'activation', 'init', 'batch_size', 'augment', 'learning_rate',
                   *ARCH_TARGETS, 'test_accuracy', 'generalization_gap')


@dataclasses.dataclass
class Options:
  """Every knob of every meta-model (each method reads its own)."""
  epochs: int = 50                      # NWS meta_classifier.py: 50 epochs, Adam 1e-3, batch 64, x0.95 per epoch
  batch_size: int = 64
  learning_rate: float = 1e-3
  lr_decay: float = 0.95
  min_steps: int = 2000                 # small zoos: each epoch draws every example several times (meta.fit)
  loss: str = 'l1'                      # regression: l1 | mse
  seed: int = 0
  window: int = 5000                    # DMC window length (weights); clipped to the shortest vector (part)
  windows: int = 64                     # DMC evenly spaced windows per network at evaluation
  val_windows: int = 8                  # ... on the validation split, every epoch (model selection)
  dmc_size: str = 'small'               # tiny | small | paper (DMC_SIZE_NAMES; meta.models.DMC_SIZES)
  dmc_eval_norm: str = 'batch'          # batch statistics at evaluation (NWS) | running (EVAL_NORMS)
  dmc_order: str = 'popnet'             # the DMC's windows over popnet's order or NWS's exporter order (ORDERS)
  inputs: str = 'all'                   # every model: all values, no_running_stats, no_batchnorm (INPUTS)
  statnn_running_stats: bool = False    # statnn / statnn_gbt: summarize the running statistics too
  hidden: tuple[int, ...] = (256, 128)  # MLP hidden units (statnn and mlp)
  dropout: float = 0.1                  # MLP dropout (the DMC always uses 0.5, as the paper)
  gbt_max_iter: int = 200
  nfn_channels: tuple[int, ...] = (16, 16, 5)  # NFN's equivariant layers (its predict_gen hnp_inv / np_inv)
  nfn_head: int = 1000                  # NFN's MlpHead hidden units (twice)
  select: str = 'auto'                  # model selection on val: auto (accuracy / RMSE) | kendall_tau (SELECTIONS)
  weight_augment: bool = False          # mlp, dmc: each training draw a random hidden-unit permutation (AUGMENTED)
  verbose: bool = False
