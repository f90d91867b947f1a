"""The NWS `nws_fixed` space (Eilertsen et al. 2020, section 3): one fixed architecture, everything else random.

3,000 networks on MNIST, CIFAR-10, SVHN, STL-10 and Fashion-MNIST at 32x32x3, 20 snapshots from the
initialization to the last epoch. Differences from the paper: a fixed epoch budget instead of early stopping,
no class-balanced re-subsampling of the training split, a seed per member.
Stock datasets need preparing first (python -m popnet.data list).
"""
from popnet.config import base_config
from popnet.configs.common import nws_protocol, nws_space


def get_config():
  config = nws_protocol(nws_space(base_config()), population=3000)
  config.hparams.architecture = 'nws_fixed'
  return config
