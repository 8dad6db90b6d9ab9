"""The work behind ``pyroseq impute``: fill the missing cells of a CSV series of any length, gaps of any
length included, with a trained conditional diffusion run, in the units of the file."""

import os
from dataclasses import dataclass

import numpy as np
import torch

from .calendar import table_calendar
from .commands import load_trained
from .config import IMPUTING_MODELS
from .directory import RunDirectory
from .errors import UsageError, check_positive
from .future import check_outputs, check_quantiles, quantile_path, run_units
from .table import MISSING_MARKERS, read_series_csv, write_frame

__all__ = ["MISSING_MARKERS", "ImputationWindow", "impute_series", "imputation_plan", "missing_path",
           "quantile_path", "read_impute_csv", "run_impute"]


def read_impute_csv(path, columns):
    """Read a series with missing values (see :func:`~pyroseq.runs.read_series_csv`).

    :param str path: the CSV file.
    :param tuple columns: the channel names the values are read from, in this order.
    :returns: ``(frame, values)``: the whole file as a :class:`pandas.DataFrame` of strings and the values of
        ``columns`` as a float64 array ``(T, C)`` with NaN at the missing cells.
    :raises FileNotFoundError: if the file does not exist.
    :raises UsageError: for an unreadable file, missing columns, non-numeric or infinite values, or no rows.
    """
    table = read_series_csv(path, columns=columns)
    return table.frame, table.values


@dataclass
class ImputationWindow:
    """One window of an imputation plan: the model imputes ``[start, start + length)`` and keeps its draws
    for the rows ``[fill_start, fill_stop)`` only.

    :ivar int start: first row of the window.
    :ivar int fill_start: first row the window fills.
    :ivar int fill_stop: one past the last row it fills.
    :ivar int wave: windows of one wave are independent of one another and imputed in one batch, after
        every window of the earlier waves.
    """

    start: int
    fill_start: int
    fill_stop: int
    wave: int = 0


def imputation_plan(observed, length):
    """The windows that impute a series, in the order of :func:`impute_series`.

    The rows are cut into consecutive fill zones of ``f = max(1, length // 3)`` rows. Every zone is filled
    by one window of ``length`` rows that also holds ``c = max(1, (length - f) // 2)`` rows before the zone
    and the rest after it (shifted to stay inside the series; zones that share a window are merged). The
    zones from the first observed row on are filled in time order, each window conditioning on what the
    earlier ones filled before it; the zones before the first observed row are filled last, backwards, each
    window placed to hold ``c`` rows after its zone instead. So every window has something to condition
    on, and a gap longer than a window is crossed step by step from the observed side. Windows whose zone
    is fully observed are left out, and windows that do not depend on one another (a window depends on an
    earlier one whose zone has a missing row inside it) share a wave.

    :param numpy.ndarray observed: boolean ``(T, C)`` or ``(T,)``, True where a value was given.
    :param int length: window length ``L`` (at most ``T``).
    :returns: a list of :class:`ImputationWindow`.
    :raises ValueError: if nothing is observed or ``T < length``.
    """
    observed = np.asarray(observed, dtype=bool)
    row_seen = observed if observed.ndim == 1 else observed.any(-1)
    row_full = observed if observed.ndim == 1 else observed.all(-1)
    T, L = len(row_seen), int(length)
    if T < L:
        raise ValueError(f"the series has {T} rows, fewer than the window length {L}")
    if not row_seen.any():
        raise ValueError("the series has no observed value")
    f = max(1, L // 3)
    c = max(1, (L - f) // 2) if L > 1 else 0
    first = int(np.flatnonzero(row_seen)[0])
    zones = [(z, min(z + f, T)) for z in range(0, T, f)]
    forward = [zone for zone in zones if zone[1] > first]
    backward = [zone for zone in zones if zone[1] <= first][::-1]
    plan = []
    for zs, before in ((forward, True), (backward, False)):
        merged = []
        for z0, z1 in zs:
            start = min(T - L, max(0, z0 - c if before else z1 + c - L))
            if merged and merged[-1][0] == start:
                merged[-1][1], merged[-1][2] = min(merged[-1][1], z0), max(merged[-1][2], z1)
            else:
                merged.append([start, z0, z1])
        plan += [ImputationWindow(s, z0, z1) for s, z0, z1 in merged if not row_full[z0:z1].all()]
    missing_rows = ~row_full
    for k, w in enumerate(plan):
        deps = [p.wave + 1 for p in plan[:k]
                if missing_rows[max(p.fill_start, w.start):min(p.fill_stop, w.start + L)].any()]
        w.wave = max(deps, default=0)
    return plan


def impute_series(model, x, num_samples=100, covariates=None, seed=None, log=None):
    """Draw ``num_samples`` joint imputations of a series of any length with a model that imputes windows
    of a fixed length (``model.impute(windows, num_samples=1)``, e.g.
    :class:`~pyroseq.models.ConditionalDiffusion`).

    The windows of :func:`imputation_plan` are imputed wave by wave. Every sample path is its own chain:
    a window conditions on the observed cells and on the cells that earlier windows filled *in the same
    path*, so each path is one draw of the whole series, and inside a long gap the spread between the
    paths grows with the distance from the observed values the way the model's forecasts do. Each missing
    cell is drawn once, by the window whose fill zone holds it, with observed values (and ``c`` rows) on
    both sides where the series has them. Observed cells are returned unchanged.

    :param model: the imputing model, with an integer ``length``.
    :param torch.Tensor x: the series ``(T, C)`` in the model's units, NaN at the missing cells.
    :param int num_samples: number of paths ``S``.
    :param torch.Tensor covariates: covariates ``(T, p)`` of the series if the model uses them.
    :param int seed: if given, seed torch's global generator first.
    :param callable log: printer of progress messages (None: silent).
    :returns: a tensor ``(S, T, C)``.
    """
    L = int(model.length)
    S = int(num_samples)
    plan = imputation_plan(~torch.isnan(x).numpy(), L)
    if seed is not None:
        torch.manual_seed(seed)
    paths = x.unsqueeze(0).repeat(S, 1, 1)
    waves = max((w.wave for w in plan), default=-1) + 1
    if log is not None and plan:
        log(f"{len(plan)} window(s) of {L} rows in {waves} wave(s)")
    for wave in range(waves):
        batch = [w for w in plan if w.wave == wave]
        windows = torch.stack([paths[:, w.start:w.start + L] for w in batch])  # (B, S, L, C)
        B, _, _, C = windows.shape
        cov = None if covariates is None else torch.stack(
            [covariates[w.start:w.start + L] for w in batch]).repeat_interleave(S, 0)  # (B * S, L, p)
        out = model.impute(windows.reshape(B * S, L, C), covariates=cov, num_samples=1)[0].reshape(B, S, L, C)
        for w, filled in zip(batch, out):
            zone = slice(w.fill_start, w.fill_stop)
            old = paths[:, zone]
            paths[:, zone] = torch.where(torch.isnan(old), filled[:, w.fill_start - w.start:w.fill_stop - w.start]
                                         .to(old.dtype), old)
    return paths


def missing_path(output):
    """The record of the missing cells next to ``output``: ``imputed.csv`` -> ``imputed_missing.csv``."""
    root, ext = os.path.splitext(os.fspath(output))
    return f"{root}_missing{ext or '.csv'}"


def run_impute(run_dir, input, output=None, num_samples=100, quantiles=(), seed=0, log=print):
    """Impute the missing cells of a CSV series with a trained ``"conditional"`` run (``pyroseq impute``).

    The file is mapped to the run's units (the min-max scaling of the training data, if the run's data were
    scaled) and imputed ``num_samples`` times by :func:`impute_series` (overlapping windows of the model's
    length in time order, every sample path conditioning on what it filled before, so gaps of any length
    are filled and their intervals widen away from the observed values). The per-cell median over the
    samples, mapped back to the units of the file, is written as a CSV file with the input's columns;
    observed cells keep their text from the input (so they parse to exactly the same floats), and other
    columns (e.g. a date) are passed through unchanged. Each quantile ``q`` of ``quantiles`` is written the
    same way to ``<output stem>_q<q>.csv``, and the record of which cells were missing (1) or observed (0)
    to ``<output stem>_missing.csv``. The input file is never overwritten.

    :param str run_dir: a trained run of model ``"conditional"``.
    :param str input: the CSV file; empty cells or ``NaN`` mark the missing values.
    :param str output: the output CSV file (default ``imputed.csv`` in the run directory).
    :param int num_samples: imputations (sample paths) ``S``.
    :param tuple quantiles: further quantiles to write, each in ``(0, 1)``.
    :param int seed: random seed.
    :param callable log: printer of messages.
    :returns: a dict with ``median`` (float64 array ``(T, C)``), ``quantiles`` (dict ``q`` -> ``(T, C)``),
        ``samples`` (float64 array ``(S, T, C)`` in the units of the file), ``observed`` (bool ``(T, C)``),
        ``plan`` (the :class:`ImputationWindow` list) and ``paths``.
    :raises UsageError: for a run of another model, bad arguments, a file with the wrong columns, a series
        shorter than ``L`` or without any observed value, or an output that is the input.
    :raises FileNotFoundError: for a missing run, input file or output directory.
    """
    import pandas as pd

    check_positive("num_samples", num_samples, None)
    quantiles = check_quantiles(quantiles)
    config, info, model = load_trained(run_dir)
    if config["model"] not in IMPUTING_MODELS:
        raise UsageError(f"run {os.fspath(run_dir)} holds model {config['model']!r}, which does not impute; "
                         f"`pyroseq impute` needs a run of model {' or '.join(map(repr, IMPUTING_MODELS))}")
    columns = tuple(info["columns"])
    input = os.fspath(input)
    output = RunDirectory(run_dir).imputed if output is None else os.fspath(output)
    paths = [output] + [quantile_path(output, q) for q in quantiles] + [missing_path(output)]
    check_outputs(input, paths)
    table = read_series_csv(input, columns=columns)
    frame, values = table.frame, table.values
    T, C = values.shape
    L = int(info["length"])
    if T < L:
        raise UsageError(f"{input} has {T} rows, fewer than the model's window length {L}")
    observed = table.observed
    if not observed.any():
        raise UsageError(f"{input} has no observed value in columns {', '.join(map(repr, columns))}; nothing to "
                         f"condition on")
    low, width = run_units(config, info)
    scaled = torch.as_tensor((values - low) / width, dtype=torch.float32)
    log(f"imputing {int((~observed).sum())} of {observed.size} cells of {input} ({T} rows, {C} columns), "
        f"{num_samples} samples")
    plan = imputation_plan(observed, L)
    covariates = torch.as_tensor(table_calendar(table, info["calendar"])) if info.get("calendar") else None
    full = impute_series(model, scaled, num_samples=num_samples, covariates=covariates, seed=seed, log=log)
    full = low + width * full.double().numpy()
    original = np.nan_to_num(values)

    def summary(q):
        # numpy's quantile (torch.quantile is limited to 2 ** 24 entries); observed cells are the input's.
        return np.where(observed, original, np.quantile(full, q, axis=0))

    median, values = summary(0.5), [summary(q) for q in quantiles]
    for path, table_q in zip(paths, [median] + values):
        # The filled cells with the shortest text that parses back to the same float64; the others as read.
        out = frame.copy()
        for c, name in enumerate(columns):
            out[name] = [cell if seen else repr(float(v)) for cell, seen, v in zip(frame[name], observed[:, c],
                                                                                      table_q[:, c])]
        write_frame(out, path)
    # Which cells of ``columns`` were missing (1) or observed (0), after the time column if any.
    missing = pd.DataFrame({name: (~observed[:, c]).astype(int) for c, name in enumerate(columns)})
    if table.time_column is not None:
        missing.insert(0, table.time_column, frame[table.time_column].to_numpy())
    write_frame(missing, paths[-1])
    return {"median": median, "quantiles": dict(zip(quantiles, values)), "observed": observed, "plan": plan,
            "samples": np.where(observed, original, full), "paths": paths}
