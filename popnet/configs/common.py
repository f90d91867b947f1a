"""Pieces the packaged configs share: the NWS hyper-parameter space (Eilertsen et al. 2020, section 3)."""
from __future__ import annotations

NWS_DATASETS = 'choice(mnist, cifar10, svhn_cropped, stl10, fashion_mnist)'
NWS_INPUT_SHAPE = (32, 32, 3)


def nws_training_space(config):
  """How NWS trains each network: learning rate (linear, not log), its x0.96 per-epoch staircase decay, batch
  size, augmentation, optimizer (momentum 0.95), activation and initialization."""
  config.hparams.learning_rate = 'uniform(2e-4, 5e-3)'
  config.hparams.lr_decay = 0.96
  config.hparams.batch_size = 'choice(32, 64, 128, 256)'
  config.hparams.augment = 'choice(False, True)'
  config.hparams.optimizer = 'choice(adam, rmsprop, sgd)'
  config.hparams.momentum = 0.95
  config.hparams.activation = 'choice(relu, elu, sigmoid, tanh)'
  config.hparams.init = 'choice(constant, normal, glorot_uniform, glorot_normal)'
  return config


def nws_space(config):
  """The whole NWS protocol on its networks: the training space, 5 datasets at 32x32x3, dropout 0.5 in the FC
  part, batch norm, no weight decay."""
  nws_training_space(config)
  config.input_shape = NWS_INPUT_SHAPE
  config.hparams.dataset = NWS_DATASETS
  config.hparams.dropout = 0.5
  config.hparams.weight_decay = 0.0
  config.hparams.batch_norm = True
  return config


def fixed_evaluation_subsets(config, train: int = 1000, val: int = 1000, test: int = 2000):
  """Metrics on fixed subsets of the training part, the validation part and the test split (the same for
  every member), so evaluation stays a small part of the run."""
  config.eval_train_examples = train
  config.eval_val_examples = val
  config.eval_test_examples = test
  return config


def nws_protocol(config, population: int):
  """The study's run: `population` networks, 38 epochs, 20 snapshots, training metrics on the whole training
  part (as the paper)."""
  config.population = population
  config.epochs = 38
  config.snapshots = 20
  config.eval_train_examples = 0
  return config
