import json
import math
from pathlib import Path

import pytest
import torch

from pyroseq.diffusion import EDMPrecond
from pyroseq.distributions import DiffusionLikelihood
from pyroseq.nn import (
    AdaLNBlock,
    BidirectionalMamba,
    CSDIDenoiserNet,
    DiMTSNet,
    LagFusionMamba,
    Mamba,
    MambaTimeMixer,
    make_time_mixer,
    time_mixer_names,
)

SMALL = dict(hidden_dim=8, d_state=2, num_decoder_layers=1)


def randomise(module, std=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


@pytest.mark.parametrize("obs_dim", [1, 3])
@pytest.mark.parametrize("length", [1, 7, 24])
@pytest.mark.parametrize("channel_branch", [True, False])
def test_shapes_and_zero_init(obs_dim, length, channel_branch):
    net = DiMTSNet(obs_dim, length, channel_branch=channel_branch, **SMALL)
    x, c = torch.randn(4, length, obs_dim), torch.randn(4)
    out = net(x, c)
    assert out.shape == (4, length, obs_dim)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised read-outs and adaLN modulations
    # so the preconditioned denoiser is c_skip * x at initialisation
    sigma = torch.full((4,), 0.7)
    denoised = EDMPrecond(net, sigma_data=0.5)(x, sigma)
    assert torch.allclose(denoised, x * 0.25 / (0.49 + 0.25))


def test_gradients_reach_every_parameter_once_trained_away_from_zero():
    torch.manual_seed(0)
    net = randomise(DiMTSNet(3, 10, num_encoder_layers=1, num_lags=2, **SMALL))
    net(torch.randn(5, 10, 3), torch.randn(5)).pow(2).sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_zero_init_gradient_reaches_readouts():
    net = DiMTSNet(2, 6, **SMALL)
    net(torch.randn(3, 6, 2), torch.randn(3)).sum().backward()
    assert net.temporal.readout.weight.grad.abs().sum() > 0
    assert net.channel.readout.weight.grad.abs().sum() > 0


def test_branches_sum():
    torch.manual_seed(1)
    net = randomise(DiMTSNet(3, 5, **SMALL))
    x, c = torch.randn(2, 5, 3), torch.randn(2)
    emb = net.noise_embedding(c)
    temporal = net.temporal(x, emb)
    channel = net.channel(x.transpose(1, 2), emb, net.channel_permutation).transpose(1, 2)
    assert torch.allclose(net(x, c), temporal + channel)


def test_temporal_decoder_uses_lag_fusion():
    net = DiMTSNet(2, 9, num_lags=3, **SMALL)
    mixer = net.temporal.decoder[0].mixer
    assert isinstance(mixer, BidirectionalMamba) and isinstance(mixer.forward_block, LagFusionMamba)
    assert mixer.forward_block.fusion.num_lags == 3
    assert isinstance(net.channel.decoder[0].mixer.forward_block, Mamba)  # channel scans have no grid
    assert not isinstance(DiMTSNet(2, 9, num_lags=0, **SMALL).temporal.decoder[0].mixer.forward_block,
                          LagFusionMamba)


def test_depends_on_noise_level():
    torch.manual_seed(2)
    net = randomise(DiMTSNet(2, 6, **SMALL))
    x = torch.randn(1, 6, 2).expand(2, 6, 2)
    out = net(x, torch.tensor([-1.0, 0.5]))
    assert not torch.allclose(out[0], out[1])


def test_adaln_block_starts_as_identity():
    block = AdaLNBlock(8, 4, MambaTimeMixer(8, d_state=2))
    h = torch.randn(2, 5, 8)
    assert torch.equal(block(h, torch.randn(2, 4)), h)


def test_bidirectional_mamba_is_reversal_equivariant_with_tied_directions():
    torch.manual_seed(3)
    for num_lags in (0, 2):
        bi = BidirectionalMamba(8, num_lags=num_lags, d_state=2).double()
        if num_lags:
            with torch.no_grad():
                bi.forward_block.fusion.weight.normal_()
        bi.backward_block.load_state_dict(bi.forward_block.state_dict())
        h = torch.randn(2, 9, 8, dtype=torch.float64)
        assert torch.allclose(bi(h.flip(1)), bi(h).flip(1), atol=1e-10)


def test_mamba_time_mixer_is_registered_for_csdi():
    assert "mamba" in time_mixer_names()
    mixer = make_time_mixer("mamba", 8, layer_index=1, d_state=2, num_lags=1)
    assert isinstance(mixer, MambaTimeMixer)
    h = torch.randn(3, 7, 8)
    assert mixer(h).shape == (3, 7, 8)
    causal = make_time_mixer("mamba", 8, bidirectional=False, d_state=2)
    h2 = h.clone()
    h2[:, -1] += 1.0
    assert torch.allclose(causal(h)[:, :-1], causal(h2)[:, :-1])  # forward-only Mamba is causal
    net = CSDIDenoiserNet(obs_dim=2, channels=8, num_layers=1, time_mixer="mamba", time_mixer_kwargs=dict(d_state=2))
    assert net(torch.randn(2, 6, 2), torch.randn(2)).shape == (2, 6, 2)


def test_bad_input():
    net = DiMTSNet(2, 6, **SMALL)
    with pytest.raises(ValueError, match="x_in"):
        net(torch.randn(3, 5, 2), torch.randn(3))
    with pytest.raises(ValueError, match="x_in"):
        net(torch.randn(3, 6, 3), torch.randn(3))
    with pytest.raises(ValueError, match="x_in"):
        net(torch.randn(6, 2), torch.randn(1))
    with pytest.raises(ValueError, match="c_noise"):
        net(torch.randn(3, 6, 2), torch.randn(2))
    with pytest.raises(ValueError, match="context"):
        net(torch.randn(3, 6, 2), torch.randn(3), context=torch.randn(3, 1))
    for kwargs, name in ((dict(obs_dim=0), "obs_dim"), (dict(length=-1), "length"), (dict(hidden_dim=0), "hidden_dim"),
                         (dict(num_lags=-1), "num_lags"), (dict(channel_order=[0, 0]), "permutation")):
        args = dict(obs_dim=2, length=6, **SMALL)
        args.update(kwargs)
        with pytest.raises(ValueError, match=name):
            DiMTSNet(**args)


# -- conditioning planes (cond_dim) ------------------------------------------------------------------------

# The generation benchmark's trained models: metadata committed under results/, weights in the ignored cache.
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TRAINED_META = BENCHMARKS / "results" / "generation" / "models"
TRAINED_WEIGHTS = BENCHMARKS / ".cache" / "generation" / "models"


def cond_net(obs_dim, length, cond_dim, channel_branch=True):
    torch.manual_seed(0)
    return DiMTSNet(obs_dim, length, channel_branch=channel_branch, cond_dim=cond_dim, **SMALL).double()


def randomise_readouts(net, seed=0):
    # The read-outs are zero-initialised, which would hide any dependence of F on its inputs.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for branch in (net.temporal, net.channel):
            if branch is not None:
                branch.readout.weight.copy_(torch.randn(branch.readout.weight.shape, generator=g) * 0.5)
    return net


@pytest.mark.parametrize("length,obs_dim", [(7, 1), (6, 3)])
@pytest.mark.parametrize("cond_dim", [0, 1, 2])
def test_cond_shapes_and_zero_init(cond_dim, length, obs_dim):
    net = cond_net(obs_dim, length, cond_dim)
    assert net.cond_dim == cond_dim
    assert net.context_shape() == ((length, cond_dim * obs_dim) if cond_dim else None)
    assert net.temporal.embed.in_features == obs_dim * (1 + cond_dim)
    assert net.channel.embed.in_features == length * (1 + cond_dim)
    x = torch.randn(4, length, obs_dim, dtype=torch.float64)
    c = torch.randn(4, dtype=torch.float64)
    cond = torch.randn(4, length, obs_dim, cond_dim, dtype=torch.float64) if cond_dim else None
    context = net.pack_context(cond)
    assert (context is None) == (cond_dim == 0)
    out = net(x, c, context)
    assert out.shape == (4, length, obs_dim)
    assert torch.equal(out, torch.zeros_like(out))  # read-outs stay zero-initialised
    assert EDMPrecond(net, sigma_data=0.5)(x, torch.full((4,), 0.3, dtype=torch.float64), context).shape == x.shape


@pytest.mark.parametrize("channel_branch", [True, False])
@pytest.mark.parametrize("length,obs_dim", [(7, 1), (6, 3)])
@pytest.mark.parametrize("cond_dim", [1, 2])
def test_output_depends_on_every_plane_and_on_x(cond_dim, length, obs_dim, channel_branch):
    net = randomise_readouts(cond_net(obs_dim, length, cond_dim, channel_branch))
    x = torch.randn(2, length, obs_dim, dtype=torch.float64)
    c = torch.randn(2, dtype=torch.float64)
    cond = torch.randn(2, length, obs_dim, cond_dim, dtype=torch.float64)
    base = net(x, c, net.pack_context(cond))
    assert base.abs().max() > 0
    for k in range(cond_dim):
        bumped = cond.clone()
        bumped[:, length // 2, obs_dim - 1, k] += 1.0
        assert not torch.allclose(net(x, c, net.pack_context(bumped)), base)
    assert not torch.allclose(net(x + 0.5, c, net.pack_context(cond)), base)


@pytest.mark.parametrize("length,obs_dim", [(5, 1), (4, 3)])
@pytest.mark.parametrize("cond_dim", [0, 1, 2])
def test_branch_tokens_layout(cond_dim, length, obs_dim):
    # Temporal token t = (x[t, :], plane 0 [t, :], plane 1 [t, :], ...);
    # channel token c = (x[:, c], plane 0 [:, c], plane 1 [:, c], ...).
    net = cond_net(obs_dim, length, cond_dim)
    seen = {}
    net.temporal.embed.register_forward_pre_hook(lambda m, args: seen.__setitem__("temporal", args[0]))
    net.channel.embed.register_forward_pre_hook(lambda m, args: seen.__setitem__("channel", args[0]))
    x = torch.randn(2, length, obs_dim, dtype=torch.float64)
    cond = torch.randn(2, length, obs_dim, cond_dim, dtype=torch.float64)
    net(x, torch.zeros(2, dtype=torch.float64), net.pack_context(cond) if cond_dim else None)
    for n in range(2):
        for t in range(length):
            expected = torch.cat([x[n, t]] + [cond[n, t, :, k] for k in range(cond_dim)])
            assert torch.equal(seen["temporal"][n, t], expected)
        for ch in range(obs_dim):
            expected = torch.cat([x[n, :, ch]] + [cond[n, :, ch, k] for k in range(cond_dim)])
            assert torch.equal(seen["channel"][n, ch], expected)


@pytest.mark.parametrize("length,obs_dim", [(7, 1), (6, 3)])
@pytest.mark.parametrize("cond_dim", [1, 2])
def test_pack_context_layout(cond_dim, length, obs_dim):
    net = cond_net(obs_dim, length, cond_dim)
    cond = torch.randn(3, length, obs_dim, cond_dim)
    context = net.pack_context(cond)
    assert context.shape == (3,) + net.context_shape()
    for k in range(cond_dim):
        assert torch.equal(context[..., k * obs_dim:(k + 1) * obs_dim], cond[..., k])
    # the same convention as the CSDI-style network
    csdi = CSDIDenoiserNet(obs_dim, channels=4, num_layers=1, cond_dim=cond_dim)
    assert torch.equal(context, csdi.pack_context(cond=cond))


@pytest.mark.parametrize("cond_dim", [1, 2])
def test_gradient_reaches_cond_weights(cond_dim):
    L, C = 6, 3
    net = randomise_readouts(cond_net(C, L, cond_dim))
    cond = torch.randn(2, L, C, cond_dim, dtype=torch.float64)
    out = net(torch.randn(2, L, C, dtype=torch.float64), torch.randn(2, dtype=torch.float64), net.pack_context(cond))
    out.pow(2).sum().backward()
    assert net.temporal.embed.weight.grad[:, C:].abs().sum() > 0  # columns reading the planes
    assert net.channel.embed.weight.grad[:, L:].abs().sum() > 0


def test_cond_bad_input():
    L, C = 6, 2
    x, c = torch.randn(3, L, C), torch.randn(3)
    net0 = DiMTSNet(C, L, **SMALL)
    net2 = DiMTSNet(C, L, cond_dim=2, **SMALL)
    with pytest.raises(ValueError, match="context"):
        net0(x, c, torch.randn(3, L, 2 * C))  # context given with cond_dim = 0
    with pytest.raises(ValueError, match="context is required"):
        net2(x, c)
    for bad in (torch.randn(3, L, C), torch.randn(2, L, 2 * C), torch.randn(3, L + 1, 2 * C),
                torch.randn(3, L, C, 2), [torch.randn(3, L, 2 * C)]):
        with pytest.raises(ValueError, match="context must have shape"):
            net2(x, c, bad)
    with pytest.raises(ValueError, match="cond must be None"):
        net0.pack_context(torch.randn(3, L, C, 1))
    with pytest.raises(ValueError, match="cond is required"):
        net2.pack_context()
    for bad in (torch.randn(3, L, 2 * C), torch.randn(3, L, C, 1), torch.randn(3, L, C + 1, 2),
                torch.randn(3, L - 1, C, 2), torch.randn(L, C, 2)):
        with pytest.raises(ValueError, match="cond must have shape"):
            net2.pack_context(bad)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="cond_dim"):
            DiMTSNet(C, L, cond_dim=bad, **SMALL)


def test_cond_dim_only_widens_the_embeddings():
    # Hard-coded table of the unconditional network (SMALL, C=3, L=10) before cond_dim existed.
    L, C, H = 10, 3, SMALL["hidden_dim"]
    shapes = {k: tuple(v.shape) for k, v in DiMTSNet(C, L, **SMALL).state_dict().items()}
    assert len(shapes) == 109 and sum(math.prod(s) for s in shapes.values()) == 7800
    assert shapes["temporal.embed.weight"] == (H, C) and shapes["channel.embed.weight"] == (H, L)
    for K in (1, 2):
        cond_shapes = {k: tuple(v.shape) for k, v in DiMTSNet(C, L, cond_dim=K, **SMALL).state_dict().items()}
        assert cond_shapes.keys() == shapes.keys()
        changed = {k for k in shapes if cond_shapes[k] != shapes[k]}
        assert changed == {"temporal.embed.weight", "channel.embed.weight"}
        assert cond_shapes["temporal.embed.weight"] == (H, C * (1 + K))
        assert cond_shapes["channel.embed.weight"] == (H, L * (1 + K))


def test_trained_weights_load_strictly():
    path = TRAINED_WEIGHTS / "sines.pt"
    if not path.exists():
        pytest.skip("trained DiM-TS weights not in the benchmark cache")
    meta = json.loads((TRAINED_META / "sines.json").read_text())
    state = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "denoiser.net."
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    L = state["temporal.positions.weight"].shape[0]
    C = state["channel.positions.weight"].shape[0]
    net = DiMTSNet(C, L, cond_dim=0, **meta["net"])
    net.load_state_dict(state, strict=True)
    with pytest.raises(RuntimeError):  # a conditional network has different embedding shapes
        DiMTSNet(C, L, cond_dim=1, **meta["net"]).load_state_dict(state, strict=True)


def test_conditional_likelihood_with_planes():
    L, C, K = 6, 2, 2
    net = randomise_readouts(cond_net(C, L, K))
    cond = torch.randn(3, L, C, K, dtype=torch.float64)
    likelihood = DiffusionLikelihood(EDMPrecond(net, sigma_data=0.5), event_shape=(L, C),
                                     context=net.pack_context(cond), sigma_data=0.5, num_noise_draws=2)
    assert likelihood.batch_shape == (3,)
    lp = likelihood.log_prob(torch.randn(3, L, C, dtype=torch.float64))
    assert lp.shape == (3,) and torch.isfinite(lp).all()
