import pytest
import torch

from pyroseq.diffusion import EDMPrecond
from pyroseq.distributions.context import map_context
from pyroseq.nn import Combiner, FutureSummary, GatedTransition, NoiseEmbedding, TransitionDenoiserNet


def test_future_summary_is_backward_and_ignores_masked_values():
    torch.manual_seed(0)
    enc = FutureSummary(obs_dim=2, hidden_dim=5)
    x = torch.randn(3, 6, 2)
    mask = torch.ones(3, 6, 2, dtype=torch.bool)
    h = enc(x, mask)
    assert h.shape == (3, 6, 5)
    # h_t depends on x_{t:T} only: changing x_1 changes h_1 but not h_2..T.
    x2 = x.clone()
    x2[:, 1] += 1.0
    h2 = enc(x2, mask)
    assert torch.allclose(h[:, 2:], h2[:, 2:]) and not torch.allclose(h[:, :2], h2[:, :2])
    mask[:, 1] = False
    x3 = x2.clone()
    x3[:, 1] = float("nan")
    assert torch.allclose(enc(x2, mask), enc(x3, mask))


def test_combiner_and_gated_transition_shapes():
    comb = Combiner(latent_dim=3, summary_dim=4, order=2, hidden_dim=8, min_scale=0.01)
    loc, scale = comb(torch.randn(5, 7, 2, 3), torch.randn(5, 7, 4))
    assert loc.shape == scale.shape == (5, 7, 3) and (scale >= 0.01).all()
    trans = GatedTransition(latent_dim=3, order=2, covariate_dim=1, hidden_dim=8)
    loc, scale = trans(torch.randn(5, 7, 2, 3), torch.randn(5, 7, 1))
    assert loc.shape == scale.shape == (5, 7, 3) and (scale > 0).all()


def test_gated_transition_starts_near_persistence():
    trans = GatedTransition(latent_dim=2, order=2)
    with torch.no_grad():
        for layer in (trans.gate[-1], trans.proposal[-1]):
            layer.weight.zero_()
            layer.bias.zero_()
        trans.gate[-1].bias.fill_(-50.0)  # closed gate: the linear (persistence) path only
    history = torch.randn(4, 2, 2)
    loc, _ = trans(history)
    assert torch.allclose(loc, history[:, -1], atol=1e-6)


@pytest.mark.parametrize("covariate_dim", [0, 2])
def test_transition_denoiser_net(covariate_dim):
    torch.manual_seed(0)
    net = TransitionDenoiserNet(latent_dim=3, order=2, covariate_dim=covariate_dim, hidden_dim=16, num_blocks=2)
    x = torch.randn(6, 3)
    history = torch.randn(6, 2, 3)
    context = (history, torch.randn(6, covariate_dim)) if covariate_dim else history
    out = net(x, torch.randn(6), context)
    assert out.shape == (6, 3)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output: D = c_skip x at the start
    den = EDMPrecond(net, sigma_data=1.0)
    sigma = torch.full((6,), 2.0)
    assert torch.allclose(den(x, sigma, context), x / 5)
    with torch.no_grad():
        net.out.weight.normal_()
        for block in net.blocks:
            block.fc2.weight.normal_()
    c_noise = torch.randn(6)
    out = net(x, c_noise, context)
    assert not torch.allclose(out, net(x, c_noise + 1.0, context))  # depends on the noise level
    assert not torch.allclose(out, net(x, c_noise, map_context(lambda c: c + 1.0, context)))
    with pytest.raises(ValueError, match="history"):
        net(x, torch.randn(6), None)


def test_noise_embedding():
    emb = NoiseEmbedding(8)
    assert emb(torch.randn(5)).shape == (5, 8)
