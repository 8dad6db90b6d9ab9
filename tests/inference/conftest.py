import pyro
import pytest

from pyroseq.data import bimodal
from pyroseq.models import DDSSM, DKF

TINY = dict(rnn_dim=8, hidden_dim=8)


def tiny_model(name, obs_dim=1, latent_dim=1, order=1, covariate_dim=0, seed=0):
    """Small models so that a few hundred steps take seconds."""
    pyro.set_rng_seed(seed)
    if name == "dkf":
        return DKF(obs_dim, latent_dim, order=order, covariate_dim=covariate_dim, transition_dim=8, **TINY)
    return DDSSM(obs_dim, latent_dim, order=order, covariate_dim=covariate_dim, denoiser_dim=8, denoiser_blocks=1,
                 num_steps=3, **TINY)


@pytest.fixture
def make_model():
    """The :func:`tiny_model` factory."""
    return tiny_model


@pytest.fixture
def series():
    return bimodal(32, 8, seed=0)
