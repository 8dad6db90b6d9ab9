import pyro
import pyro.distributions as dist
import pytest
import torch

from pyroseq.distributions import DiffusionLikelihood, DiffusionTransition, EvaluationDensity, with_density


def gaussian_denoiser(x, sigma, context=None):
    # Exact denoiser of N(0, I) data (sigma_data = 1).
    return x / (1 + sigma.reshape((-1,) + (1,) * (x.dim() - 1)) ** 2)


@pytest.mark.parametrize("batch_shape,d", [((), 1), ((5,), 3), ((2, 3), 2)])
def test_ode_mode_gives_the_exact_density(batch_shape, d):
    torch.manual_seed(0)
    lik = DiffusionLikelihood(gaussian_denoiser, event_shape=(d,), batch_shape=batch_shape, sigma_data=1.0)
    x = torch.randn(batch_shape + (d,), dtype=torch.float64)
    exact = dist.Normal(0.0, 1.0).expand([d]).to_event(1).log_prob(x)
    ode = lik.with_density("ode", num_steps=64)
    first = ode.log_prob(x)
    second = ode.log_prob(x)
    assert first.shape == batch_shape
    assert torch.equal(first, second)  # deterministic, unlike the bound
    assert (first - exact).abs().max() < 2e-3
    assert torch.equal(lik.ode_log_prob(x, num_steps=64), first)
    bound = lik.log_prob(x)  # the original distribution still returns minus the stochastic bound
    assert not torch.equal(bound, first)
    assert lik.density is None and ode.expand((4,) + batch_shape).density == ode.density


def test_transition_ode_mode_scores_the_shifted_value():
    # The exact denoiser of N(0, 1) innovations around a persistence baseline: z_t | z_{t-1} ~ N(z_{t-1}, 1).
    torch.manual_seed(0)
    history = torch.randn(6, 1, 1, dtype=torch.float64)
    trans = DiffusionTransition(gaussian_denoiser, history, baseline="persistence", sigma_data=1.0)
    z = torch.randn(6, 1, dtype=torch.float64)
    lp = with_density(trans, "ode", num_steps=64).log_prob(z)
    exact = dist.Normal(history[:, -1], 1.0).to_event(1).log_prob(z)
    assert (lp - exact).abs().max() < 2e-3


def test_handler_scores_the_sites_of_its_program_only():
    torch.manual_seed(0)
    lik = DiffusionLikelihood(gaussian_denoiser, event_shape=(2,), batch_shape=(5,), sigma_data=1.0)
    x = torch.randn(5, 2, dtype=torch.float64)

    def model():
        with pyro.plate("data", 5):
            pyro.sample("x", lik.to_event(0).mask(torch.ones(5, dtype=torch.bool)), obs=x)

    with EvaluationDensity("ode", num_steps=64):
        trace = pyro.poutine.trace(model).get_trace()
    exact = dist.Normal(0.0, 1.0).expand([2]).to_event(1).log_prob(x).sum()
    assert abs(trace.log_prob_sum() - exact) < 1e-2  # reached through the mask wrapper
    again = pyro.poutine.trace(model).get_trace()  # outside the handler: the bound
    assert again.nodes["x"]["fn"].base_dist.density is None


@pytest.mark.parametrize("bad", [0, -3, float("nan")])
def test_bad_num_steps(bad):
    with pytest.raises(ValueError, match="num_steps"):
        EvaluationDensity("ode", num_steps=bad)
    with pytest.raises(ValueError, match="num_steps"):
        with_density(DiffusionLikelihood(gaussian_denoiser, event_shape=(1,)), "ode", num_steps=bad)


def test_bad_density():
    with pytest.raises(ValueError, match="density"):
        EvaluationDensity("exact")
