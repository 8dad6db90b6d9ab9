import csv

import numpy as np
import pytest

from pyroseq.runs import RunDirectory, UsageError, run_backtest, run_fit, run_forecast_csv
from pyroseq.runs.future import quantile_path, same_file

LENGTH = 10
TINY_SSM = dict(latent_dim=1, rnn_dim=8, hidden_dim=8)
TINY_CSDI = dict(channels=8, num_layers=1, time_embedding_dim=8, channel_embedding_dim=4)
MODELS = {
    "dkf": TINY_SSM,
    "ddssm": dict(TINY_SSM, denoiser_dim=8, denoiser_blocks=1, num_steps=2),
    "conditional": dict(backbone="csdi", num_steps=2, **TINY_CSDI),
    "latent_diffusion": dict(TINY_SSM, denoiser_dim=8, num_steps=2, backbone="csdi", emission_num_steps=2,
                             emission_net_kwargs=TINY_CSDI),
}


def _quiet(*args):
    pass


def _write_daily(path, rows=60, blank=()):
    """``date,sales,price``: sales around 500, price around 3; cells in ``blank`` ((row, col) pairs) empty."""
    t = np.arange(rows)
    values = np.stack([500 + 40 * np.sin(t / 3), 3 + 0.2 * np.cos(t / 4)], -1)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["date", "sales", "price"])
        for i in range(rows):
            cells = ["" if (i, c) in blank else repr(float(values[i, c])) for c in range(2)]
            writer.writerow([str(np.datetime64("2026-01-01") + i)] + cells)
    return values


@pytest.fixture(scope="module", params=sorted(MODELS))
def trained(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    _write_daily(root / "sales.csv", blank={(5, 0), (6, 1), (30, 0)})
    config = dict(model=request.param, model_kwargs=MODELS[request.param],
                  data=dict(name=str(root / "sales.csv"), length=LENGTH),
                  train=dict(num_steps=3, batch_size=8), forecast=dict(horizon=3, num_samples=6))
    run_fit(root / "run", config, progress=False, log=_quiet)
    return request.param, root


@pytest.mark.parametrize("horizon", [3, 2 * LENGTH + 1])
def test_every_forecasting_model_forecasts_past_the_last_row(trained, horizon):
    model, root = trained
    output = root / f"fc_{horizon}.csv"
    out = run_forecast_csv(root / "run", input=root / "sales.csv", horizon=horizon, output=output, num_samples=5,
                           quantiles=(0.1, 0.9), log=_quiet)
    assert out["samples"].shape == (5, horizon, 2) and np.isfinite(out["samples"]).all()
    assert out["paths"][:3] == [str(output), quantile_path(str(output), 0.1), quantile_path(str(output), 0.9)]
    with open(output, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["date", "sales", "price"] and len(rows) == horizon + 1
    assert rows[1][0] == "2026-03-02" and rows[2][0] == "2026-03-03"  # 60 days from 2026-01-01, then on
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in rows[1:]]), out["median"], rtol=1e-7)


def test_default_input_is_the_training_file_and_output_the_run_directory(trained):
    _, root = trained
    out = run_forecast_csv(root / "run", horizon=2, num_samples=3, log=_quiet)
    assert out["paths"][0] == RunDirectory(root / "run").forecast_csv
    assert out["times"] == ["2026-03-02", "2026-03-03"]


def test_a_file_without_times_gets_step_numbers(trained, tmp_path):
    _, root = trained
    (tmp_path / "recent.csv").write_text("price,sales\n" + "".join(f"3.1,{500 + i}\n" for i in range(LENGTH)))
    out = run_forecast_csv(root / "run", input=tmp_path / "recent.csv", horizon=2, output=tmp_path / "fc.csv",
                           num_samples=3, log=_quiet)
    assert out["times"] == [1, 2] and out["columns"] == ("sales", "price")
    assert (tmp_path / "fc.csv").read_text().splitlines()[0] == "step,sales,price"


def test_forecast_errors(trained, tmp_path):
    model, root = trained
    run = root / "run"
    with pytest.raises(UsageError, match="is the input file"):
        run_forecast_csv(run, input=root / "sales.csv", output=root / "sales.csv", log=_quiet)
    (tmp_path / "gap.csv").write_text("sales,price\n" + "1,2\n" * 3 + ",\n" * LENGTH)
    with pytest.raises(UsageError, match="have no observed value"):
        run_forecast_csv(run, input=tmp_path / "gap.csv", output=tmp_path / "fc.csv", log=_quiet)
    with pytest.raises(UsageError, match="horizon must be a positive integer"):
        run_forecast_csv(run, horizon=0, log=_quiet)
    if model == "conditional":
        (tmp_path / "short.csv").write_text("sales,price\n" + "1,2\n" * 3)
        with pytest.raises(UsageError, match="needs at least its last 7 rows"):
            run_forecast_csv(run, input=tmp_path / "short.csv", horizon=3, output=tmp_path / "fc.csv", log=_quiet)


def test_backtest_of_a_run_over_a_file(trained):
    _, root = trained
    out = run_backtest(root / "run", input=root / "sales.csv", horizon=3, num_samples=4, stride=5, max_origins=4,
                       log=_quiet)
    result = out["result"]
    assert result.origins == [42, 47, 52, 57] and result.samples.shape == (4, 4, 3, 2)
    assert 400 < float(result.truth[:, :, 0].mean()) < 600  # scored in the units of the file
    assert "backtest: 4 origins" in open(RunDirectory(root / "run").backtest_table).read()


def test_generative_and_registry_runs_are_refused(tmp_path):
    config = dict(model="dimts", model_kwargs=dict(hidden_dim=8, d_state=2, num_steps=2, num_decoder_layers=1),
                  data=dict(name="sines", length=6, kwargs=dict(num_samples=20, channels=2)), train=dict(num_steps=1))
    run_fit(tmp_path / "gen", config, progress=False, log=_quiet)
    with pytest.raises(UsageError, match="does not forecast"):
        run_forecast_csv(tmp_path / "gen", log=_quiet)
    config = dict(model="dkf", model_kwargs=TINY_SSM, data=dict(name="bimodal", length=6,
                                                                kwargs=dict(num_samples=20)),
                  train=dict(num_steps=1), forecast=dict(horizon=2))
    run_fit(tmp_path / "dkf", config, progress=False, log=_quiet)
    with pytest.raises(UsageError, match="not on a CSV file: give --input"):
        run_forecast_csv(tmp_path / "dkf", log=_quiet)


def test_same_file(tmp_path):
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "d").mkdir()
    assert same_file(tmp_path / "a.csv", tmp_path / "d" / ".." / "a.csv")
    assert not same_file(tmp_path / "a.csv", tmp_path / "b.csv")
