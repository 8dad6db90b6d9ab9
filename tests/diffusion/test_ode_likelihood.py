import importlib.util
import math
import os

import pytest
import torch

from pyroseq.diffusion import probability_flow_log_prob

_spec = importlib.util.spec_from_file_location(
    "exact", os.path.join(os.path.dirname(__file__), "exact.py"))
exact = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(exact)


@pytest.mark.parametrize("exact_trace", [True, False])
def test_ode_log_prob_matches_gaussian(exact_trace):
    torch.manual_seed(0)
    x = torch.randn(64, 3, dtype=torch.float64)
    lp = probability_flow_log_prob(exact.gaussian_denoiser, x, exact_trace=exact_trace,
                                   num_steps=64)
    truth = -0.5 * x.pow(2).sum(-1) - 1.5 * math.log(2 * math.pi)
    # Hutchinson is exact for a diagonal Jacobian with Rademacher probes.
    assert torch.allclose(lp, truth, atol=2e-3)


def test_ode_log_prob_matches_mixture():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64).unsqueeze(-1)
    lp = probability_flow_log_prob(exact.mixture_denoiser([-2.0, 2.0], 0.3), x, sigma_data=2.0,
                                   num_steps=128)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(2, dtype=torch.float64)),
        torch.distributions.Normal(torch.tensor([-2.0, 2.0], dtype=torch.float64), 0.3))
    assert torch.allclose(lp, mix.log_prob(x.squeeze(-1)), atol=0.02)
