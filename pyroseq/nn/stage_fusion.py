"""Multi-channel fusion of a stage's multi-scale trends, handed to the next stage as history."""

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["StageFusion"]


class StageFusion(nn.Module):
    r"""Fuse the trends of all channels of a stage, one scale at a time, with a temporal convolution whose
    kernel spans all ``C`` channels and ``L_conv`` time steps, and split the result back per channel.

    For scale ``s`` the output feature ``f`` of channel ``c`` at time ``t`` is

    .. math:: h_{s,c,t,f} = b_{s,c,f} + \sum_{c'=1}^{C} \sum_{j=1}^{L_\mathrm{conv}}
        W_{s,c,f,c',j}\, \mathrm{trend}_{s,c',t+j-1-\lfloor (L_\mathrm{conv}-1)/2 \rfloor},

    with replicate padding in time, so every channel's history sees every channel's trend. With
    ``mix_channels=False`` the kernel is ``1 x L_conv`` (grouped per channel): an ablation without
    cross-channel fusion.

    :param int channels: number of channels ``C``.
    :param int num_scales: number of trend scales ``S`` (one convolution each).
    :param int out_dim: features per channel and time step in the output.
    :param int kernel_size: temporal extent ``L_conv`` of the kernel.
    :param bool mix_channels: fuse across channels (``C x L_conv`` kernel) or not (``1 x L_conv``).
    """

    def __init__(self, channels, num_scales, out_dim=16, kernel_size=5, mix_channels=True):
        super().__init__()
        for name, value in (("channels", channels), ("num_scales", num_scales), ("out_dim", out_dim),
                            ("kernel_size", kernel_size)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.channels = int(channels)
        self.num_scales = int(num_scales)
        self.out_dim = int(out_dim)
        self.kernel_size = int(kernel_size)
        self.mix_channels = bool(mix_channels)
        groups = 1 if self.mix_channels else self.channels
        # Output channel c * out_dim + f of a grouped conv only sees input channel c, so the reshape to
        # (C, out_dim) below splits both variants back per channel the same way.
        self.convs = nn.ModuleList(
            nn.Conv1d(self.channels, self.channels * self.out_dim, self.kernel_size, groups=groups)
            for _ in range(self.num_scales)
        )

    def forward(self, trends):
        """
        :param torch.Tensor trends: the stage's trends of shape ``(N, S, L, C)``.
        :returns: per-channel history features of shape ``(N, C, S, L, out_dim)``.
        """
        if trends.dim() != 4 or trends.shape[1] != self.num_scales or trends.shape[3] != self.channels:
            raise ValueError(
                f"trends must have shape (N, S={self.num_scales}, L, C={self.channels}), "
                f"got {tuple(trends.shape)}"
            )
        N, S, L, C = trends.shape
        k = self.kernel_size
        left = (k - 1) // 2
        outputs = []
        for s, conv in enumerate(self.convs):
            x = F.pad(trends[:, s].transpose(1, 2), (left, k - 1 - left), mode="replicate")  # (N, C, L+k-1)
            outputs.append(conv(x).reshape(N, C, self.out_dim, L).transpose(2, 3))  # (N, C, L, f)
        return torch.stack(outputs, dim=2)

    def extra_repr(self):
        return (f"channels={self.channels}, num_scales={self.num_scales}, out_dim={self.out_dim}, "
                f"kernel_size={self.kernel_size}, mix_channels={self.mix_channels}")
