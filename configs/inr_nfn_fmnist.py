"""INR zoo, NFN protocol: standard SIRENs (AllanYangZhou/nfn siren_utils.py, docs/inr.md) of every Fashion-MNIST image
(train + test, indexed as torchvision's train + test concatenated): first layer U(+-1/2), hidden and last
U(+-sqrt(6/32)/30), PyTorch-default biases, no output offset, w0 = 30; targets in [-1, 1]; Adam 5e-5, 5,000 steps,
no early stopping; 11 independently initialized fits per training image (the original and NFN's `extra_aug: 10`
augmentation sets, as classify_siren.py reads them), one per val/test image; split by index 45,000 / 5,000 / the rest.

Offline: apt-get install dataset-fashion-mnist && python -m popnet.data prepare fashion_mnist
"""
from popnet.config import base_config, inr_task


def get_config():
  config = base_config()
  config.epochs = 10                 # x steps_per_epoch 500 = 5,000 steps
  config.snapshots = 2
  config.input_shape = (28, 28, 1)
  config.eval_every = 0
  config.task = inr_task(steps_per_epoch=500, psnr_threshold=0.0, split='nfn', val_start=45000, test_start=50000,
                         train_views=11)
  config.hparams.dataset = 'fashion_mnist'
  config.hparams.architecture = 'siren_nfn'
  config.hparams.batch_size = 784
  config.hparams.optimizer = 'adam'
  config.hparams.learning_rate = 5e-5
  config.hparams.beta1 = 0.9
  config.hparams.beta2 = 0.999
  config.hparams.eps = 1e-8
  return config
