import pytest
import torch

from pyroseq.models.masking import MASK_STRATEGIES, conditioning_mask, forecast_mask


@pytest.mark.parametrize("strategy", MASK_STRATEGIES)
@pytest.mark.parametrize("missing", [0.0, 0.3, 0.9])
def test_cond_and_target_partition_the_observed_entries(strategy, missing):
    g = torch.Generator().manual_seed(0)
    observed = torch.rand(200, 12, 3, generator=g) >= missing
    cond, target = conditioning_mask(observed, strategy, generator=g)
    assert not (cond & target).any()
    assert not ((cond | target) & ~observed).any()
    assert torch.equal(cond | target, observed)
    enough = observed.flatten(1).sum(1) >= 2
    assert cond.flatten(1)[enough].any(1).all()
    assert target.flatten(1)[enough].any(1).all()


def test_forecast_strategy_hides_the_last_steps():
    observed = torch.ones(50, 10, 2, dtype=torch.bool)
    cond, target = conditioning_mask(observed, "forecast", horizon=3, generator=torch.Generator().manual_seed(1))
    assert target[:, 7:].all() and not target[:, :7].any()
    assert torch.equal(cond, forecast_mask(50, 10, 2, 3))
    # without a horizon: random horizons in [1, L // 2]
    cond, target = conditioning_mask(observed, "forecast", generator=torch.Generator().manual_seed(2))
    h = target[:, :, 0].sum(1)
    assert h.min() >= 1 and h.max() <= 5 and len(h.unique()) > 2
    assert torch.equal(target[:, :, 0], target[:, :, 1])


def test_random_strategy_hides_a_uniform_fraction():
    observed = torch.ones(4000, 20, 5, dtype=torch.bool)
    _, target = conditioning_mask(observed, "random", generator=torch.Generator().manual_seed(0))
    frac = target.float().mean((1, 2))
    assert abs(frac.mean() - 0.5) < 0.02
    assert abs(frac.var() - 1 / 12) < 0.01


def test_mixed_strategy_uses_both():
    observed = torch.ones(400, 10, 3, dtype=torch.bool)
    _, target = conditioning_mask(observed, "mixed", horizon=2, generator=torch.Generator().manual_seed(0))
    forecast_like = (target[:, 8:].all((1, 2)) & ~target[:, :8].any((1, 2))).float().mean()
    assert 0.4 < forecast_like < 0.6


@pytest.mark.parametrize("kwargs,match", [
    (dict(strategy="magic"), "strategy"),
    (dict(horizon=10), "horizon"),
    (dict(horizon=0), "horizon"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        conditioning_mask(torch.ones(2, 10, 1, dtype=torch.bool), **kwargs)
    with pytest.raises(ValueError, match="observed"):
        conditioning_mask(torch.ones(2, 10))
    with pytest.raises(ValueError, match="horizon"):
        forecast_mask(2, 10, 1, 10)
