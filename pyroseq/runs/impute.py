"""The work behind ``pyroseq impute``: fill the missing cells of a CSV series with a trained conditional
diffusion run, window by window, in the units of the file."""

import math
import os

import numpy as np
import torch

from .config import IMPUTING_MODELS
from .dataset import load_run_data
from .directory import RunDirectory

__all__ = ["read_impute_csv", "run_impute", "window_starts"]


#: Cells read as missing (besides empty ones), compared case-insensitively.
MISSING_MARKERS = ("nan", "na", "n/a", "null", "none")


def read_impute_csv(path, columns):
    """Read a series with missing values: a CSV file with a header row holding (at least) ``columns``;
    empty cells and ``NaN`` (or ``NA``, ``null``) mark missing values. Cells are read as text and parsed
    with Python's ``float``, so numbers are exact whatever the CSV parser.

    :param str path: the CSV file.
    :param tuple columns: the channel names the values are read from, in this order.
    :returns: ``(frame, values)``: the whole file as a :class:`pandas.DataFrame` of strings and the values of
        ``columns`` as a float64 array ``(T, C)`` with NaN at the missing cells.
    :raises FileNotFoundError: if the file does not exist.
    :raises ValueError: for an unreadable file, missing columns, non-numeric or infinite values, or no rows.
    """
    import pandas as pd

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable CSV file: {str(e).strip().splitlines()[0]}") from None
    header = [str(c) for c in frame.columns]
    frame.columns = header
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(map(repr, missing))}; it needs the columns of the "
                         f"training data: {', '.join(map(repr, columns))} (has {', '.join(map(repr, header))})")
    if len(frame) == 0:
        raise ValueError(f"{path} has no data rows")
    values = np.empty((len(frame), len(columns)), dtype=np.float64)
    for c, name in enumerate(columns):
        for i, cell in enumerate(frame[name]):
            cell = cell.strip()
            if cell == "" or cell.lower() in MISSING_MARKERS:
                values[i, c] = math.nan
                continue
            try:
                values[i, c] = float(cell)
            except ValueError:
                raise ValueError(f"{path}: column {name!r} has non-numeric value {cell!r} in data row "
                                 f"{i + 1}") from None
            if math.isinf(values[i, c]):
                raise ValueError(f"{path}: column {name!r} has an infinite value in data row {i + 1}")
    return frame, values


def window_starts(num_steps, length):
    """Start indices of windows of ``length`` steps covering ``num_steps`` steps: consecutive, with the last
    window moved back to end at the last step (overlapping its predecessor) if ``length`` does not divide
    ``num_steps``.

    :param int num_steps: series length ``T >= length``.
    :param int length: window length ``L``.
    :returns: a list of start indices.
    """
    starts = list(range(0, num_steps - length + 1, length))
    if starts[-1] + length < num_steps:
        starts.append(num_steps - length)
    return starts


def _check_quantiles(quantiles):
    out = []
    for q in quantiles:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
            raise ValueError(f"quantiles must be numbers in (0, 1), got {q!r}")
        out.append(float(q))
    return out


def quantile_path(output, q):
    """The file of quantile ``q`` next to ``output``: ``imputed.csv`` -> ``imputed_q0.05.csv``."""
    root, ext = os.path.splitext(output)
    return f"{root}_q{q:g}{ext or '.csv'}"


def run_impute(run_dir, input, output=None, num_samples=100, quantiles=(), seed=0, log=print):
    """Impute the missing cells of a CSV series with a trained ``"conditional"`` run (``pyroseq impute``).

    The file is mapped to the run's units (the min-max scaling of the training data, if the run's data were
    scaled), cut into windows of the model's length ``L`` (consecutive; the last one moved back to end at
    the last row, overlapping its predecessor, which keeps its own imputations there), and every window is
    imputed ``num_samples`` times, all windows independently. The per-cell median over the samples, mapped
    back to the units of the file, is written as a CSV file with the input's columns; observed cells keep
    their text from the input (so they parse to exactly the same floats), and other columns (e.g. a date)
    are passed through unchanged. Each quantile ``q`` of ``quantiles`` is written the same way to
    ``<output stem>_q<q>.csv``.

    :param str run_dir: a trained run of model ``"conditional"``.
    :param str input: the CSV file; empty cells or ``NaN`` mark the missing values.
    :param str output: the output CSV file (default ``imputed.csv`` in the run directory).
    :param int num_samples: imputations per window ``S``.
    :param tuple quantiles: further quantiles to write, each in ``(0, 1)``.
    :param int seed: random seed.
    :param callable log: printer of messages.
    :returns: a dict with ``median`` (float64 array ``(T, C)``), ``quantiles`` (dict ``q`` -> ``(T, C)``),
        ``samples`` (float64 array ``(S, T, C)`` in the units of the file), ``observed`` (bool ``(T, C)``), ``starts``
        (window starts) and ``paths``.
    :raises ValueError: for a run of another model, bad arguments, a file with the wrong columns, a series
        shorter than ``L``, or a window without any observed value.
    :raises FileNotFoundError: for a missing run or input file.
    """
    from .commands import load_trained

    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    quantiles = _check_quantiles(quantiles)
    config, info, model = load_trained(run_dir)
    if config["model"] not in IMPUTING_MODELS:
        raise ValueError(f"run {os.fspath(run_dir)} holds model {config['model']!r}, which does not impute; "
                         f"`pyroseq impute` needs a run of model {' or '.join(map(repr, IMPUTING_MODELS))}")
    columns = tuple(info["columns"])
    frame, values = read_impute_csv(input, columns)
    T, C = values.shape
    L = int(info["length"])
    if T < L:
        raise ValueError(f"{input} has {T} rows, fewer than the model's window length {L}")
    # Older run directories did not record the original units: recover them from the data.
    units = info["units"] if "units" in info else load_run_data(config["data"]).units
    lo = np.zeros(C) if units is None else np.asarray(units["min"], dtype=np.float64)
    width = np.ones(C) if units is None else np.asarray(units["max"], dtype=np.float64) - lo
    observed = np.isfinite(values)
    starts = window_starts(T, L)
    for i, s in enumerate(starts):
        if not observed[s:s + L].any():
            raise ValueError(f"{input}: data rows {s + 1}-{s + L} (window {i + 1} of {len(starts)}, windows of "
                             f"{L} rows) have no observed value; nothing to condition on")
    output = RunDirectory(run_dir).imputed if output is None else os.fspath(output)
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"output directory {out_dir} does not exist")
    scaled = torch.as_tensor((values - lo) / width, dtype=torch.float32)
    windows = torch.stack([scaled[s:s + L] for s in starts])
    log(f"imputing {int((~observed).sum())} of {observed.size} cells of {input} ({T} rows, {C} columns) in "
        f"{len(starts)} window(s) of {L} rows, {num_samples} samples each")
    samples = model.impute(windows, num_samples=num_samples, seed=seed)  # (S, W, L, C)
    full = torch.empty(num_samples, T, C, dtype=torch.float64)
    end = 0
    for i, s in enumerate(starts):
        # The overlap of the last window keeps its predecessor's imputations.
        full[:, end:s + L] = samples[:, i, end - s:].double()
        end = s + L
    full = lo + width * full.numpy()
    original = np.nan_to_num(values)

    def summary(q):
        # numpy's quantile (torch.quantile is limited to 2 ** 24 entries); observed cells are the input's.
        return np.where(observed, original, np.quantile(full, q, axis=0))

    result = {"median": summary(0.5), "quantiles": {}, "observed": observed, "starts": starts,
              "samples": np.where(observed, original, full), "paths": []}
    for q, path in [(0.5, output)] + [(q, quantile_path(output, q)) for q in quantiles]:
        table = result["median"] if q == 0.5 and path == output else summary(q)
        if path != output:
            result["quantiles"][q] = table
        _write_csv(frame, columns, table, observed, path)
        result["paths"].append(path)
    return result


def _write_csv(frame, columns, table, observed, path):
    """Write ``frame`` (atomically) with the missing cells of ``columns`` filled from ``table``, written with
    the shortest representation that parses back to the same float64; every other cell is copied as read."""
    out = frame.copy()
    for c, name in enumerate(columns):
        out[name] = [cell if seen else repr(float(v)) for cell, seen, v in zip(frame[name], observed[:, c],
                                                                                  table[:, c])]
    tmp = path + ".tmp"
    out.to_csv(tmp, index=False)
    os.replace(tmp, path)
