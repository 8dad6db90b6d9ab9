"""Pure-torch kernels of the selective scan, used when numba is not installed.

Same entry points and semantics as :mod:`pyroseq.nn.scan_numba`: a sequential loop over
time whose every step is one vectorised ``addcmul`` over ``(b, d, n)``, with everything
that does not need the recursion (``exp(dt A)``, the read-out, the parameter gradients)
done for a whole chunk of steps at once. The backward pass restarts every chunk from the
hidden state saved by the forward pass every ``chunk`` steps, so it never holds more than
one chunk of ``(b, d, n)`` states. Chunk tensors are time-major, ``(k, b, g, d // g, n)``,
so that every step reads and writes contiguous memory. Works on any device.
"""

import torch

__all__ = ["scan_forward", "scan_backward", "states_forward", "states_backward"]


def _time_major(x, t0, t1):
    # (b, g, m, l) -> contiguous (k, b, g, m) for the chunk [t0, t1); also (b, g, n, l) -> (k, b, g, n)
    return x[..., t0:t1].permute(3, 0, 1, 2).contiguous()


def _chunk_states(h0, uc, dtc, Ag, Bc):
    """States of one chunk.

    :param h0: state before the chunk, ``(b, g, m, n)``.
    :param uc, dtc: time-major chunk inputs, ``(k, b, g, m)``.
    :param Ag: ``A`` viewed as ``(g, m, n)``.
    :param Bc: time-major chunk of ``B``, ``(k, b, g, n)``.
    :returns: ``(hs, es)``, both ``(k, b, g, m, n)``: states and ``exp(dt A)``.
    """
    es = torch.exp(dtc.unsqueeze(-1) * Ag)
    hs = (dtc * uc).unsqueeze(-1) * Bc.unsqueeze(3)
    h = h0
    for k in range(hs.shape[0]):
        h = torch.addcmul(hs[k], es[k], h, out=hs[k])
    return hs, es


def _readout(hs, Cc):
    """sum_n C_t[n] h_t[n]: (k, b, g, m, n), (k, b, g, n) -> (k, b, g, m)."""
    return torch.matmul(hs, Cc.unsqueeze(-1)).squeeze(-1)


def _channel_sum(x, v):
    """sum_m x[..., m, n] v[..., m]: (k, b, g, m, n), (k, b, g, m) -> (k, b, g, n)."""
    return torch.matmul(v.unsqueeze(-2), x).squeeze(-2)


def _shapes(u, B):
    b, d, l = u.shape
    g, n = B.shape[1], B.shape[2]
    return b, d, l, g, n, d // g


def scan_forward(u, dt, A, B, C, D, gate, chunk, save_checkpoints):
    """Selective scan forward pass (see :func:`pyroseq.nn.scan_numba.scan_forward`).

    :returns: ``(out, last_state, checkpoints)``; checkpoints have shape
        ``(ceil(l / chunk), b, g, d // g, n)`` here (None unless requested).
    """
    b, d, l, g, n, m = _shapes(u, B)
    ug, dtg = u.view(b, g, m, l), dt.view(b, g, m, l)
    Ag = A.view(g, m, n)
    h = u.new_zeros(b, g, m, n)
    y = u.new_empty(b, g, m, l)
    cks = []
    for t0 in range(0, l, chunk):
        t1 = min(t0 + chunk, l)
        if save_checkpoints:
            cks.append(h)
        hs, _ = _chunk_states(h, _time_major(ug, t0, t1), _time_major(dtg, t0, t1), Ag,
                              _time_major(B, t0, t1))
        h = hs[-1]
        y[..., t0:t1] = _readout(hs, _time_major(C, t0, t1)).permute(1, 2, 3, 0)
    out = torch.addcmul(y.view(b, d, l), D.unsqueeze(-1), u)
    if gate is not None:
        out = out * gate
    return out, h.reshape(b, d, n), (torch.stack(cks) if save_checkpoints else None)


def _param_grads(ghs, es, hs, h0, uc, dtc, Ag, Bc):
    """Gradients of dt, u (state part), A and B of one chunk from ghs = dL/dh_t."""
    hprev = torch.cat([h0.unsqueeze(0), hs[:-1]])
    q = ghs * es * hprev  # dL/da_t * a_t
    s1 = _readout(ghs, Bc)
    gdt = (q * Ag).sum(-1) + s1 * uc
    gu = s1 * dtc
    gA = (q * dtc.unsqueeze(-1)).sum((0, 1))
    gB = _channel_sum(ghs, dtc * uc).permute(1, 2, 3, 0)
    return gdt, gu, gA, gB


def scan_backward(u, dt, A, B, C, D, gate, checkpoints, grad_out, grad_last, chunk):
    """Adjoint backward pass of :func:`scan_forward`.

    :returns: gradients of ``(u, dt, A, B, C, D, gate)`` (the last None without a gate).
    """
    b, d, l, g, n, m = _shapes(u, B)
    ug, dtg = u.view(b, g, m, l), dt.view(b, g, m, l)
    Ag = A.view(g, m, n)
    go = grad_out.reshape(b, g, m, l)
    gate_g = None if gate is None else gate.view(b, g, m, l)
    gy = go if gate is None else go * gate_g
    Dg = D.view(g, m)
    gu, gdt = torch.empty_like(ug), torch.empty_like(ug)
    gB, gC = torch.empty_like(B), torch.empty_like(C)
    ggate = None if gate is None else torch.empty_like(ug)
    gA = torch.zeros_like(Ag)
    # a_{t+1} dL/dh_{t+1}, carried into the chunk from the one after it
    gh = u.new_zeros(b, g, m, n) if grad_last is None else grad_last.reshape(b, g, m, n)
    nck = (l + chunk - 1) // chunk
    for c in range(nck - 1, -1, -1):
        t0, t1 = c * chunk, min((c + 1) * chunk, l)
        uc, dtc = _time_major(ug, t0, t1), _time_major(dtg, t0, t1)
        Bc, Cc = _time_major(B, t0, t1), _time_major(C, t0, t1)
        gyc = _time_major(gy, t0, t1)
        hs, es = _chunk_states(checkpoints[c], uc, dtc, Ag, Bc)
        if gate is not None:
            yc = _readout(hs, Cc).permute(1, 2, 3, 0) + Dg.unsqueeze(-1) * ug[..., t0:t1]
            ggate[..., t0:t1] = go[..., t0:t1] * yc
        # dL/dh_t = C_t dL/dy_t + a_{t+1} dL/dh_{t+1}, backward in time
        ghs = gyc.unsqueeze(-1) * Cc.unsqueeze(3)
        for k in range(ghs.shape[0] - 1, -1, -1):
            gh = ghs[k].add_(gh)
            gh = es[k] * gh
        gdtc, guc, gAc, gB[..., t0:t1] = _param_grads(ghs, es, hs, checkpoints[c], uc, dtc, Ag,
                                                       Bc)
        gA += gAc
        gC[..., t0:t1] = _channel_sum(hs, gyc).permute(1, 2, 3, 0)
        gdt[..., t0:t1] = gdtc.permute(1, 2, 3, 0)
        gu[..., t0:t1] = (guc + gyc * Dg).permute(1, 2, 3, 0)
    gD = (gy * ug).sum((0, 3)).reshape(d)
    return (gu.view(b, d, l), gdt.view(b, d, l), gA.view(d, n), gB, gC, gD,
            None if gate is None else ggate.view(b, d, l))


def states_forward(u, dt, A, B, chunk):
    """Hidden states of the scan, shape ``(b, d, l, n)``."""
    b, d, l, g, n, m = _shapes(u, B)
    ug, dtg = u.view(b, g, m, l), dt.view(b, g, m, l)
    Ag = A.view(g, m, n)
    H = u.new_empty(b, g, m, l, n)
    h = u.new_zeros(b, g, m, n)
    for t0 in range(0, l, chunk):
        t1 = min(t0 + chunk, l)
        hs, _ = _chunk_states(h, _time_major(ug, t0, t1), _time_major(dtg, t0, t1), Ag,
                              _time_major(B, t0, t1))
        h = hs[-1]
        H[:, :, :, t0:t1] = hs.permute(1, 2, 3, 0, 4)
    return H.view(b, d, l, n)


def states_backward(u, dt, A, B, H, grad_H, chunk):
    """Gradients of ``(u, dt, A, B)`` given the states ``H`` and their gradient ``grad_H``."""
    b, d, l, g, n, m = _shapes(u, B)
    ug, dtg = u.view(b, g, m, l), dt.view(b, g, m, l)
    Ag = A.view(g, m, n)
    Hg, gHg = H.view(b, g, m, l, n), grad_H.reshape(b, g, m, l, n)
    gu, gdt = torch.empty_like(ug), torch.empty_like(ug)
    gB = torch.empty_like(B)
    gA = torch.zeros_like(Ag)
    gh = u.new_zeros(b, g, m, n)
    nck = (l + chunk - 1) // chunk
    for c in range(nck - 1, -1, -1):
        t0, t1 = c * chunk, min((c + 1) * chunk, l)
        uc, dtc = _time_major(ug, t0, t1), _time_major(dtg, t0, t1)
        Bc = _time_major(B, t0, t1)
        es = torch.exp(dtc.unsqueeze(-1) * Ag)
        hs = Hg[:, :, :, t0:t1].permute(3, 0, 1, 2, 4)
        h0 = Hg[:, :, :, t0 - 1] if t0 > 0 else torch.zeros_like(gh)
        ghs = gHg[:, :, :, t0:t1].permute(3, 0, 1, 2, 4).contiguous()
        for k in range(ghs.shape[0] - 1, -1, -1):
            gh = ghs[k].add_(gh)
            gh = es[k] * gh
        gdtc, guc, gAc, gB[..., t0:t1] = _param_grads(ghs, es, hs, h0, uc, dtc, Ag, Bc)
        gA += gAc
        gdt[..., t0:t1] = gdtc.permute(1, 2, 3, 0)
        gu[..., t0:t1] = guc.permute(1, 2, 3, 0)
    return gu.view(b, d, l), gdt.view(b, d, l), gA.view(d, n), gB
