"""A user's local guide (per-series pyro.params, a plate subsampled from the data set) works with fit, forecast
and to_inference_data, which pass it the batch's positions."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyroseq.inference import fit, forecast, to_inference_data
from pyroseq.models import DKF

N, T = 10, 6


class LocalDKF(DKF):
    def guide(self, x, mask=None, covariates=None, *, index=None, num_series=None):
        self.register_params()
        loc = pyro.param("local_loc", lambda: torch.zeros(num_series, x.shape[1], self.latent_dim))
        scale = pyro.param("local_scale", lambda: torch.full((num_series, x.shape[1], self.latent_dim), 0.1),
                           constraint=dist.constraints.positive)
        with pyro.plate("series", num_series, subsample=index):
            z = pyro.sample("z", dist.Normal(loc[index], scale[index]).to_event(2))
            pyro.sample("z_init_aux", self.initial.aux_posterior(z[..., : self.order, :]))


@pytest.fixture
def trained(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(N, T, 2)
    model = LocalDKF(2, 2, rnn_dim=8, hidden_dim=8, transition_dim=8)
    before = pyro.param("local_loc", torch.zeros(N, T, 2)).detach().clone()
    pyro.clear_param_store()
    losses = fit(model, x, num_steps=20, batch_size=4, progress=False, checkpoint=tmp_path / "ckpt.pt")
    return model, x, losses, before


def test_fit_trains_the_local_parameters_on_minibatches(trained):
    model, x, losses, before = trained
    loc = pyro.param("local_loc")
    assert loc.shape == (N, T, 2) and not torch.equal(loc.detach(), before)
    assert all(torch.isfinite(torch.tensor(losses)))


def test_forecast_and_arviz_take_the_positions(trained):
    model, x, _, _ = trained
    fc = forecast(model, x[2:5], horizon=3, num_samples=4, index=torch.arange(2, 5), num_series=N)
    assert fc.shape == (4, 3, 3, 2)
    idata = to_inference_data(model, x[2:5], num_samples=3, index=torch.arange(2, 5), num_series=N)
    assert set(idata.posterior.data_vars) == {"z", "z_init_aux"}  # no plate index site
    assert not any(dim.endswith("_dim_0") for dim in idata.posterior.dims)
    assert idata.posterior["z"].shape == (1, 3, 3, T, 2)


def test_without_the_positions_the_error_names_the_requirement(trained):
    model, x, _, _ = trained
    with pytest.raises(ValueError, match="pass index=.*num_series="):
        forecast(model, x[:3], horizon=2, num_samples=2)
    with pytest.raises(ValueError, match="pass index=.*num_series="):
        to_inference_data(model, x[:3], num_samples=2)
    with pytest.raises(ValueError, match="index must be an integer tensor of shape"):
        forecast(model, x[:3], horizon=2, num_samples=2, index=torch.arange(4), num_series=N)


def test_local_parameters_are_checkpointed_and_resume_exactly(tmp_path):
    x = torch.randn(N, T, 2, generator=torch.Generator().manual_seed(1))

    def run(steps, checkpoint=None):
        pyro.clear_param_store()
        torch.manual_seed(0)
        model = LocalDKF(2, 2, rnn_dim=8, hidden_dim=8, transition_dim=8)
        losses = fit(model, x, num_steps=steps, batch_size=4, progress=False, checkpoint=checkpoint)
        return losses, pyro.param("local_loc").detach().clone()

    path = tmp_path / "ckpt.pt"
    run(5, path)
    resumed, resumed_loc = run(10, path)
    reference, reference_loc = run(10)
    assert resumed == reference and torch.equal(resumed_loc, reference_loc)
