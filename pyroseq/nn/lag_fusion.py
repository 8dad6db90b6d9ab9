r"""Lag Fusion Mamba (DiM-TS): the selective scan's hidden states are fused with the states at
structured lags before the read-out.

A sequence of length ``L`` is padded with zeros to ``s * s`` steps, ``s = ceil(sqrt(L))``, and viewed as
an ``s x s`` grid in row-major order (step ``t`` sits at row ``t // s``, column ``t % s``). A depthwise
3x3 convolution at dilation ``j`` then mixes the state of step ``t`` with the states at lags ``± j``
(same row), ``± j s`` (same column) and ``± j s ± j`` (diagonals). With dilations ``1..k`` the fused
states are

.. math:: \tilde h = h + \sum_{j=1}^{k} \mathrm{DWConv}^{3\times 3}_{\mathrm{dilation}\ j}(h),

computed separately for each of the ``n`` state entries with weights shared over them (one 3x3 kernel per
inner channel and dilation). The read-out is then ``y = C h~ + D x`` (gated as in Mamba). The kernels start
at zero, so an untrained Lag Fusion Mamba equals plain Mamba. Lags that leave the grid (a horizontal
neighbour past the end of a row, any step past ``L``) contribute zero: the grid is zero-padded, not wrapped.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import _positive_int
from .mamba import Mamba

__all__ = ["LagFusion", "LagFusionMamba", "lag_grid_size"]


def lag_grid_size(length):
    """Side ``s = ceil(sqrt(length))`` of the square grid a sequence is viewed as.

    :param int length: sequence length ``L >= 1``.
    :rtype: int
    """
    length = _positive_int("length", length)
    return math.isqrt(length - 1) + 1


def _tap_basis(length, num_lags, device, dtype, _cache={}):
    """0/1 matrices ``B[(j - 1) * 9 + 3 a + c, t, t']`` = 1 where tap ``(a, c)`` of the 3x3 kernel at dilation
    ``j`` reads step ``t'`` for output step ``t`` on the zero-padded ``s x s`` grid (cached)."""
    key = (length, num_lags, str(device), dtype)
    if key not in _cache:
        s = lag_grid_size(length)
        t = torch.arange(length)
        row, col = t // s, t % s
        basis = torch.zeros(num_lags, 3, 3, length, length, dtype=dtype)
        for j in range(1, num_lags + 1):
            for a in range(3):
                for c in range(3):
                    r2, c2 = row + (a - 1) * j, col + (c - 1) * j
                    src = r2 * s + c2
                    ok = (r2 >= 0) & (c2 >= 0) & (c2 < s) & (src < length)
                    basis[j - 1, a, c, t[ok], src[ok]] = 1
        _cache[key] = basis.reshape(num_lags * 9, length, length).to(device)
    return _cache[key]


class LagFusion(nn.Module):
    r"""Fusion of hidden states at structured lags: ``h + sum_j DWConv3x3_dilation_j(h)`` on the
    ``s x s`` grid view of the time axis (see the module docstring).

    :param int d_inner: number of inner channels ``d`` of the scan (depthwise: one kernel each).
    :param int num_lags: largest dilation ``k`` (dilations ``1..k``).
    """

    def __init__(self, d_inner, num_lags=2):
        super().__init__()
        self.d_inner = _positive_int("d_inner", d_inner)
        self.num_lags = _positive_int("num_lags", num_lags)
        # weight[j - 1, i] is the 3x3 kernel of inner channel i at dilation j; zero = no fusion
        self.weight = nn.Parameter(torch.zeros(self.num_lags, self.d_inner, 3, 3))

    def kernel(self):
        """The dilated 3x3 kernels summed into one depthwise ``(2k+1) x (2k+1)`` kernel (the convolution
        :meth:`forward` computes on the grid view).

        :returns: a tensor of shape ``(d_inner, 1, 2 k + 1, 2 k + 1)``.
        """
        k = self.num_lags
        kernel = self.weight.new_zeros(self.d_inner, 2 * k + 1, 2 * k + 1)
        for j in range(1, k + 1):
            dilated = self.weight.new_zeros(self.d_inner, 3, j, 3, j)
            dilated[:, :, 0, :, 0] = self.weight[j - 1]  # taps at rows/columns 0, j, 2j
            dilated = dilated.reshape(self.d_inner, 3 * j, 3 * j)[:, : 2 * j + 1, : 2 * j + 1]
            kernel = kernel + F.pad(dilated, (k - j,) * 4)
        return kernel.unsqueeze(1)

    def mixing_matrix(self, length):
        r"""The fusion as a linear map along time: ``M[i, t, t']`` is the weight of the state at step ``t'``
        in the fused state at step ``t`` for inner channel ``i`` (identity plus the lag taps that stay on the
        zero-padded grid).

        :param int length: sequence length ``L``.
        :returns: a tensor of shape ``(d_inner, L, L)``.
        """
        basis = _tap_basis(length, self.num_lags, self.weight.device, self.weight.dtype)  # (9 k, L, L)
        taps = self.weight.permute(0, 2, 3, 1).reshape(self.num_lags * 9, self.d_inner)  # order of _tap_basis
        eye = torch.eye(length, dtype=self.weight.dtype, device=self.weight.device)
        return eye + torch.einsum("kd,kst->dst", taps, basis)

    def forward(self, states):
        """
        :param torch.Tensor states: hidden states of shape ``(batch, d_inner, length, d_state)``.
        :returns: fused states of the same shape.
        """
        if not torch.is_tensor(states) or states.dim() != 4 or states.shape[1] != self.d_inner:
            shape = tuple(states.shape) if torch.is_tensor(states) else type(states).__name__
            raise ValueError(f"states must have shape (batch, {self.d_inner}, length, d_state), got {shape}")
        # The depthwise convolution on the grid is a banded (L x L) map per inner channel; as a batched
        # matrix product it is several times faster on CPU than conv2d (whose depthwise backward is slow).
        M = self.mixing_matrix(states.shape[2]).to(states.dtype)
        return torch.matmul(M, states)  # (d, L, L) @ (b, d, L, n) -> (b, d, L, n)

    def extra_repr(self):
        return f"d_inner={self.d_inner}, num_lags={self.num_lags}"


class LagFusionMamba(nn.Module):
    """A :class:`~pyroseq.nn.Mamba` block whose hidden states pass through :class:`LagFusion` before the
    read-out; input and output ``(batch, length, d_model)``. Its parameters are those of the Mamba block
    (under ``mamba.``, mamba_ssm's names) plus ``fusion.weight``.

    :param int d_model: model width.
    :param int num_lags: largest dilation ``k`` of the fusion.
    :param mamba_kwargs: passed to :class:`~pyroseq.nn.Mamba` (``d_state``, ``d_conv``, ``expand``, ...).
    """

    def __init__(self, d_model, num_lags=2, **mamba_kwargs):
        super().__init__()
        self.mamba = Mamba(d_model, **mamba_kwargs)
        self.fusion = LagFusion(self.mamba.d_inner, num_lags)

    def forward(self, hidden_states):
        """
        :param torch.Tensor hidden_states: shape ``(batch, length, d_model)``.
        :returns: shape ``(batch, length, d_model)``.
        """
        return self.mamba(hidden_states, state_fusion=self.fusion)
