"""A small residual CNN with batch norm and dropout, as a flax.linen module popnet can train as a population.

    python -m popnet.train --config smoke --config.model=examples/models/residual_cnn.py:ResidualCNN \
        --workdir runs/residual_cnn

The contract (popnet/flax_network.py): constructed with no arguments, `__call__(x, train)` on images
[B, H, W, C] in [0, 1], logits out; batch norm keeps running statistics in `batch_stats`; dropout draws from the
'dropout' rng stream.
"""
import flax.linen as nn


class ResidualCNN(nn.Module):
  num_classes: int = 10
  width: int = 16
  blocks: int = 2
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
    conv = lambda: nn.Conv(self.width, (3, 3), use_bias=False)  # noqa: E731  (batch norm follows: no bias, as ResNets)
    x = nn.relu(norm()(conv()(x)))
    for _ in range(self.blocks):
      y = nn.relu(norm()(conv()(x)))
      y = norm()(conv()(y))
      x = nn.relu(x + y)
    x = x.mean(axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)
