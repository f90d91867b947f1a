"""meta's plots read at a glance: legends clear of the data, titles inside the figure, integer epochs."""
import matplotlib
import matplotlib.figure
import pytest

from meta import plots


@pytest.fixture
def saved(monkeypatch):
  """The figures the plot functions save, drawn (so their layout can be measured), in order."""
  figures, save = [], matplotlib.figure.Figure.savefig

  def keep(fig, *args, **kwargs):
    save(fig, *args, **kwargs)
    figures.append(fig)

  monkeypatch.setattr(matplotlib.figure.Figure, 'savefig', keep)
  return figures


def _renderer(fig):
  """A renderer of the saved (and closed) figure, drawn again as it was saved."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  canvas = FigureCanvasAgg(fig)
  canvas.draw()
  return canvas.get_renderer()


def _series(epochs, score):
  return {'epoch': epochs, 'score': [score] * len(epochs), 'ci95': [[score - 0.1, score + 0.1]] * len(epochs),
          'networks': [40] * len(epochs), 'metric': 'accuracy', 'chance': 0.25}


def test_when_legend_below_the_data_and_integer_epochs(tmp_path, saved):
  plots.when(_series([2, 4, 6, 8], 0.8), _series([2, 4, 6, 8], 0.75), str(tmp_path / 'when.png'), 'activation')
  fig = saved[-1]
  ax = fig.axes[0]
  renderer = _renderer(fig)
  legend, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
  assert legend.y1 <= axes_box.y0  # under the axes: it covers no error bar, point or chance line
  assert all(float(t).is_integer() for t in ax.get_xticks())
  lines = [bars.lines[0] for bars in ax.containers]  # each errorbar's data line
  assert len(lines) == 2 and all(a < b for a, b in zip(lines[0].get_xdata(), lines[1].get_xdata()))  # side by side


def test_confusion_title_fits_the_figure(tmp_path, saved):
  m = {'confusion': [[5, 1, 0, 0], [0, 6, 0, 0], [1, 0, 5, 0], [0, 0, 2, 4]], 'classes': ['elu', 'relu', 'sigmoid',
                                                                                       'tanh'],
       'accuracy': 0.833, 'chance': 0.25}
  title = 'activation | statnn_gbt\naccuracy 0.753 95% [0.680, 0.823], n=102 (chance 0.250)'
  plots.confusion(m, str(tmp_path / 'confusion.png'), title)
  fig = saved[-1]
  renderer = _renderer(fig)
  box = fig.axes[0].title.get_window_extent(renderer)
  assert 0 <= box.x0 and box.x1 <= fig.bbox.width  # the whole title is inside the figure, not cut off
  assert fig.axes[0].get_title().replace('\n', ' ') == title.replace('\n', ' ')


def test_where_legend_below_the_bars(tmp_path, saved):
  parts = {n: {'score': s, 'ci95': [s - 0.05, s + 0.05], 'networks': 50, 'chance': 0.25}
           for n, s in (('all', 0.9), ('conv', 0.95), ('fc', 0.6))}
  plots.where(None, parts, str(tmp_path / 'where.png'), 'activation')
  fig = saved[-1]
  ax = fig.axes[0]
  renderer = _renderer(fig)
  assert ax.get_legend().get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0


def test_curves_plot_labels_its_bands_with_integer_epochs_and_a_short_title(tmp_path, saved):
  """popnet.curves' figure (examples/first_hour.sh draws it first): the same rules."""
  import numpy as np
  import pandas as pd

  from popnet import curves
  workdir = tmp_path / 'first_hour'
  (workdir / curves.DIRECTORY).mkdir(parents=True)
  rng = np.random.default_rng(0)
  rows = [{'member_id': m, 'epoch': e, 'minibatch_loss': np.nan if e == 0 else 2.0 / e + rng.random(),
           **{c: rng.random() for c in curves.METRICS if c != 'minibatch_loss'}, 'diverged': False}
          for m in range(8) for e in range(4)]
  pd.DataFrame(rows, columns=list(curves.COLUMNS)).to_csv(workdir / curves.DIRECTORY / 'cohort_0000.csv', index=False)
  curves.plot(str(workdir), str(tmp_path / 'curves.png'))
  fig = saved[-1]
  assert fig._suptitle.get_text() == 'first_hour: 8 members'  # not the absolute path
  metric_ax, loss_ax, _ = fig.axes
  assert metric_ax.get_ylabel() == 'validation accuracy' and loss_ax.get_ylabel() == 'training loss (minibatches)'
  _renderer(fig)
  assert all(float(t).is_integer() for ax in (metric_ax, loss_ax) for t in ax.get_xticks())
  key = ' '.join(t.get_text() for t in fig.legends[0].get_texts())
  assert 'band: the middle 80% of members (10th to 90th percentile)' in key and 'median' in key
  assert metric_ax.get_legend() is None and loss_ax.get_legend() is None  # one key below, none over the curves
