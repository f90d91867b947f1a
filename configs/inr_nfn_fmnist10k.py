"""INR zoo, NFN protocol (configs/inr_nfn_fmnist.py), on a fixed random 10,000 of the 70,000 Fashion-MNIST images,
one fit each (train_views 1: NFN's 10 extra fits per training image would make it ~74,000 fits): 10,000 INRs, split
by index as NFN's (images below 45,000 train, 45,000-49,999 val, the rest test), so about 6,400 / 700 / 2,900.
NFN's classify_siren.py reads its export with `extra_aug: 0`.

Offline: apt-get install dataset-fashion-mnist && python -m popnet.data prepare fashion_mnist
"""
from popnet.configs import load


def get_config():
  config = load('inr_nfn_fmnist')
  config.task.max_images = 10000
  config.task.train_views = 1
  return config
