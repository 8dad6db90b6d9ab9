import math

import matplotlib
import numpy as np
import pyro
import pytest
import torch

from pyroseq.inference import fit, forecast, to_inference_data
from pyroseq.models import BACKBONES, LatentDiffusionSSM

matplotlib.use("Agg")

SMALL = {
    "csdi": dict(channels=16, num_layers=1),
    "dimts": dict(hidden_dim=16, d_state=4),
    "stagediff": dict(d_model=16, num_heads=2, num_encoder_layers=1, kernel_sizes=(3, 1), patch_size=2),
}


def make(backbone, length=8, **kwargs):
    return LatentDiffusionSSM(2, 3, length, backbone=backbone, stage_length=4, emission_num_steps=3, num_steps=3,
                              emission_net_kwargs=SMALL[backbone], rnn_dim=8, hidden_dim=8, denoiser_dim=16, **kwargs)


def series(n, length=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, length, 1, generator=g).cumsum(1)
    return torch.cat([a, 2 * a + 0.1 * torch.randn(n, length, 1, generator=g)], -1)


@pytest.fixture(params=BACKBONES)
def trained(request):
    model = make(request.param)
    fit(model, series(24), num_steps=4, batch_size=8, progress=False)
    return model


def test_trains_under_validation_and_lowers_the_loss():
    assert pyro.infer.util.is_validation_enabled()
    pyro.set_rng_seed(0)
    model = make("csdi")
    losses = fit(model, series(64), num_steps=60, batch_size=32, lr=3e-3, progress=False)
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_forecast_shapes(trained):
    fc = forecast(trained, series(3, seed=1), horizon=3, num_samples=4)
    assert fc.shape == (4, 3, 3, 2) and torch.isfinite(fc).all()
    with_latents = forecast(trained, series(3, seed=1), horizon=3, num_samples=2,
                            return_sites=("x_future", "z_future"))
    assert with_latents["z_future"].shape == (2, 3, 3, 3)


def test_inference_data_passes_the_arviz_checks(trained, arviz_checks):
    x = series(6, seed=2)
    idata = to_inference_data(trained, x, num_samples=10, seed=0)
    assert {"posterior", "posterior_predictive", "observed_data", "log_likelihood"} <= set(idata.groups())
    assert idata.posterior["z"].dims == ("chain", "draw", "series", "time", "latent")
    assert idata.posterior["z"].shape == (1, 10, 6, 8, 3)
    assert idata.posterior_predictive["x"].shape == (1, 10, 6, 8, 2)
    assert np.isfinite(idata.posterior_predictive["x"].values).all()
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "series")
    assert np.isfinite(idata.log_likelihood["x"].values).all()
    arviz_checks(idata, 6)
    with pytest.raises(ValueError, match="series"):
        to_inference_data(trained, x, num_samples=2, pointwise="time")


def test_generate(trained):
    x, z = trained.generate(3, return_latents=True)
    assert x.shape == (3, 8, 2) and z.shape == (3, 8, 3) and torch.isfinite(x).all()


def test_emission_log_prob_includes_the_jacobian():
    model = make("csdi")
    model.initialize(series(16))
    model.x_scale.fill_(2.0)
    x = series(4)
    z = torch.randn(4, 8, 3)
    pyro.set_rng_seed(1)
    a = model.emission_distribution(z).log_prob(x)
    model.x_scale.fill_(4.0)
    pyro.set_rng_seed(1)
    # doubling the scale and the data's distance from the location leaves the standardised window unchanged
    b = model.emission_distribution(z).log_prob(model.x_loc + 2 * (x - model.x_loc))
    assert torch.allclose(a - b, torch.full((4,), 16 * math.log(2.0)), atol=1e-3)


def test_missing_entries_are_not_scored():
    model = make("dimts")
    model.initialize(series(16))
    x = series(2)
    z = torch.randn(2, 8, 3)
    observed = torch.ones(2, 8, 2, dtype=torch.bool)
    observed[:, 3] = False
    pyro.set_rng_seed(0)
    a = model.emission_distribution(z, observed).log_prob(x)
    y = x.clone()
    y[:, 3] = 1e3
    pyro.set_rng_seed(0)
    b = model.emission_distribution(z, observed).log_prob(y)
    # the missing step still enters the denoiser's input as a zero, so only the scored terms must agree
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert torch.allclose(a, b)


@pytest.mark.parametrize("kwargs,match", [(dict(backbone="rnn"), "backbone"), (dict(length=1), "length")])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatentDiffusionSSM(2, 3, **{"length": 8, **kwargs})


def test_bad_inputs_raise():
    model = make("dimts")
    with pytest.raises(ValueError, match="DiM-TS window length"):
        fit(model, series(4, length=6), num_steps=1, progress=False)
    with pytest.raises(ValueError, match="too short"):
        forecast(model, series(2, length=3), horizon=2, num_samples=2)
    with pytest.raises(ValueError, match="horizon"):
        forecast(model, series(2), horizon=8, num_samples=2)
