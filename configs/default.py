"""The embedded default: `python -m popnet.train` with no arguments.

64 Small-CNN-Zoo networks on Fashion-MNIST (28x28x1), each with its own optimizer, learning rate, activation,
initialization, dropout and augmentation, trained together for 2 epochs over a 24k-image subset
(`--config.max_train_examples=0` trains on the whole split). Measured on the project's 2-core VM: 118.5 s idle
(benchmarks/results/default_profile.md), 294 s in the quick start's clean clone at load average ~10
(.ci/quickstart), 485.6 s at load average ~13; an audit reported 346 s idle.
"""
from popnet.config import base_config
from popnet.configs.common import fixed_evaluation_subsets


def get_config():
  config = fixed_evaluation_subsets(base_config())
  config.population = 64
  config.epochs = 2
  config.snapshots = 3               # epochs 0, 1, 2
  config.max_train_examples = 24000  # a fixed 24k-image subset of the 54k training part keeps the run in minutes
  config.input_shape = (28, 28, 1)
  config.hparams.dataset = 'fashion_mnist'
  config.hparams.architecture = 'smallcnnzoo'
  config.hparams.batch_size = 32
  config.hparams.optimizer = 'choice(adam, rmsprop, sgd)'
  config.hparams.learning_rate = 'loguniform(2e-3, 2e-2)'
  config.hparams.momentum = 0.9
  config.hparams.lr_decay = 0.96
  config.hparams.activation = 'choice(relu, elu, sigmoid, tanh)'
  config.hparams.init = 'choice(glorot_uniform, glorot_normal, he_normal)'
  config.hparams.dropout = 'choice(0.0, 0.1)'
  config.hparams.augment = 'choice(False, True)'
  return config
