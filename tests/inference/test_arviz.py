
import matplotlib
import numpy as np
import pytest
import torch

from pyroseq.inference import to_inference_data

matplotlib.use("Agg")


@pytest.fixture
def idata(make_model, series):
    model = make_model("ddssm", latent_dim=2)
    model.initialize(series)
    return to_inference_data(model, series[:6, :5], num_samples=40, seed=0)


def test_groups_and_shapes(idata, series):
    assert {"posterior", "posterior_predictive", "observed_data", "log_likelihood"} <= set(idata.groups())
    assert idata.posterior["z"].dims == ("chain", "draw", "series", "time", "latent")
    assert idata.posterior["z"].shape == (1, 40, 6, 5, 2)
    assert idata.posterior["z_init_aux"].shape == (1, 40, 6, 1, 2)
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "series", "time", "channel")
    assert idata.posterior_predictive["x"].shape == (1, 40, 6, 5, 1)
    assert np.allclose(idata.observed_data["x"].values, series[:6, :5].double().numpy())
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "series")
    assert np.isfinite(idata.log_likelihood["x"].values).all()


def test_log_likelihood_matches_emission(make_model, series):
    model = make_model("dkf")
    model.initialize(series)
    x = series[:3, :4]
    idata = to_inference_data(model, x, num_samples=5, pointwise="element", seed=0)
    z = torch.as_tensor(idata.posterior["z"].values[0], dtype=torch.float32)  # (S, N, T, d)
    expected = model.observation_distribution(z).log_prob(x).detach().double().numpy()
    assert np.allclose(idata.log_likelihood["x"].values[0], expected, atol=1e-5)
    per_time = to_inference_data(model, x, num_samples=5, pointwise="time", seed=0)
    assert np.allclose(per_time.log_likelihood["x"].values[0], expected.sum(-1), atol=1e-5)


def test_missing_entries(make_model, series):
    model = make_model("dkf")
    model.initialize(series)
    x = series[:3, :4].clone()
    x[0, 1, 0] = float("nan")
    idata = to_inference_data(model, x, num_samples=4, pointwise="element")
    assert np.isnan(idata.observed_data["x"].values[0, 1, 0])
    assert (idata.log_likelihood["x"].values[..., 0, 1, 0] == 0).all()
    assert np.isfinite(idata.posterior_predictive["x"].values).all()


def test_plot_ppc_loo_and_netcdf(idata, arviz_checks):
    arviz_checks(idata, 6)


def test_bad_arguments(make_model, series):
    model = make_model("dkf")
    with pytest.raises(ValueError, match="pointwise"):
        to_inference_data(model, series, pointwise="draw")
    with pytest.raises(ValueError, match="num_samples"):
        to_inference_data(model, series, num_samples=0)
    with pytest.raises(ValueError, match="rank 3"):
        to_inference_data(model, series[0])
