"""The data of a command-line run: a registry data set or a CSV file, cut into windows and split into
training and held-out windows."""

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..data import get_dataset, list_datasets
from ..data.registry import WindowedDataset
from ..data.scaling import MinMaxScaler
from ..data.windows import sliding_windows
from .calendar import table_calendar
from .errors import UsageError
from .table import read_series_csv

__all__ = ["RunData", "load_run_data", "unit_range"]

# Tolerance of the "already in [0, 1]" check of the generative models' data.
_UNIT_TOL = 1e-6


@dataclass
class RunData:
    """Training and held-out windows of a run.

    :ivar torch.Tensor train: training windows ``(N_train, T, C)``.
    :ivar torch.Tensor test: held-out windows ``(N_test, T, C)`` (may be empty).
    :ivar str name: data set name or CSV path.
    :ivar tuple columns: channel names.
    :ivar bool independent: True if the windows are independent series (no overlap between the splits).
    :ivar dict units: per-channel ``{"min": [...], "max": [...]}`` of the original series the windows were
        min-max scaled from (``original = min + (max - min) * window``), or None if the windows are in the
        data set's own units.
    :ivar torch.Tensor train_covariates: calendar covariates ``(N_train, T, p)`` of the training windows, or
        None (``data.calendar`` unset).
    :ivar torch.Tensor test_covariates: those of the held-out windows, or None.
    """

    train: torch.Tensor
    test: torch.Tensor
    name: str
    columns: tuple
    independent: bool
    units: dict = None
    train_covariates: torch.Tensor = None
    test_covariates: torch.Tensor = None

    @property
    def covariate_dim(self):
        """Number of covariates ``p`` per step (0 without ``data.calendar``)."""
        return 0 if self.train_covariates is None else self.train_covariates.shape[-1]

    @property
    def obs_dim(self):
        return self.train.shape[-1]

    @property
    def length(self):
        return self.train.shape[1]

    @property
    def all(self):
        """All windows, training first."""
        return torch.cat([self.train, self.test], 0)


def _is_csv(name):
    return name.lower().endswith(".csv") or os.path.sep in name or os.path.isfile(name)


def _csv_windows(path, columns, length, stride, calendar=None):
    """The series of a CSV file (:func:`~pyroseq.runs.table.read_series_csv`; empty and NaN cells are missing
    values), min-max scaled per channel over its observed values and cut into sliding windows; the calendar
    covariates, if any, follow the channels of every window."""
    table = read_series_csv(path, columns=columns, what="data file")
    values = table.values
    if len(values) < length:
        raise UsageError(f"data: {path} has {len(values)} rows, fewer than data.length={length}")
    observed = table.observed
    for c, name in enumerate(table.columns):
        seen = values[observed[:, c], c]
        if seen.size == 0:
            raise UsageError(f"data: column {name!r} of {path} has no observed value (list the others in "
                             f"data.columns)")
        if seen.min() == seen.max():
            raise UsageError(f"data: column {name!r} of {path} is constant ({seen[0]!r}) and cannot be min-max "
                             f"scaled (list the others in data.columns)")
    scaler = MinMaxScaler()
    scaler.data_min = np.nanmin(values, axis=0)
    scaler.data_max = np.nanmax(values, axis=0)
    series = torch.as_tensor(scaler.transform(values), dtype=torch.float32)
    if calendar:
        series = torch.cat([series, torch.as_tensor(table_calendar(table, calendar))], -1)
    return WindowedDataset(name=path, windows=sliding_windows(series, length, stride), series=series, scaler=scaler,
                           columns=tuple(table.columns)), int((~observed).sum())


def load_run_data(data, complete=False, log=None):
    """Load the windows described by the ``data`` section of a validated configuration.

    A ``name`` ending in ``.csv`` (or naming an existing file) is read with
    :func:`~pyroseq.runs.table.read_series_csv` (empty and ``NaN`` cells are missing values, kept as NaN),
    min-max scaled to ``[0, 1]`` per channel over the observed values and cut into windows; otherwise it is
    looked up with :func:`~pyroseq.data.get_dataset`. The last ``test_fraction`` of the
    windows are held out; for overlapping windows of one series the ``length - 1`` windows between the two
    parts are dropped, so no time step is in both. Windows without any observed value are dropped, and with
    ``complete=True`` every window with a missing value.

    :param dict data: the ``data`` section (keys ``name``, ``length``, ``stride``, ``test_fraction``,
        ``max_windows``, ``columns``, ``kwargs``).
    :param bool complete: keep complete windows only (for the models that cannot train on missing values).
    :param callable log: printer of messages about missing values (None: silent).
    :rtype: RunData
    :raises UsageError: for an unknown data set, bad loader arguments, a bad CSV cell or too few windows.
    :raises FileNotFoundError: for a missing CSV file.
    """
    name, length = data["name"], data["length"]
    kwargs = dict(data["kwargs"])
    num_missing = 0
    calendar = data.get("calendar")
    if _is_csv(name):
        ds, num_missing = _csv_windows(name, data["columns"], length, data["stride"], calendar)
    else:
        if calendar:
            raise UsageError(f"data: data.calendar needs a CSV file with a time column of dates, not the data set "
                             f"{name!r}")
        if name.lower() not in list_datasets():
            raise UsageError(f"data: unknown dataset {name!r}; registered: {', '.join(list_datasets())} "
                             f"(or give the path of a CSV file)")
        if data["stride"] != 1:
            kwargs.setdefault("stride", data["stride"])
        if data["columns"] is not None:
            kwargs.setdefault("columns", data["columns"])
        try:
            ds = get_dataset(name, length=length, **kwargs)
        except TypeError as e:
            raise UsageError(f"data: bad arguments for dataset {name!r}: {e}") from None
        except ValueError as e:
            raise UsageError(f"data: dataset {name!r}: {e}") from None
    windows = ds.windows.float()
    independent = ds.series is None
    N = windows.shape[0]
    spacing = float(data["stride"])  # time steps between consecutive windows
    if data["max_windows"] is not None and N > data["max_windows"]:
        # Evenly spaced windows keep the whole time range (a prefix would lose the test period).
        index = np.unique(np.linspace(0, N - 1, data["max_windows"]).round().astype(np.int64))
        spacing *= (N - 1) / max(1, len(index) - 1)
        windows, N = windows[torch.as_tensor(index)], len(index)
    gap = 0 if independent else int(np.ceil((length - 1) / spacing))
    num_test = int(round(data["test_fraction"] * N))
    num_train = N - num_test - (gap if num_test else 0)
    if num_train < 2:
        raise UsageError(f"data: only {N} windows of length {length} in {name!r}; too few to train on "
                         f"(lower data.length or data.test_fraction)")
    train = windows[:num_train].contiguous()
    test = windows[N - num_test:].contiguous()
    C = len(ds.columns)
    covariates = None
    if windows.shape[-1] > C:  # calendar covariates after the channels
        covariates = (train[..., C:].contiguous(), test[..., C:].contiguous())
        train, test = train[..., :C].contiguous(), test[..., :C].contiguous()
    if num_missing or torch.isnan(train).any() or torch.isnan(test).any():
        train, test, covariates = _drop_incomplete(train, test, complete, name, log, num_missing, covariates)
    scaler = getattr(ds, "scaler", None)
    units = None if scaler is None else {"min": np.asarray(scaler.data_min, dtype=np.float64).tolist(),
                                         "max": np.asarray(scaler.data_max, dtype=np.float64).tolist()}
    return RunData(train=train, test=test, name=ds.name, columns=tuple(ds.columns), independent=independent,
                   units=units, train_covariates=None if covariates is None else covariates[0],
                   test_covariates=None if covariates is None else covariates[1])


def _drop_incomplete(train, test, complete, name, log, num_missing=0, covariates=None):
    """Drop the windows without any observed value (or, if ``complete``, with any missing value), and their
    covariates (a pair of training and held-out covariate windows, or None)."""
    def keep(x):
        missing = torch.isnan(x).flatten(1)
        return ~missing.any(1) if complete else ~missing.all(1)

    k_train, k_test = keep(train), keep(test)
    if log is not None:
        where = f"{num_missing} cells of {name!r}" if num_missing else f"some cells of the windows of {name!r}"
        message = f"data: {where} are missing (empty or NaN), treated as missing values"
        if not (k_train.all() and k_test.all()):
            why = ("with missing values (this model trains on complete windows)" if complete
                   else "without any observed value")
            message += f"; dropped {int((~k_train).sum())} training and {int((~k_test).sum())} held-out windows {why}"
        log(message)
    if int(k_train.sum()) < 2:
        what = "complete" if complete else "with an observed value"
        raise UsageError(f"data: only {int(k_train.sum())} training windows of {name!r} are {what}; too few to "
                         f"train on" + (" (this model needs complete windows)" if complete else ""))
    if covariates is not None:
        covariates = (covariates[0][k_train].contiguous(), covariates[1][k_test].contiguous())
    return train[k_train].contiguous(), test[k_test].contiguous(), covariates


def unit_range(x, tol=_UNIT_TOL):
    """True if all entries of ``x`` are in ``[0, 1]`` (up to a tolerance)."""
    return bool(x.min() >= -tol and x.max() <= 1 + tol)
