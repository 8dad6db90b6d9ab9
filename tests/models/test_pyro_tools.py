"""Every built-in model is a genuine Pyro model/guide pair: a grid of models x Pyro's own tools (SVI with
pyro.optim, Predictive serial and parallel, vectorised particles, JitTrace_ELBO, AutoNormal)."""

import pyro
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyroseq.models import DDSSM, DKF, ConditionalDiffusion, DiMTS, LatentDiffusionSSM, StageDiff

N, T, C = 4, 16, 2
DIMTS = dict(hidden_dim=8, d_state=2, num_decoder_layers=1)
STAGEDIFF = dict(d_model=16, num_heads=2, num_encoder_layers=1, kernel_sizes=(3, 1), patch_size=2)
CSDI = dict(channels=16, num_layers=1)
SSM = dict(rnn_dim=8, hidden_dim=8)
FEW_STEPS = dict(num_steps=3)


def make(name):
    """A tiny instance of every built-in model, with data it accepts ``(N, T, C)``."""
    x = torch.randn(N, T, C)
    if name == "dkf":
        return DKF(C, 2, transition_dim=8, **SSM), x
    if name == "ddssm":
        return DDSSM(C, 2, denoiser_dim=16, denoiser_blocks=1, **SSM, **FEW_STEPS), x
    if name == "ddssm_seasonal":
        return DDSSM(C, 2, denoiser_dim=16, denoiser_blocks=1, seasonal_lag=4, local_scaling=8, **SSM,
                     **FEW_STEPS), x
    if name == "latent_diffusion":
        return LatentDiffusionSSM(C, 2, T, backbone="csdi", denoiser_dim=16, emission_num_steps=3,
                                  emission_net_kwargs=CSDI, **SSM, **FEW_STEPS), x
    if name == "latent_diffusion_dimts":
        return LatentDiffusionSSM(C, 2, T, backbone="dimts", denoiser_dim=16, emission_num_steps=3,
                                  emission_net_kwargs=DIMTS, **SSM, **FEW_STEPS), x
    if name == "dimts":
        return DiMTS(C, T, **DIMTS, **FEW_STEPS), 0.9 * x.tanh()
    if name == "stagediff":
        return StageDiff(C, stage_length=8, **STAGEDIFF, **FEW_STEPS), 0.9 * x.tanh()
    if name == "conditional":
        return ConditionalDiffusion(C, T, backbone="csdi", **CSDI, **FEW_STEPS), x
    if name == "conditional_stagediff":
        return ConditionalDiffusion(C, T, backbone="stagediff", stage_length=8, **STAGEDIFF, **FEW_STEPS), x
    raise ValueError(name)


MODELS = ["dkf", "ddssm", "ddssm_seasonal", "latent_diffusion", "latent_diffusion_dimts", "dimts", "stagediff",
          "conditional", "conditional_stagediff"]
STATE_SPACE = ["dkf", "ddssm", "ddssm_seasonal", "latent_diffusion", "latent_diffusion_dimts"]


def average_loss(model, x, particles=16):
    """The ELBO loss averaged over many particles, with the same noise before and after training."""
    with pyro.poutine.seed(rng_seed=123), torch.no_grad():
        return Trace_ELBO(num_particles=particles).loss(model.model, model.guide, x)


def trainable(model):
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("optim", ["adam", "clipped_adam"])
@pytest.mark.parametrize("name", MODELS)
def test_plain_svi_trains_every_parameter(name, optim):
    model, x = make(name)
    before = trainable(model)
    optimizer = (pyro.optim.Adam({"lr": 1e-2}) if optim == "adam"
                 else pyro.optim.ClippedAdam({"lr": 1e-2, "clip_norm": 10.0}))
    svi = SVI(model.model, model.guide, optimizer, Trace_ELBO())
    initial = average_loss(model, x)
    for _ in range(12):
        svi.step(x)
    after = dict(model.named_parameters())
    moved = sum(not torch.equal(before[k], after[k]) for k in before)
    assert moved >= 0.9 * len(before), f"{moved} of {len(before)} parameters moved"
    # Every trainable parameter is in the param store (registered by model() and guide()).
    assert len(pyro.get_param_store()) == len(before)
    assert average_loss(model, x) < initial


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("name", MODELS)
def test_predictive_replicates_have_the_data_shape(name, parallel):
    model, x = make(name)
    model.eval()
    S = 2
    posterior = Predictive(poutine.uncondition(model.model), guide=model.guide, num_samples=S,
                           parallel=parallel, return_sites=["x"])(x)
    prior = Predictive(poutine.uncondition(model.model), num_samples=S, parallel=parallel, return_sites=["x"])(x)
    for replicates in (posterior["x"], prior["x"]):
        assert replicates.shape == (S, N, T, C)
        assert torch.isfinite(replicates).all()
        assert not torch.allclose(replicates, x.expand_as(replicates))  # replicates, not the data


@pytest.mark.parametrize("name", MODELS)
def test_vectorised_particles(name):
    model, x = make(name)
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model.model, model.guide, x)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    # (Zero-initialised output layers keep most gradients at zero at initialisation.)
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())


@pytest.mark.parametrize("name", STATE_SPACE)
def test_jit_trace_elbo(name):
    model, x = make(name)
    if name == "latent_diffusion":  # the CSDI emission network refuses tracing at the first step, saying why
        svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 1e-2}), JitTrace_ELBO(ignore_jit_warnings=True))
        with pytest.raises(NotImplementedError, match="cannot be traced.*use Trace_ELBO"):
            svi.step(x)
        return
    before = trainable(model)
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 1e-2}), JitTrace_ELBO(ignore_jit_warnings=True))
    losses = [svi.step(x) for _ in range(4)]
    assert all(torch.isfinite(torch.tensor(loss)) for loss in losses)
    after = dict(model.named_parameters())
    assert sum(not torch.equal(before[k], after[k]) for k in before) >= 0.9 * len(before)


@pytest.mark.parametrize("name", ["dkf", "ddssm"])
def test_autonormal_guide(name):
    # The latent sites of the deep state-space models are continuous and unconstrained, so an autoguide
    # can replace the structured guide.
    model, x = make(name)
    guide = AutoNormal(model.model)
    svi = SVI(model.model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(x) for _ in range(10)]
    assert sum(losses[-3:]) < sum(losses[:3])
    assert pyro.get_param_store()["AutoNormal.locs.z"].shape == (N, T, 2)
    ppc = Predictive(poutine.uncondition(model.model), guide=guide, num_samples=2, return_sites=["x"])(x)
    assert ppc["x"].shape == (2, N, T, C)


def test_fit_and_plain_svi_give_the_same_trajectory():
    # With its extras off (no clipping, KL weight 1, no EMA effect on the loss) fit is an SVI loop: the same
    # model, data and seed give the same losses as pyro.infer.SVI with pyro.optim.Adam on the full batch.
    from pyroseq.inference import fit

    torch.manual_seed(0)
    x = torch.randn(N, T, C)
    torch.manual_seed(1)
    a = DKF(C, 2, rnn_dim=8, hidden_dim=8, transition_dim=8)
    torch.manual_seed(1)
    b = DKF(C, 2, rnn_dim=8, hidden_dim=8, transition_dim=8)
    b.initialize(x)
    fitted = fit(a, x, num_steps=6, batch_size=N, seed=3, lr=1e-2, clip_norm=None, progress=False)
    pyro.clear_param_store()
    pyro.set_rng_seed(3)
    svi = SVI(b.model, b.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    plain = []
    for _ in range(6):
        plain.append(svi.step(x, index=torch.arange(N), num_series=N) / N)
        b.on_step()
    assert torch.allclose(torch.tensor(fitted), torch.tensor(plain), rtol=1e-4)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name
