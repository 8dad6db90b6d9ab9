"""One generation signature for every built-in model: ``generate(num_samples, length=None, *, covariates=None,
seed=None, **sampler_settings) -> (n, L, C)``, on the model's device and dtype, reproducible by seed."""

import inspect

import pytest
import torch

from pyroseq.models import DDSSM, DKF, ConditionalDiffusion, DiMTS, LatentDiffusionSSM, StageDiff

C, L = 2, 8
CSDI = dict(channels=16, num_layers=1)


def make(name):
    if name == "dkf":
        return DKF(C, 2, rnn_dim=8, hidden_dim=8, transition_dim=8)
    if name == "ddssm":
        return DDSSM(C, 2, rnn_dim=8, hidden_dim=8, denoiser_dim=16, denoiser_blocks=1, num_steps=3)
    if name == "latent_diffusion":
        return LatentDiffusionSSM(C, 2, L, backbone="csdi", rnn_dim=8, hidden_dim=8, denoiser_dim=16,
                                  num_steps=3, emission_num_steps=3, emission_net_kwargs=CSDI)
    if name == "dimts":
        return DiMTS(C, L, hidden_dim=8, d_state=2, num_decoder_layers=1, num_steps=3)
    if name == "stagediff":
        return StageDiff(C, stage_length=4, patch_size=2, d_model=16, num_heads=2, num_encoder_layers=1,
                         kernel_sizes=(3, 1), num_steps=3)
    if name == "conditional":
        return ConditionalDiffusion(C, L, backbone="csdi", observation_planes=False, num_steps=3, **CSDI)
    raise ValueError(name)


MODELS = ["dkf", "ddssm", "latent_diffusion", "dimts", "stagediff", "conditional"]


@pytest.mark.parametrize("name", MODELS)
def test_signature(name):
    params = list(inspect.signature(make(name).generate).parameters.values())
    assert [p.name for p in params[:2]] == ["num_samples", "length"]
    assert params[1].default is None
    keyword_only = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert {"covariates", "seed"} <= keyword_only
    assert all(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[2:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", MODELS)
def test_shape_dtype_device_and_seed(name, dtype):
    model = make(name).to(dtype)
    state = torch.random.get_rng_state()
    x = model.generate(3, L, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # a seeded call leaves the global stream alone
    assert x.shape == (3, L, C) and x.dtype == dtype and x.device.type == "cpu"
    assert torch.isfinite(x).all()
    assert torch.equal(x, model.generate(3, L, seed=5))
    assert not torch.equal(x, model.generate(3, L, seed=6))


@pytest.mark.parametrize("name", ["dkf", "ddssm", "latent_diffusion"])
def test_latents_on_request(name):
    x, z = make(name).generate(2, L, seed=0, return_latents=True)
    assert x.shape == (2, L, C) and z.shape == (2, L, 2)


def test_conditional_with_observation_planes_does_not_generate():
    model = ConditionalDiffusion(C, L, backbone="csdi", num_steps=3, **CSDI)
    with pytest.raises(ValueError, match="observation_planes=False"):
        model.generate(2)


@pytest.mark.parametrize("name", ["dkf", "ddssm"])
def test_state_space_models_need_a_length(name):
    with pytest.raises(ValueError, match="length is required"):
        make(name).generate(2)


@pytest.mark.parametrize("name", MODELS)
def test_fit_keeps_the_models_moving_average_setting(name):
    from pyroseq.inference import fit

    model = make(name)
    model.ema_decay = 0.0
    x = torch.randn(4, L, C) if name not in ("dimts", "stagediff") else torch.rand(4, L, C) * 2 - 1
    fit(model, x, num_steps=1, batch_size=4, progress=False)
    assert model.ema_decay == 0.0
    with pytest.raises(ValueError, match="owns this setting"):  # fit restates the decay, never changes it
        fit(model, x, num_steps=1, batch_size=4, progress=False, ema_decay=0.5)
    model.ema_decay = 0.5
    fit(model, x, num_steps=1, batch_size=4, progress=False, ema_decay=0.5)
    assert model.ema_decay == 0.5
    if name == "latent_diffusion":  # one setting for the transition's and the emission's averages
        assert model.emission.ema_decay == 0.5
