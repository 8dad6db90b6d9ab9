"""Fused numba kernel of Lag Fusion Mamba's scan for inference: states, lag fusion and read-out in one pass.

The generic path (:func:`~pyroseq.nn.selective_scan` with ``state_fusion``) writes the hidden states of
shape ``(b, d, l, n)`` to memory, fuses them with a batched matrix product and reads them out again; at
sampling time (no gradients) that traffic dominates the cost of a DiM-TS network evaluation. This kernel
keeps each task's states (one batch element, a block of channels, the whole sequence) in a cache-sized tile
and applies the lag taps and the read-out from there, so nothing of size ``(b, d, l, n)`` is stored.

It reuses the building blocks of :mod:`pyroseq.nn.scan_numba` (the vectorisable ``exp``, flush-to-zero,
tile loads, the task grid and the thread launcher), so its arithmetic is the scan's. Importing this module
imports numba; :mod:`pyroseq.nn.lag_fusion` falls back to the generic path when it is not available.
"""

import numpy as np
from numba import njit

from .scan_numba import (
    _JIT,
    _WIDTH,
    _chunk_states,
    _fma,
    _ftz_enter,
    _ftz_exit,
    _launch,
    _load_bn,
    _load_params,
    _load_tile,
    _np,
    _store_tile,
    _task_grid,
)

__all__ = ["lag_fused_scan", "MAX_LENGTH"]

#: longest sequence the fused kernel handles (its per-task tiles grow with the length)
MAX_LENGTH = 512


@njit(**_JIT)
def _task(b, g, d0, wn, u, dt, At, B, C, D, gate, has_gate, Wt, src, tap, count, W, out):
    nn = At.shape[0]
    nl = u.shape[2]
    dtype = u.dtype
    at = np.zeros((nn, W), dtype)
    dd = np.zeros(W, dtype)
    hs = np.zeros((nl + 1, nn, W), dtype)
    es = np.zeros((nl, nn, W), dtype)
    ut = np.zeros((nl, W), dtype)
    dtt = np.zeros((nl, W), dtype)
    dtu = np.zeros((nl, W), dtype)
    yt = np.zeros((nl, W), dtype)
    gt = np.zeros((nl, W), dtype)
    bt = np.zeros((nl, nn), dtype)
    ct = np.zeros((nl, nn), dtype)
    wt = np.zeros((Wt.shape[0], W), dtype)
    acc = np.zeros(W, dtype)
    _load_params(at, dd, At, D, d0, wn)
    for q in range(Wt.shape[0]):
        for w in range(wn):
            wt[q, w] = Wt[q, d0 + w]
    _load_tile(ut, u, b, d0, wn, 0, nl)
    _load_tile(dtt, dt, b, d0, wn, 0, nl)
    _load_bn(bt, B, b, g, 0, nl)
    _load_bn(ct, C, b, g, 0, nl)
    _chunk_states(hs, es, dtu, dtt, ut, at, bt, nl, nn, W)  # hs[t + 1] is the state after step t
    for k in range(nl):
        for w in range(W):
            yt[k, w] = dd[w] * ut[k, w]
        for n in range(nn):
            cn = ct[k, n]
            for w in range(W):
                yt[k, w] = _fma(cn, hs[k + 1, n, w], yt[k, w])
        for j in range(count[k]):
            s = src[k, j]
            q = tap[k, j]
            for w in range(W):
                acc[w] = 0
            for n in range(nn):
                cn = ct[k, n]
                for w in range(W):
                    acc[w] = _fma(cn, hs[s + 1, n, w], acc[w])
            for w in range(W):
                yt[k, w] = _fma(wt[q, w], acc[w], yt[k, w])
    if has_gate:
        _load_tile(gt, gate, b, d0, wn, 0, nl)
        for k in range(nl):
            for w in range(W):
                yt[k, w] *= gt[k, w]
    _store_tile(out, yt, b, d0, wn, 0, nl)


@njit(**_JIT)
def _run(lo, hi, u, dt, At, B, C, D, gate, has_gate, Wt, src, tap, count, width, out):
    nb, nd, _ = u.shape
    ng = B.shape[1]
    gs, nbpg = _task_grid(nb, nd, ng, width)
    mxcsr = _ftz_enter()
    for task in range(lo, hi):
        b = task // (ng * nbpg)
        g = (task // nbpg) % ng
        j = task % nbpg
        _task(b, g, g * gs + j * width, min(width, gs - j * width), u, dt, At, B, C, D, gate, has_gate, Wt, src,
              tap, count, width, out)
    _ftz_exit(mxcsr)


def lag_fused_scan(u, dt, A, B, C, D, gate, taps, tap_weights):
    """Selective scan with lag-fused states, forward only (no autograd).

    ``out_t = (C_t . (h_t + sum_j w_j[d] h_{src_j(t)}) + D u_t) * gate_t`` with ``h`` the scan states.

    :param torch.Tensor u: inputs ``(b, d, l)``.
    :param torch.Tensor dt: step sizes after bias and softplus ``(b, d, l)``.
    :param torch.Tensor A: ``(d, n)``.
    :param torch.Tensor B: ``(b, 1, n, l)``.
    :param torch.Tensor C: ``(b, 1, n, l)``.
    :param torch.Tensor D: ``(d,)``.
    :param gate: ``(b, d, l)`` (already ``silu(z)``) or None.
    :param tuple taps: ``(src, tap, count)`` long tensors of shapes ``(l, T)``, ``(l, T)``, ``(l,)``: for step
        ``t``, the first ``count[t]`` entries give the source step and the tap index.
    :param torch.Tensor tap_weights: ``(num_taps, d)``.
    :returns: ``(b, d, l)``.
    """
    nb, nd, nl = u.shape
    nn = A.shape[1]
    src, tap, count = taps
    gs, nbpg = _task_grid(nb, nd, B.shape[1], _WIDTH)
    ntasks = nb * B.shape[1] * nbpg
    out = u.new_empty(nb, nd, nl)
    has_gate = gate is not None
    gate = gate if has_gate else u.new_empty(0, 0, 0)
    work = nb * nd * nl * nn * (1 + src.shape[1])
    _launch(_run, work, ntasks, _np(u), _np(dt), _np(A.t().contiguous()), _np(B), _np(C), _np(D), _np(gate),
            has_gate, _np(tap_weights.contiguous()), _np(src), _np(tap), _np(count), _WIDTH, _np(out))
    return out

