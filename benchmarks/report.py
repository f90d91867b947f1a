"""Text of the throughput benchmark's results: one console line per row and the markdown table."""
from __future__ import annotations

BASELINE_TITLES = {'loop_1proc': 'loop, 1 process', 'loop_per_core': 'loop, 1 process per core'}


def row_line(r: dict) -> str:
  rates = r['model_samples_per_s']
  parts = [f"{BASELINE_TITLES[n]} {rates[n]:,.0f}" for n in BASELINE_TITLES if n in rates]
  if 'popnet_per_core' in rates:
    parts.append(f"popnet, 1 process per core {rates['popnet_per_core']:,.0f}")
  return (f"{r['arch']:12s} P={r['population']:5d}: popnet {rates['popnet']:>10,.0f}  " + '  '.join(parts)
          + f" model-samples/s; popnet / best ({r['best_baseline']}) = {r['speedup_vs_best']:.2f}x  "
          f"{r['achieved_gflops']:.1f} GFLOP/s  compile {r['compile_seconds']:.1f}s  "
          f"load {r['load_average_before']}")


def _rate(x) -> str:
  return '-' if x is None else f'{x:,.0f}'


def _load(x) -> str:
  return '-' if not x else f'{x[0]:.1f}'


def markdown(result: dict) -> str:
  m = result['machine']
  rows = result['rows']
  n_proc = max([r['core_processes'] for r in rows] or [0])
  lines = [f"# Throughput: popnet vs training without popnet ({m['backend']})", '',
           f"Machine: {m['cpu']}, {m['cores']} cores"
           + (f" (this process may use {m['usable_cores']})" if m['usable_cores'] < m['cores'] else '')
           + f"; devices: {m['device_count']} x {m['devices'][0]}; jax {m['jax']}; measured fp32 matmul ceiling "
           f"{m['fp32_matmul_gflops']:.0f} GFLOP/s. {result['date']}. Load average (1 min) at start "
           f"{_load(m.get('load_average_start'))}, at end {_load(m.get('load_average_end'))}.", '',
           f"Command: `{result['command']}`", '',
           'Model-samples/s (networks x training examples per second); each program best of '
           f"{result['rounds']} calls, all timed in alternation.", '',
           '| arch | P | popnet | loop, 1 process | loop, 1 process per core | popnet / best baseline '
           '| per core, by last to finish | popnet / loop 1 proc | net-epochs/h (60k) | GFLOP/s | compile s '
           '| MiB/member | load (1 min) |',
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    rates = r['model_samples_per_s']
    per_core = f"{rates['loop_per_core']:,.0f}" if 'loop_per_core' in rates else '-'
    lines.append(f"| {r['arch']} {tuple(r['input_shape'])} | {r['population']} | {rates['popnet']:,.0f} "
                 f"| {rates['loop_1proc']:,.0f} | {per_core} | **{r['speedup_vs_best']:.2f}x** "
                 f"({BASELINE_TITLES[r['best_baseline']]}) | {_rate(r.get('loop_per_core_wall_model_samples_per_s'))} "
                 f"| {r['speedup']['loop_1proc']:.2f}x "
                 f"| {r['network_epochs_per_hour_60k']:,.0f} | {r['achieved_gflops']:.1f} | {r['compile_seconds']:.1f} "
                 f"| {r['mib_per_member']:.2f} | {_load(r['load_average_before'])} |")
  per_core = [r for r in rows if 'popnet_per_core' in r['model_samples_per_s']]
  if per_core:
    lines += ['', "popnet's program as one pinned process per core (each on its share of the members, summed "
              'like the loop\'s; --popnet_per_core): '
              + '; '.join(f"{r['arch']} P = {r['population']} {r['model_samples_per_s']['popnet_per_core']:,.0f} "
                          f"({r['popnet_per_core_vs_best']:.2f}x the best baseline)" for r in per_core) + '.']
  impls = {r['arch']: (r['conv_impl'], r['member_chunk']) for r in rows}
  lines += ['', 'popnet convolution formulation per layer and member chunk: '
            + '; '.join(f'{arch} {impl} (chunk {chunk})' for arch, (impl, chunk) in impls.items()) + '.']
  mem = result.get('memory')
  if mem:
    lines += ['', f"Population of {mem['population']} small networks (smallcnnzoo, batch 32): compiled program "
              f"{mem['compiled_bytes'] / 2**30:.2f} GiB, process peak RSS {mem['process_max_rss_bytes'] / 2**30:.2f} GiB"
              + (f", device peak {mem['device_peak_bytes'] / 2**30:.2f} GiB" if mem['device_peak_bytes'] else '')
              + f"; {mem['model_samples_per_s']:,.0f} model-samples/s."]
  lines += ['', 'loop = one jitted single-model Adam step (XLA convolution) called per member from a Python loop. '
            + (f'Per core: {n_proc} processes, each pinned to one core with one XLA device and its share of the '
               'members, started together; their rates are summed (the pool\'s best case, used for the ratio); '
               '"by last to finish" divides the whole population\'s samples by the time the last process took, '
               'as popnet is measured. ' if n_proc else '')
            + 'popnet = one population program, Adam with a per-member learning rate, per-member data order. '
            'GFLOP/s from XLA cost analysis x loop trip counts (members / chunk).', '']
  return '\n'.join(lines)
