import math
import sys

import pytest
import torch
import torch.nn.functional as F

from pyroseq.nn import Mamba, numba_available, selective_scan_ref

BACKENDS = [
    "torch",
    pytest.param("numba", marks=pytest.mark.skipif(not numba_available(),
                                                   reason="numba not installed")),
]


def mamba_ssm_shapes(d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", conv_bias=True,
                     bias=False):
    """State-dict keys and shapes of mamba_ssm.Mamba (mamba_simple.py), written out by hand."""
    d_inner = expand * d_model
    r = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
    shapes = {
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "x_proj.weight": (r + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, r),
        "dt_proj.bias": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }
    if conv_bias:
        shapes["conv1d.bias"] = (d_inner,)
    if bias:
        shapes["in_proj.bias"] = (2 * d_inner,)
        shapes["out_proj.bias"] = (d_model,)
    return shapes


CONFIGS = [
    dict(d_model=16, d_state=8),
    dict(d_model=16),
    dict(d_model=40, d_state=16, expand=2),  # dt_rank = 3
    dict(d_model=8, d_state=1, d_conv=3, expand=1, dt_rank=5),
    dict(d_model=12, d_state=4, conv_bias=False, bias=True),
]

# the table for the two most common configurations, spelled out
TABLE_16_8 = {
    "A_log": (32, 8),
    "D": (32,),
    "in_proj.weight": (64, 16),
    "conv1d.weight": (32, 1, 4),
    "conv1d.bias": (32,),
    "x_proj.weight": (17, 32),
    "dt_proj.weight": (32, 1),
    "dt_proj.bias": (32,),
    "out_proj.weight": (16, 32),
}
TABLE_64_16 = {
    "A_log": (128, 16),
    "D": (128,),
    "in_proj.weight": (256, 64),
    "conv1d.weight": (128, 1, 4),
    "conv1d.bias": (128,),
    "x_proj.weight": (36, 128),
    "dt_proj.weight": (128, 4),
    "dt_proj.bias": (128,),
    "out_proj.weight": (64, 128),
}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_state_dict_matches_mamba_ssm(config):
    m = Mamba(**config)
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert got == mamba_ssm_shapes(**config)


@pytest.mark.parametrize("config,table", [(dict(d_model=16, d_state=8), TABLE_16_8),
                                          (dict(d_model=64), TABLE_64_16)])
def test_state_dict_table(config, table):
    got = {k: tuple(v.shape) for k, v in Mamba(**config).state_dict().items()}
    assert got == table


def test_state_dict_loads_both_ways():
    a, b = Mamba(16, d_state=8), Mamba(16, d_state=8)
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(2, 5, 16)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("dt_min,dt_max,floor", [(0.001, 0.1, 1e-4), (0.01, 0.5, 0.05)])
def test_initialisation(dt_min, dt_max, floor):
    torch.manual_seed(0)
    m = Mamba(32, d_state=6, dt_min=dt_min, dt_max=dt_max, dt_init_floor=floor, dt_scale=2.0)
    assert torch.allclose(m.A_log, torch.log(torch.arange(1.0, 7.0)).expand(64, 6))
    assert m.A_log.dtype == torch.float32 and m.D.dtype == torch.float32
    assert torch.equal(m.D.data, torch.ones(64))
    dt = F.softplus(m.dt_proj.bias.detach().double())
    lo = max(dt_min, floor)
    assert dt.min() >= lo * (1 - 1e-5) and dt.max() <= max(dt_max, floor) * (1 + 1e-5)
    std = 2.0 / math.sqrt(m.dt_rank)
    assert m.dt_proj.weight.abs().max() <= std
    assert m.dt_proj.weight.abs().max() > 0.5 * std  # uniform over [-std, std]
    assert getattr(m.dt_proj.bias, "_no_reinit", False)
    assert m.A_log._no_weight_decay and m.D._no_weight_decay
    const = Mamba(32, dt_init="constant")
    assert torch.all(const.dt_proj.weight == 1.0 / math.sqrt(const.dt_rank))


def reference_forward(m, x):
    """mamba_ssm's reference path written with selective_scan_ref."""
    length = x.shape[1]
    xz = m.in_proj(x).transpose(1, 2)
    u, z = xz.chunk(2, dim=1)
    u = F.silu(F.conv1d(u, m.conv1d.weight, m.conv1d.bias, padding=m.d_conv - 1,
                        groups=m.d_inner)[..., :length])
    dt, B, C = torch.split(m.x_proj(u.transpose(1, 2)), [m.dt_rank, m.d_state, m.d_state], -1)
    delta = (dt @ m.dt_proj.weight.t()).transpose(1, 2)
    y = selective_scan_ref(u, delta, -torch.exp(m.A_log), B.transpose(1, 2),
                           C.transpose(1, 2), m.D, z, m.dt_proj.bias, True)
    return m.out_proj(y.transpose(1, 2))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_forward_matches_reference(backend, dtype):
    torch.manual_seed(0)
    m = Mamba(16, d_state=8, dtype=dtype, backend=backend)
    x = torch.randn(3, 21, 16, dtype=dtype)
    y = m(x)
    assert y.shape == x.shape and y.dtype == dtype
    ref = reference_forward(m, x)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert (y - ref).abs().max() <= tol * max(1.0, ref.abs().max().item())
    grads = torch.autograd.grad(y.square().sum(), list(m.parameters()))
    grads_ref = torch.autograd.grad(ref.square().sum(), list(m.parameters()))
    for (name, _), g, r in zip(m.named_parameters(), grads, grads_ref):
        assert torch.isfinite(g).all(), name
        assert (g - r).abs().max() <= tol * max(1.0, r.abs().max().item()), name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("config", [dict(d_state=8), dict(d_state=1, d_conv=2, bias=True),
                                    dict(d_state=4, conv_bias=False, expand=1)])
def test_step_reproduces_forward(backend, dtype, config):
    torch.manual_seed(1)
    m = Mamba(16, dtype=dtype, backend=backend, **config)
    x = torch.randn(2, 13, 16, dtype=dtype)
    with torch.no_grad():
        y = m(x)
        conv_state, ssm_state = m.allocate_inference_cache(2)
        assert conv_state.shape == (2, m.d_inner, m.d_conv)
        assert ssm_state.shape == (2, m.d_inner, m.d_state)
        steps = []
        for t in range(x.shape[1]):
            out, conv_state, ssm_state = m.step(x[:, t:t + 1], conv_state, ssm_state)
            steps.append(out)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (torch.cat(steps, 1) - y).abs().max() <= tol * max(1.0, y.abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_fusion_identity(backend):
    m = Mamba(16, d_state=4, backend=backend)
    x = torch.randn(2, 9, 16)
    assert torch.allclose(m(x, state_fusion=lambda h: h), m(x), atol=1e-6)
    shapes = []
    m(x, state_fusion=lambda h: shapes.append(h.shape) or h)
    assert shapes == [(2, m.d_inner, 9, 4)]


def test_cpu_never_imports_mamba_ssm(monkeypatch):
    monkeypatch.delitem(sys.modules, "mamba_ssm", raising=False)
    m = Mamba(16)
    m(torch.randn(1, 4, 16)).sum().backward()
    assert "mamba_ssm" not in sys.modules


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="d_model"):
        Mamba(0)
    with pytest.raises(ValueError, match="d_state"):
        Mamba(16, d_state=2.5)
    with pytest.raises(ValueError, match="dt_rank"):
        Mamba(16, dt_rank=0)
    with pytest.raises(ValueError, match="dt_min"):
        Mamba(16, dt_min=0.5, dt_max=0.1)
    with pytest.raises(ValueError, match="dt_init"):
        Mamba(16, dt_init="normal")
    m = Mamba(16, d_state=4)
    with pytest.raises(ValueError, match="hidden_states"):
        m(torch.randn(2, 5, 15))
    with pytest.raises(ValueError, match="hidden_states"):
        m(torch.randn(5, 16))
    conv_state, ssm_state = m.allocate_inference_cache(2)
    with pytest.raises(ValueError, match="hidden_states"):
        m.step(torch.randn(2, 2, 16), conv_state, ssm_state)
    with pytest.raises(ValueError, match="conv_state"):
        m.step(torch.randn(2, 1, 16), conv_state[:1], ssm_state)
    with pytest.raises(ValueError, match="ssm_state"):
        m.step(torch.randn(2, 1, 16), conv_state, ssm_state[..., :2])
