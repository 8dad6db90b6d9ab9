"""The data of a command-line run: a registry data set or a CSV file, cut into windows and split into
training and held-out windows."""

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..data import get_dataset, list_datasets, load_csv, windowed_series

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
    """

    train: torch.Tensor
    test: torch.Tensor
    name: str
    columns: tuple
    independent: bool
    units: dict = None

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


def load_run_data(data):
    """Load the windows described by the ``data`` section of a validated configuration.

    A ``name`` ending in ``.csv`` (or naming an existing file) is read with
    :func:`~pyroseq.data.load_csv`, min-max scaled to ``[0, 1]`` per channel and cut into windows;
    otherwise it is looked up with :func:`~pyroseq.data.get_dataset`. The last ``test_fraction`` of the
    windows are held out; for overlapping windows of one series the ``length - 1`` windows between the two
    parts are dropped, so no time step is in both.

    :param dict data: the ``data`` section (keys ``name``, ``length``, ``stride``, ``test_fraction``,
        ``max_windows``, ``columns``, ``kwargs``).
    :rtype: RunData
    :raises ValueError: for an unknown data set, bad loader arguments or too few windows.
    :raises FileNotFoundError: for a missing CSV file.
    """
    name, length = data["name"], data["length"]
    kwargs = dict(data["kwargs"])
    if _is_csv(name):
        frame = load_csv(name, columns=data["columns"])
        if frame.shape[0] < length:
            raise ValueError(f"data: {name} has {frame.shape[0]} rows, fewer than data.length={length}")
        ds = windowed_series(name, frame, length, stride=data["stride"])
    else:
        if name.lower() not in list_datasets():
            raise ValueError(f"data: unknown dataset {name!r}; registered: {', '.join(list_datasets())} "
                             f"(or give the path of a CSV file)")
        if data["stride"] != 1:
            kwargs.setdefault("stride", data["stride"])
        if data["columns"] is not None:
            kwargs.setdefault("columns", data["columns"])
        try:
            ds = get_dataset(name, length=length, **kwargs)
        except TypeError as e:
            raise ValueError(f"data: bad arguments for dataset {name!r}: {e}") from None
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
        raise ValueError(f"data: only {N} windows of length {length} in {name!r}; too few to train on "
                         f"(lower data.length or data.test_fraction)")
    train = windows[:num_train].contiguous()
    test = windows[N - num_test:].contiguous()
    scaler = getattr(ds, "scaler", None)
    units = None if scaler is None else {"min": np.asarray(scaler.data_min, dtype=np.float64).tolist(),
                                         "max": np.asarray(scaler.data_max, dtype=np.float64).tolist()}
    return RunData(train=train, test=test, name=ds.name, columns=tuple(ds.columns), independent=independent,
                   units=units)


def unit_range(x, tol=_UNIT_TOL):
    """True if all entries of ``x`` are in ``[0, 1]`` (up to a tolerance)."""
    return bool(x.min() >= -tol and x.max() <= 1 + tol)
