"""INR zoo, DWS protocol: one DWS SIREN per Fashion-MNIST image, all 70,000 (train + test), as DWSNets built theirs
(docs/inr.md): Siren(2, 32), Siren(32, 32), Linear(32, 1) + 0.5, w0 = 30, DWS's init; targets in [0, 1]; Adam 5e-4,
MSE on the whole image, 1,000 steps, stop at 40 dB PSNR; split 55k / 5k / 10k (val a random 5,000 of train).

Offline: apt-get install dataset-fashion-mnist && python -m popnet.data prepare fashion_mnist
"""
from popnet.config import base_config, inr_task


def get_config():
  config = base_config()
  config.epochs = 10                 # x steps_per_epoch 100 = 1,000 steps
  config.snapshots = 2               # the initialization and the fitted INR
  config.input_shape = (28, 28, 1)
  config.eval_every = 0
  config.task = inr_task(steps_per_epoch=100, psnr_threshold=40.0, split='dws', val_size=5000)
  config.hparams.dataset = 'fashion_mnist'
  config.hparams.architecture = 'siren_dws'
  config.hparams.batch_size = 784    # one step = every pixel of the image
  config.hparams.optimizer = 'adam'
  config.hparams.learning_rate = 5e-4
  config.hparams.beta1 = 0.9
  config.hparams.beta2 = 0.999
  config.hparams.eps = 1e-8          # PyTorch Adam's default
  return config
