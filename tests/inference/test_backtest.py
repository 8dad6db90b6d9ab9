import math

import numpy as np
import pytest
import torch

import pyroseq.inference.backtesting as backtesting
from pyroseq.inference import BacktestResult, backtest, fit
from pyroseq.inference.backtesting import forecast_scores, rolling_forecast, rolling_origins, rolling_steps
from pyroseq.models import DKF, ConditionalDiffusion


def test_rolling_origins_end_at_the_last_step():
    assert rolling_origins(20, 3, 5) == [5, 8, 11, 14, 17]
    assert rolling_origins(20, 3, 5, stride=6) == [5, 11, 17]
    assert rolling_origins(8, 3, 5) == [5]
    with pytest.raises(ValueError, match="too short"):
        rolling_origins(7, 3, 5)
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        rolling_origins(20, 3, 5, stride=0)


class _Window:
    length, horizon = 10, None


def test_rolling_steps():
    assert rolling_steps(object(), 25) == [25]  # no window: one forecast
    assert rolling_steps(_Window(), 9) == [9]
    assert rolling_steps(_Window(), 12) == [5, 5, 2]
    assert rolling_steps(_Window(), 12, step=4) == [4, 4, 4]
    with pytest.raises(ValueError, match="step must be an integer in \\[1, 9\\]"):
        rolling_steps(_Window(), 12, step=10)


def test_scores_of_a_point_forecast_and_missing_truth():
    truth = torch.tensor([[[1.0], [2.0]], [[3.0], [float("nan")]]])  # (N=2, H=2, C=1)
    samples = (truth.nan_to_num(0.0) + 0.5).expand(4, -1, -1, -1)   # every sample 0.5 above the truth
    per_step, overall = forecast_scores(samples, truth)
    # For a point forecast the CRPS is the absolute error, and the truth lies outside every interval.
    np.testing.assert_allclose(per_step["crps"], [0.5, 0.5])
    np.testing.assert_allclose(per_step["mae"], [0.5, 0.5])
    np.testing.assert_allclose(per_step["energy_score"], [0.5, 0.5])
    assert per_step["coverage_90"].tolist() == [0.0, 0.0]
    assert overall["crps"] == pytest.approx(0.5) and overall["coverage_50"] == 0.0
    # Only the first series has its whole horizon observed: |(0.5, 0.5)| = sqrt(0.5).
    assert overall["energy_score"] == pytest.approx(math.sqrt(0.5))


def test_coverage_of_a_calibrated_forecast():
    torch.manual_seed(0)
    truth = torch.randn(300, 3, 2)
    samples = torch.randn(200, 300, 3, 2)
    per_step, overall = forecast_scores(samples, truth)
    assert abs(overall["coverage_50"] - 0.5) < 0.05 and abs(overall["coverage_90"] - 0.9) < 0.04
    assert per_step["crps"].shape == (3,)


@pytest.fixture(scope="module")
def series():
    torch.manual_seed(0)
    t = torch.arange(160.0)
    x = torch.stack([torch.sin(t / 4), torch.cos(t / 6)], -1) + 0.1 * torch.randn(160, 2)
    x[40:45, 0] = float("nan")
    return x


def test_backtest_of_a_state_space_model(series):
    model = DKF(2, 2, rnn_dim=8, hidden_dim=8)
    fit(model, series[:100].unfold(0, 20, 4).permute(0, 2, 1).contiguous(), num_steps=3, progress=False)
    result = backtest(model, series, horizon=5, history=20, stride=10, num_samples=8)
    assert isinstance(result, BacktestResult)
    assert result.origins == list(range(25, 156, 10)) and result.samples.shape == (8, 14, 5, 2)
    torch.testing.assert_close(result.truth[0], series[25:30])
    for name in ("crps", "energy_score", "coverage_50", "coverage_90", "mae"):
        assert result.per_step[name].shape == (5,) and np.isfinite(result.per_step[name]).all(), name
    table = result.table()
    assert "14 origins" in table and table.count("\n") == 3 + 5 + 1
    assert set(result.to_dict()["per_step"]) == {"crps", "energy_score", "coverage_50", "coverage_90", "mae"}
    import matplotlib.pyplot as plt

    fig = result.plot()
    assert len(fig.axes) == 4
    plt.close(fig)


def test_backtest_of_a_window_model_beyond_its_window(series):
    model = ConditionalDiffusion(2, 8, backbone="csdi", channels=8, num_layers=1, num_steps=2, time_embedding_dim=8,
                                 channel_embedding_dim=4)
    fit(model, series[:100].unfold(0, 8, 4).permute(0, 2, 1).contiguous(), num_steps=2, progress=False)
    result = backtest(model, series, horizon=12, origins=[60, 100, 148], num_samples=5)
    assert result.history == 8 and result.samples.shape == (5, 3, 12, 2)
    assert torch.isfinite(result.samples).all()
    with pytest.raises(ValueError, match="origins must be in .* = \\[8, 148\\], got 149"):
        backtest(model, series, horizon=12, origins=[149])
    with pytest.raises(ValueError, match="history: give the number of steps"):
        backtest(DKF(2, 2, rnn_dim=8, hidden_dim=8), series, horizon=3)


def test_rolling_forecast_continues_every_path_from_its_own_draws(monkeypatch):
    class Echo(torch.nn.Module):
        """A window model whose forecast is the path's last value plus one: paths must keep their own draws."""

        length = 4

    model = Echo()
    calls = []

    def fake_forecast(model, x, h, num_samples=1, covariates=None, seed=None, chunk_size=None):
        calls.append((tuple(x.shape), h, num_samples))
        last = x[:, -1:].expand(-1, h, -1) + torch.arange(1.0, h + 1)[:, None]
        out = last.unsqueeze(0).repeat(num_samples, 1, 1, 1)
        if num_samples > 1:  # different draws per sample path
            out = out + 100 * torch.arange(num_samples, dtype=out.dtype)[:, None, None, None]
        return out

    monkeypatch.setattr(backtesting, "forecast", fake_forecast)
    out = rolling_forecast(model, torch.zeros(1, 6, 1), horizon=5, num_samples=3)
    assert [c[1] for c in calls] == [2, 2, 1] and calls[1][0] == (3, 4, 1)
    # Sample s starts at 100 s and then counts up by one per step, each path from its own last value.
    expected = torch.arange(1.0, 6.0)[None, :] + 100 * torch.arange(3.0)[:, None]
    torch.testing.assert_close(out[:, 0, :, 0], expected)
