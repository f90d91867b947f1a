"""An MLP as a flax.nnx module popnet can train as a population.

    python -m popnet.train --config smoke --config.model=examples/models/mlp_nnx.py:MLP --workdir runs/mlp_nnx

The contract (popnet/flax_network.py): called as `MLP(rngs=nnx.Rngs(...), input_shape=(H, W, C))` (popnet passes
`input_shape` to a constructor that takes it), `__call__(x)` on images [B, H, W, C] in [0, 1], logits out.
"""
import math

from flax import nnx


class MLP(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs, input_shape=(28, 28, 1), hidden: int = 64, num_classes: int = 10):
    self.hidden = nnx.Linear(math.prod(input_shape), hidden, rngs=rngs)
    self.output = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    return self.output(nnx.relu(self.hidden(x)))
