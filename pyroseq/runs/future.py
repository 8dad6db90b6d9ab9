"""The work behind ``pyroseq forecast`` and ``pyroseq backtest``: forecasts past the end of a user's CSV
series in the units of the file, with its column names and timestamps, and rolling-origin backtests."""

import os

import numpy as np
import torch

from .calendar import table_calendar
from .config import FORECASTING_MODELS
from .dataset import _is_csv, load_run_data
from .directory import RunDirectory
from .errors import UsageError, check_positive
from .figures import _pyplot, save_fan_plot, save_figure
from .table import read_series_csv, write_frame

__all__ = ["quantile_path", "run_backtest", "run_forecast_csv", "same_file"]


def quantile_path(output, q):
    """The file of quantile ``q`` next to ``output``: ``fc.csv`` -> ``fc_q0.05.csv``."""
    root, ext = os.path.splitext(os.fspath(output))
    return f"{root}_q{q:g}{ext or '.csv'}"


def same_file(a, b):
    """True if the paths ``a`` and ``b`` name the same file (after resolving links and ``..``)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def check_quantiles(quantiles):
    """The quantiles as floats, each in ``(0, 1)``.

    :raises UsageError: for anything else.
    """
    out = []
    for q in quantiles:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
            raise UsageError(f"quantiles must be numbers in (0, 1), got {q!r}")
        out.append(float(q))
    return out


def check_outputs(input, paths):
    """Refuse outputs that would overwrite ``input`` or go to a directory that does not exist."""
    for path in paths:
        if same_file(path, input):
            raise UsageError(f"output {path} is the input file {input}; choose another --output (the input is "
                             f"never overwritten)")
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"output directory {directory} does not exist")


def run_units(config, info):
    """Per-channel ``(low, width)`` float64 arrays mapping the run's model units to the units of its data:
    ``data = low + width * model`` (zeros and ones if the run's data were not scaled)."""
    C = int(info["obs_dim"])
    # Older run directories did not record the original units: recover them from the data.
    units = info["units"] if "units" in info else load_run_data(config["data"]).units
    if units is None:
        return np.zeros(C), np.ones(C)
    low = np.asarray(units["min"], dtype=np.float64)
    return low, np.asarray(units["max"], dtype=np.float64) - low


def _forecasting_run(run_dir):
    from .commands import load_trained

    config, info, model = load_trained(run_dir)
    if config["model"] not in FORECASTING_MODELS:
        raise UsageError(f"run {os.fspath(run_dir)} holds model {config['model']!r}, which generates whole windows "
                         f"and does not forecast (forecasting models: {', '.join(FORECASTING_MODELS)})")
    return config, info, model


def _input_file(config, input, command):
    """``input``, or the run's own CSV file if it was trained on one."""
    if input is not None:
        return os.fspath(input)
    name = config["data"]["name"]
    if _is_csv(name):
        return name
    raise UsageError(f"the run was trained on the data set {name!r}, not on a CSV file: give --input FILE.csv with "
                     f"the recent rows to forecast from"
                     + (" (held-out windows: `pyroseq backtest --run-dir DIR`)" if command == "forecast" else ""))


def _history(model, info, horizon):
    """Rows the forecast conditions on (the training window length) and the fewest it can work with."""
    from ..inference.backtesting import rolling_steps

    try:
        steps = rolling_steps(model, horizon)
    except ValueError as e:
        raise UsageError(str(e)) from None
    window = getattr(model, "length", None)
    fewest = window - steps[0] if isinstance(window, int) else 1
    return int(info["length"]), fewest


def run_forecast_csv(run_dir, input=None, horizon=None, output=None, num_samples=None, quantiles=(), seed=0,
                     log=print):
    """Forecast the future of a CSV series with a trained forecasting run (``pyroseq forecast``).

    The file must have the columns of the run's training data (empty or ``NaN`` cells are missing values).
    Its last rows, as many as the training windows are long, are mapped to the run's units, the model
    forecasts ``horizon`` steps past the last row (:func:`~pyroseq.inference.backtesting.rolling_forecast`:
    models with a fixed window forecast a horizon longer than it piece by piece, every sample path
    continued from its own draws), and the samples are mapped back to the units of the file. The
    per-step median is written to ``output`` as CSV with the file's column names, after a time column
    that continues the file's own (same name and layout; the frequency inferred by pandas) or, if the
    file has none or its spacing is irregular, a ``step`` column ``1, ..., H``. Each quantile ``q`` goes to
    ``<output stem>_q<q>.csv``, and a fan chart of the first column to ``<output stem>.png``. A run trained
    with calendar covariates (``data.calendar``) gets those of the future steps from the continued
    timestamps.

    :param str run_dir: a trained run of a forecasting model (``dkf``, ``ddssm``, ``conditional``,
        ``latent_diffusion``).
    :param str input: the CSV file (default: the run's training file, if it was trained on one).
    :param int horizon: steps to forecast ``H`` (default ``forecast.horizon`` of the config).
    :param str output: the output CSV file (default ``forecast.csv`` in the run directory).
    :param int num_samples: forecast samples ``S`` (default ``forecast.num_samples``).
    :param tuple quantiles: further quantiles to write, each in ``(0, 1)``.
    :param int seed: random seed.
    :param callable log: printer of messages.
    :returns: a dict with ``samples`` (float64 ``(S, H, C)`` in the units of the file), ``median``
        (``(H, C)``), ``quantiles`` (``q`` -> ``(H, C)``), ``times`` (list of ``H`` strings or None),
        ``columns`` and ``paths``.
    :raises UsageError: for a generative run, bad arguments, a file with the wrong columns, too few rows,
        no observed value in its last rows, or an output that is the input.
    :raises FileNotFoundError: for a missing run, input file or output directory.
    """
    import pandas as pd

    from ..inference.backtesting import rolling_forecast

    config, info, model = _forecasting_run(run_dir)
    input = _input_file(config, input, "forecast")
    H = check_positive("horizon", horizon, config["forecast"]["horizon"])
    S = check_positive("num_samples", num_samples, config["forecast"]["num_samples"])
    quantiles = check_quantiles(quantiles)
    output = RunDirectory(run_dir).forecast_csv if output is None else os.fspath(output)
    paths = [output] + [quantile_path(output, q) for q in quantiles]
    check_outputs(input, paths)
    table = read_series_csv(input, columns=tuple(info["columns"]))
    history, fewest = _history(model, info, H)
    rows = table.values[-history:]
    if len(rows) < fewest:
        raise UsageError(f"{input} has {len(rows)} rows; model {config['model']!r} (windows of {info['length']} "
                         f"steps) needs at least its last {fewest} rows to forecast {H} steps")
    if not np.isfinite(rows).any():
        raise UsageError(f"the last {len(rows)} rows of {input} have no observed value; nothing to forecast from")
    low, width = run_units(config, info)
    x = torch.as_tensor((rows - low) / width, dtype=torch.float32)[None]
    covariates = None
    if info.get("calendar"):  # those of the history rows and of the future ones, from their timestamps
        covariates = torch.as_tensor(table_calendar(table, info["calendar"], horizon=H)[-(len(rows) + H):])[None]
    log(f"forecasting {H} steps past row {len(table.values)} of {input} from its last {len(rows)} rows with "
        f"{config['model']}, {S} samples")
    samples = rolling_forecast(model, x, H, num_samples=S, covariates=covariates, seed=seed)[:, 0].double().numpy()
    samples, rows_data = low + width * samples, low + width * x[0].double().numpy()
    times, reason = table.future_times(H)
    time_name = table.time_column if times is not None else "step"
    if times is None:
        log(f"numbering the forecast rows 1-{H}: {reason}")
        times = list(range(1, H + 1))
    median, values = np.quantile(samples, 0.5, axis=0), [np.quantile(samples, q, axis=0) for q in quantiles]
    for path, table_q in zip(paths, [median] + values):
        frame = pd.DataFrame({name: [f"{v:.8g}" for v in table_q[:, c]] for c, name in enumerate(table.columns)})
        frame.insert(0, time_name, times)
        write_frame(frame, path)
    plot = save_fan_plot(rows_data, samples, os.path.splitext(output)[0] + ".png", table.columns[0])
    return {"samples": samples, "median": median, "quantiles": dict(zip(quantiles, values)), "times": times,
            "columns": table.columns, "paths": paths + [plot]}


def run_backtest(run_dir, input=None, horizon=None, num_samples=None, stride=None, max_origins=None, seed=0,
                 log=print):
    """Backtest a trained forecasting run (``pyroseq backtest``) and write ``backtest.json`` (scores per
    horizon step), ``backtest.txt`` (the table) and ``backtest.png`` (the plot) to the run directory.

    - With ``input`` (a CSV file with the training columns): rolling origins over the file
      (:func:`~pyroseq.inference.backtest`), every ``stride`` rows up to the last possible one, each
      forecast conditioned on the training window length of rows before it; scores in the units of the
      file. Origins inside the rows the run was trained on give in-sample scores: backtest on later rows
      for an honest estimate.
    - Without: the held-out windows of the run's data, forecast from their first ``T - H`` steps
      (:func:`~pyroseq.runs.run_forecast`, which also writes ``forecast.npz`` and ``forecast.png``).

    :param str run_dir: a trained forecasting run.
    :param str input: the CSV file, or None for the held-out windows.
    :param int horizon: forecast horizon ``H`` (default ``forecast.horizon``).
    :param int num_samples: samples per origin (default ``forecast.num_samples``).
    :param int stride: rows between origins (default ``H``).
    :param int max_origins: keep the most recent origins only (default: 100 for a file, the config's
        ``forecast.max_series`` for held-out windows).
    :param int seed: random seed.
    :param callable log: printer of messages.
    :returns: a dict with ``result`` (a :class:`~pyroseq.inference.BacktestResult`) and ``paths``.
    """
    from ..inference.backtesting import BacktestResult, backtest, rolling_origins
    from .commands import run_forecast

    config, info, model = _forecasting_run(run_dir)
    run = RunDirectory(run_dir)
    low, width = run_units(config, info)
    columns = tuple(info["columns"])
    if input is None:
        out = run_forecast(run_dir, horizon=horizon, num_samples=num_samples, max_series=max_origins, seed=seed,
                           log=log)
        samples, truth, last_history = out["samples"], out["truth"], out["history"][-1:]
        origins, history, units, paths = range(len(truth)), out["history"].shape[1], "the run's data", out["paths"]
    else:
        input = os.fspath(input)
        H = check_positive("horizon", horizon, config["forecast"]["horizon"])
        S = check_positive("num_samples", num_samples, config["forecast"]["num_samples"])
        max_origins = check_positive("max_origins", max_origins, 100)
        if stride is not None:
            check_positive("stride", stride, None)
        table = read_series_csv(input, columns=columns)
        history, fewest = _history(model, info, H)
        try:
            origins = rolling_origins(len(table.values), H, history, stride)
        except ValueError as e:
            raise UsageError(f"{input}: {e}") from None
        origins = origins[-max_origins:]
        series = torch.as_tensor((table.values - low) / width, dtype=torch.float32)
        covariates = torch.as_tensor(table_calendar(table, info["calendar"])) if info.get("calendar") else None
        log(f"backtesting {config['model']} on {input}: {len(origins)} origins (rows {origins[0] + 1}-"
            f"{origins[-1] + 1}), history {history} rows, horizon {H}, {S} samples each")
        try:
            raw = backtest(model, series, H, history=history, origins=origins, num_samples=S, covariates=covariates,
                           seed=seed)
        except ValueError as e:
            if "no origin" not in str(e):
                raise
            raise UsageError(f"{input}: {e}") from None
        samples, truth, last_history, origins, units, paths = (raw.samples, raw.truth, raw.last_history, raw.origins,
                                                               input, [])
    low, width = torch.as_tensor(low), torch.as_tensor(width)
    samples, truth, last_history = (low + width * t.double() for t in (samples, truth, last_history))
    result = BacktestResult(samples, truth, origins, history, columns=columns, units=f"the units of {units}",
                            last_history=last_history)
    run.write_json("backtest", dict(result.to_dict(), model=config["model"], input=input, columns=list(columns)))
    text = result.table()
    with open(run.backtest_table, "w") as f:
        f.write(text + "\n")
    _pyplot()  # the file backend, before the figure is made
    save_figure(result.plot(), run.backtest_plot)
    log(text)
    return {"result": result, "paths": paths + [run.backtest, run.backtest_table, run.backtest_plot]}
