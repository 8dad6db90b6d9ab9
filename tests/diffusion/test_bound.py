import importlib.util
import math
import os

import pytest
import torch

from pyroseq.diffusion import DefensiveNoiseProposal, diffusion_nll_bound, edm_loss, prior_kl

_spec = importlib.util.spec_from_file_location(
    "exact", os.path.join(os.path.dirname(__file__), "exact.py"))
exact = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(exact)


@pytest.mark.parametrize("d", [1, 4])
def test_bound_on_exact_gaussian_denoiser(d):
    # The bound is an upper bound on -log p and tight for the exact denoiser.
    torch.manual_seed(0)
    n = 20000
    x = torch.randn(n, d, dtype=torch.float64)
    bound = diffusion_nll_bound(exact.gaussian_denoiser, x, 1, num_noise_draws=16)
    nll = 0.5 * x.pow(2).sum(-1) + 0.5 * d * math.log(2 * math.pi)
    gap = bound - nll
    se = gap.std() / math.sqrt(n)
    assert gap.mean() >= -3 * se
    assert gap.mean() <= 0.05 * d


def test_bound_is_not_below_nll_for_a_wrong_model():
    # The bound of a model N(0, 1) evaluated on N(0, 4) data still upper-bounds that model's NLL.
    torch.manual_seed(1)
    x = 2 * torch.randn(20000, 1, dtype=torch.float64)
    bound = diffusion_nll_bound(exact.gaussian_denoiser, x, 1, num_noise_draws=4)
    nll = 0.5 * x.pow(2).sum(-1) + 0.5 * math.log(2 * math.pi)
    gap = bound - nll
    assert gap.mean() >= -3 * gap.std() / math.sqrt(len(gap))


def test_bound_on_exact_mixture_denoiser():
    torch.manual_seed(2)
    locs, scale = [-2.0, 2.0], 0.3
    comp = torch.randint(0, 2, (20000,))
    x = (torch.tensor(locs, dtype=torch.float64)[comp] + scale * torch.randn(20000,
                                                                              dtype=torch.float64))
    x = x.unsqueeze(-1)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(2, dtype=torch.float64)),
        torch.distributions.Normal(torch.tensor(locs, dtype=torch.float64), scale))
    nll = -mix.log_prob(x.squeeze(-1))
    bound = diffusion_nll_bound(exact.mixture_denoiser(locs, scale), x, 1, sigma_data=2.0,
                                num_noise_draws=8)
    gap = bound - nll
    se = gap.std() / math.sqrt(len(gap))
    assert -3 * se <= gap.mean() <= 0.05


def test_bound_gradient_flows_to_denoiser():
    w = torch.tensor(0.5, requires_grad=True)

    def denoiser(x, sigma, context=None):
        return w * x / (1 + sigma.reshape(-1, 1) ** 2)

    diffusion_nll_bound(denoiser, torch.randn(16, 2), 1).mean().backward()
    assert w.grad is not None and torch.isfinite(w.grad)


@pytest.mark.parametrize("event_shape", [(3,), (4, 2)])
def test_bound_and_edm_loss_shapes(event_shape):
    x = torch.randn((5,) + event_shape)
    ed = len(event_shape)
    assert diffusion_nll_bound(exact.gaussian_denoiser, x, ed, num_noise_draws=3).shape == (5,)
    assert edm_loss(exact.gaussian_denoiser, x, ed).shape == (5,)
    assert prior_kl(x, ed, 80.0, 1.0).shape == (5,)


def test_context_is_tiled_per_noise_draw():
    seen = []

    def denoiser(x, sigma, context):
        seen.append(context.shape)
        assert torch.equal(context[:, 0], x.new_tensor(range(4)).repeat(len(x) // 4))
        return x

    ctx = torch.arange(4.0).reshape(4, 1)
    diffusion_nll_bound(denoiser, torch.randn(4, 2), 1, context=ctx, num_noise_draws=3)
    assert seen == [torch.Size([24, 1])]  # 3 draws x (diffusion + reconstruction) x 4


@pytest.mark.parametrize("kwargs,name", [
    (dict(sigma_min=0.0), "sigma_min"), (dict(sigma_max=-1.0), "sigma_max"),
    (dict(sigma_data=0.0), "sigma_data"), (dict(sigma_min=5.0, sigma_max=1.0), "sigma_min"),
    (dict(num_noise_draws=0), "num_noise_draws"),
])
def test_bad_settings_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        diffusion_nll_bound(exact.gaussian_denoiser, torch.randn(3, 1), 1, **kwargs)


def test_proposal_density_integrates_to_one_and_icdf_inverts_cdf():
    prop = DefensiveNoiseProposal(0.002, 80.0)
    u = torch.linspace(prop.a, prop.b, 200001, dtype=torch.float64)
    mass = torch.trapezoid(prop.log_prob(u).exp(), u)
    assert abs(mass.item() - 1) < 1e-6
    v = torch.rand(1000, dtype=torch.float64)
    assert torch.allclose(prop.cdf(prop.icdf(v)), v, atol=1e-9)


def test_stratified_proposal_draws_follow_the_proposal():
    prop = DefensiveNoiseProposal(0.002, 80.0)
    g = torch.Generator().manual_seed(0)
    u, log_r = prop.sample(50000, generator=g)
    assert torch.allclose(log_r, prop.log_prob(u))
    # Stratification: the empirical CDF is almost exact at every quantile.
    v = prop.cdf(u.sort().values)
    grid = (torch.arange(50000, dtype=torch.float64) + 0.5) / 50000
    assert (v - grid).abs().max() < 2e-4
