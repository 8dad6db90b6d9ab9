"""Scalers of the window diffusion models: modules mapping data in the user's units to the units the diffusion works
in (``to_unit``) and back (``from_unit``), fitted to the training data (``fit``) and saved in the state dict."""

import math

import torch
from torch import nn

from .base import channel_standardization

__all__ = ["ChannelStandardizer", "RangeScaler"]


class RangeScaler(nn.Module):
    """Per-channel affine map ``u = 2 (x - low) / (high - low) - 1`` from data units to ``[-1, 1]``. The range is
    either fixed (``data_range``, the same for every channel) or learned by :meth:`fit` from the training data
    (each channel's smallest and largest observed value), and saved in the state dict (buffers ``low`` and
    ``high``), so a trained model takes and returns data in the user's units.

    :param int num_channels: number of channels ``C``.
    :param tuple data_range: a fixed ``(low, high)``, or None to learn the range in :meth:`fit` (until then the
        identity map of ``[-1, 1]``).
    """

    def __init__(self, num_channels, data_range=None):
        super().__init__()
        if data_range is None:
            low, high = -1.0, 1.0
        else:
            try:
                low, high = (float(v) for v in data_range)
            except (TypeError, ValueError):
                raise ValueError(f"data_range must be None or a pair (low, high), got {data_range!r}") from None
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"data_range must be finite with low < high, got {data_range!r}")
        self.fixed = data_range is not None
        self.register_buffer("low", torch.full((int(num_channels),), low))
        self.register_buffer("high", torch.full((int(num_channels),), high))

    @property
    def data_range(self):
        """The fixed ``(low, high)``, or None if the range is learned."""
        return (float(self.low[0]), float(self.high[0])) if self.fixed else None

    @torch.no_grad()
    def fit(self, x, mask=None):
        """Learn each channel's range from the observed entries of ``x`` ``(N, T, C)`` (no-op for a fixed range).

        :raises ValueError: for a channel without observed values or with a single value.
        """
        if self.fixed:
            return self
        observed = torch.isfinite(x) if mask is None else (mask.bool() & torch.isfinite(x))
        flat, seen = x.reshape(-1, x.shape[-1]), observed.reshape(-1, x.shape[-1])
        low = torch.where(seen, flat, torch.full((), math.inf, dtype=x.dtype)).amin(0)
        high = torch.where(seen, flat, torch.full((), -math.inf, dtype=x.dtype)).amax(0)
        bad = (~(high > low)).nonzero().flatten()
        if len(bad):
            raise ValueError(f"x has channels {bad.tolist()} that are constant or unobserved: a range cannot be "
                             f"learned for them")
        self.low.copy_(low)
        self.high.copy_(high)
        return self

    def check(self, x, name="x"):
        """With a fixed range, refuse values outside it (they would leave ``[-1, 1]``)."""
        if not self.fixed:
            return
        low, high = self.data_range
        tol = 1e-4 * (high - low)
        if x.min() < low - tol or x.max() > high + tol:
            raise ValueError(f"{name} has values in [{x.min().item():.4g}, {x.max().item():.4g}], outside "
                             f"data_range {self.data_range}: scale the data first, or leave data_range=None to "
                             f"learn the range from the training data")

    def _centre_and_half_width(self, dtype):
        low, high = self.low.to(dtype), self.high.to(dtype)
        return (low + high) / 2, (high - low) / 2

    def to_unit(self, x):
        """Data units to ``[-1, 1]``: ``x`` of shape ``(..., C)`` (exactly ``x`` for the range ``(-1, 1)``)."""
        centre, half = self._centre_and_half_width(x.dtype)
        return (x - centre) / half

    def from_unit(self, u):
        """``[-1, 1]`` to data units: ``u`` of shape ``(..., C)``."""
        centre, half = self._centre_and_half_width(u.dtype)
        return u * half + centre


class ChannelStandardizer(nn.Module):
    """Per-channel standardisation ``u = (x - loc) / scale`` by the mean and standard deviation of the observed
    training entries (buffers ``loc`` and ``scale``; the identity until :meth:`fit`).

    :param int num_channels: number of channels ``C``.
    """

    def __init__(self, num_channels):
        super().__init__()
        self.register_buffer("loc", torch.zeros(int(num_channels)))
        self.register_buffer("scale", torch.ones(int(num_channels)))

    @torch.no_grad()
    def fit(self, x, mask=None):
        """Learn ``loc`` and ``scale`` from the observed entries of ``x`` ``(N, T, C)``.

        :raises ValueError: if a channel is constant or has fewer than two observed values.
        """
        mean, std = channel_standardization(x, torch.isfinite(x) if mask is None else mask)
        self.loc.copy_(mean)
        self.scale.copy_(std)
        return self

    def check(self, x, name="x"):
        """Every value can be standardised: nothing to check."""

    def to_unit(self, x):
        """Data units to standard units: ``x`` of shape ``(..., C)``."""
        return (x - self.loc) / self.scale

    def from_unit(self, u):
        """Standard units to data units: ``u`` of shape ``(..., C)``."""
        return self.loc + self.scale * u
