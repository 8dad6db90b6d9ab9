"""Numba CPU kernels of the selective scan (forward, adjoint backward, hidden states).

This module imports :mod:`numba` at the top; :mod:`pyroseq.nn.selective_scan` imports it
only when numba is installed (``pip install pyroseq[fast]``) and otherwise uses
:mod:`pyroseq.nn.scan_torch`. Both modules implement the same entry points
(:func:`scan_forward`, :func:`scan_backward`, :func:`states_forward`,
:func:`states_backward`) on contiguous tensors in the mamba_ssm layout.

Work is split into tasks, each owning one batch element and a block of up to ``_WIDTH``
consecutive channels of one group, so that every inner loop vectorises over channels with
no reduction. A task walks the sequence in chunks of ``chunk`` steps and keeps per-chunk
tiles that stay in cache. The backward pass restarts every chunk from the hidden state the
forward pass saved every ``chunk`` steps and recomputes that chunk's states, so nothing of
size ``(b, d, l, n)`` is ever stored. Reductions over channels (the gradients of ``B`` and
``C``) are written per task and summed by the caller. Tasks are spread over
``torch.get_num_threads()`` threads by :func:`_launch` (the kernels release the GIL).

Every kernel is compiled with ``cache=True`` and ``fastmath=False``: float ordering is that
of the loops as written. ``exp`` is :func:`_exp` (Cody-Waite range reduction and a Taylor
polynomial, within an ulp or two), written with plain arithmetic so that LLVM vectorises it
without a vector math library; ``a * b + c`` in the hot loops is ``llvm.fmuladd``, fused
where the CPU has FMA.
"""

import os
import platform
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

__all__ = ["scan_forward", "scan_backward", "states_forward", "states_backward"]

_WIDTH = 32  # channels per task (the vectorised axis of every inner loop)
_JIT = dict(cache=True, fastmath=False, nogil=True)


# ----------------------------------------------------------------------------------------
# exp without a vector math library


@intrinsic
def _bits_to_float64(typingctx, bits):
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _bits_to_float32(typingctx, bits):
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c``, fused where the CPU has FMA (llvm.fmuladd; needs no fastmath)."""
    if not (isinstance(a, types.Float) and a == b and b == c):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fmuladd", [ty], ir.FunctionType(ty, [ty] * 3))
        return builder.call(fn, args)

    return a(a, a, a), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # low 21 mantissa bits are zero: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10


@njit(**_JIT)
def _exp64(x):
    # clamp so that 2**k below stays in the split-exponent range; NaN passes through
    xc = -745.5 if x < -745.5 else x
    xc = 710.0 if xc > 710.0 else xc
    kf = np.floor(xc * _LOG2E + 0.5)
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO  # |r| <= ln(2) / 2
    p = _fma(1.0 / 6227020800.0, r, 1.0 / 479001600.0)  # Taylor series to degree 13
    p = _fma(p, r, 1.0 / 39916800.0)
    p = _fma(p, r, 1.0 / 3628800.0)
    p = _fma(p, r, 1.0 / 362880.0)
    p = _fma(p, r, 1.0 / 40320.0)
    p = _fma(p, r, 1.0 / 5040.0)
    p = _fma(p, r, 1.0 / 720.0)
    p = _fma(p, r, 1.0 / 120.0)
    p = _fma(p, r, 1.0 / 24.0)
    p = _fma(p, r, 1.0 / 6.0)
    p = _fma(p, r, 0.5)
    p = _fma(p, r, 1.0)
    p = _fma(p, r, 1.0)
    k = np.int64(np.int32(kf))
    k1 = k >> 1  # 2**k = 2**k1 * 2**k2, both normal numbers for k in [-1076, 1025]
    k2 = k - k1
    s1 = _bits_to_float64((k1 + 1023) << 52)
    s2 = _bits_to_float64((k2 + 1023) << 52)
    return p * s1 * s2


_F32 = np.float32
_F32_LO = _F32(-104.0)
_F32_HI = _F32(89.0)
_F32_HALF = _F32(0.5)
_F32_ONE = _F32(1.0)
_F32_LOG2E = _F32(_LOG2E)
_F32_LN2_HI = _F32(0.693145751953125)  # low 12 mantissa bits are zero
_F32_LN2_LO = _F32(1.428606765330187045e-06)
_F32_C7 = _F32(1.0 / 5040.0)
_F32_C6 = _F32(1.0 / 720.0)
_F32_C5 = _F32(1.0 / 120.0)
_F32_C4 = _F32(1.0 / 24.0)
_F32_C3 = _F32(1.0 / 6.0)


@njit(**_JIT)
def _exp32(x):
    xc = _F32_LO if x < _F32_LO else x
    xc = _F32_HI if xc > _F32_HI else xc
    kf = np.floor(xc * _F32_LOG2E + _F32_HALF)
    r = (xc - kf * _F32_LN2_HI) - kf * _F32_LN2_LO
    p = _fma(_F32_C7, r, _F32_C6)  # Taylor series to degree 7
    p = _fma(p, r, _F32_C5)
    p = _fma(p, r, _F32_C4)
    p = _fma(p, r, _F32_C3)
    p = _fma(p, r, _F32_HALF)
    p = _fma(p, r, _F32_ONE)
    p = _fma(p, r, _F32_ONE)
    k = np.int64(np.int32(kf))
    k1 = k >> 1
    k2 = k - k1
    s1 = _bits_to_float32(np.int32((k1 + 127) << 23))
    s2 = _bits_to_float32(np.int32((k2 + 127) << 23))
    return p * s1 * s2


def _exp(x):
    raise NotImplementedError  # only called from jitted code, see the overload below


@overload(_exp)
def _exp_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _exp32(x)
    if isinstance(x, types.Float):
        return lambda x: _exp64(x)
    return None


@njit(**_JIT)
def exp_array(x, out):
    """Elementwise :func:`_exp` of a flat array (exposed for tests)."""
    for i in range(x.shape[0]):
        out[i] = _exp(x[i])


# ----------------------------------------------------------------------------------------
# flush-to-zero while a kernel runs
#
# States that decay without input (zero padding, strongly negative A) reach subnormal
# numbers, on which x86 arithmetic is tens of times slower. Like mamba_ssm's CUDA build
# (``--use_fast_math``), the kernels treat subnormals as zero: they set FTZ and DAZ in MXCSR
# on entry and restore the caller's MXCSR on exit, so torch code in the same thread is not
# affected.


@intrinsic
def _get_mxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        fnty = ir.FunctionType(ir.VoidType(), [slot.type])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr"),
                     [slot])
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _set_mxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(args[0], slot)
        fnty = ir.FunctionType(ir.VoidType(), [slot.type])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr"),
                     [slot])
        return context.get_dummy_value()

    return types.none(types.uint32), codegen


if platform.machine().lower() in ("x86_64", "amd64"):

    @njit(**_JIT)
    def _ftz_enter():
        old = _get_mxcsr()
        _set_mxcsr(old | np.uint32(0x8040))  # FTZ (bit 15) and DAZ (bit 6)
        return old

    @njit(**_JIT)
    def _ftz_exit(old):
        _set_mxcsr(old)

else:  # other CPUs keep their default floating-point mode

    @njit(**_JIT)
    def _ftz_enter():
        return np.uint32(0)

    @njit(**_JIT)
    def _ftz_exit(old):
        pass


# ----------------------------------------------------------------------------------------
# chunk steps shared by the kernels
#
# Tiles: ``[k, w]`` or ``[k, n, w]`` with k the step in the chunk, n the state and w the
# channel in the task's block, all indexed by range() loop variables so that LLVM drops
# numba's negative-index handling and vectorises over w. Columns w >= wn of a partial block
# stay zero, which keeps them finite and out of every result.


@njit(**_JIT)
def _load_tile(tile, x, b, d0, wn, t0, kn):
    for w in range(wn):
        for k in range(kn):
            tile[k, w] = x[b, d0 + w, t0 + k]


@njit(**_JIT)
def _store_tile(x, tile, b, d0, wn, t0, kn):
    for w in range(wn):
        for k in range(kn):
            x[b, d0 + w, t0 + k] = tile[k, w]


@njit(**_JIT)
def _load_bn(tile, B, b, g, t0, kn):
    for n in range(B.shape[2]):
        for k in range(kn):
            tile[k, n] = B[b, g, n, t0 + k]


@njit(**_JIT)
def _load_params(at, dd, At, D, d0, wn):
    for n in range(At.shape[0]):
        for w in range(wn):
            at[n, w] = At[n, d0 + w]
    for w in range(wn):
        dd[w] = D[d0 + w]


@njit(**_JIT)
def _chunk_states(hs, es, dtu, dtt, ut, at, bt, kn, nn, W):
    """es[k] = exp(dt_k A); hs[k + 1] = es[k] hs[k] + dt_k u_k B_k, given hs[0]."""
    for k in range(kn):
        for w in range(W):
            dtu[k, w] = dtt[k, w] * ut[k, w]
        for n in range(nn):
            for w in range(W):
                es[k, n, w] = _exp(dtt[k, w] * at[n, w])
    for k in range(kn):
        for n in range(nn):
            bn = bt[k, n]
            for w in range(W):
                hs[k + 1, n, w] = _fma(es[k, n, w], hs[k, n, w], dtu[k, w] * bn)


@njit(**_JIT)
def _chunk_readout(yt, hs, ct, ut, dd, kn, nn, W):
    """yt[k] = D u_k + sum_n C_k[n] hs[k + 1, n] (summed in the order of n)."""
    for k in range(kn):
        for w in range(W):
            yt[k, w] = dd[w] * ut[k, w]
        for n in range(nn):
            cn = ct[k, n]
            for w in range(W):
                yt[k, w] = _fma(cn, hs[k + 1, n, w], yt[k, w])


@njit(**_JIT)
def _chunk_grads(gdtt, gut, ga, s1, ghs, es, hs, dtt, ut, at, bt, kn, nn, W):
    """Gradients of dt, u (state part) and A from ghs = dL/dh_t over a chunk.

    With q = dL/dh_t * a_t * h_{t-1}:  dL/ddt_t = sum_n q A + (sum_n dL/dh_t B_t) u_t,
    dL/du_t = dt_t sum_n dL/dh_t B_t, dL/dA += q dt_t.
    """
    for k in range(kn):
        for w in range(W):
            s1[w] = 0
            gdtt[k, w] = 0
        for n in range(nn):
            bn = bt[k, n]
            for w in range(W):
                s1[w] = _fma(ghs[k, n, w], bn, s1[w])
        for n in range(nn):
            for w in range(W):
                gdtt[k, w] = _fma(ghs[k, n, w] * es[k, n, w] * hs[k, n, w], at[n, w], gdtt[k, w])
        for n in range(nn):
            for w in range(W):
                ga[n, w] = _fma(ghs[k, n, w] * es[k, n, w] * hs[k, n, w], dtt[k, w], ga[n, w])
        for w in range(W):
            gdtt[k, w] = _fma(s1[w], ut[k, w], gdtt[k, w])
            gut[k, w] = s1[w] * dtt[k, w]


@njit(**_JIT)
def _reduce_channels(dst, b, g, j, t0, x, koff, v, kn, nn, wn):
    """dst[b, g, j, n, t0 + k] = sum_w x[k + koff, n, w] v[k, w], summed in the order of w.

    Four states at a time, so that four independent sums are in flight.
    """
    for k in range(kn):
        kx = k + koff
        n = 0
        while n + 4 <= nn:
            s0 = x[kx, n, 0] * v[k, 0]
            s1 = x[kx, n + 1, 0] * v[k, 0]
            s2 = x[kx, n + 2, 0] * v[k, 0]
            s3 = x[kx, n + 3, 0] * v[k, 0]
            for w in range(1, wn):
                vw = v[k, w]
                s0 = _fma(x[kx, n, w], vw, s0)
                s1 = _fma(x[kx, n + 1, w], vw, s1)
                s2 = _fma(x[kx, n + 2, w], vw, s2)
                s3 = _fma(x[kx, n + 3, w], vw, s3)
            dst[b, g, j, n, t0 + k] = s0
            dst[b, g, j, n + 1, t0 + k] = s1
            dst[b, g, j, n + 2, t0 + k] = s2
            dst[b, g, j, n + 3, t0 + k] = s3
            n += 4
        for m in range(n, nn):
            s = x[kx, m, 0] * v[k, 0]
            for w in range(1, wn):
                s = _fma(x[kx, m, w], v[k, w], s)
            dst[b, g, j, m, t0 + k] = s


def _task_grid(nb, nd, ng, width):
    """Tasks are (batch, group, block of channels); returns (group size, blocks per group)."""
    gs = nd // ng
    return gs, (gs + width - 1) // width


_task_grid = njit(_task_grid, **_JIT)


# ----------------------------------------------------------------------------------------
# selective scan: forward


@njit(**_JIT)
def _fwd_task(b, g, d0, wn, u, dt, At, B, C, D, gate, has_gate, chunk, W, out, last, ck,
              save_ck):
    nn = At.shape[0]
    nl = u.shape[2]
    dtype = u.dtype
    at = np.zeros((nn, W), dtype)
    dd = np.zeros(W, dtype)
    hs = np.zeros((chunk + 1, nn, W), dtype)
    es = np.zeros((chunk, nn, W), dtype)
    ut = np.zeros((chunk, W), dtype)
    dtt = np.zeros((chunk, W), dtype)
    dtu = np.zeros((chunk, W), dtype)
    gt = np.zeros((chunk, W), dtype)
    yt = np.zeros((chunk, W), dtype)
    bt = np.zeros((chunk, nn), dtype)
    ct = np.zeros((chunk, nn), dtype)
    _load_params(at, dd, At, D, d0, wn)
    nck = (nl + chunk - 1) // chunk
    for c in range(nck):
        t0 = c * chunk
        kn = min(chunk, nl - t0)
        if c > 0:
            for n in range(nn):
                for w in range(W):
                    hs[0, n, w] = hs[chunk, n, w]
        if save_ck:
            for n in range(nn):
                for w in range(wn):
                    ck[b, c, n, d0 + w] = hs[0, n, w]
        _load_tile(ut, u, b, d0, wn, t0, kn)
        _load_tile(dtt, dt, b, d0, wn, t0, kn)
        _load_bn(bt, B, b, g, t0, kn)
        _load_bn(ct, C, b, g, t0, kn)
        _chunk_states(hs, es, dtu, dtt, ut, at, bt, kn, nn, W)
        _chunk_readout(yt, hs, ct, ut, dd, kn, nn, W)
        if has_gate:
            _load_tile(gt, gate, b, d0, wn, t0, kn)
            for k in range(kn):
                for w in range(W):
                    yt[k, w] *= gt[k, w]
        _store_tile(out, yt, b, d0, wn, t0, kn)
        if c == nck - 1:
            for w in range(wn):
                for n in range(nn):
                    last[b, d0 + w, n] = hs[kn, n, w]


@njit(**_JIT)
def _fwd(lo, hi, u, dt, At, B, C, D, gate, has_gate, chunk, width, out, last, ck, save_ck):
    nb, nd, _ = u.shape
    ng = B.shape[1]
    gs, nbpg = _task_grid(nb, nd, ng, width)
    mxcsr = _ftz_enter()
    for task in range(lo, hi):
        b = task // (ng * nbpg)
        g = (task // nbpg) % ng
        j = task % nbpg
        _fwd_task(b, g, g * gs + j * width, min(width, gs - j * width), u, dt, At, B, C,
                  D, gate, has_gate, chunk, width, out, last, ck, save_ck)
    _ftz_exit(mxcsr)


# ----------------------------------------------------------------------------------------
# selective scan: backward


@njit(**_JIT)
def _bwd_task(b, g, j, d0, wn, u, dt, At, B, C, D, gate, has_gate, ck, gout, glast,
              has_glast, chunk, W, gu, gdt, ggate, gAp, gBp, gCp, gDp):
    nn = At.shape[0]
    nl = u.shape[2]
    dtype = u.dtype
    at = np.zeros((nn, W), dtype)
    dd = np.zeros(W, dtype)
    gh = np.zeros((nn, W), dtype)  # a_{t+1} dL/dh_{t+1}: the adjoint carried into step t
    ga = np.zeros((nn, W), dtype)
    gdd = np.zeros(W, dtype)
    s1 = np.zeros(W, dtype)
    hs = np.zeros((chunk + 1, nn, W), dtype)  # hs[k + 1] = h_{t0 + k}; hs[0] = h_{t0 - 1}
    es = np.zeros((chunk, nn, W), dtype)  # a_t = exp(dt_t A)
    ghs = np.zeros((chunk, nn, W), dtype)  # dL/dh_t
    ut = np.zeros((chunk, W), dtype)
    dtt = np.zeros((chunk, W), dtype)
    dtu = np.zeros((chunk, W), dtype)
    gt = np.zeros((chunk, W), dtype)
    got = np.zeros((chunk, W), dtype)
    gy = np.zeros((chunk, W), dtype)
    yt = np.zeros((chunk, W), dtype)
    gut = np.zeros((chunk, W), dtype)
    gdtt = np.zeros((chunk, W), dtype)
    bt = np.zeros((chunk, nn), dtype)
    ct = np.zeros((chunk, nn), dtype)
    _load_params(at, dd, At, D, d0, wn)
    if has_glast:
        for n in range(nn):
            for w in range(wn):
                gh[n, w] = glast[b, d0 + w, n]
    nck = (nl + chunk - 1) // chunk
    for c in range(nck - 1, -1, -1):
        t0 = c * chunk
        kn = min(chunk, nl - t0)
        _load_tile(ut, u, b, d0, wn, t0, kn)
        _load_tile(dtt, dt, b, d0, wn, t0, kn)
        _load_tile(got, gout, b, d0, wn, t0, kn)
        _load_bn(bt, B, b, g, t0, kn)
        _load_bn(ct, C, b, g, t0, kn)
        # recompute the chunk's states from its checkpoint
        for n in range(nn):
            for w in range(wn):
                hs[0, n, w] = ck[b, c, n, d0 + w]
        _chunk_states(hs, es, dtu, dtt, ut, at, bt, kn, nn, W)
        if has_gate:
            _load_tile(gt, gate, b, d0, wn, t0, kn)
            _chunk_readout(yt, hs, ct, ut, dd, kn, nn, W)
            for k in range(kn):
                for w in range(W):
                    gy[k, w] = got[k, w] * gt[k, w]
                    gt[k, w] = got[k, w] * yt[k, w]  # the gate tile now holds dL/dgate
            _store_tile(ggate, gt, b, d0, wn, t0, kn)
        else:
            for k in range(kn):
                for w in range(W):
                    gy[k, w] = got[k, w]
        # adjoint recursion backward in time: dL/dh_t = C_t dL/dy_t + a_{t+1} dL/dh_{t+1}
        for k in range(kn - 1, -1, -1):
            for n in range(nn):
                cn = ct[k, n]
                for w in range(W):
                    v = _fma(gy[k, w], cn, gh[n, w])
                    ghs[k, n, w] = v
                    gh[n, w] = es[k, n, w] * v
        _chunk_grads(gdtt, gut, ga, s1, ghs, es, hs, dtt, ut, at, bt, kn, nn, W)
        for k in range(kn):
            for w in range(W):
                gut[k, w] = _fma(gy[k, w], dd[w], gut[k, w])
                gdd[w] = _fma(gy[k, w], ut[k, w], gdd[w])
        _store_tile(gu, gut, b, d0, wn, t0, kn)
        _store_tile(gdt, gdtt, b, d0, wn, t0, kn)
        _reduce_channels(gBp, b, g, j, t0, ghs, 0, dtu, kn, nn, wn)  # sum_d dL/dh dt u
        _reduce_channels(gCp, b, g, j, t0, hs, 1, gy, kn, nn, wn)  # sum_d h dL/dy
    for n in range(nn):
        for w in range(wn):
            gAp[b, n, d0 + w] = ga[n, w]
    for w in range(wn):
        gDp[b, d0 + w] = gdd[w]


@njit(**_JIT)
def _bwd(lo, hi, u, dt, At, B, C, D, gate, has_gate, ck, gout, glast, has_glast, chunk, width,
         gu, gdt, ggate, gAp, gBp, gCp, gDp):
    nb, nd, _ = u.shape
    ng = B.shape[1]
    gs, nbpg = _task_grid(nb, nd, ng, width)
    mxcsr = _ftz_enter()
    for task in range(lo, hi):
        b = task // (ng * nbpg)
        g = (task // nbpg) % ng
        j = task % nbpg
        _bwd_task(b, g, j, g * gs + j * width, min(width, gs - j * width), u, dt, At, B, C,
                  D, gate, has_gate, ck, gout, glast, has_glast, chunk, width,
                  gu, gdt, ggate, gAp, gBp, gCp, gDp)
    _ftz_exit(mxcsr)


# ----------------------------------------------------------------------------------------
# hidden states (b, d, l, n): forward and backward


@njit(**_JIT)
def _states_fwd_task(b, g, d0, wn, u, dt, At, B, chunk, W, H):
    nn = At.shape[0]
    nl = u.shape[2]
    dtype = u.dtype
    at = np.zeros((nn, W), dtype)
    dd = np.zeros(W, dtype)
    hs = np.zeros((chunk + 1, nn, W), dtype)
    es = np.zeros((chunk, nn, W), dtype)
    ut = np.zeros((chunk, W), dtype)
    dtt = np.zeros((chunk, W), dtype)
    dtu = np.zeros((chunk, W), dtype)
    bt = np.zeros((chunk, nn), dtype)
    _load_params(at, dd, At, np.zeros(d0 + wn, dtype), d0, wn)
    nck = (nl + chunk - 1) // chunk
    for c in range(nck):
        t0 = c * chunk
        kn = min(chunk, nl - t0)
        if c > 0:
            for n in range(nn):
                for w in range(W):
                    hs[0, n, w] = hs[chunk, n, w]
        _load_tile(ut, u, b, d0, wn, t0, kn)
        _load_tile(dtt, dt, b, d0, wn, t0, kn)
        _load_bn(bt, B, b, g, t0, kn)
        _chunk_states(hs, es, dtu, dtt, ut, at, bt, kn, nn, W)
        for w in range(wn):
            for k in range(kn):
                for n in range(nn):
                    H[b, d0 + w, t0 + k, n] = hs[k + 1, n, w]


@njit(**_JIT)
def _states_fwd(lo, hi, u, dt, At, B, chunk, width, H):
    nb, nd, _ = u.shape
    ng = B.shape[1]
    gs, nbpg = _task_grid(nb, nd, ng, width)
    mxcsr = _ftz_enter()
    for task in range(lo, hi):
        b = task // (ng * nbpg)
        g = (task // nbpg) % ng
        j = task % nbpg
        _states_fwd_task(b, g, g * gs + j * width, min(width, gs - j * width), u, dt, At, B,
                         chunk, width, H)
    _ftz_exit(mxcsr)


@njit(**_JIT)
def _states_bwd_task(b, g, j, d0, wn, u, dt, At, B, H, gH, chunk, W, gu, gdt, gAp, gBp):
    nn = At.shape[0]
    nl = u.shape[2]
    dtype = u.dtype
    at = np.zeros((nn, W), dtype)
    dd = np.zeros(W, dtype)
    gh = np.zeros((nn, W), dtype)
    ga = np.zeros((nn, W), dtype)
    s1 = np.zeros(W, dtype)
    hs = np.zeros((chunk + 1, nn, W), dtype)
    es = np.zeros((chunk, nn, W), dtype)
    ghs = np.zeros((chunk, nn, W), dtype)
    ut = np.zeros((chunk, W), dtype)
    dtt = np.zeros((chunk, W), dtype)
    dtu = np.zeros((chunk, W), dtype)
    gut = np.zeros((chunk, W), dtype)
    gdtt = np.zeros((chunk, W), dtype)
    bt = np.zeros((chunk, nn), dtype)
    _load_params(at, dd, At, np.zeros(d0 + wn, dtype), d0, wn)
    nck = (nl + chunk - 1) // chunk
    for c in range(nck - 1, -1, -1):
        t0 = c * chunk
        kn = min(chunk, nl - t0)
        _load_tile(ut, u, b, d0, wn, t0, kn)
        _load_tile(dtt, dt, b, d0, wn, t0, kn)
        _load_bn(bt, B, b, g, t0, kn)
        for k in range(kn):
            for w in range(W):
                dtu[k, w] = dtt[k, w] * ut[k, w]
            for n in range(nn):
                for w in range(W):
                    es[k, n, w] = _exp(dtt[k, w] * at[n, w])
        # the states were stored by the forward pass
        for w in range(wn):
            for n in range(nn):
                hs[0, n, w] = H[b, d0 + w, t0 - 1, n] if t0 > 0 else 0
            for k in range(kn):
                for n in range(nn):
                    hs[k + 1, n, w] = H[b, d0 + w, t0 + k, n]
                    ghs[k, n, w] = gH[b, d0 + w, t0 + k, n]
        for k in range(kn - 1, -1, -1):
            for n in range(nn):
                for w in range(W):
                    v = ghs[k, n, w] + gh[n, w]
                    ghs[k, n, w] = v
                    gh[n, w] = es[k, n, w] * v
        _chunk_grads(gdtt, gut, ga, s1, ghs, es, hs, dtt, ut, at, bt, kn, nn, W)
        _store_tile(gu, gut, b, d0, wn, t0, kn)
        _store_tile(gdt, gdtt, b, d0, wn, t0, kn)
        _reduce_channels(gBp, b, g, j, t0, ghs, 0, dtu, kn, nn, wn)
    for n in range(nn):
        for w in range(wn):
            gAp[b, n, d0 + w] = ga[n, w]


@njit(**_JIT)
def _states_bwd(lo, hi, u, dt, At, B, H, gH, chunk, width, gu, gdt, gAp, gBp):
    nb, nd, _ = u.shape
    ng = B.shape[1]
    gs, nbpg = _task_grid(nb, nd, ng, width)
    mxcsr = _ftz_enter()
    for task in range(lo, hi):
        b = task // (ng * nbpg)
        g = (task // nbpg) % ng
        j = task % nbpg
        _states_bwd_task(b, g, j, g * gs + j * width, min(width, gs - j * width), u, dt, At,
                         B, H, gH, chunk, width, gu, gdt, gAp, gBp)
    _ftz_exit(mxcsr)


# ----------------------------------------------------------------------------------------
# torch-facing wrappers (contiguous CPU tensors of one floating dtype)


def _np(x):
    return x.detach().numpy()


def _launch(kernel, work, ntasks, *args):
    """Run ``kernel(lo, hi, *args)`` over the task range ``[0, ntasks)``.

    The kernels release the GIL, so the range is cut into pieces shared by
    ``torch.get_num_threads()`` threads (the calling one included) from a small pool owned by
    this module; numba's own parallel backend is not used (its ``parallel=True`` compilation
    is slow and its OpenMP pool can be slow to wake on a loaded machine). Small problems run
    on the calling thread only.
    """
    threads = min(torch.get_num_threads(), ntasks) if work >= _PARALLEL_WORK else 1
    if threads <= 1:
        kernel(0, ntasks, *args)
        return
    pieces = min(ntasks, 4 * threads)  # a few pieces per thread evens out the finishing times
    cuts = [ntasks * i // pieces for i in range(pieces + 1)]
    pool = _pool(threads - 1)
    futures = [pool.submit(kernel, cuts[i], cuts[i + 1], *args) for i in range(1, pieces)]
    kernel(cuts[0], cuts[1], *args)
    for future in futures:
        future.result()


def _pool(workers):
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is None or _POOL_WORKERS != workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pyroseq-scan")
            _POOL_WORKERS = workers
        return _POOL


def _forget_pool():
    # a forked child has none of the parent's threads: start a new pool there if needed
    global _POOL, _POOL_WORKERS, _POOL_LOCK
    _POOL, _POOL_WORKERS, _POOL_LOCK = None, 0, threading.Lock()


_POOL = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()
os.register_at_fork(after_in_child=_forget_pool)
_PARALLEL_WORK = 1 << 17  # b * d * l * n below which the calling thread works alone


def _grid(u, B):
    nb, nd, nl = u.shape
    ng, nn = B.shape[1], B.shape[2]
    gs, nbpg = _task_grid(nb, nd, ng, _WIDTH)
    return nb * nd * nl * nn, nb * ng * nbpg, nbpg


def scan_forward(u, dt, A, B, C, D, gate, chunk, save_checkpoints):
    """Selective scan forward pass on contiguous CPU tensors of one floating dtype.

    :param torch.Tensor u: inputs, shape ``(b, d, l)``.
    :param torch.Tensor dt: step sizes, shape ``(b, d, l)``.
    :param torch.Tensor A: state matrix diagonal, shape ``(d, n)``.
    :param torch.Tensor B: input matrices, shape ``(b, g, n, l)`` with ``g`` dividing ``d``.
    :param torch.Tensor C: output matrices, shape ``(b, g, n, l)``.
    :param torch.Tensor D: skip weights, shape ``(d,)``.
    :param gate: multiplicative output gate, shape ``(b, d, l)``, or None.
    :param int chunk: steps between saved hidden states.
    :param bool save_checkpoints: whether to return the hidden state every ``chunk`` steps.
    :returns: ``(out, last_state, checkpoints)`` of shapes ``(b, d, l)``, ``(b, d, n)`` and
        ``(b, ceil(l / chunk), n, d)`` (None unless requested).
    """
    nb, nd, nl = u.shape
    nn = A.shape[1]
    work, ntasks, _ = _grid(u, B)
    out = u.new_empty(nb, nd, nl)
    last = u.new_empty(nb, nd, nn)
    ck = u.new_empty(nb, (nl + chunk - 1) // chunk, nn, nd) if save_checkpoints else \
        u.new_empty(0, 0, 0, 0)
    has_gate = gate is not None
    gate = gate if has_gate else u.new_empty(0, 0, 0)
    _launch(_fwd, work, ntasks, _np(u), _np(dt), _np(A.t().contiguous()), _np(B), _np(C),
            _np(D), _np(gate), has_gate, chunk, _WIDTH, _np(out), _np(last), _np(ck),
            save_checkpoints)
    return out, last, (ck if save_checkpoints else None)


def scan_backward(u, dt, A, B, C, D, gate, checkpoints, grad_out, grad_last, chunk):
    """Adjoint backward pass of :func:`scan_forward` (same arguments).

    :param torch.Tensor checkpoints: the checkpoints returned by :func:`scan_forward`.
    :param torch.Tensor grad_out: gradient of the output, shape ``(b, d, l)``.
    :param grad_last: gradient of the last state, shape ``(b, d, n)``, or None.
    :returns: gradients of ``(u, dt, A, B, C, D, gate)`` (the last None without a gate).
    """
    nb, nd, nl = u.shape
    ng, nn = B.shape[1], B.shape[2]
    work, ntasks, nbpg = _grid(u, B)
    gu = torch.empty_like(u)
    gdt = torch.empty_like(u)
    has_gate = gate is not None
    ggate = torch.empty_like(u) if has_gate else u.new_empty(0, 0, 0)
    gate = gate if has_gate else ggate
    has_glast = grad_last is not None
    glast = grad_last.contiguous() if has_glast else u.new_empty(0, 0, 0)
    gAp = u.new_empty(nb, nn, nd)
    gBp = u.new_empty(nb, ng, nbpg, nn, nl)
    gCp = u.new_empty(nb, ng, nbpg, nn, nl)
    gDp = u.new_empty(nb, nd)
    _launch(_bwd, 2 * work, ntasks, _np(u), _np(dt), _np(A.t().contiguous()), _np(B), _np(C),
            _np(D), _np(gate), has_gate, _np(checkpoints), _np(grad_out.contiguous()),
            _np(glast), has_glast, chunk, _WIDTH, _np(gu), _np(gdt), _np(ggate), _np(gAp),
            _np(gBp), _np(gCp), _np(gDp))
    gB = gBp[:, :, 0] if nbpg == 1 else gBp.sum(2)
    gC = gCp[:, :, 0] if nbpg == 1 else gCp.sum(2)
    return gu, gdt, gAp.sum(0).t(), gB, gC, gDp.sum(0), (ggate if has_gate else None)


def states_forward(u, dt, A, B, chunk):
    """Hidden states of the scan, shape ``(b, d, l, n)`` (arguments as :func:`scan_forward`)."""
    nb, nd, nl = u.shape
    work, ntasks, _ = _grid(u, B)
    H = u.new_empty(nb, nd, nl, A.shape[1])
    _launch(_states_fwd, work, ntasks, _np(u), _np(dt), _np(A.t().contiguous()), _np(B), chunk,
            _WIDTH, _np(H))
    return H


def states_backward(u, dt, A, B, H, grad_H, chunk):
    """Gradients of ``(u, dt, A, B)`` given the states ``H`` and their gradient ``grad_H``."""
    nb, nd, nl = u.shape
    ng, nn = B.shape[1], B.shape[2]
    work, ntasks, nbpg = _grid(u, B)
    gu = torch.empty_like(u)
    gdt = torch.empty_like(u)
    gAp = u.new_empty(nb, nn, nd)
    gBp = u.new_empty(nb, ng, nbpg, nn, nl)
    _launch(_states_bwd, 2 * work, ntasks, _np(u), _np(dt), _np(A.t().contiguous()), _np(B),
            _np(H), _np(grad_H.contiguous()), chunk, _WIDTH, _np(gu), _np(gdt), _np(gAp),
            _np(gBp))
    gB = gBp[:, :, 0] if nbpg == 1 else gBp.sum(2)
    return gu, gdt, gAp.sum(0).t(), gB
