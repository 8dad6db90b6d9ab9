"""Per-channel min-max scaling, the normalisation of the Diffusion-TS / TimeGAN protocol."""

import numpy as np
import torch

__all__ = ["MinMaxScaler"]


class MinMaxScaler:
    """
    Scale every channel (last axis) linearly so that its minimum and maximum over the fitted data
    map to ``feature_range``. Fit on the whole series (all leading axes are pooled); data are
    evaluated in ``(0, 1)`` and models are commonly trained in ``(-1, 1)``.

    Works on numpy arrays and torch tensors; outputs have the type (and floating dtype) of the
    input.

    :param tuple feature_range: Target ``(low, high)``, e.g. ``(0, 1)`` or ``(-1, 1)``.

    Example::

        scaler = MinMaxScaler().fit(series)          # series: (T, C)
        x01 = scaler.transform(series)               # in [0, 1]
        series_again = scaler.inverse_transform(x01)
    """

    def __init__(self, feature_range=(0.0, 1.0)):
        low, high = map(float, feature_range)
        if not low < high:
            raise ValueError("feature_range must satisfy low < high, got {}".format(feature_range))
        self.feature_range = (low, high)
        self.data_min = None
        self.data_max = None

    def fit(self, x):
        """
        :param x: Data of shape ``(..., C)``.
        :type x: numpy.ndarray or torch.Tensor
        :returns: ``self``.
        :raises ValueError: On NaN/inf, empty input, or a constant channel (naming its index).
        """
        x = _to_numpy(x, "x")
        if x.ndim < 1 or x.size == 0:
            raise ValueError("x must be a non-empty array of shape (..., C), got shape {}".format(
                x.shape))
        flat = x.reshape(-1, x.shape[-1])
        bad = ~np.isfinite(flat).all(axis=0)
        if bad.any():
            raise ValueError("x contains NaN or infinite values in channel(s) {}".format(
                np.flatnonzero(bad).tolist()))
        data_min, data_max = flat.min(axis=0), flat.max(axis=0)
        constant = np.flatnonzero(data_max == data_min)
        if constant.size:
            raise ValueError("x has constant channel(s) {} that cannot be min-max scaled".format(
                constant.tolist()))
        self.data_min, self.data_max = data_min, data_max
        return self

    def _params(self, x):
        if self.data_min is None:
            raise ValueError("MinMaxScaler is not fitted; call fit() first")
        if x.shape[-1] != self.data_min.shape[0]:
            raise ValueError("x has {} channels but the scaler was fitted on {}".format(
                x.shape[-1], self.data_min.shape[0]))
        data_min, data_range = self.data_min, self.data_max - self.data_min
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            return (torch.as_tensor(data_min, dtype=dtype, device=x.device),
                    torch.as_tensor(data_range, dtype=dtype, device=x.device))
        if np.issubdtype(x.dtype, np.floating):
            return data_min.astype(x.dtype), data_range.astype(x.dtype)
        return data_min, data_range

    def transform(self, x):
        """
        :param x: Data of shape ``(..., C)``.
        :type x: numpy.ndarray or torch.Tensor
        :returns: Scaled data of the same shape and type.
        """
        x = _as_array_or_tensor(x)
        data_min, data_range = self._params(x)
        low, high = self.feature_range
        # (x - min) / range maps the fitted extremes to exactly 0 and 1 (no round-off overshoot).
        return (x - data_min) / data_range * (high - low) + low

    def inverse_transform(self, y):
        """
        :param y: Scaled data of shape ``(..., C)``.
        :type y: numpy.ndarray or torch.Tensor
        :returns: Data in the original units, same shape and type.
        """
        y = _as_array_or_tensor(y)
        data_min, data_range = self._params(y)
        low, high = self.feature_range
        return (y - low) / (high - low) * data_range + data_min

    def fit_transform(self, x):
        """Equivalent to ``self.fit(x).transform(x)``."""
        return self.fit(x).transform(x)

    def __repr__(self):
        return "MinMaxScaler(feature_range={}, fitted={})".format(
            self.feature_range, self.data_min is not None)


def _to_numpy(x, name):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError("{} must hold real numbers, got dtype {}".format(name, x.dtype))
    return x.astype(np.float64, copy=False)


def _as_array_or_tensor(x):
    return x if isinstance(x, torch.Tensor) else np.asarray(x)
