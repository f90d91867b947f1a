"""The CNN zoo of issue 29's accuracy-prediction benchmark: 2,000 Small-CNN-Zoo networks on Fashion-MNIST with
Small CNN Zoo's kind of training space (Unterthiner et al. 2020: optimizer, log-uniform learning rate and L2,
dropout, initialization, activation), so that final test accuracies spread from chance to well trained.

Differences from Small CNN Zoo (CIFAR10-GS), chosen so it builds offline on a 2-core CPU (measured there: ~2.2 h,
docs/configs.md):
- data: Fashion-MNIST (28x28x1; the Debian package), a fixed 9,000-image subset of the training part, 10 epochs
  (Small CNN Zoo: CIFAR-10 in grayscale, 32x32, a per-network train fraction, 86 epochs);
- space: popnet's initializations (constant, normal, Glorot uniform / normal, He normal) instead of Small CNN
  Zoo's per-network init std; activations relu / elu / sigmoid / tanh; no per-network train fraction;
- snapshots: initialization and the final epoch only (the benchmark reads the final one); metrics on fixed
  subsets of 1,000 / 1,000 / 5,000 images, learning curves only at the snapshots.
Prepare: python -m popnet.data prepare fashion_mnist. Then:
python -m popnet.train --config accuracy_zoo --workdir runs/accuracy_zoo
"""
from popnet.config import base_config
from popnet.configs.common import fixed_evaluation_subsets


def get_config():
  config = fixed_evaluation_subsets(base_config(), train=1000, val=1000, test=5000)
  config.population = 2000
  config.epochs = 10
  config.snapshots = 2               # epochs 0 and 10
  config.eval_every = 0              # curves at the snapshots only: evaluation stays a small part of the run
  config.input_shape = (28, 28, 1)
  config.max_train_examples = 9000
  config.hparams.dataset = 'fashion_mnist'
  config.hparams.architecture = 'smallcnnzoo'
  config.hparams.batch_size = 32
  config.hparams.optimizer = 'choice(adam, rmsprop, sgd)'
  config.hparams.learning_rate = 'loguniform(5e-4, 5e-2)'
  config.hparams.momentum = 0.9
  config.hparams.weight_decay = 'loguniform(1e-8, 1e-2)'
  config.hparams.dropout = 'uniform(0.0, 0.7)'
  config.hparams.activation = 'choice(relu, elu, sigmoid, tanh)'
  config.hparams.init = 'choice(constant, normal, glorot_uniform, glorot_normal, he_normal)'
  return config
