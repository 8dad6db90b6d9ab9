import itertools
import math

import pyro.distributions as dist
import pytest
import torch

from pyroseq.data import (
    bimodal,
    bimodal_centred_density,
    bimodal_log_likelihood,
    bimodal_oracle_forecast,
    lgssm,
    lgssm_transition_matrix,
    nonlinear_ssm,
)
from pyroseq.metrics import jsd_histogram


@pytest.mark.parametrize("generator", [bimodal, lgssm, nonlinear_ssm])
@pytest.mark.parametrize("n,T", [(1, 1), (5, 7)])
def test_shapes_and_seeds(generator, n, T):
    x, z = generator(n, T, seed=3, return_latents=True)
    assert x.shape[:2] == (n, T) and z.shape[:2] == (n, T) and x.dtype == torch.float32
    assert torch.equal(generator(n, T, seed=3), x)
    if n * T > 1:
        assert not torch.equal(generator(n, T, seed=4), x)


@pytest.mark.parametrize("generator", [bimodal, lgssm, nonlinear_ssm])
@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_sizes(generator, bad):
    with pytest.raises(ValueError, match="num_series"):
        generator(bad, 4)
    with pytest.raises(ValueError, match="length"):
        generator(4, bad)


def test_bimodal_structure():
    x, z = bimodal(2000, 16, seed=0, return_latents=True, dtype=torch.float64)
    steps = z[:, 1:] - 0.9 * z[:, :-1]
    assert torch.allclose(steps.abs(), torch.full_like(steps, 4.0))
    assert abs((steps > 0).double().mean().item() - 0.5) < 0.01
    assert abs((x - z).std().item() - 0.2) < 0.005
    assert abs(z[:, 0].std().item() - 1.0) < 0.05


def test_bimodal_centred_density_matches_data():
    x = bimodal(4000, 12, seed=1, dtype=torch.float64)
    centred = x[:, 1:, 0] - 0.9 * x[:, :-1, 0]
    density = bimodal_centred_density()
    v = density.component_distribution.scale[0].item() ** 2
    assert math.isclose(v, 0.2**2 + 0.18**2, rel_tol=1e-12)
    assert jsd_histogram(centred, density, bins=100) < 0.005
    # A unimodal Gaussian with the same moments is far away.
    gauss = torch.randn(44000, dtype=torch.float64) * centred.std() + centred.mean()
    assert jsd_histogram(gauss, density, bins=100) > 0.3


def test_oracle_forecast():
    x, z = bimodal(500, 10, seed=2, return_latents=True)
    fc = bimodal_oracle_forecast(z[:, -1], horizon=3, num_samples=200, seed=0)
    assert fc.shape == (200, 500, 3, 1)
    centred = fc[:, :, 0, 0] - 0.9 * x[:, -1, 0]
    assert jsd_histogram(centred, bimodal_centred_density(), bins=100) < 0.01


def _brute_force_log_likelihood(x, phi=0.9, step=4.0, r=0.2):
    """Enumerate the sign paths: given them, x is Gaussian (a linear function of z_1 plus noise)."""
    T = x.shape[0]
    a = torch.tensor([phi**t for t in range(T)], dtype=torch.float64)
    cov = a[:, None] * a[None, :] + r**2 * torch.eye(T, dtype=torch.float64)
    terms = []
    for signs in itertools.product([-1.0, 1.0], repeat=T - 1):
        mean, z = [0.0], 0.0
        for s in signs:
            z = phi * z + step * s
            mean.append(z)
        lp = dist.MultivariateNormal(torch.tensor(mean, dtype=torch.float64), cov).log_prob(x)
        terms.append(lp + (T - 1) * math.log(0.5))
    return torch.stack(terms).logsumexp(0)


@pytest.mark.parametrize("T", [1, 2, 5])
def test_bimodal_log_likelihood_exact(T):
    x = bimodal(4, T, seed=T, dtype=torch.float64)
    # Perturb a series so that several sign paths matter.
    x[0, :, 0] = torch.linspace(-1, 1, T, dtype=torch.float64)
    ll = bimodal_log_likelihood(x, max_components=64)
    expected = torch.stack([_brute_force_log_likelihood(x[i, :, 0]) for i in range(4)])
    assert torch.allclose(ll, expected, atol=1e-9)
    # Pruning to a few components is harmless on data from the process.
    assert torch.allclose(bimodal_log_likelihood(x[1:], max_components=2), expected[1:], atol=1e-6)


def test_lgssm_structure():
    x, z = lgssm(3000, 20, seed=0, latent_dim=3, obs_dim=2, trans_scale=0.3, obs_scale=0.1,
                 return_latents=True, dtype=torch.float64)
    A = torch.as_tensor(lgssm_transition_matrix(3), dtype=torch.float64)
    resid = z[:, 1:] - z[:, :-1] @ A.T
    assert abs(resid.std().item() - 0.3) < 0.01
    assert torch.linalg.matrix_norm(A, ord=2).item() == pytest.approx(0.95, abs=1e-12)
    # x is a fixed linear map of z plus noise: least squares recovers the noise scale.
    Z, X = z.reshape(-1, 3), x.reshape(-1, 2)
    B = torch.linalg.lstsq(Z, X).solution
    assert abs((X - Z @ B).std().item() - 0.1) < 0.005


def test_nonlinear_ssm_structure():
    x, z = nonlinear_ssm(2000, 15, seed=0, return_latents=True, dtype=torch.float64)
    assert abs((x - z**2 / 20).std().item() - 0.5) < 0.02
    zp = z[:, :-1]
    resid = z[:, 1:] - (0.5 * zp + 25 * zp / (1 + zp**2))
    assert abs(resid.std().item() - 0.5) < 0.02
