"""A registry of benchmark data sets, each returned as min-max scaled windows."""

from dataclasses import dataclass, field

import numpy as np
import torch

from .csv import load_etth, load_stocks
from .scaling import MinMaxScaler
from .sines import sines
from .windows import sliding_windows

__all__ = ["WindowedDataset", "register_dataset", "get_dataset", "list_datasets",
           "windowed_series"]

_REGISTRY = {}


@dataclass
class WindowedDataset:
    """
    Windows of a benchmark data set, scaled to ``[0, 1]`` per channel.

    :ivar str name: Registry name.
    :ivar torch.Tensor windows: Windows of shape ``(N, L, C)`` in ``[0, 1]``; for series data sets
        a view on :attr:`series` (copy with ``.clone()`` before writing).
    :ivar torch.Tensor series: The scaled series of shape ``(T, C)``, or None for data sets that
        are generated window by window (Sines).
    :ivar MinMaxScaler scaler: Maps original units to ``[0, 1]`` (``inverse_transform`` maps back),
        or None if the data are generated in ``[0, 1]``.
    :ivar tuple columns: Channel names.
    """

    name: str
    windows: torch.Tensor
    series: torch.Tensor = None
    scaler: MinMaxScaler = None
    columns: tuple = field(default_factory=tuple)

    def __len__(self):
        return self.windows.shape[0]

    def __repr__(self):
        return "WindowedDataset(name={!r}, windows={}, columns={})".format(
            self.name, tuple(self.windows.shape), self.columns)


def register_dataset(name, loader=None, overwrite=False):
    """
    Register a data set under ``name``. The loader is called as
    ``loader(length=length, **kwargs)`` by :func:`get_dataset` and must return a
    :class:`WindowedDataset`. Usable as a decorator::

        @register_dataset("my_data")
        def my_data(length=24, stride=1):
            return windowed_series("my_data", my_frame, length, stride)

    :param str name: Registry name (case-insensitive).
    :param callable loader: The loader; omit to use as a decorator.
    :param bool overwrite: Allow replacing an existing entry.
    """
    def decorator(fn):
        key = name.lower()
        if key in _REGISTRY and not overwrite:
            raise ValueError("dataset {!r} is already registered; pass overwrite=True".format(name))
        _REGISTRY[key] = fn
        return fn

    return decorator if loader is None else decorator(loader)


def list_datasets():
    """Names of the registered data sets (sorted)."""
    return sorted(_REGISTRY)


def get_dataset(name, length=24, **kwargs):
    """
    Load a registered data set as scaled windows.

    Built in: ``"sines"`` (keyword arguments ``num_samples=10000, channels=5, seed=0`` of
    :func:`~pyroseq.data.sines.sines`), ``"stocks"`` and ``"etth"`` (keyword arguments
    ``stride=1, root=None, columns=None``; the whole series is min-max scaled per channel and cut
    into windows with :func:`~pyroseq.data.windows.sliding_windows`).

    :param str name: Registry name (case-insensitive), see :func:`list_datasets`.
    :param int length: Window length ``L``.
    :rtype: WindowedDataset
    :raises ValueError: For an unknown name (listing the registered ones).
    """
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError("unknown dataset {!r}; registered: {}".format(name, list_datasets()))
    return _REGISTRY[key](length=length, **kwargs)


def windowed_series(name, frame, length, stride=1, dtype=torch.float32):
    """
    Scale a series per channel to ``[0, 1]`` (:class:`MinMaxScaler` fitted on the whole series) and
    cut it into sliding windows (a view).

    :param str name: Data set name.
    :param frame: Numeric series of shape ``(T, C)``; column names are kept for a data frame.
    :type frame: pandas.DataFrame or numpy.ndarray
    :param int length: Window length.
    :param int stride: Step between window starts.
    :param torch.dtype dtype: Dtype of the windows.
    :rtype: WindowedDataset
    """
    if hasattr(frame, "columns"):
        values, columns = frame.to_numpy(dtype=np.float64), tuple(map(str, frame.columns))
    else:
        values = np.asarray(frame, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError("frame must have shape (T, C), got {}".format(values.shape))
        columns = tuple(str(c) for c in range(values.shape[1]))
    scaler = MinMaxScaler().fit(values)
    series = torch.as_tensor(scaler.transform(values), dtype=dtype)
    return WindowedDataset(name=name, windows=sliding_windows(series, length, stride),
                           series=series, scaler=scaler, columns=columns)



@register_dataset("sines")
def _sines(length=24, num_samples=10000, channels=5, seed=0):
    x = sines(num_samples=num_samples, length=length, channels=channels, seed=seed)
    return WindowedDataset(name="sines", windows=x,
                           columns=tuple("sine_{}".format(c) for c in range(channels)))


def _series_loader(name, load):
    def loader(length=24, stride=1, root=None, columns=None):
        frame = load(root=root)
        if columns is not None:
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError("columns {} not in dataset {!r}; available: {}".format(
                    missing, name, list(frame.columns)))
            frame = frame[list(columns)]
        return windowed_series(name, frame, length, stride)

    return loader


register_dataset("stocks", _series_loader("stocks", load_stocks))
register_dataset("etth", _series_loader("etth", load_etth))
