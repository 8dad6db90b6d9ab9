"""The selective scan of Mamba on CPU, with a hand-written adjoint backward pass.

Semantics and layout follow mamba_ssm's ``selective_scan_fn`` (real ``A`` only):

.. math::

    \\Delta_t = \\mathrm{softplus}(\\delta_t + b_\\delta) \\text{ (if asked)},\\quad
    h_t = \\exp(\\Delta_t A)\\, h_{t-1} + \\Delta_t B_t u_t,\\quad
    y_t = C_t \\cdot h_t + D u_t,\\quad
    \\mathrm{out}_t = y_t\\, \\mathrm{silu}(z_t),

independently for every batch element and channel ``d`` (the state ``h`` has ``n``
entries). Two CPU backends compute it with the same algorithm: numba kernels
(:mod:`pyroseq.nn.scan_numba`, installed with ``pip install pyroseq[fast]``) and a
pure-torch fallback (:mod:`pyroseq.nn.scan_torch`). Their backward pass runs the adjoint
recursion backward in time and recomputes the hidden states chunk by chunk from states
saved every ``chunk_size`` steps, so training memory is ``O(b l (d + n))``: no tensor of
shape ``(b, d, l, n)`` is kept. On CUDA tensors the scan is mamba_ssm's kernel when
``mamba_ssm`` imports (it is imported only then, never for CPU tensors).

Inputs are computed in float64 if any of them is float64, else in float32 (half inputs are
upcast, as in mamba_ssm), and the result is returned in the dtype of ``u``. The numba
kernels flush subnormal numbers to zero while they run (as mamba_ssm's CUDA build does):
decaying states would otherwise slow them down tens of times. Shapes are checked; values
are not (NaN and infinity propagate, as in any torch operation).

Hidden states (for Lag Fusion). :func:`selective_scan_states` returns the states
``h`` of shape ``(b, d, l, n)`` (differentiable, with its own hand-written backward pass)
and :func:`selective_scan_readout` applies ``y = C h + D u`` and the gate; passing
``state_fusion=f`` to :func:`selective_scan` runs ``readout(f(states))``. This path
stores the ``(b, d, l, n)`` states by construction.
"""

import importlib
import math

import torch
import torch.nn.functional as F

__all__ = [
    "selective_scan",
    "selective_scan_states",
    "selective_scan_readout",
    "selective_scan_ref",
    "numba_available",
]

_BACKENDS = ("auto", "numba", "torch", "mamba_ssm")
_DEFAULT_CHUNK = {"numba": 32, "torch": 16}
_kernels_cache = {}


def _kernels(name):
    """The kernel module of a CPU backend ("numba" or "torch"), imported on first use."""
    if name not in _kernels_cache:
        try:
            _kernels_cache[name] = importlib.import_module(f"pyroseq.nn.scan_{name}")
        except ImportError:
            _kernels_cache[name] = None
    return _kernels_cache[name]


def numba_available():
    """Whether the numba kernels can be used (``pip install pyroseq[fast]``).

    :rtype: bool
    """
    return _kernels("numba") is not None


def _mamba_ssm_scan():
    """mamba_ssm's ``selective_scan_fn`` or None; only ever called for CUDA tensors."""
    if "mamba_ssm" not in _kernels_cache:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except Exception:  # ImportError, or a broken CUDA / triton installation
            selective_scan_fn = None
        _kernels_cache["mamba_ssm"] = selective_scan_fn
    return _kernels_cache["mamba_ssm"]


# ----------------------------------------------------------------------------------------
# argument checks


def _check_tensor(name, x, dims):
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() and not x.is_complex()):
        raise ValueError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}")
    if x.dim() not in dims:
        want = " or ".join(str(d) for d in dims)
        raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")


def _check_shape(name, x, shape, layout):
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {layout} = {tuple(shape)}, "
                         f"got {tuple(x.shape)}")


def _check_bc(name, x, b, d, n, ref_layout):
    _check_tensor(name, x, (3, 4))
    if x.dim() == 3:
        _check_shape(name, x, (b, n, x.shape[-1]), "(batch, d_state, length)")
        return
    g = x.shape[1]
    if g < 1 or d % g != 0:
        raise ValueError(f"{name} of shape (batch, groups, d_state, length) needs groups "
                         f"dividing d = {d}, got {tuple(x.shape)}")
    _check_shape(name, x, (b, g, n, x.shape[-1]), ref_layout)


def _check_args(u, delta, A, B, C, D, z, delta_bias, need_c=True):
    _check_tensor("u", u, (3,))
    b, d, l = u.shape
    if l < 1:
        raise ValueError(f"u must have a positive length, got shape {tuple(u.shape)}")
    _check_tensor("delta", delta, (3,))
    _check_shape("delta", delta, u.shape, "(batch, d, length) like u")
    _check_tensor("A", A, (2,))
    if A.shape[0] != d or A.shape[1] < 1:
        raise ValueError(f"A must have shape (d, d_state) with d = {d}, got {tuple(A.shape)}")
    n = A.shape[1]
    _check_bc("B", B, b, d, n, "(batch, groups, d_state, length)")
    if B.shape[-1] != l:
        raise ValueError(f"B must have length {l} in its last dimension, got {tuple(B.shape)}")
    if need_c:
        _check_bc("C", C, b, d, n, "(batch, groups, d_state, length)")
        if C.shape[-1] != l:
            raise ValueError(f"C must have length {l} in its last dimension, "
                             f"got {tuple(C.shape)}")
    if D is not None:
        _check_tensor("D", D, (1,))
        _check_shape("D", D, (d,), "(d,)")
    if z is not None:
        _check_tensor("z", z, (3,))
        _check_shape("z", z, u.shape, "(batch, d, length) like u")
    if delta_bias is not None:
        _check_tensor("delta_bias", delta_bias, (1,))
        _check_shape("delta_bias", delta_bias, (d,), "(d,)")


def _check_backend(backend, device):
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "mamba_ssm" and device.type != "cuda":
        raise ValueError("backend='mamba_ssm' needs CUDA tensors")
    if backend == "numba":
        if device.type != "cpu":
            raise ValueError("backend='numba' needs CPU tensors")
        if not numba_available():
            raise ValueError("backend='numba' needs numba: pip install pyroseq[fast]")
    if backend == "auto":
        # numba kernels cannot be traced by torch.jit (JitTrace_ELBO); the torch kernels can
        use_numba = device.type == "cpu" and numba_available() and not torch.jit.is_tracing()
        return "numba" if use_numba else "torch"
    return backend


def _check_chunk(chunk_size, backend):
    if chunk_size is None:
        return _DEFAULT_CHUNK[backend]
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def _compute_dtype(*xs):
    dtype = torch.float32
    for x in xs:
        if x is not None and x.dtype == torch.float64:
            dtype = torch.float64
    return dtype


def _prepare(u, delta, A, B, delta_bias, delta_softplus, dtype):
    """Differentiable pre-processing shared by the scans: step sizes and grouped B."""
    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype).unsqueeze(-1)
    if delta_softplus:
        dt = F.softplus(dt)
    Bg = B.unsqueeze(1) if B.dim() == 3 else B
    return u.to(dtype).contiguous(), dt.contiguous(), A.to(dtype).contiguous(), \
        Bg.to(dtype).contiguous()


# ----------------------------------------------------------------------------------------
# autograd functions


class _SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, dt, A, B, C, D, gate, kernels, chunk):
        ctx.set_materialize_grads(False)
        save = any(ctx.needs_input_grad[:7])
        out, last, ck = kernels.scan_forward(u, dt, A, B, C, D, gate, chunk, save)
        if save:
            ctx.save_for_backward(u, dt, A, B, C, D, gate, ck)
        ctx.kernels, ctx.chunk = kernels, chunk
        return out, last

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        u, dt, A, B, C, D, gate, ck = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(u)
        grads = ctx.kernels.scan_backward(u, dt, A, B, C, D, gate, ck, grad_out, grad_last,
                                          ctx.chunk)
        return grads + (None, None)


class _StatesFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, dt, A, B, kernels, chunk):
        H = kernels.states_forward(u, dt, A, B, chunk)
        if any(ctx.needs_input_grad[:4]):
            ctx.save_for_backward(u, dt, A, B, H)
        ctx.kernels, ctx.chunk = kernels, chunk
        return H

    @staticmethod
    def backward(ctx, grad_H):
        u, dt, A, B, H = ctx.saved_tensors
        grads = ctx.kernels.states_backward(u, dt, A, B, H, grad_H, ctx.chunk)
        return grads + (None, None)


# ----------------------------------------------------------------------------------------
# public functions


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, state_fusion=None, backend="auto",
                   chunk_size=None):
    """Selective scan of Mamba (mamba_ssm's ``selective_scan_fn`` on CPU and CUDA).

    ``out_t = (C_t . h_t + D u_t) * silu(z_t)`` with
    ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t``, ``h_0 = 0`` and
    ``dt = softplus(delta + delta_bias)`` (softplus only if ``delta_softplus``).

    :param torch.Tensor u: inputs, shape ``(batch, d, length)``.
    :param torch.Tensor delta: step sizes before bias and softplus, shape ``(batch, d, length)``.
    :param torch.Tensor A: real state matrix diagonal, shape ``(d, d_state)``.
    :param torch.Tensor B: input matrices, shape ``(batch, d_state, length)``, or
        ``(batch, groups, d_state, length)`` where channel ``i`` uses group
        ``i // (d // groups)``.
    :param torch.Tensor C: output matrices, same layouts as ``B``.
    :param torch.Tensor D: optional skip weights, shape ``(d,)``.
    :param torch.Tensor z: optional gate input, shape ``(batch, d, length)``.
    :param torch.Tensor delta_bias: optional bias of ``delta``, shape ``(d,)``.
    :param bool delta_softplus: apply softplus to ``delta + delta_bias``.
    :param bool return_last_state: also return ``h`` at the last step, ``(batch, d, d_state)``.
    :param callable state_fusion: optional map of the hidden states ``(batch, d, length,
        d_state) -> (batch, d, length, d_state)`` applied before the read-out ``C h + D u``
        (Lag Fusion); this path stores all hidden states. The returned last state is the
        unfused one. If ``state_fusion`` has a method ``readout(states, C)`` that returns the
        read-out ``C . f(states)`` of shape ``(batch, d, length)`` (or None to decline), it is used
        instead of materialising the fused states.
    :param str backend: ``"auto"`` (mamba_ssm for CUDA tensors if it imports, else numba on
        CPU if installed, else torch), ``"numba"``, ``"torch"`` or ``"mamba_ssm"``.
    :param int chunk_size: steps between hidden states saved for the backward pass
        (default 32 for numba, 16 for torch); memory and speed trade-off only.
    :returns: ``out`` of shape ``(batch, d, length)`` and dtype of ``u``, or
        ``(out, last_state)`` if ``return_last_state``.
    :raises ValueError: on inconsistent shapes, non-floating inputs or a bad backend.
    """
    _check_args(u, delta, A, B, C, D, z, delta_bias)
    if backend in ("auto", "mamba_ssm") and u.is_cuda and state_fusion is None:
        scan = _mamba_ssm_scan()
        if scan is not None:
            return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
        if backend == "mamba_ssm":
            raise ValueError("backend='mamba_ssm' but mamba_ssm does not import")
        backend = "torch"
    backend = _check_backend(backend, u.device)
    chunk = _check_chunk(chunk_size, backend)
    if state_fusion is not None:
        H = selective_scan_states(u, delta, A, B, delta_bias, delta_softplus,
                                  backend=backend, chunk_size=chunk)
        readout = getattr(state_fusion, "readout", None)
        y = readout(H, C) if readout is not None else None
        if y is not None:
            out = _skip_and_gate(y.to(u.dtype), u, D, z)
        else:
            fused = state_fusion(H)
            if not torch.is_tensor(fused) or fused.shape != H.shape:
                raise ValueError(f"state_fusion must return a tensor of shape {tuple(H.shape)}, "
                                 f"got {getattr(fused, 'shape', type(fused).__name__)}")
            out = selective_scan_readout(fused, C, u, D, z)
        return (out, H[:, :, -1].to(u.dtype)) if return_last_state else out
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    u_, dt, A_, Bg = _prepare(u, delta, A, B, delta_bias, delta_softplus, dtype)
    Cg = (C.unsqueeze(1) if C.dim() == 3 else C).to(dtype).contiguous()
    if Bg.shape[1] != Cg.shape[1]:  # the kernels take one grouping for both: use the finer
        g = math.lcm(Bg.shape[1], Cg.shape[1])
        Bg = Bg.repeat_interleave(g // Bg.shape[1], dim=1)
        Cg = Cg.repeat_interleave(g // Cg.shape[1], dim=1)
    D_ = u_.new_zeros(u.shape[1]) if D is None else D.to(dtype).contiguous()
    gate = None if z is None else F.silu(z.to(dtype)).contiguous()
    out, last = _SelectiveScanFn.apply(u_, dt, A_, Bg, Cg, D_, gate, _kernels(backend), chunk)
    out = out.to(u.dtype)
    return (out, last.to(u.dtype)) if return_last_state else out


def selective_scan_states(u, delta, A, B, delta_bias=None, delta_softplus=False, *,
                          backend="auto", chunk_size=None):
    """Hidden states of the selective scan, for fusing them before the read-out.

    ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t`` with ``h_0 = 0`` and ``dt`` as in
    :func:`selective_scan`. Differentiable with a hand-written backward pass. Then
    ``selective_scan_readout(f(h), C, u, D, z)`` equals ``selective_scan(u, delta, A, B, C, D,
    z, ...)`` when ``f`` is the identity.

    :param torch.Tensor u: inputs, shape ``(batch, d, length)``.
    :param torch.Tensor delta: shape ``(batch, d, length)``.
    :param torch.Tensor A: shape ``(d, d_state)``.
    :param torch.Tensor B: shape ``(batch, d_state, length)`` or ``(batch, groups, d_state,
        length)``.
    :param torch.Tensor delta_bias: optional, shape ``(d,)``.
    :param bool delta_softplus: apply softplus to ``delta + delta_bias``.
    :param str backend: ``"auto"``, ``"numba"`` or ``"torch"``.
    :param int chunk_size: steps per chunk of the backward pass.
    :returns: states of shape ``(batch, d, length, d_state)`` and dtype of ``u``.
    """
    _check_args(u, delta, A, B, None, None, None, delta_bias, need_c=False)
    if backend == "mamba_ssm":
        raise ValueError("backend='mamba_ssm' cannot return hidden states; use 'torch'")
    backend = _check_backend(backend, u.device)
    chunk = _check_chunk(chunk_size, backend)
    dtype = _compute_dtype(u, delta, A, B, delta_bias)
    u_, dt, A_, Bg = _prepare(u, delta, A, B, delta_bias, delta_softplus, dtype)
    return _StatesFn.apply(u_, dt, A_, Bg, _kernels(backend), chunk).to(u.dtype)


def selective_scan_readout(states, C, u=None, D=None, z=None):
    """Read-out of (possibly fused) hidden states: ``(C_t . h_t + D u_t) * silu(z_t)``.

    :param torch.Tensor states: shape ``(batch, d, length, d_state)``.
    :param torch.Tensor C: shape ``(batch, d_state, length)`` or ``(batch, groups, d_state,
        length)``.
    :param torch.Tensor u: inputs ``(batch, d, length)``, needed when ``D`` is given.
    :param torch.Tensor D: optional skip weights ``(d,)``.
    :param torch.Tensor z: optional gate input ``(batch, d, length)``.
    :returns: shape ``(batch, d, length)``.
    """
    _check_tensor("states", states, (4,))
    b, d, l, n = states.shape
    _check_bc("C", C, b, d, n, "(batch, groups, d_state, length)")
    if C.shape[-1] != l:
        raise ValueError(f"C must have length {l} in its last dimension, got {tuple(C.shape)}")
    Cg = C.unsqueeze(1) if C.dim() == 3 else C
    g = Cg.shape[1]
    y = torch.einsum("bgmln,bgnl->bgml", states.reshape(b, g, d // g, l, n), Cg).reshape(b, d, l)
    return _skip_and_gate(y, u, D, z)


def _skip_and_gate(y, u, D, z):
    # y + D u, gated by silu(z): the rest of the read-out once C . h is known
    b, d, l = y.shape
    if D is not None:
        if u is None:
            raise ValueError("u is needed when D is given")
        _check_tensor("D", D, (1,))
        _check_shape("D", D, (d,), "(d,)")
        _check_shape("u", u, (b, d, l), "(batch, d, length)")
        y = y + D.unsqueeze(-1) * u
    if z is not None:
        _check_shape("z", z, (b, d, l), "(batch, d, length)")
        y = y * F.silu(z)
    return y


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, return_last_state=False):
    """Plain sequential selective scan differentiated by autograd (the test reference).

    Same arguments and result as :func:`selective_scan`; one step of the recursion per
    Python iteration, with memory ``O(batch d length d_state)`` for the backward pass.
    """
    _check_args(u, delta, A, B, C, D, z, delta_bias)
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    b, d, l = u.shape
    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    u_ = u.to(dtype)

    def per_channel(X):
        X = X.to(dtype)
        X = X.unsqueeze(1) if X.dim() == 3 else X
        return X.repeat_interleave(d // X.shape[1], dim=1)  # (b, d, n, l)

    Bx, Cx = per_channel(B), per_channel(C)
    A_ = A.to(dtype)
    h = u_.new_zeros(b, d, A.shape[1])
    ys = []
    for dt_t, u_t, B_t, C_t in zip(dt.unbind(-1), u_.unbind(-1), Bx.unbind(-1), Cx.unbind(-1)):
        h = torch.exp(dt_t.unsqueeze(-1) * A_) * h + (dt_t * u_t).unsqueeze(-1) * B_t
        ys.append((h * C_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u_
    if z is not None:
        y = y * F.silu(z.to(dtype))
    y = y.to(u.dtype)
    return (y, h.to(u.dtype)) if return_last_state else y
