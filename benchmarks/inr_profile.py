"""Where an INR fit's time goes on this machine (benchmarks/results/inr_fit_rate/README.md quotes it): the cost of one
DWS SIREN Adam step in XLA, one member alone and K members vmapped, with the sine and with the sine replaced
(not the same work: it isolates the sine's share), and the cost of one sine in XLA and in PyTorch.

    python -m benchmarks.inr_profile --chunks 1,8,64 --steps 200
"""
from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ''):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from popnet import usage  # noqa: E402
from benchmarks import timing  # noqa: E402

ACTIVATIONS = ('sin', 'poly_sin', 'popnet_sine', 'tanh', 'identity')


def best_seconds(fn, *args, repeats: int = 3) -> float:
  import jax
  jax.block_until_ready(fn(*args))
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t)
  return best


def poly_sin(x):
  """sin by range reduction to [-pi/2, pi/2] (x = k pi + r, pi in three float32 parts) and the Taylor polynomial
  to r^11 (error < 6e-8 there): only multiplies and adds, which XLA vectorizes. A what-if, not popnet's sine."""
  import jax.numpy as jnp
  k = jnp.round(x * 0.31830988618379067)
  r = x - k * 3.140625 - k * 9.670257568359375e-04 - k * 6.277114152908325e-07
  r2 = r * r
  p = r + r * r2 * (-1 / 6 + r2 * (1 / 120 + r2 * (-1 / 5040 + r2 * (1 / 362880 + r2 * (-1 / 39916800)))))
  return p * (1 - 2 * jnp.mod(k, 2))


def step_cost(activation: str, chunk: int, steps: int) -> tuple[float, float]:
  """Microseconds per member-step of `steps` Adam steps (lax.scan) of `chunk` vmapped DWS SIRENs (1: no vmap), and
  the FLOPs of one member-step as XLA's cost analysis of the compiled program counts them."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from popnet import siren
  from popnet.arch import resolve
  arch = resolve('siren_dws')
  coords = jnp.asarray(siren.coordinates(arch, 28, 28))
  target = jnp.asarray(np.random.default_rng(0).random((784, 1), np.float32))
  from popnet.sine import sine
  act = {'sin': jnp.sin, 'poly_sin': poly_sin, 'popnet_sine': sine, 'tanh': jnp.tanh,
         'identity': lambda x: x}[activation]  # ACTIVATIONS
  tx = optax.adam(5e-4, eps=1e-8)

  def forward(p):
    x = coords
    for n in arch.layer_names[:-1]:
      x = act(arch.w0 * (x @ p[n]['kernel'] + p[n]['bias']))
    return x @ p[arch.layer_names[-1]]['kernel'] + p[arch.layer_names[-1]]['bias'] + 0.5

  def step(carry, _):
    p, o = carry
    loss, g = jax.value_and_grad(lambda p: jnp.mean((forward(p) - target) ** 2))(p)
    u, o = tx.update(g, o, p)
    return (optax.apply_updates(p, u), o), loss

  def fit(p):
    return jax.lax.scan(step, (p, tx.init(p)), None, length=steps)[1]

  keys = jax.random.split(jax.random.PRNGKey(0), chunk)
  params = jax.vmap(lambda k: siren.init(arch, k)['params'])(keys)
  run = jax.jit(jax.vmap(fit))
  if chunk == 1:
    params, run = jax.tree.map(lambda x: x[0], params), jax.jit(fit)
  one = jax.tree.map(lambda x: x[0], params) if chunk > 1 else params  # XLA counts a scan's body once: one step
  cost = jax.jit(step).lower((one, tx.init(one)), None).compile().cost_analysis()
  flops = (cost[0] if isinstance(cost, list) else cost).get('flops', float('nan'))
  return best_seconds(run, params) / (steps * chunk) * 1e6, flops


def sine_cost(shape=(784, 32), reps: int = 200) -> dict:
  """Nanoseconds per element of sin(30 x) on a [784, 32] activation: XLA (jit, reps in a fori_loop) and torch."""
  import jax
  import jax.numpy as jnp
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  f = jax.jit(lambda x: jax.lax.fori_loop(0, reps, lambda i, y: jnp.sin(30.0 * y), x))
  g = jax.jit(lambda x: jax.lax.fori_loop(0, reps, lambda i, y: poly_sin(30.0 * y), x))
  out = {'xla_ns': best_seconds(f, x) / reps / x.size * 1e9, 'xla_poly_sin_ns': best_seconds(g, x) / reps / x.size * 1e9,
         'poly_sin_max_abs_error': float(jnp.max(jnp.abs(poly_sin(30.0 * x) - jnp.sin(30.0 * x))))}
  try:
    import torch
  except ImportError:
    return out
  t = torch.randn(*shape)
  best = float('inf')
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(reps):
      torch.sin(30.0 * t)
    best = min(best, time.perf_counter() - start)
  return out | {'torch_ns': best / reps / t.numel() * 1e9, 'torch_threads': torch.get_num_threads()}


def main(argv=None) -> None:
  p = usage.ArgumentParser(prog='python -m benchmarks.inr_profile', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--chunks', default='1,8,64', help='comma-separated member counts vmapped together')
  p.add_argument('--activations', default='sin,identity',
                 help="comma-separated: sin, poly_sin, popnet_sine (popnet/sine.py, popnet's), tanh, identity")
  p.add_argument('--steps', type=int, default=200, help='Adam steps per timed call')
  args = p.parse_args(argv)
  usage.check_ranges(p, args, (('steps', dict(low=1)),))
  usage.int_list(p, 'chunks', args.chunks)
  unknown = sorted(set(args.activations.split(',')) - set(ACTIVATIONS))
  if unknown:
    p.error(f'--activations: unknown {unknown}; choose from {", ".join(ACTIVATIONS)}')
  import jax
  print(f"jax {jax.__version__} on {jax.default_backend()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
        f"load {timing.load_average()}", flush=True)
  print(f'one sine: {sine_cost()}  load {timing.load_average()}', flush=True)
  for activation in args.activations.split(','):
    for chunk in [int(c) for c in args.chunks.split(',')]:
      us, flops = step_cost(activation, chunk, args.steps)
      print(f'{activation:11s} K={chunk:3d}: {us:8.1f} us per member-step, {flops / 1e6:.2f} MFLOP (XLA cost '
            f'analysis) = {flops / us / 1e3:.1f} GFLOP/s  load {timing.load_average()}', flush=True)


if __name__ == '__main__':
  main()
