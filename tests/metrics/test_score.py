import math

import numpy as np
import pytest
import torch

from pyroseq.metrics import MetricResult, check_real_fake
from pyroseq.metrics.score import seeded


def test_metric_result_mean_ci():
    r = MetricResult([1.0, 2.0, 3.0, 4.0, 5.0], name="x")
    assert r.mean == pytest.approx(3.0)
    assert r.std == pytest.approx(math.sqrt(2.5))
    # t_{0.975, 4} = 2.7764451051977987
    assert r.ci == pytest.approx(2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5), rel=1e-12)
    assert r.repeats == 5
    np.testing.assert_array_equal(r.values, [1, 2, 3, 4, 5])
    assert float(r) == pytest.approx(3.0)
    assert "x" in repr(r) and "repeats=5" in repr(r)
    assert "\u00b1" in str(r)


def test_metric_result_single_repeat():
    r = MetricResult([0.25])
    assert r.mean == 0.25
    assert math.isnan(r.ci) and math.isnan(r.std)


def test_metric_result_empty():
    with pytest.raises(ValueError, match="at least one"):
        MetricResult([])


def _good(n=4, length=6, channels=3):
    return np.random.default_rng(0).uniform(size=(n, length, channels))


@pytest.mark.parametrize("real,fake,match", [
    (_good()[0], _good(), "real must have shape"),
    (_good(), _good()[None], "fake must have shape"),
    (_good(), _good(channels=2), "same \\(length, channels\\)"),
    (_good(), _good(length=5), "same \\(length, channels\\)"),
    (np.where(np.eye(6, 3)[None] > 0, np.nan, _good()), _good(), "real contains NaN"),
    (_good(), np.where(np.eye(6, 3)[None] > 0, np.inf, _good()), "fake contains NaN"),
    (_good() * 3, _good(), "real must be min-max scaled"),
    (_good(), _good() - 0.01, "fake must be min-max scaled"),
    (_good(n=1), _good(), "real must contain at least 2"),
    (_good().astype(bool), _good(), "real must hold real numbers"),
    (_good(), _good(length=0), "fake has an empty"),
])
def test_check_real_fake_errors(real, fake, match):
    with pytest.raises(ValueError, match=match):
        check_real_fake(real, fake)


def test_check_real_fake_tolerance_and_types():
    real = _good()
    real[0, 0, 0] = 1.0005  # within the 1e-3 tolerance: accepted and clipped
    real[0, 0, 1] = -0.0005
    fake = torch.tensor(_good(n=7), dtype=torch.float32)  # torch input, different N
    r, f = check_real_fake(real, fake)
    assert r.dtype == np.float64 and f.dtype == np.float64
    assert r.shape == (4, 6, 3) and f.shape == (7, 6, 3)
    assert r[0, 0, 0] == 1.0 and r[0, 0, 1] == 0.0
    np.testing.assert_allclose(f, fake.double().numpy())


def test_seeded_restores_global_state():
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    with seeded(5):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(2), expected)
    with seeded(5):
        assert torch.equal(torch.rand(3), inside)
