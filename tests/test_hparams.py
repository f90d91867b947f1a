"""Hyper-parameter spaces: deterministic, stable sampling; bad specs named."""

import pandas as pd
import pytest

from popnet import hparams
from tests.helpers import space


def test_sampling_deterministic_and_stable():
  s = space(learning_rate='uniform(1e-3, 5e-3)', batch_size='choice(16, 32)')
  a = hparams.sample_members(s, 20, seed=7)
  pd.testing.assert_frame_equal(a, hparams.sample_members(s, 20, seed=7))
  assert not a.equals(hparams.sample_members(s, 20, seed=8))
  bigger = hparams.sample_members(s, 40, seed=7)
  pd.testing.assert_frame_equal(bigger.iloc[:20].reset_index(drop=True), a)  # member ids are stable
  assert a['learning_rate'].between(1e-3, 5e-3).all()
  assert set(a['batch_size']) <= {16, 32} and a['seed'].nunique() == 20
  assert set(a['arch']) == {'smallcnnzoo'}


def test_bad_hyperparameters_are_named():
  with pytest.raises(ValueError, match='hparams.optimizer.*adagrad.*adam'):
    hparams.sample_members(space(optimizer='adagrad'), 2, 0)
  with pytest.raises(ValueError, match='unknown hyper-parameter'):
    hparams.sample_members(dict(space(), learnig_rate=0.1), 2, 0)
  with pytest.raises(ValueError, match='hparams.learning_rate.*> 0'):
    hparams.sample_members(space(learning_rate=-1.0), 2, 0)
  with pytest.raises(ValueError, match='loguniform'):
    hparams.sample_members(space(learning_rate='loguniform(0, 1)'), 2, 0)
