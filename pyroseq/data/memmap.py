"""Windowed data sets over memory-mapped arrays, for series larger than memory: only the rows of a
minibatch are ever read from disk."""

import os

import numpy as np
import torch

from .scaling import MinMaxScaler
from .windows import num_windows

__all__ = ["MemmapWindows", "WindowIndexError", "create_npy"]


class WindowIndexError(IndexError, ValueError):
    """An index out of range or of the wrong kind (an :class:`IndexError`, as Python's sequence protocol
    expects, and a :class:`ValueError`, like every other bad input of pyroseq)."""


def create_npy(path, shape, dtype="float32"):
    """Create a ``.npy`` file of the given shape and return it as a writable :class:`numpy.memmap`, so a
    series larger than memory can be written chunk by chunk (``out[a:b] = chunk; out.flush()``).

    :param str path: destination file.
    :param tuple shape: array shape, e.g. ``(T, C)``.
    :param dtype: NumPy dtype.
    :rtype: numpy.memmap
    """
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape}")
    return np.lib.format.open_memmap(os.fspath(path), mode="w+", dtype=np.dtype(dtype), shape=shape)


class MemmapWindows:
    """Sliding windows over a long series ``(T, C)``, or the sequences of an array ``(N, T, C)``, kept on
    disk as a memory map: indexing reads just the requested rows and returns a fresh tensor, so training
    with :func:`~pyroseq.inference.fit` (which accepts this object in place of a tensor) never loads the
    whole series. Missing values may be NaN.

    Indexing: ``ds[i]`` gives a window ``(L, C)``; ``ds[idx]`` with an integer index tensor / array /
    list of shape ``(B,)`` or a slice gives ``(B, L, C)``, in the requested order (rows are read in
    ascending order for locality). Windows are ``series[s : s + L]`` for ``s = 0, stride, 2 stride, ...``
    as in :func:`~pyroseq.data.sliding_windows`.

    The object pickles by file name when opened from a path (worker processes re-open the map instead
    of copying the data).

    Example::

        out = create_npy("big.npy", (10_000_000, 7))      # fill it chunk by chunk
        ds = MemmapWindows("big.npy", length=96, stride=4)
        ds.fit_scaler((-1, 1))                           # streaming per-channel min/max
        fit(model, ds, num_steps=10_000, batch_size=64)

    :param source: path of a ``.npy`` file (opened read-only with ``mmap_mode="r"``), or an array
        (e.g. :class:`numpy.memmap`; kept by reference, not copied) of shape ``(T, C)``, ``(T,)`` or
        ``(N, T, C)``.
    :param int length: window length ``L`` for a series (required); must be None for ``(N, T, C)``.
    :param int stride: step between window starts (series only).
    :param torch.dtype dtype: floating dtype of the returned tensors.
    :param MinMaxScaler scaler: applied to every batch (e.g. from :meth:`fit_scaler`), or None.
    """

    def __init__(self, source, length=None, stride=1, dtype=torch.float32, scaler=None):
        self.path = None
        if isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            try:
                array = np.load(self.path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise ValueError(f"source {self.path!r} is not a readable .npy file: {e}") from e
        elif isinstance(source, np.ndarray):
            array = source
        else:
            raise ValueError(f"source must be a .npy path or a numpy array (e.g. np.memmap), got "
                             f"{type(source).__name__}")
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"source must hold real numbers, got dtype {array.dtype}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        if scaler is not None and not isinstance(scaler, MinMaxScaler):
            raise ValueError(f"scaler must be a MinMaxScaler or None, got {type(scaler).__name__}")
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim == 2:
            if length is None:
                raise ValueError("length is required for a series of shape (T, C)")
            if int(length) != length or int(stride) != stride:
                raise ValueError(f"length and stride must be integers, got length={length!r}, stride={stride!r}")
            self.num_items = num_windows(array.shape[0], int(length), int(stride))
            self.length, self.stride = int(length), int(stride)
        elif array.ndim == 3:
            if length is not None:
                raise ValueError("length must be None for an array of sequences (N, T, C)")
            self.num_items, self.length, self.stride = array.shape[0], array.shape[1], None
        else:
            raise ValueError(f"source must have shape (T, C), (T,) or (N, T, C), got {array.shape}")
        if min(array.shape) < 1:
            raise ValueError(f"source must not be empty, got shape {array.shape}")
        self.array, self.dtype, self.scaler = array, dtype, scaler
        self.channels = array.shape[-1]

    def __len__(self):
        return self.num_items

    @property
    def shape(self):
        """``(N, L, C)``: number of windows, window length and channels."""
        return (self.num_items, self.length, self.channels)

    def _indices(self, index):
        if isinstance(index, slice):
            return np.arange(self.num_items)[index]
        if torch.is_tensor(index):
            if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
                raise WindowIndexError(f"index tensor must hold integers, got dtype {index.dtype}")
            index = index.detach().cpu().numpy()
        index = np.asarray(index)
        if index.dtype == object or not (np.issubdtype(index.dtype, np.integer) or index.size == 0):
            raise WindowIndexError(f"index must be an int, a slice or integers, got dtype {index.dtype}")
        if index.ndim != 1:
            raise WindowIndexError(f"index must have rank 1, got shape {index.shape}")
        index = index.astype(np.int64)
        bad = (index < -self.num_items) | (index >= self.num_items)
        if bad.any():
            raise WindowIndexError(f"index {int(index[bad][0])} is out of range for {self.num_items} windows")
        return index % max(self.num_items, 1)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            return self[np.array([index])][0]
        idx = self._indices(index)
        order = np.argsort(idx, kind="stable")
        if self.stride is None:
            batch = self.array[idx[order]]  # (B, T, C): fancy indexing reads only these rows
        else:
            rows = (idx[order] * self.stride)[:, None] + np.arange(self.length)
            batch = self.array[rows]  # (B, L, C)
        out = np.empty(batch.shape, dtype=np.float64 if self.scaler is not None else batch.dtype)
        out[order] = batch
        if self.scaler is not None:
            out = self.scaler.transform(out)
        return torch.from_numpy(np.ascontiguousarray(out)).to(self.dtype)

    def fit_scaler(self, feature_range=(0.0, 1.0), chunk_size=1 << 16):
        """Fit a per-channel :class:`MinMaxScaler` by streaming over the array in chunks (NaN entries are
        ignored), set it as :attr:`scaler` and return it.

        :param tuple feature_range: target range, e.g. ``(0, 1)`` or ``(-1, 1)``.
        :param int chunk_size: leading-axis rows read at a time.
        :raises ValueError: on infinite values, a channel without finite values, or a constant channel.
        """
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        scaler = MinMaxScaler(feature_range)
        low = np.full(self.channels, np.inf)
        high = np.full(self.channels, -np.inf)
        for start in range(0, self.array.shape[0], int(chunk_size)):
            chunk = np.asarray(self.array[start : start + int(chunk_size)], dtype=np.float64)
            chunk = chunk.reshape(-1, self.channels)
            if np.isinf(chunk).any():
                raise ValueError(f"source has infinite values in rows from {start} on")
            finite = ~np.isnan(chunk)
            low = np.minimum(low, np.where(finite, chunk, np.inf).min(0))
            high = np.maximum(high, np.where(finite, chunk, -np.inf).max(0))
        empty = np.flatnonzero(~np.isfinite(low))
        if empty.size:
            raise ValueError(f"channel(s) {empty.tolist()} have no finite values")
        constant = np.flatnonzero(high == low)
        if constant.size:
            raise ValueError(f"channel(s) {constant.tolist()} are constant and cannot be min-max scaled")
        scaler.data_min, scaler.data_max = low, high
        self.scaler = scaler
        return scaler

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.path is not None:
            state["array"] = None  # re-opened from the file, never copied
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.array is None:
            array = np.load(self.path, mmap_mode="r")
            self.array = array[:, None] if array.ndim == 1 else array

    def __repr__(self):
        source = repr(self.path) if self.path is not None else type(self.array).__name__
        return f"MemmapWindows({source}, shape={self.shape}, stride={self.stride})"
