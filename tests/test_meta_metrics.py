"""meta.metrics against hand-computed cases."""
import math

import numpy as np
import pytest

from meta import metrics


def test_r2_and_kendall_tau_hand_computed():
  y = [1.0, 2.0, 3.0, 4.0]
  # SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5; one error of 1 -> SS_res = 1 -> R2 = 0.8; every pair concordant -> tau 1
  m = metrics.regression_metrics(y, [1.0, 2.0, 3.0, 5.0])
  assert m['r2'] == pytest.approx(0.8) and m['kendall_tau'] == pytest.approx(1.0)
  assert m['mae'] == pytest.approx(0.25) and m['rmse'] == pytest.approx(0.5)
  # swapped first two: SS_res = 2 -> R2 = 0.6; 6 pairs, 5 concordant, 1 discordant -> tau = 4 / 6
  m = metrics.regression_metrics(y, [2.0, 1.0, 3.0, 4.0])
  assert m['r2'] == pytest.approx(0.6) and m['kendall_tau'] == pytest.approx(2 / 3)
  # a tie in the prediction: tau-b = (5 - 0) / sqrt(6 * 5)
  assert metrics.kendall_tau(y, [1.0, 1.0, 2.0, 3.0]) == pytest.approx(5 / math.sqrt(30))
  # reversed order: tau -1; predicting the mean: R2 0; worse than the mean: negative
  assert metrics.kendall_tau(y, [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
  assert metrics.r2_score(y, [2.5] * 4) == pytest.approx(0.0)
  assert metrics.r2_score(y, [4.0, 3.0, 2.0, 1.0]) == pytest.approx(1 - 20 / 5)
  assert math.isnan(metrics.r2_score([1.0, 1.0], [1.0, 2.0]))


def test_classification_metrics():
  probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4],
                    [0.5, 0.2, 0.3]])
  y = np.array([0, 1, 1, 2, 2, 2])
  m = metrics.classification_metrics(y, probs, ('a', 'b', 'c'))
  assert m['accuracy'] == pytest.approx(4 / 6) and m['chance'] == pytest.approx(1 / 3)
  assert m['confusion'] == [[1, 0, 0], [1, 1, 0], [1, 0, 2]]
  assert m['per_class_accuracy'] == {'a': 1.0, 'b': 0.5, 'c': pytest.approx(2 / 3)}
  expected = -np.mean(np.log([0.9, 0.7, 0.3, 0.8, 0.4, 0.3]))
  assert m['log_loss'] == pytest.approx(expected)
  assert metrics.score(m) == m['accuracy']
  assert metrics.selection_key(m) > metrics.selection_key(dict(m, log_loss=m['log_loss'] + 1))
