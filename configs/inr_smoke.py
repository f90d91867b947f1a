"""Seconds-long INR run for tests: DWS SIRENs of 24 of scikit-learn's 8x8 digits, 2 epochs of 10 steps, stop at 30 dB.

Prepare the data once: python -m popnet.data prepare digits
"""
from popnet.configs import load


def get_config():
  config = load('inr_dws_fmnist')
  config.epochs = 2
  config.snapshots = 3
  config.input_shape = (8, 8, 1)
  config.task.steps_per_epoch = 10
  config.task.psnr_threshold = 30.0
  config.task.max_images = 24
  config.task.val_size = 100
  config.hparams.dataset = 'digits'
  config.hparams.batch_size = 64
  config.hparams.learning_rate = 1e-3
  return config
