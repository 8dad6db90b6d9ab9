"""Numba kernels of Lag Fusion's read-out for training: forward and backward without the fused states.

The generic path of :class:`~pyroseq.nn.LagFusion` builds the fused states ``h~ = M h`` of shape
``(b, d, l, n)`` with a banded ``(l x l)`` matrix per channel, then reads them out, ``y_t = C_t . h~_t``; at
``l = 256`` the dense band product and the layout copies around it dominate a DiM-TS training step. Here
the read-out is taken straight from the scan's states with the tap lists of the grid,

.. math:: y_{b,d,t} = C_{b,t} \\cdot h_{b,d,t} + \\sum_i w_{q_i(t), d} \\, C_{b,t} \\cdot h_{b,d,s_i(t)},

and its backward gives the gradients of ``h``, ``C`` and the tap weights ``w`` in one pass over each
``(l, n)`` tile of states. One task is one batch element (all channels), so the gradient of ``C`` is
accumulated without races; tasks are shared by :func:`~pyroseq.nn.scan_numba._launch`'s threads.
Importing this module imports numba.
"""

import numpy as np
from numba import njit

from .scan_numba import _JIT, _launch, _np

# Reassociation lets the short dot products over the state entries vectorise (rounding differs from the
# generic path only in the order of additions).
_FAST = dict(_JIT, fastmath={"reassoc", "contract"})

__all__ = ["lag_readout", "lag_readout_backward"]


@njit(**_FAST)
def _forward(lo, hi, H, Ct, src, tap, count, W, y):
    nd, nl, nn = H.shape[1], H.shape[2], H.shape[3]
    f = np.empty(nn, H.dtype)  # fused state of one step (inner loops run over the state entries)
    for b in range(lo, hi):
        c = Ct[b]
        for d in range(nd):
            h = H[b, d]  # (l, n) tile
            for t in range(nl):
                f[:] = h[t]
                for i in range(count[t]):
                    w = W[tap[t, i], d]
                    hs = h[src[t, i]]
                    for n in range(nn):
                        f[n] += w * hs[n]
                ct = c[t]
                acc = f[0] * ct[0]
                for n in range(1, nn):
                    acc += f[n] * ct[n]
                y[b, d, t] = acc


@njit(**_FAST)
def _backward(lo, hi, H, Ct, src, tap, count, W, gy, gH, gCt, gW):
    nd, nl, nn = H.shape[1], H.shape[2], H.shape[3]
    f = np.empty(nn, H.dtype)
    gf = np.empty(nn, H.dtype)
    for b in range(lo, hi):
        c = Ct[b]
        gc = gCt[b]
        gw = gW[b]
        for d in range(nd):
            h = H[b, d]
            gh = gH[b, d]
            gh[:] = 0  # zeroed here, tile by tile, while it is in cache
            for t in range(nl):
                g = gy[b, d, t]
                ct = c[t]
                ht = h[t]
                ght = gh[t]
                for n in range(nn):
                    f[n] = ht[n]
                    gf[n] = g * ct[n]  # gradient of the fused state
                    ght[n] += gf[n]
                for i in range(count[t]):
                    q = tap[t, i]
                    w = W[q, d]
                    hs = h[src[t, i]]
                    ghs = gh[src[t, i]]
                    dot = gf[0] * hs[0]
                    for n in range(1, nn):
                        dot += gf[n] * hs[n]
                    for n in range(nn):
                        f[n] += w * hs[n]
                        ghs[n] += w * gf[n]
                    gw[q, d] += dot
                gct = gc[t]
                for n in range(nn):
                    gct[n] += g * f[n]


def _work(H, src):
    b, d, l, n = H.shape
    return b * d * l * n * (1 + src.shape[1])


def lag_readout(H, Ct, taps, W):
    """Read-out of the lag-fused states, ``y_t = C_t . (h_t + sum_i w_i[d] h_{src_i(t)})``.

    :param torch.Tensor H: scan states ``(b, d, l, n)``, contiguous.
    :param torch.Tensor Ct: read-out vectors ``(b, l, n)`` (time before state), contiguous, ``H``'s dtype.
    :param tuple taps: ``(src, tap, count)`` of :func:`~pyroseq.nn.lag_fusion._tap_lists`: long tensors
        ``(l, T)``, ``(l, T)``, ``(l,)``.
    :param torch.Tensor W: tap weights ``(num_taps, d)``, ``H``'s dtype.
    :returns: ``y`` of shape ``(b, d, l)``.
    """
    src, tap, count = taps
    y = H.new_empty(H.shape[:3])
    _launch(_forward, _work(H, src), H.shape[0], _np(H), _np(Ct), _np(src), _np(tap), _np(count),
            _np(W.contiguous()), _np(y))
    return y


def lag_readout_backward(H, Ct, taps, W, gy):
    """Gradients of :func:`lag_readout` given ``gy`` of shape ``(b, d, l)``.

    :returns: ``(gH, gCt, gW)`` of shapes ``(b, d, l, n)``, ``(b, l, n)`` and ``(num_taps, d)``.
    """
    src, tap, count = taps
    gH = H.new_empty(H.shape)
    gCt = Ct.new_zeros(Ct.shape)
    gW = W.new_zeros((H.shape[0],) + tuple(W.shape))  # per batch element: no races between tasks
    _launch(_backward, _work(H, src), H.shape[0], _np(H), _np(Ct), _np(src), _np(tap), _np(count),
            _np(W.contiguous()), _np(gy.contiguous()), _np(gH), _np(gCt), _np(gW))
    return gH, gCt, gW.sum(0)

