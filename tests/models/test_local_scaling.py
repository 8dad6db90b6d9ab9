"""Per-series standardisation (``local_scaling``) of the deep state-space models."""

import importlib.util
from pathlib import Path

import pyro
import pytest
import torch

from pyroseq.inference import forecast
from pyroseq.models import ConditionalDiffusion
from pyroseq.models.base import LOCAL_SCALE_FLOOR, series_standardization

pyro.enable_validation(True)

_spec = importlib.util.spec_from_file_location("ssm_factories", Path(__file__).with_name("ssm_factories.py"))
_factories = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_factories)
MODELS = _factories.MODELS


def make(name, local_scaling=6, covariate_dim=0):
    pyro.set_rng_seed(0)
    model = MODELS[name](obs_dim=2, latent_dim=3, covariate_dim=covariate_dim, local_scaling=local_scaling)
    model.x_loc.copy_(torch.tensor([1.0, -2.0]))
    model.x_scale.copy_(torch.tensor([2.0, 0.5]))
    return model.eval()


@pytest.mark.parametrize("shape", [(5, 2), (3, 7, 2)])
@pytest.mark.parametrize("steps", [2, 4, 10])
def test_series_standardization_matches_numpy_style_moments(shape, steps):
    torch.manual_seed(0)
    x = torch.randn(*shape[:-1], 6, shape[-1]) * 3 + 1
    mask = torch.rand(x.shape) > 0.3
    mask[..., :2, :] = True
    mean, std = series_standardization(x, mask, steps)
    assert mean.shape == std.shape == x.shape[:-2] + (1, x.shape[-1])
    flat_x, flat_m = x[..., :steps, :].reshape(-1, min(steps, 6), shape[-1]), mask[..., :steps, :]
    flat_m = flat_m.reshape(flat_x.shape)
    for i in range(flat_x.shape[0]):
        for c in range(shape[-1]):
            v = flat_x[i, :, c][flat_m[i, :, c]]
            expect_std = max(float(v.std()), LOCAL_SCALE_FLOOR)
            assert torch.allclose(mean.reshape(-1, shape[-1])[i, c], v.mean(), atol=1e-5)
            assert abs(float(std.reshape(-1, shape[-1])[i, c]) - expect_std) < 1e-5


def test_series_standardization_edge_cases():
    x = torch.tensor([[[1.0, 5.0, 7.0], [3.0, 5.0, 7.0]]])  # (1, 2, 3)
    mask = torch.tensor([[[True, True, False], [True, False, False]]])
    mean, std = series_standardization(x, mask, 2)
    assert mean.tolist() == [[[2.0, 5.0, 0.0]]]
    assert std[0, 0, 1] == LOCAL_SCALE_FLOOR  # one entry: the floor
    assert std[0, 0, 2] == 1.0  # no entry: unit scale
    assert torch.allclose(std[0, 0, 0], torch.tensor(2.0).sqrt())


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("covariate_dim", [0, 2])
def test_forecasts_follow_the_series_level_and_scale(name, covariate_dim):
    # With per-series standardisation the model sees the same standardised history, so a shifted and
    # stretched history gives the same forecast, shifted and stretched (equivariance).
    model = make(name, covariate_dim=covariate_dim)
    N, T, H = 3, 6, 2  # a latent-diffusion window of 8 = 6 + 2
    x = 4 * torch.randn(N, T, 2)  # spreads well above the floor, which would break the equivariance
    u = torch.randn(N, T + H, covariate_dim) if covariate_dim else None
    shift, stretch = torch.tensor([10.0, -3.0]), torch.tensor([3.0, 0.5])
    a = forecast(model, x, H, num_samples=4, covariates=u, seed=0)
    b = forecast(model, x * stretch + shift, H, num_samples=4, covariates=u, seed=0)
    assert a.shape == (4, N, H, 2)
    assert torch.allclose(b, a * stretch + shift, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(MODELS))
def test_global_scaling_is_not_equivariant(name):
    # The check above is not vacuous: without local scaling a shifted history changes the forecast's shape.
    model = make(name, local_scaling=None)
    x = torch.randn(3, 6, 2)
    a = forecast(model, x, 2, num_samples=4, seed=0)
    b = forecast(model, x + 10.0, 2, num_samples=4, seed=0)
    assert not torch.allclose(b, a + 10.0, atol=1e-3)


@pytest.mark.parametrize("name", list(MODELS))
def test_loss_uses_each_series_own_scale(name):
    # The density is in data units: stretching a series by a adds -log(a) per entry to log p, exactly,
    # when its standardised values are unchanged.
    model = make(name)
    x = 4 * torch.randn(2, 8, 2)
    guide_trace = pyro.poutine.trace(model.guide).get_trace(x)
    lp = pyro.poutine.trace(pyro.poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    a = 3.0
    guide_trace2 = pyro.poutine.trace(pyro.poutine.replay(model.guide, trace=guide_trace)).get_trace(
        x * a + 1.0)
    lp2 = pyro.poutine.trace(pyro.poutine.replay(model.model, trace=guide_trace2)).get_trace(x * a + 1.0)
    torch.manual_seed(1)  # the diffusion emission's bound draws noise: the same draws on both sides
    lx = lp.nodes["x"]["fn"].log_prob(lp.nodes["x"]["value"])
    torch.manual_seed(1)
    lx2 = lp2.nodes["x"]["fn"].log_prob(lp2.nodes["x"]["value"])
    assert torch.allclose(lx2, lx - x[0].numel() * torch.log(torch.tensor(a)), atol=1e-3)


@pytest.mark.parametrize("value", [1, 0, 2.5, "4"])
def test_bad_local_scaling_raises(value):
    with pytest.raises((ValueError, TypeError), match="local_scaling"):
        MODELS["dkf"](obs_dim=2, latent_dim=3, local_scaling=value)


def test_state_dict_of_a_model_without_local_scaling_loads():
    old = MODELS["dkf"](obs_dim=2, latent_dim=3)
    new = MODELS["dkf"](obs_dim=2, latent_dim=3, local_scaling=8)
    new.load_state_dict(old.state_dict())


@pytest.mark.parametrize("backbone,net", [("dimts", dict(hidden_dim=8, d_state=4)),
                                          ("stagediff", dict(d_model=8, num_heads=2, num_encoder_layers=1,
                                                             kernel_sizes=(3, 1), patch_size=2)),
                                          ("csdi", dict(channels=8, num_layers=1))])
def test_conditional_forecasts_follow_the_window_level_and_scale(backbone, net):
    pyro.set_rng_seed(0)
    stage = dict(stage_length=4) if backbone == "stagediff" else {}
    model = ConditionalDiffusion(2, 8, backbone=backbone, num_steps=3, local_scaling=True, **stage, **net).eval()
    model.scaler.loc.copy_(torch.tensor([1.0, -2.0]))
    model.scaler.scale.copy_(torch.tensor([2.0, 0.5]))
    x = 4 * torch.randn(3, 4, 2)
    shift, stretch = torch.tensor([10.0, -3.0]), torch.tensor([3.0, 0.5])
    a = forecast(model, x, 4, num_samples=2, seed=0)
    b = forecast(model, x * stretch + shift, 4, num_samples=2, seed=0)
    assert torch.allclose(b, a * stretch + shift, atol=1e-3, rtol=1e-3)
    model.local_scaling = False
    c = forecast(model, x * stretch + shift, 4, num_samples=2, seed=0)
    assert not torch.allclose(c, a * stretch + shift, atol=1e-2)


def test_conditional_training_reads_only_the_conditioning_entries():
    # The training site sees windows standardised by their conditioning entries: changing a target entry
    # leaves every other standardised entry as it was.
    pyro.set_rng_seed(0)
    model = ConditionalDiffusion(1, 8, backbone="csdi", channels=8, num_layers=1, local_scaling=True,
                                 mask_strategy="forecast", horizon=3)
    x = torch.randn(2, 8, 1)
    y = x.clone()
    y[:, -1] += 100.0
    za = pyro.poutine.trace(model.model).get_trace(x).nodes["x"]["value"]
    pyro.set_rng_seed(0)
    zb = pyro.poutine.trace(model.model).get_trace(y).nodes["x"]["value"]
    assert torch.allclose(za[:, :-1], zb[:, :-1])
    assert zb[:, -1].abs().min() > 10


@pytest.mark.parametrize("value", [1, "yes", None])
def test_conditional_bad_local_scaling_raises(value):
    with pytest.raises(ValueError, match="local_scaling"):
        ConditionalDiffusion(2, 8, backbone="csdi", local_scaling=value)
