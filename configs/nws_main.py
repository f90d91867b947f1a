"""The NWS `nws_main` space: the nws_fixed space plus a random architecture (3^5 = 243 combinations).

Its 13,000 members run in at most `max_programs` (32) compiled programs: one per batch size and padded bucket of
architectures, every dataset in one device pool (popnet/buckets.py). Print the plan without training:
    python -m popnet.train --config nws_main --config.plan_only=True --workdir /tmp/plan
"""
from popnet.config import base_config
from popnet.configs.common import nws_protocol, nws_space


def get_config():
  config = nws_protocol(nws_space(base_config()), population=13000)
  config.hparams.architecture = 'nws'
  config.hparams.update({'filter_size': 'choice(3, 5, 7)', 'depth_conv': 'choice(3, 4, 5)',
                         'depth_fc': 'choice(2, 3, 4)', 'width_conv': 'choice(4, 8, 12)',
                         'width_fc': 'choice(64, 128, 192)'})
  return config
