import pytest
import torch

from pyroseq.inference import forecast


@pytest.mark.parametrize("name", ["dkf", "ddssm"])
@pytest.mark.parametrize("order,covariate_dim", [(1, 0), (2, 3)])
def test_forecast_shapes(name, order, covariate_dim, make_model):
    N, T, C, H, S = 3, 5, 2, 4, 7
    model = make_model(name, obs_dim=C, latent_dim=2, order=order, covariate_dim=covariate_dim)
    x = torch.randn(N, T, C)
    x[0, 1, 0] = float("nan")
    u = torch.randn(N, T + H, covariate_dim) if covariate_dim else None
    fc = forecast(model, x, horizon=H, num_samples=S, covariates=u, seed=0)
    assert fc.shape == (S, N, H, C) and torch.isfinite(fc).all()
    # Chunking over series does not change the shapes, and samples differ between draws.
    fc2 = forecast(model, x, horizon=H, num_samples=S, covariates=u, chunk_size=S)
    assert fc2.shape == (S, N, H, C) and not torch.allclose(fc2[0], fc2[1])
    both = forecast(model, x, horizon=H, num_samples=S, covariates=u, return_sites=("x_future", "z_future"))
    assert both["z_future"].shape == (S, N, H, 2)


def test_forecast_reproducible_with_seed(make_model):
    model = make_model("ddssm")
    x = torch.randn(2, 4, 1)
    assert torch.equal(forecast(model, x, 3, 5, seed=1), forecast(model, x, 3, 5, seed=1))


@pytest.mark.parametrize("bad,match", [
    (torch.randn(4, 3), "rank 3"),
    (torch.randn(2, 1, 1), "too short"),
    (torch.cat([torch.randn(1, 4, 1), torch.full((1, 4, 1), float("nan"))]), "no observed value"),
    (torch.randn(2, 4, 3), "channels"),
])
def test_forecast_bad_history(bad, match, make_model):
    model = make_model("dkf", order=2)
    with pytest.raises(ValueError, match=match):
        forecast(model, bad, horizon=2, num_samples=3)


@pytest.mark.parametrize("kwargs,match", [(dict(horizon=0), "horizon"), (dict(num_samples=0), "num_samples")])
def test_forecast_bad_arguments(kwargs, match, make_model):
    with pytest.raises(ValueError, match=match):
        forecast(make_model("dkf"), torch.randn(2, 4, 1), **{"horizon": 2, "num_samples": 3, **kwargs})


def test_forecast_needs_future_covariates(make_model):
    model = make_model("dkf", covariate_dim=1)
    with pytest.raises(ValueError, match="covariates must have shape"):
        forecast(model, torch.randn(2, 4, 1), horizon=3, num_samples=2, covariates=torch.randn(2, 4, 1))
