import numpy as np
import pytest
import torch

from pyroseq.data import sines
from pyroseq.metrics import context_fid, frechet_distance


@pytest.fixture(autouse=True)
def _one_thread():
    # The networks are tiny: intra-op threads only add synchronisation cost, which becomes a
    # many-fold slowdown on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_frechet_distance_1d_closed_form(method):
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-0.5]), np.array([[9.0]]),
                             method=method)
    assert value == pytest.approx(1.5 ** 2 + 1.0, rel=1e-10)


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_frechet_distance_commuting_covariances(method):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    d1, d2 = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.2, 2.0, 1.5, 1.0])
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    assert frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1, method=method) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_methods_agree():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(80, 30)), rng.normal(size=(60, 30)) @ rng.normal(size=(30, 30))
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(*args) == pytest.approx(frechet_distance(*args, method="sqrtm"),
                                                    rel=1e-8)
    with pytest.raises(ValueError, match="method"):
        frechet_distance(*args, method="svd")


def test_frechet_distance_singular():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 10))  # rank-3 covariances in 10 dimensions
    b = rng.normal(size=(3, 10))
    values = [frechet_distance(np.zeros(10), a.T @ a, np.zeros(10), b.T @ b, method=m)
              for m in ("eigh", "sqrtm")]
    assert np.isfinite(values).all() and min(values) > 0
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def test_context_fid_separates_noise_from_real():
    # Short TS2Vec training on few windows still gives a ratio of about 500.
    real, heldout = sines(256, seed=0), sines(256, seed=1)
    noise = torch.rand(256, 24, 5, generator=torch.Generator().manual_seed(0))
    good = context_fid(real, heldout, repeats=1, iterations=20)
    bad = context_fid(real, noise, repeats=1, iterations=20)
    assert good.mean * 100 < bad.mean, (good, bad)


def test_context_fid_reproducible():
    real, fake = sines(40, length=8, seed=0), sines(30, length=8, seed=1)
    kwargs = dict(repeats=2, iterations=3, hidden_dim=8, output_dim=6, depth=2)
    a = context_fid(real, fake, seed=5, **kwargs)
    b = context_fid(real.numpy(), fake.numpy(), seed=5, **kwargs)
    c = context_fid(real, fake, seed=6, **kwargs)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert a.values.shape == (2,) and (a.values >= 0).all()


def test_context_fid_errors():
    with pytest.raises(ValueError, match="length >= 2"):
        context_fid(torch.rand(10, 1, 2), torch.rand(10, 1, 2), iterations=1)
    with pytest.raises(ValueError, match="real must be min-max scaled"):
        context_fid(torch.rand(10, 5, 2) + 1, torch.rand(10, 5, 2), iterations=1)


@pytest.mark.slow
def test_context_fid_protocol():
    real, heldout = sines(2000, seed=0), sines(2000, seed=1)
    noise = torch.rand(2000, 24, 5, generator=torch.Generator().manual_seed(0))
    good = context_fid(real, heldout)  # 600 iterations, batch 8, 5 repeats
    bad = context_fid(real, noise, repeats=1)
    assert good.mean * 100 < bad.mean, (good, bad)
    assert good.mean < 0.05
