import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyroseq.inference import iwae_bound


class ConjugateModel:
    """z ~ N(0, 1), x_t | z ~ N(z, 1) for t = 1..T; the guide is the exact posterior, so every
    importance weight equals p(x) and the IWAE bound is exact for any K."""

    training = False

    def eval(self):
        pass

    def model(self, x, mask=None, covariates=None):
        with pyro.plate("series", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z[:, None, None].expand(x.shape), 1.0).to_event(2), obs=x)

    def guide(self, x, mask=None, covariates=None):
        T = x.shape[1]
        with pyro.plate("series", x.shape[0]):
            pyro.sample("z", dist.Normal(x.sum((1, 2)) / (T + 1), (1.0 / (T + 1)) ** 0.5))


@pytest.mark.parametrize("K", [1, 5])
def test_iwae_exact_for_exact_posterior(K):
    x = torch.randn(6, 4, 1, dtype=torch.float64)
    T = x.shape[1]
    cov = torch.eye(T, dtype=torch.float64) + torch.ones(T, T, dtype=torch.float64)
    exact = dist.MultivariateNormal(torch.zeros(T, dtype=torch.float64), cov).log_prob(x[..., 0])
    bound = iwae_bound(ConjugateModel(), x, num_particles=K, chunk_size=7)
    assert bound.shape == (6,)
    assert torch.allclose(bound.double(), exact, atol=1e-4)


def test_iwae_increases_with_particles(make_model, series):
    model = make_model("dkf")
    model.initialize(series)
    elbo = iwae_bound(model, series, num_particles=1, seed=0).mean()
    iwae = iwae_bound(model, series, num_particles=64, seed=0).mean()
    assert iwae > elbo
    assert math.isfinite(iwae.item())


def test_iwae_ddssm_runs(make_model, series):
    bound = iwae_bound(make_model("ddssm"), series[:4], num_particles=3)
    assert bound.shape == (4,) and torch.isfinite(bound).all()


def test_iwae_bad_input(make_model):
    with pytest.raises(ValueError, match="num_particles"):
        iwae_bound(make_model("dkf"), torch.randn(2, 4, 1), num_particles=0)
    with pytest.raises(ValueError, match="rank 3"):
        iwae_bound(make_model("dkf"), torch.randn(2, 4), num_particles=2)


def test_iwae_ode_mode_is_deterministic_per_particle_draw(make_model, series):
    model = make_model("ddssm")
    a = iwae_bound(model, series[:3], num_particles=2, seed=0, diffusion_log_prob="ode", ode_steps=4)
    b = iwae_bound(model, series[:3], num_particles=2, seed=0, diffusion_log_prob="ode", ode_steps=4)
    assert a.shape == (3,) and torch.isfinite(a).all()
    assert torch.allclose(a, b)
    with pytest.raises(ValueError, match="diffusion_log_prob"):
        iwae_bound(model, series[:3], num_particles=2, diffusion_log_prob="exact")
