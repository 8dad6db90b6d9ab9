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

import importlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import _positive_int
from .mamba import Mamba, _upcast

__all__ = ["LagFusion", "LagFusionMamba", "lag_grid_size"]

_FUSED = {}  # kernel modules by name (None: numba missing)


def _numba_module(name):
    """The kernel module ``pyroseq.nn.<name>``, or None if numba is missing (cached) or a
    :func:`torch.jit.trace` is running (numba kernels cannot be traced; the torch path can)."""
    if torch.jit.is_tracing():
        return None
    if name not in _FUSED:
        try:
            _FUSED[name] = importlib.import_module(f"pyroseq.nn.{name}")
        except ImportError:
            _FUSED[name] = None
    return _FUSED[name]


def _readout_kernels():
    """:mod:`pyroseq.nn.lag_readout_numba` or None (numba missing)."""
    return _numba_module("lag_readout_numba")


class _LagReadoutFn(torch.autograd.Function):
    """``y = C . (M h)`` from the states ``h`` with the numba kernels (no fused states stored)."""

    @staticmethod
    def forward(ctx, H, Ct, W, taps):
        H, Ct, W = H.contiguous(), Ct.contiguous(), W.contiguous()
        ctx.save_for_backward(H, Ct, W)
        ctx.taps = taps
        return _readout_kernels().lag_readout(H, Ct, taps, W)

    @staticmethod
    def backward(ctx, gy):
        H, Ct, W = ctx.saved_tensors
        gH, gCt, gW = _readout_kernels().lag_readout_backward(H, Ct, ctx.taps, W, gy)
        return gH, gCt, gW, None


def _fused_kernels():
    """:mod:`pyroseq.nn.lag_fusion_numba` or None (numba missing)."""
    return _numba_module("lag_fusion_numba")


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


def _tap_lists(length, num_lags, _cache={}):
    """For each step ``t``: the source steps and tap indices of :func:`_tap_basis` (padded with zeros),
    and their number; long tensors of shapes ``(L, T)``, ``(L, T)`` and ``(L,)`` (cached)."""
    key = (length, num_lags)
    if key not in _cache:
        basis = _tap_basis(length, num_lags, torch.device("cpu"), torch.float32)
        q, t, s = basis.nonzero(as_tuple=True)
        count = torch.bincount(t, minlength=length)
        width = max(int(count.max()), 1)
        src = torch.zeros(length, width, dtype=torch.long)
        tap = torch.zeros(length, width, dtype=torch.long)
        order = torch.argsort(t, stable=True)
        slot = torch.arange(len(t)) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        src[t[order], slot] = s[order]
        tap[t[order], slot] = q[order]
        _cache[key] = (src, tap, count)
    return _cache[key]


class LagFusion(nn.Module):
    r"""Fusion of hidden states at structured lags: ``h + sum_j DWConv3x3_dilation_j(h)`` on the
    ``s x s`` grid view of the time axis (see the module docstring).

    :param int d_inner: number of inner channels ``d`` of the scan (depthwise: one kernel each).
    :param int num_lags: largest dilation ``k`` (dilations ``1..k``).
    :param bool fused_readout: let :meth:`readout` compute the scan's read-out straight from the unfused
        states with numba kernels (CPU, forward and backward) instead of materialising the fused states.
    """

    def __init__(self, d_inner, num_lags=2, fused_readout=True):
        super().__init__()
        self.fused_readout = bool(fused_readout)
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

    def tap_weights(self):
        """The kernel weights as ``(9 k, d_inner)``, tap ``(j - 1) * 9 + 3 a + c`` of dilation ``j``."""
        return self.weight.permute(0, 2, 3, 1).reshape(self.num_lags * 9, self.d_inner)

    def mixing_matrix(self, length):
        r"""The fusion as a linear map along time: ``M[i, t, t']`` is the weight of the state at step ``t'``
        in the fused state at step ``t`` for inner channel ``i`` (identity plus the lag taps that stay on the
        zero-padded grid).

        :param int length: sequence length ``L``.
        :returns: a tensor of shape ``(d_inner, L, L)``.
        """
        basis = _tap_basis(length, self.num_lags, self.weight.device, self.weight.dtype)  # (9 k, L, L)
        taps = self.tap_weights()
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
        # Batch and state entries go into the columns, (d, L, L) @ (d, L, b n): broadcasting M over the batch
        # instead would copy it b times (b d L^2 values, gigabytes at L = 256).
        b, d, length, n = states.shape
        M = self.mixing_matrix(length).to(states.dtype)
        fused = torch.bmm(M, states.permute(1, 2, 0, 3).reshape(d, length, b * n))
        return fused.reshape(d, length, b, n).permute(2, 0, 1, 3)

    def readout(self, states, C):
        """The read-out ``y_t = C_t . fused_t`` of the fused states without building them (numba kernels), or
        None where that path does not apply (no numba, not on CPU, grouped ``C``, mixed dtypes, or
        ``fused_readout=False``); :func:`~pyroseq.nn.selective_scan` then falls back to :meth:`forward`.

        :param torch.Tensor states: hidden states ``(batch, d_inner, length, d_state)``.
        :param torch.Tensor C: read-out vectors ``(batch, d_state, length)`` or ``(batch, 1, d_state, length)``.
        :returns: ``(batch, d_inner, length)`` or None.
        """
        if not self.fused_readout or _readout_kernels() is None:
            return None
        if C.dim() == 4:
            if C.shape[1] != 1:
                return None
            C = C[:, 0]
        if (states.device.type != "cpu" or C.device.type != "cpu" or states.dim() != 4
                or states.shape[1] != self.d_inner or states.dtype not in (torch.float32, torch.float64)
                or C.shape != (states.shape[0], states.shape[3], states.shape[2])):
            return None
        W = self.tap_weights().to(states.dtype)
        return _LagReadoutFn.apply(states, C.to(states.dtype).transpose(1, 2), W,
                                   _tap_lists(states.shape[2], self.num_lags))

    def extra_repr(self):
        return f"d_inner={self.d_inner}, num_lags={self.num_lags}"


class LagFusionMamba(nn.Module):
    """A :class:`~pyroseq.nn.Mamba` block whose hidden states pass through :class:`LagFusion` before the
    read-out; input and output ``(batch, length, d_model)``. Its parameters are those of the Mamba block
    (under ``mamba.``, mamba_ssm's names) plus ``fusion.weight``.

    Without gradients (sampling) on CPU with numba installed, the scan, the fusion and the read-out run in
    one fused kernel (:mod:`pyroseq.nn.lag_fusion_numba`) that never stores the ``(batch, d_inner, length,
    d_state)`` states; set ``fused_inference=False`` to always take the generic path.

    :param int d_model: model width.
    :param int num_lags: largest dilation ``k`` of the fusion.
    :param bool fused_inference: use the fused kernel when no gradients are needed.
    :param mamba_kwargs: passed to :class:`~pyroseq.nn.Mamba` (``d_state``, ``d_conv``, ``expand``, ...).
    """

    def __init__(self, d_model, num_lags=2, fused_inference=True, **mamba_kwargs):
        super().__init__()
        self.mamba = Mamba(d_model, **mamba_kwargs)
        self.fusion = LagFusion(self.mamba.d_inner, num_lags)
        self.fused_inference = bool(fused_inference)

    def _fused_available(self, h):
        if not self.fused_inference or self.mamba.backend not in ("auto", "numba") or h.device.type != "cpu":
            return False
        if torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in self.parameters())):
            return False
        kernels = _fused_kernels()
        return kernels is not None and h.dim() == 3 and 1 <= h.shape[1] <= kernels.MAX_LENGTH

    def forward(self, hidden_states):
        """
        :param torch.Tensor hidden_states: shape ``(batch, length, d_model)``.
        :returns: shape ``(batch, length, d_model)``.
        """
        if self._fused_available(hidden_states):
            return self._fused_forward(hidden_states)
        return self.mamba(hidden_states, state_fusion=self.fusion)

    @torch.no_grad()
    def _fused_forward(self, hidden_states):
        # Mamba.forward up to the scan (same parameters and order of operations), then the fused kernel.
        m = self.mamba
        m._check_input(hidden_states)
        length = hidden_states.shape[1]
        xz = m.in_proj(hidden_states).transpose(1, 2)
        x, z = xz.chunk(2, dim=1)
        x = F.silu(m.conv1d(x)[..., :length])
        dt, B, C = m.x_proj(x.transpose(1, 2)).split([m.dt_rank, m.d_state, m.d_state], dim=-1)
        delta = F.linear(dt, m.dt_proj.weight).transpose(1, 2)
        dtype = torch.float64 if torch.float64 in (x.dtype, m.A_log.dtype, m.dt_proj.bias.dtype) else torch.float32
        dt = F.softplus(delta.to(dtype) + _upcast(m.dt_proj.bias).to(dtype).unsqueeze(-1)).contiguous()
        A = (-torch.exp(_upcast(m.A_log))).to(dtype).contiguous()
        gate = F.silu(z.to(dtype)).contiguous()
        y = _fused_kernels().lag_fused_scan(
            x.to(dtype).contiguous(), dt, A, B.transpose(1, 2).unsqueeze(1).to(dtype).contiguous(),
            C.transpose(1, 2).unsqueeze(1).to(dtype).contiguous(), _upcast(m.D).to(dtype).contiguous(), gate,
            _tap_lists(length, self.fusion.num_lags), self.fusion.tap_weights().to(dtype))
        return m.out_proj(y.to(x.dtype).transpose(1, 2))
