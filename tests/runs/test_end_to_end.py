"""A user's own hourly CSV, end to end through the command line: ``fit`` on a file with scattered empty cells
and a gap longer than a window, ``forecast --input`` past its last row, ``impute`` of its gaps, ``backtest``."""

import csv
import json

import numpy as np
import pandas as pd
import pytest

from pyroseq.cli import main

LENGTH = 12
TINY_CSDI = dict(backbone="csdi", channels=16, num_layers=1, num_steps=4, time_embedding_dim=8,
                 channel_embedding_dim=4)


def _write_hourly(path, rows=240, seed=0):
    """Hourly ``timestamp,load,temp``: load around 1000 (daily cycle of amplitude 50), temp around 20; about
    5% of the cells empty and rows 100-129 (30 rows, longer than a window) entirely missing."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    values = np.stack([1000 + 50 * np.sin(2 * np.pi * t / 24) + 5 * rng.normal(size=rows),
                       20 + 3 * np.cos(2 * np.pi * t / 24) + 0.5 * rng.normal(size=rows)], -1)
    hidden = rng.random((rows, 2)) < 0.05
    hidden[100:130] = True
    hidden[-3:] = False
    times = pd.date_range("2026-03-01 00:00", periods=rows, freq="h")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "load", "temp"])
        for i in range(rows):
            cells = ["" if hidden[i, c] else repr(float(values[i, c])) for c in range(2)]
            writer.writerow([times[i].strftime("%Y-%m-%d %H:%M:%S")] + cells)
    return values, hidden, times


def _rows(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def hourly_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_data")
    data = root / "hourly.csv"
    values, hidden, times = _write_hourly(data)
    config = root / "config.json"
    config.write_text(json.dumps(dict(
        model="conditional", model_kwargs=TINY_CSDI, data=dict(name=str(data), length=LENGTH),
        train=dict(num_steps=60, batch_size=32, lr=3e-3), forecast=dict(horizon=4, num_samples=16))))
    assert main(["fit", "--config", str(config), "--run-dir", str(root / "run"), "--no-progress"]) == 0
    return root, values, hidden, times


def test_forecast_continues_the_timestamps_in_the_units_of_the_file(hourly_run, capsys):
    root, values, _, times = hourly_run
    output = root / "fc.csv"
    assert main(["forecast", "--run-dir", str(root / "run"), "--input", str(root / "hourly.csv"), "--horizon", "5",
                 "--output", str(output), "--num-samples", "16", "--quantiles", "0.05", "0.95"]) == 0
    header, rows = _rows(output)
    assert header == ["timestamp", "load", "temp"]
    future = pd.date_range(times[-1], periods=6, freq="h")[1:]
    assert [r[0] for r in rows] == [t.strftime("%Y-%m-%d %H:%M:%S") for t in future]
    median = np.array([[float(v) for v in r[1:]] for r in rows])
    assert median.shape == (5, 2) and np.isfinite(median).all()
    # The file's units (load around 1000 +- 50, temp around 20), not the model's [0, 1].
    assert np.all((median[:, 0] > 850) & (median[:, 0] < 1150)), median
    assert np.all((median[:, 1] > 10) & (median[:, 1] < 30)), median
    low = np.array([[float(v) for v in r[1:]] for r in _rows(root / "fc_q0.05.csv")[1]])
    high = np.array([[float(v) for v in r[1:]] for r in _rows(root / "fc_q0.95.csv")[1]])
    assert np.all(low <= median) and np.all(median <= high)
    assert (root / "fc.png").exists()


def test_impute_fills_every_gap_and_keeps_observed_cells(hourly_run, capsys):
    root, values, hidden, _ = hourly_run
    header, source = _rows(root / "hourly.csv")
    output = root / "filled.csv"
    assert main(["impute", "--run-dir", str(root / "run"), "--input", str(root / "hourly.csv"), "--output",
                 str(output), "--num-samples", "8", "--quantiles", "0.1", "0.9"]) == 0
    assert f"imputed {int(hidden.sum())} cells" in capsys.readouterr().out
    out_header, filled = _rows(output)
    assert out_header == header and len(filled) == len(source)
    for got, want in zip(filled, source):
        assert got[0] == want[0]
        for c in (1, 2):
            if want[c] == "":
                assert np.isfinite(float(got[c]))
            else:
                assert got[c] == want[c]  # observed cells unchanged, character for character
    filled_values = np.array([[float(v) for v in r[1:]] for r in filled])
    assert np.all((filled_values[100:130, 0] > 700) & (filled_values[100:130, 0] < 1300))
    _, missing = _rows(root / "filled_missing.csv")
    np.testing.assert_array_equal(np.array([[int(v) for v in r[1:]] for r in missing]), hidden.astype(int))
    low = np.array([[float(v) for v in r[1:]] for r in _rows(root / "filled_q0.1.csv")[1]])
    high = np.array([[float(v) for v in r[1:]] for r in _rows(root / "filled_q0.9.csv")[1]])
    assert np.all(low <= filled_values) and np.all(filled_values <= high)
    assert np.all(high[hidden] - low[hidden] >= 0) and np.all(high[~hidden] == low[~hidden])


def test_impute_and_forecast_refuse_to_overwrite_the_input(hourly_run, capsys):
    root = hourly_run[0]
    before = (root / "hourly.csv").read_bytes()
    for command in ("impute", "forecast"):
        assert main([command, "--run-dir", str(root / "run"), "--input", str(root / "hourly.csv"), "--output",
                     str(root / "." / "hourly.csv")]) == 2
        err = capsys.readouterr().err
        assert "is the input file" in err and len(err.strip().splitlines()) == 1
    assert (root / "hourly.csv").read_bytes() == before


def test_backtest_over_the_file(hourly_run, capsys):
    root = hourly_run[0]
    assert main(["backtest", "--run-dir", str(root / "run"), "--input", str(root / "hourly.csv"), "--horizon", "4",
                 "--num-samples", "8", "--max-origins", "6"]) == 0
    out = capsys.readouterr().out
    assert "backtest: 6 origins" in out and "coverage_90" in out
    assert (root / "run" / "backtest.png").exists() and (root / "run" / "backtest.json").exists()
