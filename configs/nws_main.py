"""The NWS `nws_main` space: the nws_fixed space plus a random architecture (3^5 = 243 combinations).

Its 13,000 members run in at most `max_programs` (32) compiled programs: one per batch size and padded bucket of
architectures, every dataset in one device pool (popnet/buckets.py). Print the plan without training:
    python -m popnet.train --config configs/nws_main.py --config.plan_only=True --workdir /tmp/plan
"""
from configs.nws_fixed import nws_space
from popnet.config import base_config


def get_config():
  config = nws_space(base_config())
  config.population = 13000
  config.epochs = 38
  config.snapshots = 20
  config.eval_train_examples = 0
  config.hparams.architecture = 'nws'
  config.hparams.filter_size = 'choice(3, 5, 7)'
  config.hparams.depth_conv = 'choice(3, 4, 5)'
  config.hparams.depth_fc = 'choice(2, 3, 4)'
  config.hparams.width_conv = 'choice(4, 8, 12)'
  config.hparams.width_fc = 'choice(64, 128, 192)'
  return config
