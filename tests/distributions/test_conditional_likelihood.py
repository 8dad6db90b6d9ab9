import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyroseq.diffusion import EDMPrecond, MaskedDenoiser, diffusion_nll_bound, edm_loss
from pyroseq.distributions import ConditionalDiffusionLikelihood
from pyroseq.nn import CSDIDenoiserNet

RHO = 0.8


def gaussian_denoiser(x, sigma, context=None):
    # Exact denoiser of N(0, I).
    return x / (1 + sigma.reshape((-1,) + (1,) * (x.dim() - 1)) ** 2)


def pair_denoiser(x, sigma, planes):
    """Exact denoiser of x1 | x0 for (x0, x1) ~ N(0, [[1, RHO], [RHO, 1]]), events of shape (2,), dim 0
    observed: reads x0 from the observation planes (M, 2, 2) of a "trained" MaskedDenoiser."""
    x0 = planes[:, 0, 0]
    mean, var = RHO * x0, 1 - RHO**2
    s2 = sigma**2
    x1 = mean + var / (var + s2) * (x[:, 1] - mean)
    return torch.stack([x[:, 0], x1], -1)


def pair_likelihood(x0, **kwargs):
    observed = torch.stack([x0, torch.full_like(x0, float("nan"))], -1)
    mask = torch.tensor([True, False]).expand(observed.shape)
    return ConditionalDiffusionLikelihood(pair_denoiser, observed, mask, event_shape=(2,),
                                          pack_context=lambda planes, ctx: planes, **kwargs)


@pytest.mark.parametrize("d,targets", [(1, 1), (4, 2), (4, 4)])
def test_masked_bound_is_tight_on_the_targets(d, targets):
    # Independent N(0, I): the bound over `targets` entries must match their exact NLL (the other entries
    # contribute nothing, even though the denoiser sees them noised).
    torch.manual_seed(0)
    x = torch.randn(20000, d, dtype=torch.float64)
    target = torch.zeros(d, dtype=torch.bool)
    target[:targets] = True
    target = target.expand(x.shape)
    nll = diffusion_nll_bound(gaussian_denoiser, x, 1, sigma_data=1.0, target_mask=target)
    exact = -dist.Normal(0.0, 1.0).log_prob(x[:, :targets]).sum(-1)
    gap = nll - exact
    se = gap.std() / math.sqrt(len(gap))
    assert -3 * se <= gap.mean() <= 0.05 * targets


def test_full_target_mask_equals_no_mask():
    x = torch.randn(50, 3, 2, dtype=torch.float64)
    a = diffusion_nll_bound(gaussian_denoiser, x, 2, generator=torch.Generator().manual_seed(1))
    b = diffusion_nll_bound(gaussian_denoiser, x, 2, generator=torch.Generator().manual_seed(1),
                            target_mask=torch.ones_like(x, dtype=torch.bool))
    assert torch.allclose(a, b)
    c = edm_loss(gaussian_denoiser, x, 2, generator=torch.Generator().manual_seed(2))
    e = edm_loss(gaussian_denoiser, x, 2, generator=torch.Generator().manual_seed(2),
                 target_mask=torch.ones_like(x, dtype=torch.bool))
    assert torch.allclose(c, e)


def test_edm_loss_ignores_non_targets():
    x = torch.randn(20, 4, dtype=torch.float64)
    target = torch.tensor([True, False, True, False]).expand(x.shape)

    def bad_on_non_targets(xn, sigma, context=None):
        out = gaussian_denoiser(xn, sigma)
        return torch.where(target, out, out + 100.0)

    g = torch.Generator().manual_seed(0)
    a = edm_loss(gaussian_denoiser, x, 1, generator=g, target_mask=target)
    g = torch.Generator().manual_seed(0)
    b = edm_loss(bad_on_non_targets, x, 1, generator=g, target_mask=target)
    assert torch.allclose(a, b)


def test_conditional_log_prob_matches_exact_conditional_density():
    torch.manual_seed(0)
    x0 = torch.randn(20000, dtype=torch.float64)
    x1 = RHO * x0 + math.sqrt(1 - RHO**2) * torch.randn_like(x0)
    lik = pair_likelihood(x0, sigma_data=1.0)
    value = torch.stack([torch.full_like(x0, float("nan")), x1], -1)  # observed entries of value are ignored
    exact = dist.Normal(RHO * x0, math.sqrt(1 - RHO**2)).log_prob(x1)
    gap = -lik.log_prob(value) + exact
    se = gap.std() / math.sqrt(len(gap))
    assert -3 * se <= gap.mean() <= 0.05


def test_conditional_samples_recover_the_conditional_distribution():
    torch.manual_seed(0)
    x0 = torch.tensor([-1.5, 0.0, 2.0], dtype=torch.float64)
    lik = pair_likelihood(x0, sigma_data=1.0, num_steps=20)
    s = lik.sample((4000,))
    assert s.shape == (4000, 3, 2)
    assert torch.equal(s[..., 0], x0.expand(4000, 3))
    assert torch.allclose(s[..., 1].mean(0), RHO * x0, atol=0.05)
    assert torch.allclose(s[..., 1].var(0), torch.full((3,), 1 - RHO**2, dtype=torch.float64), rtol=0.1)


def test_replacement_inpainting_of_independent_gaussian():
    torch.manual_seed(0)
    observed = torch.tensor([[0.5, float("nan"), -2.0, float("nan")]])
    mask = ~observed.isnan()
    lik = ConditionalDiffusionLikelihood(gaussian_denoiser, observed, mask, event_shape=(4,), method="replacement",
                                         num_steps=20)
    s = lik.sample((3000,))
    assert torch.equal(s[:, mask], observed[mask].expand(3000, 2))
    missing = s[:, ~mask]
    assert missing.mean(0).abs().max() < 0.08
    assert (missing.var(0) - 1).abs().max() < 0.1
    with pytest.raises(ValueError, match="trained"):
        lik.log_prob(torch.zeros(1, 4))


@pytest.mark.parametrize("missing", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("sample_shape", [(), (3,)])
def test_imputation_never_changes_observed_entries(missing, sample_shape):
    torch.manual_seed(0)
    net = CSDIDenoiserNet(3, channels=8, num_layers=1, cond_dim=2)
    torch.nn.init.normal_(net.output_proj.weight)  # a non-trivial network output everywhere
    x = torch.randn(5, 12, 3)
    mask = torch.rand(5, 12, 3) > missing
    mask[:, 0, 0] = True
    lik = ConditionalDiffusionLikelihood(EDMPrecond(net, 0.5), torch.where(mask, x, torch.nan), mask, num_steps=3)
    s = lik.sample(sample_shape)
    assert s.shape == sample_shape + (5, 12, 3)
    assert torch.equal(s[..., mask], x[mask].expand(sample_shape + (int(mask.sum()),)))
    assert torch.isfinite(s).all()
    lp = lik.log_prob(x)
    assert lp.shape == (5,) and torch.isfinite(lp).all()


def test_log_prob_gradient_reaches_the_network_and_ignores_observed_values():
    torch.manual_seed(0)
    net = CSDIDenoiserNet(2, channels=8, num_layers=1, cond_dim=2)
    x = torch.randn(4, 6, 2)
    mask = torch.rand(4, 6, 2) > 0.5
    mask[:, 0] = True
    lik = ConditionalDiffusionLikelihood(EDMPrecond(net, 0.5), x, mask)
    pyro.set_rng_seed(3)
    a = lik.log_prob(x)
    pyro.set_rng_seed(3)
    b = lik.log_prob(torch.where(mask, x + 10.0, x))
    assert torch.allclose(a, b)
    a.sum().backward()
    assert net.output_proj.weight.grad.abs().sum() > 0


def test_pyro_model_with_plate_and_validation():
    net = CSDIDenoiserNet(2, channels=8, num_layers=1, cond_dim=2)
    x = torch.randn(4, 6, 2)
    mask = torch.rand(4, 6, 2) > 0.5
    mask[:, 0] = True

    def model():
        with pyro.plate("windows", 4):
            pyro.sample("x", ConditionalDiffusionLikelihood(EDMPrecond(net, 0.5), x, mask), obs=x)

    tr = pyro.poutine.trace(model).get_trace()
    tr.compute_log_prob()
    assert tr.nodes["x"]["log_prob"].shape == (4,)


@pytest.mark.parametrize("bad,match", [
    (dict(mask=torch.zeros(2, 5, 2, dtype=torch.bool)), "no observed entry"),
    (dict(mask=torch.ones(2, 4, 2, dtype=torch.bool)), "does not match"),
    (dict(mask=torch.ones(3, 5, 2, dtype=torch.bool)), "does not match"),
    (dict(mask=torch.full((2, 5, 2), 0.5)), "boolean"),
    (dict(mask=[[True]]), "boolean tensor"),
    (dict(observed=torch.full((2, 5, 2), float("inf"))), "NaN or infinite"),
    (dict(method="magic"), "method"),
])
def test_bad_inputs_raise(bad, match):
    kwargs = dict(observed=torch.randn(2, 5, 2), mask=torch.ones(2, 5, 2, dtype=torch.bool))
    kwargs.update(bad)
    with pytest.raises(ValueError, match=match):
        ConditionalDiffusionLikelihood(gaussian_denoiser, **kwargs)


def test_masked_denoiser_rejects_missing_layout():
    with pytest.raises(ValueError, match="observed"):
        MaskedDenoiser(gaussian_denoiser)(torch.zeros(2, 3), torch.ones(2), None)
    with pytest.raises(ValueError, match="pack_context"):
        MaskedDenoiser(gaussian_denoiser)(torch.zeros(2, 3), torch.ones(2), dict(
            observed=torch.zeros(2, 3), mask=torch.ones(2, 3, dtype=torch.bool), context=torch.zeros(2, 1)))


def test_target_restricts_the_scored_entries():
    torch.manual_seed(0)
    x0 = torch.randn(3000, dtype=torch.float64)
    observed = torch.stack([x0, torch.zeros_like(x0), torch.zeros_like(x0)], -1)
    mask = torch.tensor([True, False, False]).expand(observed.shape)
    target = torch.tensor([False, True, False]).expand(observed.shape)
    full = ConditionalDiffusionLikelihood(gaussian_denoiser, observed, mask, event_shape=(3,),
                                          pack_context=lambda p, c: None, sigma_data=1.0)
    part = ConditionalDiffusionLikelihood(gaussian_denoiser, observed, mask, event_shape=(3,), target=target,
                                          pack_context=lambda p, c: None, sigma_data=1.0)
    value = torch.randn(3000, 3, dtype=torch.float64)
    # independent N(0, I): scoring one entry instead of two halves the expected NLL (minus the observed part)
    exact_one = -dist.Normal(0.0, 1.0).log_prob(value[:, 1])
    exact_two = exact_one - dist.Normal(0.0, 1.0).log_prob(value[:, 2])
    assert abs((-part.log_prob(value)).mean() - exact_one.mean()) < 0.05
    assert abs((-full.log_prob(value)).mean() - exact_two.mean()) < 0.1
    with pytest.raises(ValueError, match="target must not include"):
        ConditionalDiffusionLikelihood(gaussian_denoiser, observed, mask, event_shape=(3,), target=mask)


def test_fully_observed_events_skip_the_sampler():
    calls = []

    def den(x, sigma, context=None):
        calls.append(1)
        return torch.zeros_like(x)

    observed = torch.randn(3, 4, 2)
    d = ConditionalDiffusionLikelihood(den, observed, torch.ones(3, 4, 2, dtype=torch.bool), event_shape=(4, 2),
                                       method="replacement")
    out = d.sample((5,))
    assert out.shape == (5, 3, 4, 2) and torch.equal(out, observed.expand(5, 3, 4, 2)) and not calls
    partly = torch.ones(3, 4, 2, dtype=torch.bool)
    partly[0, -1] = False
    ConditionalDiffusionLikelihood(den, observed, partly, event_shape=(4, 2), method="replacement").sample()
    assert calls
