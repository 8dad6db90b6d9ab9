import math

import pyro.distributions as dist
import pytest
import torch
from pyro.ops.stats import crps_empirical

from pyroseq.metrics import crps, energy_score, jsd_histogram, mmd


def test_crps_matches_pyro_and_ignores_missing():
    samples = torch.randn(50, 4, 3, 2)
    truth = torch.randn(4, 3, 2)
    assert torch.allclose(crps(samples, truth), crps_empirical(samples, truth).mean())
    truth_missing = truth.clone()
    truth_missing[0, 0, 0] = float("nan")
    elementwise = crps(samples, truth_missing, reduce=False)
    assert torch.isnan(elementwise[0, 0, 0]) and torch.isfinite(elementwise.flatten()[1:]).all()
    expected = crps_empirical(samples, truth).flatten()[1:].mean()
    assert torch.allclose(crps(samples, truth_missing), expected)


def test_crps_gaussian_closed_form():
    torch.manual_seed(0)
    samples = torch.randn(40000, 1, dtype=torch.float64)
    # CRPS(N(0, 1), 0) = 2 phi(0) - 1 / sqrt(pi)
    expected = 2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi)
    assert crps(samples, torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(expected, abs=5e-3)


def test_energy_score_univariate_is_crps():
    samples = torch.randn(64, 10, 1, 1, dtype=torch.float64)
    truth = torch.randn(10, 1, 1, dtype=torch.float64)
    assert torch.allclose(energy_score(samples, truth), crps(samples, truth))
    per_series = energy_score(torch.randn(30, 5, 4, 2), torch.randn(5, 4, 2), reduce=False)
    assert per_series.shape == (5,)


def test_energy_score_prefers_truth():
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    mvn = dist.MultivariateNormal(torch.zeros(2), cov)
    truth = mvn.sample((400,))
    good = energy_score(mvn.sample((200, 400)), truth)
    independent = energy_score(torch.randn(200, 400, 2), truth)
    assert good < independent


@pytest.mark.parametrize("fn", [crps, energy_score])
def test_score_shape_errors(fn):
    with pytest.raises(ValueError, match="samples must have shape"):
        fn(torch.randn(10, 3, 2), torch.randn(3, 1))
    with pytest.raises(ValueError, match="NaN"):
        fn(torch.full((10, 3, 2), float("nan")), torch.randn(3, 2))


def test_jsd_histogram_reference_values():
    torch.manual_seed(0)
    density = dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    same = jsd_histogram(torch.randn(200000), density, bins=50, range=(-5, 5))
    assert 0 <= same < 2e-4
    far = jsd_histogram(torch.randn(10000) + 50.0, density, bins=50, range=(-5, 5))
    assert far == pytest.approx(math.log(2), abs=1e-5)  # all mass in the overflow bin, none of q there


def test_jsd_histogram_log_prob_only_density():
    class LogProbOnly:
        def log_prob(self, value):
            return dist.Normal(0.0, 1.0).log_prob(value.float()).double()

        def cdf(self, value):
            raise NotImplementedError

    torch.manual_seed(0)
    value = jsd_histogram(torch.randn(100000), LogProbOnly(), bins=40, range=(-6, 6))
    assert value < 1e-3


def test_jsd_histogram_errors():
    density = dist.Normal(0.0, 1.0)
    with pytest.raises(ValueError, match="range"):
        jsd_histogram(torch.randn(10), density, range=(1, 1))
    with pytest.raises(ValueError, match="bins"):
        jsd_histogram(torch.randn(10), density, bins=0)


def test_mmd():
    torch.manual_seed(0)
    x, y = torch.randn(1000, 2), torch.randn(1000, 2)
    assert abs(mmd(x, y)) < 0.01
    assert mmd(x, y + 1.0) > 0.1
    assert abs(mmd(torch.randn(500), torch.randn(500), bandwidth=1.0)) < 0.02
    with pytest.raises(ValueError, match="shapes"):
        mmd(torch.randn(10, 2), torch.randn(10, 3))
