"""Data in the user's units mapped to the ``[-1, 1]`` the window diffusion models work in, and back."""

import math

import torch
from torch import nn

__all__ = ["RangeScaler"]


class RangeScaler(nn.Module):
    """Per-channel affine map ``u = 2 (x - low) / (high - low) - 1`` from data units to ``[-1, 1]``. The range is
    either fixed (``data_range``, the same for every channel) or learned by :meth:`fit` from the training data
    (each channel's smallest and largest observed value), and saved in the state dict (buffers ``low`` and
    ``high``), so a trained model takes and returns data in the user's units.

    State dicts written before the scaler existed load unchanged: their missing ``low``/``high`` keep the values
    the model was constructed with, i.e. the fixed range they were trained under.

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

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        for name in ("low", "high"):  # checkpoints from before the scaler: keep the constructed range
            state_dict.setdefault(prefix + name, getattr(self, name))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
