import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO

from pyroseq.diffusion import EDMPrecond
from pyroseq.distributions import DiffusionLikelihood
from pyroseq.nn import CSDIDenoiserNet


def _mixture(n):
    centres = torch.randint(0, 2, (n,)).float() * 4 - 2
    return (centres + 0.3 * torch.randn(n)).reshape(n, 1, 1)


def test_csdi_denoiser_learns_bimodal_mixture_through_svi():
    # Acceptance of the diffusion core: a small CSDI denoiser trained with SVI through
    # pyro.sample(..., DiffusionLikelihood(...), obs=x) on 0.5 N(-2, 0.3^2) + 0.5 N(2, 0.3^2)
    # puts 50% +- 5% of its samples on each mode, and its bound on held-out data is within 0.3 nats
    # of the exact NLL. (About 30 s of CPU on one thread.)
    pyro.set_rng_seed(0)
    net = CSDIDenoiserNet(1, channels=32, num_layers=2, time_mixer="identity", feature_mixer="identity")
    denoiser = EDMPrecond(net, sigma_data=2.0)

    def model(x):
        pyro.module("denoiser", denoiser)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", DiffusionLikelihood(denoiser, (1, 1), sigma_data=2.0, num_noise_draws=4), obs=x)

    svi = SVI(model, lambda x: None, pyro.optim.ClippedAdam({"lr": 3e-3, "lrd": 0.998}), Trace_ELBO())
    for _ in range(1500):
        svi.step(_mixture(256))

    held_out = _mixture(4000)
    truth = dist.MixtureSameFamily(dist.Categorical(torch.ones(2)), dist.Normal(torch.tensor([-2.0, 2.0]), 0.3))
    with torch.no_grad():
        lik = DiffusionLikelihood(denoiser, (1, 1), sigma_data=2.0, num_noise_draws=16)
        bound = -lik.log_prob(held_out).mean()
        samples = lik.sample((4000,)).reshape(-1)
    nll = -truth.log_prob(held_out.reshape(-1)).mean()
    assert bound >= nll - 0.05  # a bound, up to Monte Carlo noise
    assert bound <= nll + 0.3
    assert abs((samples > 0).float().mean().item() - 0.5) <= 0.05
    assert abs(samples.abs().mean().item() - 2.0) < 0.1
