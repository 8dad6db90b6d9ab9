import pyro.distributions as dist
import pytest
import torch

from pyroseq.distributions import DiffusionLikelihood, DiffusionTransition, ode_log_prob, ode_log_prob_settings


def gaussian_denoiser(x, sigma, context=None):
    # Exact denoiser of N(0, I) data (sigma_data = 1).
    return x / (1 + sigma.reshape((-1,) + (1,) * (x.dim() - 1)) ** 2)


@pytest.mark.parametrize("batch_shape,d", [((), 1), ((5,), 3), ((2, 3), 2)])
def test_ode_mode_gives_the_exact_density(batch_shape, d):
    torch.manual_seed(0)
    lik = DiffusionLikelihood(gaussian_denoiser, event_shape=(d,), batch_shape=batch_shape, sigma_data=1.0)
    x = torch.randn(batch_shape + (d,), dtype=torch.float64)
    exact = dist.Normal(0.0, 1.0).expand([d]).to_event(1).log_prob(x)
    with ode_log_prob(num_steps=64):
        first = lik.log_prob(x)
        second = lik.log_prob(x)
    assert first.shape == batch_shape
    assert torch.equal(first, second)  # deterministic, unlike the bound
    assert (first - exact).abs().max() < 2e-3
    bound = lik.log_prob(x)  # outside the context: back to minus the stochastic bound
    assert not torch.equal(bound, first)


def test_transition_ode_mode_scores_the_shifted_value():
    # The exact denoiser of N(0, 1) innovations around a persistence baseline: z_t | z_{t-1} ~ N(z_{t-1}, 1).
    torch.manual_seed(0)
    history = torch.randn(6, 1, 1, dtype=torch.float64)
    trans = DiffusionTransition(gaussian_denoiser, history, baseline="persistence", sigma_data=1.0)
    z = torch.randn(6, 1, dtype=torch.float64)
    with ode_log_prob(num_steps=64):
        lp = trans.log_prob(z)
    exact = dist.Normal(history[:, -1], 1.0).to_event(1).log_prob(z)
    assert (lp - exact).abs().max() < 2e-3


def test_context_nests_and_restores():
    assert ode_log_prob_settings() is None
    with ode_log_prob(num_steps=8):
        with ode_log_prob(num_steps=16, exact_trace=False):
            assert ode_log_prob_settings() == {"num_steps": 16, "exact_trace": False}
        assert ode_log_prob_settings()["num_steps"] == 8
    assert ode_log_prob_settings() is None


@pytest.mark.parametrize("bad", [0, -3, float("nan")])
def test_bad_num_steps(bad):
    with pytest.raises(ValueError, match="num_steps"):
        with ode_log_prob(num_steps=bad):
            pass
