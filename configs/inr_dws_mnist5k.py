"""INR zoo, DWS protocol (configs/inr_dws_fmnist.py) on the offline 5,000-image MNIST subset (4,000 train + 1,000 test;
val a random 500 of train): minutes on a CPU.

Offline: python -m popnet.data prepare mnist5k
"""
from popnet.configs import load

def get_config():
  config = load('inr_dws_fmnist')
  config.task.val_size = 500
  config.hparams.dataset = 'mnist5k'
  return config
