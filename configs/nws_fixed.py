"""The NWS `nws_fixed` space (reference/nws.md sections 2-4): one fixed architecture, everything else random.

3,000 networks on MNIST, CIFAR-10, SVHN, STL-10 and Fashion-MNIST at 32x32x3, 20 snapshots from the
initialization to the last epoch. Differences from the paper: a fixed epoch budget instead of early stopping,
no class-balanced re-subsampling of the training split, a seed per member.
Stock datasets need preparing first (python -m popnet.data list).
"""
from popnet.config import base_config

NWS_DATASETS = 'choice(mnist, cifar10, svhn_cropped, stl10, fashion_mnist)'


def nws_space(config):
  config.input_shape = (32, 32, 3)
  config.hparams.dataset = NWS_DATASETS
  config.hparams.learning_rate = 'uniform(2e-4, 5e-3)'   # linear, not log, as in the paper
  config.hparams.lr_decay = 0.96                         # x0.96 per epoch (staircase)
  config.hparams.batch_size = 'choice(32, 64, 128, 256)'
  config.hparams.augment = 'choice(False, True)'
  config.hparams.optimizer = 'choice(adam, rmsprop, sgd)'
  config.hparams.momentum = 0.95
  config.hparams.activation = 'choice(relu, elu, sigmoid, tanh)'
  config.hparams.init = 'choice(constant, normal, glorot_uniform, glorot_normal)'
  config.hparams.dropout = 0.5
  config.hparams.weight_decay = 0.0
  config.hparams.batch_norm = True
  return config


def get_config():
  config = nws_space(base_config())
  config.population = 3000
  config.epochs = 38
  config.snapshots = 20
  config.eval_train_examples = 0   # the whole training part, as the paper
  config.hparams.architecture = 'nws_fixed'
  return config
