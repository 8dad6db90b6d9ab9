"""fit, forecast, impute and to_inference_data take numpy arrays and float64 tensors, in the model's dtype."""

import numpy as np
import pytest
import torch

from pyroseq.inference import fit, forecast, to_inference_data
from pyroseq.models import DKF, ConditionalDiffusion


@pytest.mark.parametrize("kind", ["numpy", "float64"])
def test_state_space_model_takes_arrays(kind):
    x = np.random.default_rng(0).normal(size=(8, 6, 2))
    x[0, 2, 1] = np.nan  # missing
    data = x if kind == "numpy" else torch.from_numpy(x)
    model = DKF(2, 2, rnn_dim=8, hidden_dim=8, transition_dim=8)
    losses = fit(model, data, num_steps=2, batch_size=4, progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))
    fc = forecast(model, data[:3], horizon=2, num_samples=4)
    assert fc.shape == (4, 3, 2, 2) and fc.dtype == torch.float32
    idata = to_inference_data(model, data[:3], num_samples=2)
    assert idata.posterior_predictive["x"].shape == (1, 2, 3, 6, 2)


@pytest.mark.parametrize("kind", ["numpy", "float64"])
def test_impute_takes_arrays(kind):
    x = np.random.default_rng(1).normal(size=(4, 8, 2))
    model = ConditionalDiffusion(2, 8, backbone="csdi", channels=8, num_layers=1, num_steps=2)
    fit(model, x if kind == "numpy" else torch.from_numpy(x), num_steps=1, batch_size=4, progress=False)
    x[:, 3:5, 0] = np.nan
    filled = model.impute(x if kind == "numpy" else torch.from_numpy(x), num_samples=2)
    assert filled.shape == (2, 4, 8, 2) and filled.dtype == torch.float32
    observed = ~np.isnan(x)
    assert np.allclose(filled[0].numpy()[observed], x[observed].astype(np.float32))


def test_integer_data_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="floating point"):
        fit(DKF(2, 2), np.ones((4, 6, 2), dtype=np.int64), num_steps=1, progress=False)
