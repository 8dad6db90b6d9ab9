import csv
import json

import numpy as np
import pandas as pd
import pytest

import pyroseq.inference.backtesting as backtesting
from pyroseq.runs import (
    RunDirectory,
    UsageError,
    load_run_data,
    run_backtest,
    run_fit,
    run_forecast_csv,
    run_generate,
    run_impute,
    validate_config,
)
from pyroseq.runs.calendar import calendar_covariates

TINY_SSM = dict(latent_dim=1, rnn_dim=8, hidden_dim=8)
TINY_CSDI = dict(backbone="csdi", channels=8, num_layers=1, num_steps=2, time_embedding_dim=8,
                 channel_embedding_dim=4)
FEATURES = ["hour_of_day", "day_of_week"]


def _quiet(*args):
    pass


def test_calendar_covariates_are_the_phases_of_the_cycles():
    times = pd.DatetimeIndex(["2026-03-02 00:00", "2026-03-02 06:00", "2026-03-04 12:00", "2026-01-01 00:00"])
    cov = calendar_covariates(times, ["hour_of_day", "day_of_week", "day_of_month", "day_of_year"])
    assert cov.shape == (4, 8) and cov.dtype == np.float32
    np.testing.assert_allclose(cov[:, :2], [[0, 1], [1, 0], [0, -1], [0, 1]], atol=1e-6)  # midnight, 6:00, noon
    phase = (2 + 0.5) / 7  # Wednesday noon; 2026-03-02 is a Monday
    np.testing.assert_allclose(cov[2, 2:4], [np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)], atol=1e-6)
    np.testing.assert_allclose(cov[0, 2:4], [0, 1], atol=1e-6)
    np.testing.assert_allclose(cov[3, 4:], [0, 1, 0, 1], atol=1e-6)  # first day of month and year


@pytest.mark.parametrize("config, message", [
    (dict(model="dkf", data=dict(name="x.csv", calendar=["hour"])), "unknown feature 'hour'"),
    (dict(model="dkf", data=dict(name="x.csv", calendar=["day_of_week", "day_of_week"])), "twice"),
    (dict(model="dimts", data=dict(name="x.csv", calendar=["day_of_week"])), "for the forecasting models"),
])
def test_bad_calendar_settings(config, message):
    with pytest.raises(UsageError, match=message):
        validate_config(config)


def test_calendar_needs_a_csv_with_dates(tmp_path):
    with pytest.raises(UsageError, match="needs a CSV file"):
        load_run_data(validate_config(dict(model="dkf", data=dict(name="bimodal", calendar=FEATURES)))["data"])
    (tmp_path / "steps.csv").write_text("time,a\n" + "".join(f"{i},{i % 5}\n" for i in range(30)))
    with pytest.raises(UsageError, match="which need dates: column 'time' holds numbers"):
        load_run_data(validate_config(dict(model="dkf", data=dict(name=str(tmp_path / "steps.csv"), length=12,
                                                                  calendar=FEATURES)))["data"])


def _write_hourly(path, rows=72):
    times = pd.date_range("2026-03-02 00:00", periods=rows, freq="h")
    t = np.arange(rows)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["datetime", "load"])
        for i in range(rows):
            writer.writerow([times[i].strftime("%Y-%m-%d %H:%M"), "" if i in (10, 40) else
                             repr(float(100 + 10 * np.sin(2 * np.pi * t[i] / 24)))])
    return times


@pytest.mark.parametrize("model, kwargs", [("dkf", TINY_SSM), ("conditional", TINY_CSDI)])
def test_a_calendar_run_forecasts_with_the_covariates_of_the_future_timestamps(tmp_path, monkeypatch, model, kwargs):
    times = _write_hourly(tmp_path / "hourly.csv")
    config = dict(model=model, model_kwargs=kwargs, data=dict(name=str(tmp_path / "hourly.csv"), length=8,
                                                                calendar=FEATURES),
                  train=dict(num_steps=2, batch_size=8), forecast=dict(horizon=3, num_samples=4))
    run = tmp_path / "run"
    run_fit(run, config, progress=False, log=_quiet)
    info = json.loads(open(RunDirectory(run).data).read())
    assert info["calendar"] == FEATURES and info["covariate_dim"] == 4

    real, seen = backtesting.rolling_forecast, []

    def recording(model, x, horizon, covariates=None, **kw):
        seen.append(covariates)
        return real(model, x, horizon, covariates=covariates, **kw)

    monkeypatch.setattr(backtesting, "rolling_forecast", recording)
    out = run_forecast_csv(run, horizon=5, output=tmp_path / "fc.csv", log=_quiet)
    assert out["times"][0] == "2026-03-05 00:00" and np.isfinite(out["median"]).all()
    future = pd.date_range(times[-1], periods=6, freq="h")[1:]
    assert seen[0].shape == (1, 8 + 5, 4)
    np.testing.assert_allclose(seen[0][0, -5:].numpy(), calendar_covariates(future, FEATURES), atol=1e-6)
    np.testing.assert_allclose(seen[0][0, :8].numpy(), calendar_covariates(times[-8:], FEATURES), atol=1e-6)

    result = run_backtest(run, input=tmp_path / "hourly.csv", horizon=3, num_samples=3, max_origins=3, log=_quiet)
    assert result["result"].samples.shape == (3, 3, 3, 1)
    assert run_backtest(run, num_samples=3, log=_quiet)["result"].horizon == 3  # held-out windows
    with pytest.raises(UsageError, match="does not generate windows"):
        run_generate(run, num_samples=2, log=_quiet)
    if model == "conditional":
        filled = run_impute(run, tmp_path / "hourly.csv", output=tmp_path / "filled.csv", num_samples=3, log=_quiet)
        assert np.isfinite(filled["median"]).all()
