"""benchmarks/forecasting.py on a CSV it has never seen: a small synthetic daily series."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def forecasting(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("forecasting_under_test", BENCH / "forecasting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("forecasting_under_test", None)


def synthetic_csv(path, steps=400):
    rng = np.random.default_rng(0)
    t = np.arange(steps)
    frame = pd.DataFrame({
        "date": pd.date_range("2021-01-01", periods=steps, freq="D").strftime("%Y-%m-%d"),
        "load": 10 + 2 * np.sin(2 * np.pi * t / 7) + 0.3 * rng.standard_normal(steps),
        "temp": 5 + 0.01 * t + np.cos(2 * np.pi * t / 7) + 0.2 * rng.standard_normal(steps),
    })
    frame.to_csv(path, index=False)
    return path


def test_forecasting_cli_on_a_new_csv(tmp_path, forecasting):
    csv = synthetic_csv(tmp_path / "synthetic.csv")
    out = tmp_path / "out"
    forecasting.main(["--data", str(csv), "--models", "seasonal_naive,dkf", "--quick", "--budget-minutes", "0.02",
                      "--out", str(out), "--cache", str(tmp_path / "cache")])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"seasonal_naive", "dkf"}
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["freq"] == "D" and protocol["horizon"] == 7 and protocol["history"] == 56
    for name in ("seasonal_naive", "dkf"):
        row = summary[name]
        for key in ("crps", "energy_score", "mae", "train_cpu_minutes", "forecast_cpu_seconds_per_origin"):
            assert np.isfinite(row[key]), (name, key)
        assert row["origins"] == protocol["origins"] >= 2
    dkf = summary["dkf"]
    assert 0 <= dkf["coverage_50"] <= dkf["coverage_90"] <= 1
    assert abs(sum(dkf["pit_histogram"]) - 1) < 1e-3
    assert summary["seasonal_naive"]["coverage_90"] is None  # a point forecast has no intervals
    assert "_bootstrap" in summary and summary["_bootstrap"]["peer"] == "seasonal_naive"
    text = (out / "summary.md").read_text()
    assert "synthetic.csv" in text and "paired bootstrap" in text
    assert (out / "pit.png").exists() and (out / "forecasts.png").exists()


def test_missing_peer_package_skips_its_row(tmp_path, forecasting, monkeypatch):
    import peers

    def unavailable(*args, **kwargs):
        raise peers.PeerUnavailable("statsforecast is not installed; pip install -e '.[bench]'")

    monkeypatch.setattr(forecasting, "run_peer", unavailable)
    csv = synthetic_csv(tmp_path / "s.csv", steps=200)
    out = tmp_path / "out"
    forecasting.main(["--data", str(csv), "--models", "autoets", "--quick", "--out", str(out),
                      "--cache", str(tmp_path / "cache")])
    assert "autoets" not in json.loads((out / "summary.json").read_text())
    assert "statsforecast is not installed" in (out / "summary.md").read_text()


def test_frequency_defaults_and_csv_without_dates(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from etth_tasks import load_task, protocol_defaults

    assert protocol_defaults("h") == dict(history=96, horizon=24, seasons=(24, 168), stride=48)
    assert protocol_defaults("B")["horizon"] == 5
    assert protocol_defaults("15min")["seasons"] == (96, 672)
    path = tmp_path / "nodates.csv"
    pd.DataFrame({"a": np.arange(50.0), "b": np.ones(50)}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="--freq"):
        load_task(path)
    task = load_task(path, freq="B")
    assert task["freq"] == "B" and task["dates"] is None and float(task["u"].abs().sum()) == 0
