"""Seconds-long run for tests: 8 members on scikit-learn's 8x8 digits, 2 epochs, 3 snapshots.

Prepare the data once: python -m popnet.data prepare digits
"""
from popnet.config import base_config


def get_config():
  config = base_config()
  config.population = 8
  config.epochs = 2
  config.snapshots = 3
  config.input_shape = (8, 8, 1)
  config.eval_train_examples = 500
  config.eval_batch_size = 100
  config.hparams.dataset = 'digits'
  config.hparams.architecture = 'smallcnnzoo'
  config.hparams.batch_size = 32
  config.hparams.optimizer = 'choice(adam, rmsprop, sgd)'
  config.hparams.learning_rate = 'loguniform(1e-3, 1e-2)'
  config.hparams.activation = 'choice(relu, elu, sigmoid, tanh)'
  config.hparams.init = 'choice(glorot_uniform, he_normal)'
  config.hparams.augment = 'choice(False, True)'
  config.hparams.dropout = 'choice(0.0, 0.2)'
  return config
