"""The PyTorch sides of the INR fit-rate benchmark (benchmarks/inr.py): DWS's SIREN as DWSNets defines it, fitted
one INR at a time the way DWSNets and Implicit-Zoo fit theirs, and the same SIRENs stacked under torch.func.vmap.

The module mirrors AvivNavon/DWSNets nn/inr.py (commit 2001d52): `Siren` = sin(w0 * F.linear(x, W, b)), `INR` =
Sequential(Siren(2, 32), Siren(32, 32), nn.Linear(32, 1)) + 0.5, with its state-dict keys seq.{0,1,2}.{weight,bias}
(its positional-encoding branch, which needs the `rff` package and which INR(pe_features=None) never builds, is
left out). Both fitters start from given weights (their own init is overwritten), so every method of the
benchmark fits the same SIRENs from the same start.

The one-at-a-time loop is DWSNets experiments/ssl/inr_trainer.py's (the one INR-fitting loop DWSNets released):
`optimizer.zero_grad(); out = model(x); loss = criteria(out, y); loss.backward(); optimizer.step()` with
`nn.MSELoss()` and `torch.optim.Adam(model.parameters(), lr)` (without its weight_decay=1e-4: the INR data sets
were fitted with plain Adam, DWSNets #6), and `loss.item()` read every step as its early-stopping check and
Implicit-Zoo's `while psnr_i < 30 ...` loop read theirs (no fit stops early here: every method takes N steps).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def device() -> torch.device:
  return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def set_threads(n: int) -> None:
  """torch's intra-op threads (0: its default, one per core)."""
  if n > 0:
    torch.set_num_threads(n)


def facts() -> dict:
  dev = device()
  return {'torch': torch.__version__, 'torch_device': str(dev), 'torch_threads': torch.get_num_threads(),
          'torch_device_name': torch.cuda.get_device_name(dev) if dev.type == 'cuda' else None,
          'torch_cuda_matmul_tf32': torch.backends.cuda.matmul.allow_tf32 if dev.type == 'cuda' else None}


class Sine(nn.Module):
  def __init__(self, w0=1.0):
    super().__init__()
    self.w0 = w0

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.sin(self.w0 * x)


class Siren(nn.Module):
  """DWSNets nn/inr.py Siren (use_bias=True, activation=None); its init_ is kept though the benchmark overwrites it."""

  def __init__(self, dim_in, dim_out, w0=30.0, c=6.0, is_first=False):
    super().__init__()
    self.w0, self.c, self.dim_in, self.dim_out, self.is_first = w0, c, dim_in, dim_out, is_first
    weight, bias = torch.zeros(dim_out, dim_in), torch.zeros(dim_out)
    w_std = (1 / dim_in) if is_first else (np.sqrt(c / dim_in) / w0)
    weight.uniform_(-w_std, w_std)
    self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
    self.activation = Sine(w0)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.activation(F.linear(x, self.weight, self.bias))


class INR(nn.Module):
  """DWSNets nn/inr.py INR(in_dim=2, n_layers=3, up_scale=16, out_channels=1) without positional encoding."""

  def __init__(self, in_dim: int = 2, n_layers: int = 3, up_scale: int = 16, out_channels: int = 1):
    super().__init__()
    hidden_dim = in_dim * up_scale
    layers = [Siren(dim_in=in_dim, dim_out=hidden_dim)]
    for _ in range(n_layers - 2):
      layers.append(Siren(hidden_dim, hidden_dim))
    layers.append(nn.Linear(hidden_dim, out_channels))
    self.seq = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.seq(x) + 0.5


def state_dicts(weights: dict, names) -> list[dict]:
  """popnet's [n, in, out] kernels and [n, out] biases per layer -> n PyTorch state dicts ([out, in] weights)."""
  n = len(weights[names[0]]['kernel'])
  return [{f'{name}.{key}': torch.tensor(weights[name]['kernel'][i].T if key == 'weight' else weights[name]['bias'][i])
           for name in names for key in ('weight', 'bias')} for i in range(n)]


class TorchLoop:
  """One INR at a time: a fresh DWS INR per image, loaded with its initial weights, Adam(lr), `steps` steps."""
  name = 'torch_loop'
  group = 1
  compile_seconds = 0.0  # nothing is compiled

  def __init__(self, coords: np.ndarray, lr: float, names):
    self.dev = device()
    self.coords = torch.tensor(coords, device=self.dev)
    self.lr, self.names = lr, names

  def fit(self, work, steps: int) -> np.ndarray:
    """Fits each image of `work` in turn; [n, steps] pre-update losses."""
    curves = []
    for state, target in zip(state_dicts(work.weights, self.names), work.targets):
      model = INR().to(self.dev)
      model.load_state_dict(state)
      y = torch.tensor(target, device=self.dev)
      criteria = nn.MSELoss()
      optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
      losses = []
      for _ in range(steps):
        model.train()
        optimizer.zero_grad()
        out = model(self.coords)
        loss = criteria(out, y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
      curves.append(losses)
    return np.asarray(curves, np.float64)


class TorchVmap:
  """`group` SIRENs at once: their parameters stacked as torch.func.stack_module_state stacks them, per-member
  losses and gradients by vmap(grad_and_value(functional_call)), and torch.optim.Adam over the stacked tensors
  (Adam is elementwise and every member takes the same steps, so it is each member's own Adam)."""
  name = 'torch_vmap'
  compile_seconds = 0.0

  def __init__(self, coords: np.ndarray, lr: float, names, group: int):
    from torch import func
    self.dev = device()
    self.coords = torch.tensor(coords, device=self.dev)
    self.lr, self.names, self.group = lr, names, group
    base = INR().to('meta')

    def loss(params, coords, target):
      return F.mse_loss(func.functional_call(base, params, (coords,)), target)

    self.grad_and_loss = func.vmap(func.grad_and_value(loss), in_dims=(0, None, 0))

  def fit(self, work, steps: int) -> np.ndarray:
    """Fits the images of `work` together; [n, steps] pre-update losses."""
    states = state_dicts(work.weights, self.names)
    params = {k: torch.stack([s[k] for s in states]).to(self.dev).requires_grad_() for k in states[0]}
    y = torch.tensor(work.targets, device=self.dev)
    optimizer = torch.optim.Adam(params.values(), lr=self.lr)
    losses = []
    for _ in range(steps):
      grads, loss = self.grad_and_loss({k: p.detach() for k, p in params.items()}, self.coords, y)
      for k, p in params.items():
        p.grad = grads[k]
      optimizer.step()
      losses.append(loss.detach())
    return torch.stack(losses, dim=1).double().cpu().numpy()  # waits for the device
