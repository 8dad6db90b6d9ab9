import importlib
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyroseq.nn import (
    numba_available,
    selective_scan,
    selective_scan_readout,
    selective_scan_ref,
    selective_scan_states,
)

BACKENDS = [
    "torch",
    pytest.param("numba", marks=pytest.mark.skipif(not numba_available(),
                                                   reason="numba not installed")),
]
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def naive_states(u, delta, A, B, delta_bias=None, delta_softplus=False):
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, one channel group at a time; (b, d, l, n)."""
    dt = delta if delta_bias is None else delta + delta_bias[:, None]
    dt = F.softplus(dt) if delta_softplus else dt
    b, d, length = u.shape
    Bg = B[:, None] if B.dim() == 3 else B
    group = torch.arange(d) // (d // Bg.shape[1])
    h = u.new_zeros(b, d, A.shape[1])
    hs = []
    for t in range(length):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[..., None] * \
            Bg[:, group, :, t]
        hs.append(h)
    return torch.stack(hs, dim=2)


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    H = naive_states(u, delta, A, B, delta_bias, delta_softplus)
    Cg = C[:, None] if C.dim() == 3 else C
    group = torch.arange(u.shape[1]) // (u.shape[1] // Cg.shape[1])
    y = (H * Cg[:, group].transpose(2, 3)).sum(-1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y, H[:, :, -1]


def make_inputs(b, d, n, length, dtype, groups_b=0, groups_c=0, seed=0):
    """Random inputs; groups 0 means the (b, n, l) layout of B or C."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    return dict(
        u=rand(b, d, length),
        delta=rand(b, d, length) * 0.5,
        A=-torch.rand(d, n, generator=g, dtype=torch.float64).to(dtype) * 2 - 0.1,
        B=rand(b, n, length) if groups_b == 0 else rand(b, groups_b, n, length),
        C=rand(b, n, length) if groups_c == 0 else rand(b, groups_c, n, length),
        D=rand(d),
        z=rand(b, d, length),
        delta_bias=rand(d) * 0.5,
    )


def assert_close(actual, expected, tol, name=""):
    scale = expected.abs().max().item() + 1e-30
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= tol * max(scale, 1.0), f"{name}: max error {err:.3g} at scale {scale:.3g}"


OPTIONS = [
    dict(),  # no D, z, bias, softplus
    dict(D=True),
    dict(z=True),
    dict(delta_bias=True, delta_softplus=True),
    dict(delta_softplus=True, D=True),
    dict(D=True, z=True, delta_bias=True, delta_softplus=True),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("length", [1, 7, 40, 69])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(sorted(o)) or "plain")
@pytest.mark.parametrize("groups", [(0, 0), (2, 0), (3, 3)], ids=["bnl", "g2-bnl", "g3"])
def test_matches_naive_reference(backend, dtype, length, options, groups):
    d = 6
    x = make_inputs(2, d, 3, length, dtype, *groups, seed=length)
    kwargs = {k: x[k] for k in ("D", "z", "delta_bias") if options.get(k)}
    softplus = options.get("delta_softplus", False)
    if not softplus:
        x["delta"] = x["delta"].abs() + 0.05  # positive step sizes without softplus
    used = ["u", "delta", "A", "B", "C"] + sorted(kwargs)
    leaves = {k: x[k].clone().requires_grad_() for k in used}
    args = {k: leaves.get(k) for k in NAMES if k in leaves}
    # chunk 8 makes several chunks and a partial last one for most lengths
    out, last = selective_scan(**args, delta_softplus=softplus, return_last_state=True,
                               backend=backend, chunk_size=8)
    truth = {k: v.detach().double().requires_grad_() for k, v in leaves.items()}
    out_ref, last_ref = naive_scan(**truth, delta_softplus=softplus)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert out.dtype == dtype and out.shape == x["u"].shape
    assert last.shape == (2, d, 3)
    assert_close(out, out_ref, tol, "out")
    assert_close(last, last_ref, tol, "last state")
    g = torch.Generator().manual_seed(1)
    w_out = torch.randn(out.shape, generator=g, dtype=torch.float64)
    w_last = torch.randn(last.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((out * w_out.to(dtype)).sum() + (last * w_last.to(dtype)).sum(),
                                list(leaves.values()))
    grads_ref = torch.autograd.grad((out_ref * w_out).sum() + (last_ref * w_last).sum(),
                                    list(truth.values()))
    for name, a, r in zip(leaves, grads, grads_ref):
        assert a.shape == leaves[name].shape
        assert_close(a, r, tol, f"grad {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk_size", [None, 1, 5, 1000])
def test_chunk_size_does_not_change_results(backend, chunk_size):
    x = make_inputs(2, 5, 4, 23, torch.float64, 0, 0)
    leaves = [x[k].requires_grad_() for k in NAMES]
    out = selective_scan(*leaves, delta_softplus=True, backend=backend, chunk_size=chunk_size)
    ref = selective_scan_ref(*leaves, delta_softplus=True)
    assert_close(out, ref, 1e-12)
    for a, r in zip(torch.autograd.grad(out.sum(), leaves), torch.autograd.grad(ref.sum(), leaves)):
        assert_close(a, r, 1e-11)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    x = make_inputs(2, 4, 3, 6, torch.float64, 2, 0)
    leaves = tuple(x[k].requires_grad_() for k in NAMES)

    def f(u, delta, A, B, C, D, z, bias):
        out, last = selective_scan(u, delta, A, B, C, D, z, bias, True, True, backend=backend,
                                   chunk_size=4)
        return out, last

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_states(backend):
    x = make_inputs(2, 4, 3, 6, torch.float64, 2, 0)
    leaves = tuple(x[k].requires_grad_() for k in ("u", "delta", "A", "B", "delta_bias"))

    def f(u, delta, A, B, bias):
        return selective_scan_states(u, delta, A, B, bias, True, backend=backend, chunk_size=4)

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_states_match_naive(backend, dtype):
    x = make_inputs(3, 6, 2, 37, dtype, 3, 0)
    leaves = {k: x[k].clone().requires_grad_() for k in ("u", "delta", "A", "B", "delta_bias")}
    H = selective_scan_states(**leaves, delta_softplus=True, backend=backend, chunk_size=8)
    truth = {k: v.detach().double().requires_grad_() for k, v in leaves.items()}
    H_ref = naive_states(**truth, delta_softplus=True)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert H.shape == (3, 6, 37, 2) and H.dtype == dtype
    assert_close(H, H_ref, tol)
    w = torch.randn(H.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = torch.autograd.grad((H * w.to(dtype)).sum(), list(leaves.values()))
    grads_ref = torch.autograd.grad((H_ref * w).sum(), list(truth.values()))
    for name, a, r in zip(leaves, grads, grads_ref):
        assert_close(a, r, tol, name)


def lag_fusion(H):
    # a fixed stand-in for Lag Fusion: mix each state with the state two steps earlier
    return H + 0.5 * F.pad(H, (0, 0, 2, 0))[:, :, :-2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_fusion(backend):
    x = make_inputs(2, 4, 3, 9, torch.float64, 0, 2)
    leaves = [x[k].requires_grad_() for k in NAMES]
    plain = selective_scan(*leaves, delta_softplus=True, backend=backend)
    same, last = selective_scan(*leaves, delta_softplus=True, return_last_state=True,
                                state_fusion=lambda h: h, backend=backend)
    assert_close(same, plain, 1e-12)
    assert_close(last, selective_scan_ref(*leaves, delta_softplus=True,
                                          return_last_state=True)[1], 1e-12)
    fused = selective_scan(*leaves, delta_softplus=True, state_fusion=lag_fusion,
                           backend=backend)
    u, delta, A, B, C, D, z, bias = leaves
    H = naive_states(u, delta, A, B, bias, True)
    expected = selective_scan_readout(lag_fusion(H), C, u, D, z)
    assert_close(fused, expected, 1e-12)
    for a, r in zip(torch.autograd.grad(fused.sum(), leaves),
                    torch.autograd.grad(expected.sum(), leaves)):
        assert_close(a, r, 1e-11)
    with pytest.raises(ValueError, match="state_fusion"):
        selective_scan(*leaves, state_fusion=lambda h: h[:, :, 1:], backend=backend)


def test_reference_matches_naive():
    x = make_inputs(2, 6, 3, 11, torch.float64, 3, 0)
    out, last = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    out_ref, last_ref = naive_scan(**x, delta_softplus=True)
    assert_close(out, out_ref, 1e-13)
    assert_close(last, last_ref, 1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_multithreaded(backend):
    # large enough for the numba kernels to split the work between threads
    x = make_inputs(4, 64, 16, 70, torch.float32, 0, 0)
    leaves = [x[k].requires_grad_() for k in NAMES]
    out = selective_scan(*leaves, delta_softplus=True, backend=backend)
    ref = selective_scan_ref(*leaves, delta_softplus=True)
    assert_close(out, ref, 1e-5)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    for name, a, r in zip(NAMES, torch.autograd.grad((out * w).sum(), leaves),
                          torch.autograd.grad((ref * w).sum(), leaves)):
        assert_close(a, r, 1e-4, name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_memory_is_linear(backend):
    # what the backward pass keeps: inputs, step sizes and one state every chunk_size steps,
    # never the (b, d, l, n) states
    b, d, n, length = 2, 32, 16, 64
    x = make_inputs(b, d, n, length, torch.float32, 0, 0)
    leaves = [x[k].requires_grad_() for k in NAMES]
    out = selective_scan(*leaves, delta_softplus=True, backend=backend, chunk_size=32)
    node = out.grad_fn
    while not hasattr(node, "saved_tensors"):  # step over the dtype cast, if any
        node = node.next_functions[0][0]
    saved = sum(t.numel() for t in node.saved_tensors if t is not None)
    assert saved < b * d * length * n / 2
    out.sum().backward()


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_precision_inputs(backend):
    x = make_inputs(2, 4, 3, 10, torch.float32, 0, 0)
    half = {k: v.to(torch.bfloat16) for k, v in x.items()}
    out = selective_scan(**half, delta_softplus=True, backend=backend)
    ref = selective_scan(**{k: v.float() for k, v in half.items()}, delta_softplus=True,
                         backend=backend)
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), ref, 1e-2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_grad_and_mixed_requires_grad(backend):
    x = make_inputs(2, 4, 3, 10, torch.float32, 0, 0)
    with torch.no_grad():
        out = selective_scan(**x, backend=backend)
    assert not out.requires_grad
    u = x["u"].clone().requires_grad_()
    out = selective_scan(u, x["delta"].abs(), x["A"], x["B"], x["C"], backend=backend)
    (gu,) = torch.autograd.grad(out.sum(), [u])
    ref = selective_scan_ref(u, x["delta"].abs(), x["A"], x["B"], x["C"])
    (gu_ref,) = torch.autograd.grad(ref.sum(), [u])
    assert_close(gu, gu_ref, 1e-5)


def test_cpu_never_imports_mamba_ssm(monkeypatch):
    x = make_inputs(1, 4, 2, 5, torch.float32, 0, 0)
    monkeypatch.delitem(sys.modules, "mamba_ssm", raising=False)
    selective_scan(**x)
    selective_scan_states(x["u"], x["delta"], x["A"], x["B"])
    assert "mamba_ssm" not in sys.modules


def bad_cases():
    x = make_inputs(2, 4, 3, 5, torch.float32, 0, 0)
    yield "u", dict(x, u=x["u"][0])
    yield "u", dict(x, u=x["u"].long())
    yield "delta", dict(x, delta=x["delta"][:, :, :4])
    yield "A", dict(x, A=x["A"][:3])
    yield "A", dict(x, A=x["A"][0])
    yield "B", dict(x, B=x["B"][:, :2])
    yield "B", dict(x, B=x["B"][:, :, :4])
    yield "B", dict(x, B=torch.zeros(2, 3, 3, 5))  # 3 groups do not divide d = 4
    yield "C", dict(x, C=x["C"][:1])
    yield "D", dict(x, D=x["D"][:3])
    yield "z", dict(x, z=x["z"][:, :3])
    yield "delta_bias", dict(x, delta_bias=x["delta_bias"][None])


@pytest.mark.parametrize("name,kwargs", list(bad_cases()),
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(bad_cases())])
def test_bad_shapes_raise(name, kwargs):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        selective_scan(**kwargs)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        selective_scan_ref(**kwargs)


def test_bad_options_raise():
    x = make_inputs(1, 4, 2, 5, torch.float32, 0, 0)
    with pytest.raises(ValueError, match="backend"):
        selective_scan(**x, backend="cuda")
    with pytest.raises(ValueError, match="backend"):
        selective_scan(**x, backend="mamba_ssm")
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan(**x, chunk_size=0)
    with pytest.raises(ValueError, match="states"):
        selective_scan_readout(x["u"], x["C"])
    with pytest.raises(ValueError, match="u is needed"):
        selective_scan_readout(x["u"][..., None].expand(1, 4, 5, 2), x["C"], D=x["D"])


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_exp_accuracy(dtype):
    from pyroseq.nn.scan_numba import exp_array

    info = np.finfo(dtype)
    x = np.concatenate([np.linspace(-800, 800, 100001), [0.0, -0.0, np.inf, -np.inf, np.nan],
                        np.linspace(-1, 1, 1001)]).astype(dtype)
    out = np.empty_like(x)
    exp_array(x, out)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        expected = np.exp(x.astype(np.float64))
    normal = (expected >= info.tiny) & (expected <= info.max)
    rel = np.abs(out[normal] - expected[normal]) / expected[normal]
    assert rel.max() <= 2 * info.eps
    tiny = expected < info.tiny
    assert np.all(out[tiny] <= info.tiny)
    assert np.all(np.isposinf(out[x.astype(np.float64) > np.log(float(info.max)) + 1e-3]))
    assert np.isnan(out[np.isnan(x)]).all()
    assert np.all(out[x == 0] == 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decayed_states_and_caller_float_mode(backend):
    # zero input after a few steps drives the states through the subnormal range (the numba
    # kernels flush it to zero); results stay within tolerance and the caller's
    # floating-point mode is unchanged afterwards
    x = make_inputs(2, 4, 3, 300, torch.float32, 0, 0)
    x["u"][..., 5:] = 0
    x["A"] = x["A"] * 20
    leaves = [x[k].requires_grad_() for k in NAMES]
    out = selective_scan(*leaves, delta_softplus=True, backend=backend)
    ref = naive_scan(*[t.detach().double() for t in leaves], delta_softplus=True)[0]
    assert_close(out, ref, 1e-5)
    out.sum().backward()
    tiny = np.float32(1e-39)
    assert tiny * np.float32(1.0) != 0 and (torch.tensor([1e-39]) * 1.0).item() != 0


def _scan_in_child(conn):
    x = make_inputs(4, 64, 16, 70, torch.float32, 0, 0)
    conn.send(selective_scan(**x, delta_softplus=True, backend="numba").sum().item())
    conn.close()


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_numba_threads_work_in_forked_child():
    import multiprocessing

    x = make_inputs(4, 64, 16, 70, torch.float32, 0, 0)
    # large enough to use the thread pool, which then exists in the parent
    expected = selective_scan(**x, delta_softplus=True, backend="numba").sum().item()
    assert np.isfinite(expected)
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_scan_in_child, args=(child,))
    proc.start()
    try:
        assert parent.poll(60), "the forked child did not finish"
        assert parent.recv() == expected
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


def test_auto_falls_back_to_torch_without_numba(monkeypatch):
    module = importlib.import_module("pyroseq.nn.selective_scan")  # the module, not the function
    monkeypatch.setitem(module._kernels_cache, "numba", None)  # as if numba did not import
    assert not numba_available()
    x = make_inputs(2, 4, 3, 9, torch.float64, 0, 0)
    out = selective_scan(**x, delta_softplus=True)
    assert_close(out, naive_scan(**x, delta_softplus=True)[0], 1e-12)
    with pytest.raises(ValueError, match="numba"):
        selective_scan(**x, backend="numba")
