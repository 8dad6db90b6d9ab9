r"""Permutation Scanning (DiM-TS): scan the channels of a multivariate series in an order derived from
their correlation structure, so that correlated channels are neighbours in the Mamba scan.

The order is computed once from training data (:func:`spectral_channel_order`): Pearson correlations
:math:`R` of the channels over the first 70% of the training series, affinities :math:`W = \exp(|R|)`,
the 1-D spectral embedding of this graph (the Fiedler vector of the symmetric normalised Laplacian
:math:`I - D^{-1/2} W D^{-1/2}`, mapped back by :math:`D^{-1/2}` as in spectral clustering), and its rank.
:class:`ChannelPermutation` stores the order as a buffer, so it travels with the ``state_dict``.
"""

import torch
from torch import nn

from .embeddings import _positive_int

__all__ = ["ChannelPermutation", "spectral_channel_order"]


def _check_series(series):
    if not torch.is_tensor(series):
        raise ValueError(f"series must be a torch.Tensor of shape (T, C) or (N, L, C), got {type(series).__name__}")
    if not torch.is_floating_point(series):
        raise ValueError(f"series must be a floating point tensor, got dtype {series.dtype}")
    if series.dim() not in (2, 3):
        raise ValueError(f"series must have shape (T, C) or (N, L, C), got shape {tuple(series.shape)}")
    if not torch.isfinite(series).all():
        raise ValueError("series contains NaN or infinite values")


def spectral_channel_order(series, train_fraction=0.7):
    r"""Channel order from the correlation structure of a series (DiM-TS Permutation Scanning).

    Correlations are computed over the first ``train_fraction`` of the series (of the windows, for a
    batch of windows, whose values are then pooled). Channels are sorted by their coordinate in the
    1-D spectral embedding of the affinity graph :math:`W_{ij} = \exp(|R_{ij}|)`: the Fiedler vector
    :math:`v` of :math:`I - D^{-1/2} W D^{-1/2}` (second-smallest eigenvalue), scaled as
    :math:`D^{-1/2} v`, with its sign fixed so that its largest-magnitude entry is positive (the
    eigenvector's sign is arbitrary). Ties keep channel order (stable sort).

    :param torch.Tensor series: a series of shape ``(T, C)`` or windows of shape ``(N, L, C)``.
    :param float train_fraction: leading fraction of the series (or of the windows) used.
    :returns: a permutation of ``range(C)``, dtype long, shape ``(C,)``: ``order[i]`` is the channel
        scanned at position ``i``.
    :raises ValueError: for a wrong rank, NaN/inf values, fewer than 2 time steps in the used part,
        or a channel that is constant there (its correlations are undefined).
    """
    _check_series(series)
    if not 0.0 < float(train_fraction) <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction!r}")
    C = series.shape[-1]
    head = series[: max(1, int(series.shape[0] * train_fraction))]
    values = head.reshape(-1, C).to(torch.float64)
    if values.shape[0] < 2:
        raise ValueError(f"series is too short: the first {train_fraction:.0%} holds {values.shape[0]} time "
                         "step(s), need at least 2")
    if C == 1:
        return torch.zeros(1, dtype=torch.long)
    centred = values - values.mean(0)
    scale = centred.pow(2).sum(0).sqrt()
    constant = (scale <= 1e-12 * (1 + values.abs().max(0).values)).nonzero().flatten().tolist()
    if constant:
        raise ValueError(f"series has constant channel(s) {constant} in its first {train_fraction:.0%}; "
                         "their correlations are undefined")
    corr = (centred.T @ centred) / (scale[:, None] * scale[None, :])
    W = corr.abs().clamp(max=1.0).exp()
    d_isqrt = W.sum(1).rsqrt()
    laplacian = torch.eye(C, dtype=W.dtype) - d_isqrt[:, None] * W * d_isqrt[None, :]
    _, vectors = torch.linalg.eigh(laplacian)
    embedding = d_isqrt * vectors[:, 1]
    if embedding[embedding.abs().argmax()] < 0:
        embedding = -embedding
    return torch.argsort(embedding, stable=True)


class ChannelPermutation(nn.Module):
    """A channel order kept as a buffer (``order``, saved in the ``state_dict``), with the maps into and out
    of it. Starts as the identity; set it from data with :meth:`fit` or explicitly with :meth:`set_order`.

    :param int num_channels: number of channels ``C``.
    """

    def __init__(self, num_channels):
        super().__init__()
        self.num_channels = _positive_int("num_channels", num_channels)
        self.register_buffer("order", torch.arange(self.num_channels))

    def set_order(self, order):
        """Set the order (in place, so copies sharing the buffer stay in sync).

        :param order: a permutation of ``range(C)`` (sequence or tensor of ints).
        :raises ValueError: if ``order`` is not a permutation of ``range(C)``.
        """
        order = torch.as_tensor(order)
        if order.dtype.is_floating_point or order.dtype == torch.bool or order.shape != (self.num_channels,) or \
                not torch.equal(order.sort().values.cpu(), torch.arange(self.num_channels)):
            raise ValueError(f"order must be a permutation of range({self.num_channels}), got {order.tolist()}")
        self.order.copy_(order.to(self.order))
        return self

    def fit(self, series, train_fraction=0.7):
        """Set the order from data with :func:`spectral_channel_order`.

        :param torch.Tensor series: ``(T, C)`` series or ``(N, L, C)`` windows.
        :param float train_fraction: leading fraction used for the correlations.
        """
        if torch.is_tensor(series) and series.shape[-1] != self.num_channels:
            raise ValueError(f"series must have {self.num_channels} channels (last dim), got shape "
                             f"{tuple(series.shape)}")
        return self.set_order(spectral_channel_order(series, train_fraction))

    def permute(self, h, dim=1):
        """Reorder channels into scan order: ``out[..., i, ...] = h[..., order[i], ...]`` along ``dim``."""
        return h.index_select(dim, self.order)

    def unpermute(self, h, dim=1):
        """Inverse of :meth:`permute`."""
        return h.index_select(dim, torch.argsort(self.order))

    def extra_repr(self):
        return f"num_channels={self.num_channels}"
