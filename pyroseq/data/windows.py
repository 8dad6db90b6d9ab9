"""Sliding windows over a long multivariate series, as zero-copy views."""

import numbers

import numpy as np
import torch

__all__ = ["sliding_windows", "num_windows"]


def num_windows(series_length, length, stride=1):
    """
    Number of windows :func:`sliding_windows` returns.

    :param int series_length: Length ``T`` of the series.
    :param int length: Window length ``L``.
    :param int stride: Step between window starts.
    :rtype: int
    """
    for name, value in (("length", length), ("stride", stride)):
        if not isinstance(value, numbers.Integral):  # e.g. 2.0 would make unfold / sliding_window_view raise
            raise ValueError("{} must be an integer, got {!r}".format(name, value))
    if length < 1 or stride < 1:
        raise ValueError("length and stride must be positive, got length={}, stride={}".format(
            length, stride))
    if length > series_length:
        raise ValueError("length must not exceed the series length {}, got {}".format(
            series_length, length))
    return (series_length - length) // stride + 1


def sliding_windows(series, length, stride=1):
    """
    All windows ``series[s : s + length]`` for ``s = 0, stride, 2 * stride, ...`` as a *view* on
    ``series`` (no copy: stride-1 windows of length 256 over ETTh1 cost no extra memory).

    For numpy input the result is a read-only view (:func:`numpy.lib.stride_tricks.sliding_window_view`);
    for torch input it is a view from :meth:`torch.Tensor.unfold` sharing storage with ``series``.
    Copy on demand (``np.array(w)``, ``w.contiguous()`` or ``w.clone()``) before writing to it.

    :param series: A series of shape ``(T, C)`` (or ``(T,)``, treated as ``(T, 1)``).
    :type series: numpy.ndarray or torch.Tensor
    :param int length: Window length ``L``, ``1 <= L <= T``.
    :param int stride: Step between window starts, ``>= 1``.
    :returns: Windows of shape ``(num_windows(T, L, stride), L, C)``, same type as ``series``.
    :raises ValueError: If ``series`` has the wrong rank or ``length``/``stride`` are invalid.
    """
    if series.ndim == 1:
        series = series[:, None]
    if series.ndim != 2:
        raise ValueError("series must have shape (T, C) or (T,), got shape {}".format(
            tuple(series.shape)))
    num_windows(series.shape[0], length, stride)  # validates length and stride
    if isinstance(series, torch.Tensor):
        return series.unfold(0, length, stride).transpose(1, 2)
    series = np.asarray(series)
    view = np.lib.stride_tricks.sliding_window_view(series, length, axis=0)  # (T-L+1, C, L)
    return view.swapaxes(1, 2)[::stride]
