"""Mamba as a non-causal token mixer: a bidirectional Mamba (optionally with Lag Fusion) and a residual time
mixer registered as ``"mamba"`` for :class:`~pyroseq.nn.CSDIDenoiserNet`.

Importing this module registers the time mixer (``pyroseq.nn`` imports it)::

    CSDIDenoiserNet(obs_dim=C, time_mixer="mamba", time_mixer_kwargs=dict(d_state=16, num_lags=2))
"""

from torch import nn

from .embeddings import _nonnegative_int
from .lag_fusion import LagFusionMamba
from .mamba import Mamba
from .mixers import register_time_mixer

__all__ = ["BidirectionalMamba", "MambaTimeMixer"]


class BidirectionalMamba(nn.Module):
    r"""Two Mamba blocks scanning a sequence forward and backward in time, outputs summed:
    :math:`y = \mathrm{M}_f(h) + \mathrm{flip}(\mathrm{M}_b(\mathrm{flip}(h)))`, so every output token sees
    the whole sequence. Input and output ``(batch, length, d_model)``.

    :param int d_model: model width.
    :param int num_lags: if positive, both blocks are :class:`~pyroseq.nn.lag_fusion.LagFusionMamba` with
        dilations ``1..num_lags``; 0 gives plain :class:`~pyroseq.nn.Mamba` blocks.
    :param mamba_kwargs: passed to the Mamba blocks (``d_state``, ``d_conv``, ``expand``, ...).
    """

    def __init__(self, d_model, num_lags=0, **mamba_kwargs):
        super().__init__()
        self.num_lags = _nonnegative_int("num_lags", num_lags)

        def block():
            if self.num_lags:
                return LagFusionMamba(d_model, num_lags=self.num_lags, **mamba_kwargs)
            return Mamba(d_model, **mamba_kwargs)

        self.forward_block = block()
        self.backward_block = block()

    def forward(self, h):
        """
        :param torch.Tensor h: shape ``(batch, length, d_model)``.
        :returns: shape ``(batch, length, d_model)``.
        """
        return self.forward_block(h) + self.backward_block(h.flip(1)).flip(1)


class MambaTimeMixer(nn.Module):
    r"""Residual pre-norm Mamba mixer over time: :math:`h + \mathrm{BiMamba}(\mathrm{LN}(h))` (or a single
    forward Mamba when not bidirectional, which makes the mixer causal).

    :param int channels: token width ``D``.
    :param bool bidirectional: scan both directions (default) or forward only.
    :param int num_lags: Lag Fusion dilations (0: plain Mamba).
    :param mamba_kwargs: passed to the Mamba blocks (``d_state`` default 16, ``d_conv``, ``expand``, ...).
    """

    def __init__(self, channels, bidirectional=True, num_lags=0, **mamba_kwargs):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        if bidirectional:
            self.mixer = BidirectionalMamba(channels, num_lags=num_lags, **mamba_kwargs)
        elif num_lags:
            self.mixer = LagFusionMamba(channels, num_lags=num_lags, **mamba_kwargs)
        else:
            self.mixer = Mamba(channels, **mamba_kwargs)

    def forward(self, h):
        """
        :param torch.Tensor h: tokens of shape ``(B, L, D)``.
        :returns: mixed tokens of shape ``(B, L, D)``.
        """
        return h + self.mixer(self.norm(h))


def _mamba_time_factory(channels, layer_index=0, **kwargs):
    return MambaTimeMixer(channels, **kwargs)


register_time_mixer("mamba", _mamba_time_factory, overwrite=True)  # idempotent on re-import
