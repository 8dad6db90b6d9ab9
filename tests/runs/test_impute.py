import csv
import json
import math

import numpy as np
import pytest
import torch

from pyroseq.runs import RunDirectory, read_impute_csv, run_fit, run_forecast, run_impute
from pyroseq.runs.impute import imputation_plan, impute_series, missing_path, quantile_path

LENGTH = 8
TINY_CSDI = dict(backbone="csdi", channels=8, num_layers=1, num_steps=2, time_embedding_dim=8,
                 channel_embedding_dim=4)


def _quiet(*args):
    pass


def _write_series(path, rows, seed=0):
    """A date column and two channels in units far from [0, 1], written with full float precision."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    values = np.stack([1000 + 50 * np.sin(t / 3) + rng.normal(size=rows),
                       -0.003 * np.cos(t / 5) + 1e-4 * rng.normal(size=rows)], -1)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["date", "load", "temp"])
        for i in range(rows):
            date = f"2026-01-{1 + i // 24:02d} {i % 24:02d}:00"
            writer.writerow([date, repr(float(values[i, 0])), repr(float(values[i, 1]))])
    return values


def _read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("impute")
    data = root / "series.csv"
    _write_series(data, 60)
    config = dict(model="conditional", model_kwargs=TINY_CSDI, data=dict(name=str(data), length=LENGTH),
                  train=dict(num_steps=3, batch_size=8), forecast=dict(horizon=3, num_samples=4, max_series=3))
    run = root / "run"
    run_fit(run, config, progress=False, log=_quiet)
    return root, run


def test_run_records_the_original_units(trained):
    _, run = trained
    info = json.loads(open(RunDirectory(run).data).read())
    assert info["columns"] == ["load", "temp"]
    assert info["units"]["min"][0] > 900 and info["units"]["max"][1] < 0.01


def test_forecast_of_a_conditional_run(trained):
    _, run = trained
    out = run_forecast(run, log=_quiet)
    assert out["samples"].shape == (4, 3, 3, 2)
    assert np.isfinite(out["samples"].numpy()).all()


@pytest.mark.parametrize("rows", [LENGTH, 19])
def test_impute_fills_missing_cells_and_keeps_observed_ones_exactly(trained, rows):
    root, run = trained
    values = _write_series(root / "full.csv", rows, seed=1)
    header, lines = _read(root / "full.csv")
    rng = np.random.default_rng(rows)
    hidden = rng.random((rows, 2)) < 0.3
    hidden[0, 0] = True
    hidden[1, 1] = True
    for i in range(rows):
        for c in range(2):
            if hidden[i, c]:
                lines[i][1 + c] = "" if (i + c) % 2 else "NaN"
    incomplete = root / f"missing_{rows}.csv"
    with open(incomplete, "w", newline="") as f:
        csv.writer(f).writerows([header] + lines)
    output = root / f"imputed_{rows}.csv"
    result = run_impute(run, incomplete, output=output, num_samples=5, quantiles=(0.1, 0.9), log=_quiet)
    assert result["paths"] == [str(output), quantile_path(str(output), 0.1), quantile_path(str(output), 0.9),
                               missing_path(str(output))]
    assert result["samples"].shape == (5, rows, 2)

    out_header, out_lines = _read(output)
    assert out_header == header
    assert [line[0] for line in out_lines] == [line[0] for line in lines]  # the date column passes through
    filled = np.array([[float(v) for v in line[1:]] for line in out_lines])
    assert filled.shape == (rows, 2) and np.isfinite(filled).all()
    # Observed cells parse to exactly the input's floats after the CSV round trip.
    for i in range(rows):
        for c in range(2):
            if not hidden[i, c]:
                assert filled[i, c] == float(lines[i][1 + c]) == values[i, c]
    np.testing.assert_array_equal(filled, result["median"])
    # Imputations are in the file's units, not the model's [0, 1] (channel 0 lives around 1000).
    assert filled[hidden[:, 0], 0].min() > 500
    lo = np.array([[float(v) for v in line[1:]] for line in _read(result["paths"][1])[1]])
    hi = np.array([[float(v) for v in line[1:]] for line in _read(result["paths"][2])[1]])
    assert np.all(lo <= filled) and np.all(filled <= hi)
    assert np.array_equal(lo[~hidden], filled[~hidden]) and np.array_equal(hi[~hidden], filled[~hidden])
    # The record of the missing cells: the date column, then 1 where a cell was imputed.
    mask_header, mask_lines = _read(missing_path(str(output)))
    assert mask_header == header and [line[0] for line in mask_lines] == [line[0] for line in lines]
    np.testing.assert_array_equal(np.array([[int(v) for v in line[1:]] for line in mask_lines]), hidden.astype(int))


def test_impute_default_output_and_reproducibility(trained):
    root, run = trained
    _write_series(root / "gap.csv", LENGTH, seed=2)
    header, lines = _read(root / "gap.csv")
    lines[3][1] = ""
    with open(root / "gap.csv", "w", newline="") as f:
        csv.writer(f).writerows([header] + lines)
    a = run_impute(run, root / "gap.csv", num_samples=3, seed=7, log=_quiet)
    b = run_impute(run, root / "gap.csv", num_samples=3, seed=7, log=_quiet)
    assert a["paths"] == [RunDirectory(run).imputed, missing_path(RunDirectory(run).imputed)]
    np.testing.assert_array_equal(a["median"], b["median"])
    assert math.isfinite(a["median"][3, 0])


def test_impute_errors(trained, tmp_path):
    root, run = trained
    _write_series(tmp_path / "short.csv", LENGTH - 1)
    with pytest.raises(ValueError, match="has 7 rows, fewer than the model's window length 8"):
        run_impute(run, tmp_path / "short.csv", log=_quiet)
    (tmp_path / "cols.csv").write_text("date,load,humidity\n" + "x,1,2\n" * LENGTH)
    with pytest.raises(ValueError, match="lacks column\\(s\\) 'temp'"):
        run_impute(run, tmp_path / "cols.csv", log=_quiet)
    (tmp_path / "empty.csv").write_text("load,temp\n" + ",\n" * LENGTH)
    with pytest.raises(ValueError, match="empty.csv has no observed value"):
        run_impute(run, tmp_path / "empty.csv", log=_quiet)
    (tmp_path / "inf.csv").write_text("load,temp\n" + "1,2\n" * 3 + "-inf,2\n")
    with pytest.raises(ValueError, match="column 'load' has an infinite value \\('-inf'\\) in data row 4"):
        run_impute(run, tmp_path / "inf.csv", log=_quiet)
    (tmp_path / "text.csv").write_text("load,temp\n" + "1,2\n" * (LENGTH - 1) + "1,abc\n")
    with pytest.raises(ValueError, match="column 'temp' has non-numeric value 'abc' in data row 8"):
        read_impute_csv(tmp_path / "text.csv", ("load", "temp"))
    _write_series(tmp_path / "ok.csv", LENGTH)
    with pytest.raises(FileNotFoundError, match="output directory .*nowhere does not exist"):
        run_impute(run, tmp_path / "ok.csv", output=tmp_path / "nowhere" / "out.csv", log=_quiet)
    with pytest.raises(FileNotFoundError, match="input file .* does not exist"):
        run_impute(run, tmp_path / "nothing.csv", log=_quiet)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        run_impute(run, tmp_path / "short.csv", num_samples=0, log=_quiet)
    with pytest.raises(ValueError, match="quantiles must be numbers in \\(0, 1\\)"):
        run_impute(run, tmp_path / "short.csv", quantiles=(1.5,), log=_quiet)


def test_impute_needs_a_conditional_run(tmp_path):
    config = dict(model="dkf", model_kwargs=dict(latent_dim=1, rnn_dim=8, hidden_dim=8),
                  data=dict(name="bimodal", length=6, kwargs=dict(num_samples=20)), train=dict(num_steps=1),
                  forecast=dict(horizon=2))
    run_fit(tmp_path / "run", config, progress=False, log=_quiet)
    with pytest.raises(ValueError, match="holds model 'dkf', which does not impute"):
        run_impute(tmp_path / "run", tmp_path / "whatever.csv", log=_quiet)


def test_impute_refuses_to_overwrite_its_input(trained, tmp_path):
    _, run = trained
    _write_series(tmp_path / "in.csv", LENGTH)
    before = (tmp_path / "in.csv").read_bytes()
    for output in (tmp_path / "in.csv", tmp_path / "sub" / ".." / "in.csv"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ValueError, match="is the input file"):
            run_impute(run, tmp_path / "in.csv", output=output, log=_quiet)
    _write_series(tmp_path / "x_q0.1.csv", LENGTH)
    with pytest.raises(ValueError, match="is the input file"):  # its quantile file would overwrite the input
        run_impute(run, tmp_path / "x_q0.1.csv", output=tmp_path / "x.csv", quantiles=(0.1,), log=_quiet)
    assert (tmp_path / "in.csv").read_bytes() == before


@pytest.mark.parametrize("length", [2, 3, 8, 24])
def test_imputation_plan_fills_every_missing_row_once_with_something_to_condition_on(length):
    rng = np.random.default_rng(length)
    T = 5 * length + 3
    observed = rng.random((T, 2)) < 0.7
    observed[:length + 2] = False           # a leading gap longer than a window
    observed[2 * length:4 * length] = False  # an inner gap of two windows
    observed[-1] = True
    plan = imputation_plan(observed, length)
    filled = np.zeros(T, dtype=int)
    known = observed.any(1)
    for wave in sorted({w.wave for w in plan}):
        batch = [w for w in plan if w.wave == wave]
        for w in batch:
            assert 0 <= w.start <= w.fill_start < w.fill_stop <= w.start + length <= T
            assert known[w.start:w.start + length].any()  # observed or filled by an earlier wave
        for w in batch:
            filled[w.fill_start:w.fill_stop] += 1
            known[w.fill_start:w.fill_stop] = True
    assert np.all(filled[~observed.all(1)] == 1) and filled.max() == 1
    assert len({w.wave for w in plan}) > 1  # the gaps are crossed in order


def test_imputation_plan_of_a_complete_series_is_empty_and_nothing_observed_is_refused():
    assert imputation_plan(np.ones((10, 1), dtype=bool), 4) == []
    with pytest.raises(ValueError, match="no observed value"):
        imputation_plan(np.zeros((10, 1), dtype=bool), 4)


class RandomWalkImputer:
    """A stand-in window model: each missing cell is the nearest filled value to its left plus N(0, 1)
    noise (or to its right if there is none), so the spread of a gap grows along it only if every sample
    path conditions on its own earlier draws."""

    length = 6

    def impute(self, x, covariates=None, num_samples=1):
        out = x.clone()
        for n in range(x.shape[0]):
            for t in range(x.shape[1]):
                for c in range(x.shape[2]):
                    if torch.isnan(out[n, t, c]):
                        left = out[n, :t, c][~torch.isnan(out[n, :t, c])]
                        right = x[n, t:, c][~torch.isnan(x[n, t:, c])]
                        base = left[-1] if len(left) else right[0]
                        out[n, t, c] = base + torch.randn(())
        return out.unsqueeze(0).expand(num_samples, -1, -1, -1)


def test_a_long_gap_is_filled_with_intervals_that_widen_away_from_the_observed_values():
    T, gap = 40, slice(5, 35)  # a gap of five windows
    x = torch.zeros(T, 1)
    x[gap] = float("nan")
    paths = impute_series(RandomWalkImputer(), x, num_samples=400, seed=0)
    assert paths.shape == (400, T, 1) and torch.isfinite(paths).all()
    assert torch.equal(paths[:, :5], x[:5].expand(400, -1, -1))
    assert torch.equal(paths[:, 35:], x[35:].expand(400, -1, -1))
    spread = paths[:, gap, 0].std(0)
    # A random walk from the left edge: the spread grows like the square root of the distance.
    assert spread[0] < 1.3 and spread[20] > 3.0
    assert spread[-5:].mean() > 2 * spread[:3].mean()
