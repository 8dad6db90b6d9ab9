import pytest
import torch

from pyroseq.diffusion import EDMPrecond
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
