import numpy as np
import pytest
import torch

from pyroseq.data import sines
from pyroseq.metrics import correlational_score, cross_correlations


@pytest.mark.parametrize("channels", [2, 3, 5])
def test_cross_correlations_match_pearson(channels):
    rng = np.random.default_rng(channels)
    mix = rng.normal(size=(channels, channels))
    x = rng.normal(size=(50, 8, channels)) @ mix
    expected = np.corrcoef(x.reshape(-1, channels), rowvar=False)[np.triu_indices(channels, 1)]
    np.testing.assert_allclose(cross_correlations(x), expected, atol=1e-12)


def test_cross_correlations_constant_channel_is_zero():
    x = np.random.default_rng(0).uniform(size=(10, 5, 3))
    x[..., 1] = 0.3
    c = cross_correlations(x)  # pairs (0,1), (0,2), (1,2)
    assert c[0] == 0 and c[2] == 0 and np.isfinite(c).all()


def test_correlational_identical_is_zero():
    real = sines(500, seed=0)
    score = correlational_score(real, real.clone(), repeats=5, seed=0)
    assert score.values.shape == (5,)
    assert score.mean < 1e-6


def test_correlational_exact_value():
    # Channel 1 equals channel 0 in real (correlation +1) and 1 - channel 0 in fake (-1):
    # one pair, |1 - (-1)| / 10 = 0.2 on every subset.
    base = np.random.default_rng(0).uniform(size=(40, 6, 1))
    real = np.concatenate([base, base], -1)
    fake = np.concatenate([base, 1 - base], -1)
    score = correlational_score(real, fake, repeats=3)
    np.testing.assert_allclose(score.values, 0.2, rtol=1e-12)


def test_correlational_seed_and_sizes():
    real, fake = sines(300, seed=0), sines(200, seed=1)
    a = correlational_score(real, fake, repeats=4, seed=3)
    b = correlational_score(real.numpy(), fake.numpy(), repeats=4, seed=3)
    c = correlational_score(real, fake, repeats=4, seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    # Independent sines: small but nonzero differences.
    assert 0 < a.mean < 0.3


def test_correlational_errors():
    with pytest.raises(ValueError, match="at least 2 channels"):
        correlational_score(torch.rand(10, 5, 1), torch.rand(10, 5, 1))
    with pytest.raises(ValueError, match="fake contains NaN"):
        correlational_score(torch.rand(10, 5, 2), torch.full((10, 5, 2), float("nan")))
    with pytest.raises(ValueError, match="subset_size"):
        correlational_score(torch.rand(10, 5, 2), torch.rand(10, 5, 2), subset_size=0)
