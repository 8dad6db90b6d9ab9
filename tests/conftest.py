import os

import pyro
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(int(os.environ.get("PYROSEQ_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _pyro_state():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def arviz_checks(tmp_path):
    """The ArviZ checks every model's InferenceData must pass: plot_ppc, a finite LOO over ``n`` series and an
    exact netCDF round trip."""

    def check(idata, n):
        import warnings

        import arviz as az
        import numpy as np

        assert az.plot_ppc(idata, num_pp_samples=5) is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loo = az.loo(idata)
        assert np.isfinite(loo.elpd_loo) and loo.n_data_points == n
        path = tmp_path / "idata.nc"
        idata.to_netcdf(str(path))
        back = az.from_netcdf(str(path))
        for group in ("posterior", "posterior_predictive", "observed_data", "log_likelihood"):
            assert back[group].equals(idata[group]), group

    return check
