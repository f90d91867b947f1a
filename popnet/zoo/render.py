"""The images an INR zoo encodes: each row's SIREN evaluated with its family's forward pass (popnet/siren.py) at
the zoo's coordinate grid, in the family's pixel order (row-major, as both references' decoders reshape).

    images = zoo.render(rows)                    # [n, H, W, C] float32 on the source images' 0..255 scale
    raw = zoo.render(rows, scale='family')       # the SIREN outputs as fitted: DWS [0, 1], NFN [-1, 1]
    python -m popnet.zoo render ZOO --out fig.png [--members 0,5,9 | --count 8]   originals vs reconstructions

jax is imported here, on the first render, never when a zoo is opened."""
from __future__ import annotations

import numpy as np
import pandas as pd

SCALES = ('pixels', 'family')
CHUNK = 256  # rows decoded per call


def render(zoo, rows: pd.DataFrame, scale: str = 'pixels') -> np.ndarray:
  """[len(rows), H, W, C] float32: the rows' INRs decoded (unclipped, not rounded)."""
  import jax
  from popnet import siren
  from popnet.arch import SirenArch
  if scale not in SCALES:
    raise ValueError(f'scale: got {scale!r}; allowed: {list(SCALES)}')
  names = pd.unique(rows['arch']) if 'arch' in rows else zoo.architectures
  if len(names) != 1 or not isinstance(zoo.arch(names[0]), SirenArch):
    raise ValueError(f'render decodes the rows of one SIREN architecture; these rows have {list(names)}')
  arch = zoo.arch(names[0])
  h, w, _ = zoo.input_shape
  coords = siren.coordinates(arch, h, w)
  decode = jax.jit(jax.vmap(lambda p: siren.apply(arch, p, coords)))
  layout = zoo.layout(names[0])
  out = np.empty((len(rows), h * w, arch.out_dim), np.float32)
  for start in range(0, len(rows), CHUNK):  # a chunk's activations: CHUNK x H x W x hidden floats
    params = layout.unflatten(zoo.vectors(rows.iloc[start:start + CHUNK]))['params']
    out[start:start + CHUNK] = np.asarray(decode(params))
  out = out.reshape(len(rows), h, w, arch.out_dim)
  if scale == 'family':
    return out
  low, high = siren.TARGET_RANGE[arch.family]
  return ((out - low) * (255.0 / (high - low))).astype(np.float32)


def psnr(reconstruction: np.ndarray, original: np.ndarray) -> np.ndarray:
  """Per image, dB, both on the 0..255 scale: 10 log10(255^2 / MSE) (equals the family's PSNR in its range)."""
  diff = reconstruction.astype(np.float64) - original.astype(np.float64)
  return 10.0 * np.log10(255.0 ** 2 / np.mean(diff.reshape(len(diff), -1) ** 2, axis=1))


def originals(rows: pd.DataFrame, data_dir: str | None = None) -> np.ndarray:
  """The source images [n, H, W, C] uint8 of the rows (`image` indexes the dataset's train + test)."""
  from popnet import data as data_lib
  datasets = pd.unique(rows['dataset'].astype(str)) if 'dataset' in rows else []
  if len(datasets) != 1:
    raise ValueError(f'the rows need one dataset column value to find their images; they have {list(datasets)}')
  raw = data_lib.load(str(datasets[0]), data_dir)
  return np.concatenate([raw.train_x, raw.test_x])[rows['image'].to_numpy(np.int64)]


def plot(zoo, rows: pd.DataFrame, out: str, data_dir: str | None = None) -> str:
  """A PNG: the originals (top) over their reconstructions (bottom), each titled with its PSNR."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  images, recon = originals(rows, data_dir), render(zoo, rows)
  db = psnr(recon, images)
  n = len(rows)
  fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
  for i in range(n):
    for ax, picture, title in ((axes[0, i], images[i], f'image {int(rows["image"].iloc[i])}'),
                               (axes[1, i], np.clip(recon[i], 0, 255), f'{db[i]:.1f} dB')):
      ax.imshow(picture.astype(np.float32).squeeze(-1) if picture.shape[-1] == 1 else picture / 255.0,
                cmap='gray', vmin=0, vmax=255)
      ax.set_title(title, fontsize=8)
      ax.axis('off')
  axes[0, 0].text(-0.3, 0.5, 'original', transform=axes[0, 0].transAxes, rotation=90, va='center', fontsize=8)
  axes[1, 0].text(-0.3, 0.5, 'INR', transform=axes[1, 0].transAxes, rotation=90, va='center', fontsize=8)
  fig.suptitle(f'{zoo.architectures[0]}: originals and their INRs (PSNR)', fontsize=9)
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  plt.close(fig)
  return out


def main(argv) -> int:
  """python -m popnet.zoo render ZOO --out fig.png [--members ...] [--count N]"""
  from popnet import usage
  from popnet.zoo.reader import Zoo
  from popnet.zoo.schema import ZooError
  p = usage.ArgumentParser(prog='python -m popnet.zoo render', description='Originals vs the images an INR '
                           'zoo encodes, with PSNR.', epilog='example: python -m popnet.zoo render runs/inr_smoke '
                           '--out inr.png --count 8')
  p.add_argument('zoo', help='an INR zoo (or the workdir holding zoo/)')
  p.add_argument('--out', default='inr.png', help='the PNG to write (default: %(default)s)')
  p.add_argument('--members', default=None, help='comma-separated member ids (default: the first --count)')
  p.add_argument('--count', type=int, default=8, help='how many members when --members is not given (default: 8)')
  p.add_argument('--data_dir', '--data-dir', default=None, help='the data dir holding the zoo\'s dataset')
  a = p.parse_args(argv)
  try:
    zoo = Zoo.open(a.zoo)
    last = zoo.select(snapshot='last')
    if a.members is None:
      rows = last.sort_values('member_id').head(max(1, a.count))
    else:
      wanted = [int(m) for m in a.members.split(',')]
      rows = last.set_index('member_id', drop=False).loc[wanted]
    print(plot(zoo, rows, a.out, a.data_dir))
  except (ZooError, ValueError, KeyError, OSError) as e:
    print(f'error: {str(e).splitlines()[0] if str(e) else type(e).__name__}')
    return 2
  return 0
