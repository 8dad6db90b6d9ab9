"""Seasonal lags (``seasonal_lag``) as inputs of the deep state-space models' transition."""

import importlib.util
from pathlib import Path

import pyro
import pytest
import torch
from pyro import poutine

from pyroseq.inference import forecast
from pyroseq.models import DKF
from pyroseq.models.base import seasonal_inputs

pyro.enable_validation(True)

_spec = importlib.util.spec_from_file_location("ssm_factories", Path(__file__).with_name("ssm_factories.py"))
_factories = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_factories)
MODELS = _factories.MODELS


def make(name, lag=3, covariate_dim=0, **kw):
    pyro.set_rng_seed(0)
    return MODELS[name](obs_dim=2, latent_dim=3, covariate_dim=covariate_dim, seasonal_lag=lag, **kw).eval()


@pytest.mark.parametrize("length", [4, 6, 9])
@pytest.mark.parametrize("lag", [1, 2, 5])
def test_seasonal_inputs_places_the_values_one_season_later(lag, length):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3)
    mask = torch.rand(2, 6, 3) > 0.3
    out = seasonal_inputs(x.masked_fill(~mask, float("nan")), mask, lag, length)
    assert out.shape == (2, length, 6)
    for t in range(length):
        if 0 <= t - lag < 6:
            expect = torch.where(mask[:, t - lag], x[:, t - lag], torch.zeros(()))
            assert torch.equal(out[:, t, :3], expect)
            assert torch.equal(out[:, t, 3:], mask[:, t - lag].float())
        else:  # before the data (or beyond it): unknown
            assert not out[:, t].any()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("covariate_dim", [0, 2])
@pytest.mark.parametrize("lag", [3, (5, 3)])
def test_transition_reads_exactly_the_lagged_observations(name, covariate_dim, lag):
    """The density of the latent path depends on x only through the lags: changing a value one season before
    some step changes it; changing one of the last (shortest) ``lag`` steps (no step of the window reads it) does
    not."""
    T = 8
    model = make(name, lag, covariate_dim)
    assert model.transition_input_dim == covariate_dim + 2 * 2 * (1 if lag == 3 else 2)
    with torch.no_grad():  # some output layers start at zero, blind to their inputs
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    torch.manual_seed(1)
    x = torch.randn(4, T, 2)
    u = torch.randn(4, T, covariate_dim) if covariate_dim else None
    guide = poutine.trace(model.guide).get_trace(x, None, u)

    def z_log_prob(x):
        pyro.set_rng_seed(5)  # DDSSM's bound draws noise
        tr = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(x, None, u)
        tr.compute_log_prob()
        return tr.nodes["z"]["log_prob"]

    base = z_log_prob(x)
    early, late = x.clone(), x.clone()
    early[:, 1] += 1.0  # the lag of step 4
    late[:, T - 3:] += 1.0  # nobody's lag inside the window
    assert not torch.allclose(z_log_prob(early), base)
    assert torch.equal(z_log_prob(late), base)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("lags", [4, (4, 6)])
def test_forecast_shapes_and_horizon_limit(name, lags):
    lag = 4
    model = make(name, lags)
    x = torch.randn(3, 8 - lag, 2)
    samples = forecast(model, x, lag, num_samples=5, seed=0)
    assert samples.shape == (5, 3, lag, 2)
    assert torch.isfinite(samples).all()
    with pytest.raises(ValueError, match="at most"):
        forecast(model, x, lag + 1, num_samples=2)


@pytest.mark.parametrize("name", ["dkf", "ddssm"])
@pytest.mark.parametrize("length", [3, 7, 12])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_generate_season_by_season(name, length, dtype):
    model = make(name, 3).to(dtype)
    x, z = model.generate(4, length, seed=0, return_latents=True)
    assert x.shape == (4, length, 2) and z.shape == (4, length, 3)
    assert x.dtype == z.dtype == dtype
    assert torch.equal(model.generate(4, length, seed=0), x)


@pytest.mark.parametrize("lags", [(3,), (3, 5)])
def test_generate_seasons_read_the_previous_season(lags):
    """Each step's transition reads the observations generated one season before it (standardised); those of the
    first season read none."""
    length = 11
    model = make("dkf", lags)
    seen = []
    step = model.transition_distribution

    def spy(history, covariates=None, sampling=False):
        seen.append(covariates.clone())
        return step(history, covariates, sampling)

    model.transition_distribution = spy
    x = model.generate(2, length, seed=0)
    std = (x - model.x_loc) / model.x_scale
    inputs = torch.cat(seen, -2) if seen[0].dim() == 3 else torch.stack(seen, -2)
    assert inputs.shape[-2] == length - model.order  # one transition per step after the initial prior's
    steps = range(model.order, length)
    for i, t in enumerate(steps):
        for k, lag in enumerate(lags):
            values, masks = inputs[:, i, 4 * k: 4 * k + 2], inputs[:, i, 4 * k + 2: 4 * k + 4]
            if t < lag:
                assert not values.any() and not masks.any()
            else:
                assert torch.allclose(values, std[:, t - lag], atol=1e-6)
                assert torch.equal(masks, torch.ones(2, 2))


def test_latent_diffusion_generate_refuses_seasonal_lag():
    with pytest.raises(ValueError, match="seasonal_lag"):
        make("latent_diffusion", 3).generate(2)


@pytest.mark.parametrize("lag, order, match", [(0, 1, "seasonal_lag"), (2.5, 1, "seasonal_lag"), ((), 1, "sequence"),
                                               ((3, 0), 1, "seasonal_lag"), (1, 2, "order"), ((4, 1), 2, "order")])
def test_bad_seasonal_lag(lag, order, match):
    with pytest.raises(ValueError, match=match):
        DKF(2, 3, order=order, seasonal_lag=lag)
