"""The window-diffusion core: settings, conditioning parts, state-dict layouts, samples on the model's device and
dtype for every generator, and the moving-average setting owned by the model."""

import pyro
import pytest
import torch

from pyroseq.distributions import ConditionalDiffusionLikelihood, DiffusionLikelihood, StagedSequence
from pyroseq.inference import fit, forecast
from pyroseq.models import (
    DDSSM,
    DKF,
    ConditionalDiffusion,
    DiffusionSettings,
    DiMTS,
    LatentDiffusionSSM,
    StageDiff,
    WindowDiffusion,
)
from pyroseq.models.backbones import BACKBONES, build_backbone
from pyroseq.models.range_scaling import ChannelStandardizer, RangeScaler
from pyroseq.models.window_diffusion import upgrade_state_dict

C, L = 2, 8
CSDI = dict(channels=8, num_layers=1)
STAGE = dict(patch_size=2, d_model=8, num_heads=2, num_encoder_layers=1, kernel_sizes=(3, 1))


def make(name, **kwargs):
    if name == "dkf":
        return DKF(C, 2, rnn_dim=8, hidden_dim=8, transition_dim=8, **kwargs)
    if name == "ddssm":
        return DDSSM(C, 2, rnn_dim=8, hidden_dim=8, denoiser_dim=8, denoiser_blocks=1, num_steps=2, **kwargs)
    if name == "latent_diffusion":
        return LatentDiffusionSSM(C, 2, L, backbone="csdi", rnn_dim=8, hidden_dim=8, denoiser_dim=8, num_steps=2,
                                  emission_num_steps=2, emission_net_kwargs=CSDI, **kwargs)
    if name == "dimts":
        return DiMTS(C, L, hidden_dim=8, d_state=2, num_decoder_layers=1, num_steps=2, **kwargs)
    if name == "stagediff":
        return StageDiff(C, stage_length=4, num_steps=2, **STAGE, **kwargs)
    if name == "conditional":
        return ConditionalDiffusion(C, L, backbone="csdi", observation_planes=False, num_steps=2, **CSDI, **kwargs)
    raise ValueError(name)


GENERATORS = ["dkf", "ddssm", "latent_diffusion", "dimts", "stagediff", "conditional"]
WINDOW_MODELS = ["dimts", "stagediff", "conditional"]


# -- settings ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(objective="mse"), "objective"), (dict(sigma_min=1.0, sigma_max=0.5), "sigma"),
    (dict(num_steps=0), "num_steps"), (dict(num_noise_draws=0), "num_noise_draws"),
    (dict(sample_chunk_size=0), "sample_chunk_size"), (dict(clip=(1.0, -1.0)), "clip"),
    (dict(edm_noise=(0.0, -1.0)), "edm_noise"),
])
def test_settings_are_validated_once(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionSettings(**kwargs)


def test_settings_build_every_likelihood_and_clip_only_generation():
    settings = DiffusionSettings(sigma_data=0.7, objective="bound", edm_noise=(-1.0, 1.0), num_noise_draws=3,
                                 num_steps=7, sample_chunk_size=5, clip=(-1.0, 1.0))
    kwargs = settings.likelihood_kwargs()
    assert kwargs["clip"] is None and settings.likelihood_kwargs(True)["clip"] == (-1.0, 1.0)
    assert settings.likelihood_kwargs(objective="edm", num_steps=None)["objective"] == "edm"
    lik = DiffusionLikelihood(lambda x, s, c: x, (3,), batch_shape=(2,), **kwargs)
    assert (lik.sigma_data, lik.objective, lik.num_noise_draws, lik.num_steps, lik.sample_chunk_size) == (
        0.7, "bound", 3, 7, 5)


@pytest.mark.parametrize("name", WINDOW_MODELS)
def test_models_are_configurations_of_the_core(name):
    m = make(name)
    assert isinstance(m, WindowDiffusion) and m.backbone in BACKBONES
    assert m.net is m.denoiser.net and m.net_ema is m.denoiser_ema.net
    assert not any(p.requires_grad for p in m.net_ema.parameters())
    assert isinstance(m.scaler, ChannelStandardizer if name == "conditional" else RangeScaler)
    m.num_steps = 5  # a setting replaces the frozen settings object
    assert m.settings.num_steps == 5 and m.num_steps == 5


def test_backbone_registry_builds_every_entry():
    for name, entry in BACKBONES.items():
        net = build_backbone(name, C, L, 3, stage_length=4 if entry.staged else None)
        assert net.cond_dim == 3
        entry.check_length(net, 8)
    with pytest.raises(ValueError, match="backbone"):
        build_backbone("unet", C, L, 0)
    with pytest.raises(ValueError, match="multiple of the stage length"):
        BACKBONES["stagediff"].check_length(build_backbone("stagediff", C, L, 0, 4), 6)


# -- conditioning parts --------------------------------------------------------------------------------------

def test_distribution_depends_on_the_parts():
    m = ConditionalDiffusion(C, L, backbone="stagediff", stage_length=4, covariate_dim=1, **STAGE)
    z, mask = torch.randn(3, L, C), torch.rand(3, L, C) < 0.5
    planes = m.covariate_planes(torch.randn(3, L, 1))
    conditional = m.distribution({"observed": z, "mask": mask, "planes": planes[:, :4]}, (3,))
    assert isinstance(conditional, ConditionalDiffusionLikelihood) and conditional.batch_shape == (3,)
    staged = m.staged({"observed": z, "mask": mask, "planes": planes}, 2, (3,))
    assert isinstance(staged, StagedSequence) and staged.event_shape == (L, C)
    assert torch.isfinite(staged.log_prob(z)).all()


def test_pack_context_keeps_any_batch_shape():
    m = StageDiff(C, stage_length=4, covariate_dim=2, **STAGE)
    history = m.net.null_history(6).reshape((2, 3) + m.net.history_shape)
    planes = torch.randn(2, 3, 4, C, 2)
    context = m.pack_context({"planes": planes, "history": history})
    flat = m.net.pack_context(history=history.reshape((6,) + m.net.history_shape), cond=planes.reshape(6, 4, C, 2))
    assert context["cond"].shape[:2] == (2, 3)
    assert torch.equal(context["cond"].reshape(flat["cond"].shape), flat["cond"])


# -- state dicts ---------------------------------------------------------------------------------------------

def test_conditional_state_dicts_of_the_old_layout_load():
    # The conditional models kept the networks as "net"/"net_ema" beside the preconditioners and standardised
    # with buffers "x_loc"/"x_scale".
    m = make("conditional")
    with torch.no_grad():
        m.scaler.loc.fill_(2.0)
        next(m.net_ema.parameters()).add_(1.0)
    old = {}
    for key, value in m.state_dict().items():
        key = {"scaler.loc": "x_loc", "scaler.scale": "x_scale"}.get(key, key)
        old[key] = value
        for new, former in (("denoiser.net.", "net."), ("denoiser_ema.net.", "net_ema.")):
            if key.startswith(new):
                old[former + key[len(new):]] = value
    fresh = make("conditional")
    fresh.load_state_dict(old)  # strict
    for key, value in m.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_upgrade_keeps_a_missing_scaler():
    m = make("dimts", data_range=(0.0, 5.0))
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("scaler.")}
    upgrade_state_dict(m, state)
    assert torch.equal(state["scaler.high"], torch.full((C,), 5.0))


# -- device and dtype of samples -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", GENERATORS)
def test_samples_have_the_models_dtype_and_device(name, dtype):
    pyro.enable_validation(True)
    model = make(name).to(dtype)
    x = model.generate(3, L, seed=0)
    assert x.dtype == dtype and x.device.type == "cpu" and torch.isfinite(x).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampler", ["heun", "euler", "dpm2m", "ddpm"])
def test_window_samplers_and_covariates_keep_the_dtype(sampler, dtype):
    # Covariates of another dtype are converted to the network's; noise is drawn in the model's dtype.
    u = torch.randn(3, L, 1, dtype=torch.float64 if dtype == torch.float32 else torch.float32)
    steps = dict(num_steps=3)
    for model in (make("dimts", covariate_dim=1), make("stagediff", covariate_dim=1)):
        x = model.to(dtype).generate(3, L, covariates=u, sampler=sampler, seed=0, **steps)
        assert x.dtype == dtype and torch.isfinite(x).all()
    guided = make("stagediff").to(dtype).generate(3, L, guidance=2.0, seed=0)
    assert guided.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_impute_and_forecast_keep_the_dtype(backbone, dtype):
    net = dict(csdi=CSDI, dimts=dict(hidden_dim=8, d_state=2), stagediff=STAGE)[backbone]
    m = ConditionalDiffusion(C, L, backbone=backbone, stage_length=4, covariate_dim=1, num_steps=2, **net).to(dtype)
    x = torch.randn(2, L, C, dtype=dtype)
    x[:, -2:] = float("nan")
    u = torch.randn(2, L, 1, dtype=dtype)
    filled = m.impute(x, covariates=u, num_samples=2, seed=0)
    assert filled.dtype == dtype and torch.equal(filled[:, :, :-2], x[:, :-2].expand(2, -1, -1, -1))
    fc = forecast(m, x[:, :-2], 2, num_samples=2, covariates=u, seed=0)
    assert fc.dtype == dtype and fc.shape == (2, 2, 2, C)


def test_sampling_distribution_draws_on_the_meta_device():
    # The meta device stands in for an accelerator: the likelihood's noise follows the context's device.
    m = make("dimts", covariate_dim=1)
    lik = m.distribution({"planes": m.covariate_planes(torch.randn(2, L, 1))}, (2,), event_shape=(L, C))
    meta = DiffusionLikelihood(lambda x, s, c: x, (L, C), context=lik.context.to("meta"), batch_shape=(2,),
                               num_steps=2, validate_args=False)  # validation reads values, which meta has none
    out = meta.sample()
    assert out.device.type == "meta" and out.shape == (2, L, C)


# -- the moving average --------------------------------------------------------------------------------------

def _training_data(name):
    return torch.rand(4, L, C) * 2 - 1 if name in ("dimts", "stagediff") else torch.randn(4, L, C)


@pytest.mark.parametrize("name", GENERATORS)
def test_a_model_built_without_moving_average_keeps_it_off_through_fit(name):
    model = make(name, ema_decay=0.0)
    x = _training_data(name)
    fit(model, x, num_steps=2, batch_size=4, progress=False)
    assert model.ema_decay == 0.0
    fit(model, x, num_steps=1, batch_size=4, progress=False, ema_decay=0.0)  # the same setting is fine
    with pytest.raises(ValueError, match="ema_decay"):
        fit(model, x, num_steps=1, batch_size=4, progress=False, ema_decay=0.5)
    assert model.ema_decay == 0.0
    if name in WINDOW_MODELS:
        assert int(model.ema_updates) == 0 and model.sampling_denoiser() is model.denoiser
    if name == "latent_diffusion":
        assert model.emission.ema_decay == 0.0
