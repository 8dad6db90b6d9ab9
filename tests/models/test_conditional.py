import math

import pyro
import pytest
import torch

from pyroseq.inference import fit, forecast
from pyroseq.models import BACKBONES, ConditionalDiffusion

SMALL = {
    "csdi": dict(channels=16, num_layers=1),
    "dimts": dict(hidden_dim=16, d_state=4),
    "stagediff": dict(d_model=16, num_heads=2, num_encoder_layers=1, kernel_sizes=(3, 1), patch_size=2),
}


def make(backbone, length=8, **kwargs):
    return ConditionalDiffusion(2, length, backbone=backbone, stage_length=4, num_steps=3, **{**SMALL[backbone],
                                                                                              **kwargs})


def walks(n, length=8, seed=0):
    a = torch.randn(n, length, 1, generator=torch.Generator().manual_seed(seed)).cumsum(1) * 0.5
    return torch.cat([a, -a], -1)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("covariate_dim", [0, 2])
def test_fit_impute_forecast_shapes(backbone, covariate_dim):
    model = make(backbone, covariate_dim=covariate_dim)
    x = walks(16)
    x[0, 2, 1] = math.nan
    cov = torch.randn(16, 8, covariate_dim) if covariate_dim else None
    losses = fit(model, x, num_steps=3, batch_size=8, covariates=cov, progress=False)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    imp = model.impute(x[:3], covariates=None if cov is None else cov[:3], num_samples=4)
    assert imp.shape == (4, 3, 8, 2) and torch.isfinite(imp).all()
    cov_f = torch.randn(3, 8, covariate_dim) if covariate_dim else None
    fc = forecast(model, x[1:4, :6], horizon=2, num_samples=5, covariates=cov_f)
    assert fc.shape == (5, 3, 2, 2) and torch.isfinite(fc).all()


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("missing", [0.1, 0.5, 0.9])
def test_imputation_never_changes_observed_entries(backbone, missing):
    model = make(backbone)
    model.initialize(walks(32))
    for p in model.net.parameters():  # a non-trivial network everywhere (read-outs start at zero)
        torch.nn.init.normal_(p, std=0.1)
    x = walks(5, seed=1)
    mask = torch.rand(5, 8, 2, generator=torch.Generator().manual_seed(2)) > missing
    mask[:, 0, 0] = True
    imp = model.impute(x, mask=mask, num_samples=3, use_ema=False)
    assert torch.equal(imp[:, mask], x[mask].expand(3, -1))
    assert not torch.equal(imp[:, ~mask], x[~mask].expand(3, -1))


def test_imputation_is_reproducible_with_a_seed():
    model = make("csdi")
    x = walks(3)
    x[:, 4:, 1] = math.nan
    a = model.impute(x, num_samples=2, seed=3)
    b = model.impute(x, num_samples=2, seed=3)
    assert torch.equal(a, b)


def test_learns_to_impute_a_deterministic_relation():
    # channel 1 = -channel 0: after a short training the imputed channel must follow it closely
    pyro.set_rng_seed(0)
    model = ConditionalDiffusion(2, 8, backbone="csdi", mask_strategy="random", num_steps=10, channels=16,
                                 num_layers=2)
    fit(model, walks(512), num_steps=200, batch_size=64, lr=3e-3, progress=False)
    truth = walks(64, seed=5)
    x = truth.clone()
    x[:, ::2, 1] = math.nan
    imp = model.impute(x, num_samples=8, seed=0).median(0).values
    missing = torch.isnan(x)
    mae = (imp - truth).abs()[missing].mean()
    assert mae < 0.2 * truth[missing].abs().mean()


def test_training_site_scores_only_targets():
    model = make("csdi")
    model.initialize(walks(16))
    x = walks(4)
    tr = pyro.poutine.trace(model.model).get_trace(x)
    site = tr.nodes["x"]
    assert site["fn"].batch_shape == (4,) and site["fn"].event_shape == (8, 2)
    mask = site["fn"].observation_mask
    assert mask.any() and (~mask).any()


def test_unconditional_mode_samples_whole_windows():
    model = make("dimts", observation_planes=False, covariate_dim=1)
    fit(model, walks(16), num_steps=2, batch_size=8, covariates=torch.randn(16, 8, 1), progress=False)
    s = model.sample(3, covariates=torch.randn(3, 8, 1))
    assert s.shape == (3, 8, 2) and torch.isfinite(s).all()
    with pytest.raises(ValueError, match="covariates"):
        model.sample(3)
    with pytest.raises(ValueError, match="observation_planes=False"):
        make("csdi").sample(2)


@pytest.mark.parametrize("bad,match", [
    (dict(mask=torch.zeros(3, 8, 2, dtype=torch.bool)), "no observed"),
    (dict(mask=torch.ones(3, 7, 2, dtype=torch.bool)), "mask"),
    (dict(x=torch.randn(3, 8)), "rank 3"),
    (dict(x=torch.randn(3, 8, 3)), "channels"),
    (dict(x=torch.full((3, 8, 2), math.inf)), "infinite"),
    (dict(covariates=torch.randn(3, 8, 1)), "covariates"),
])
def test_bad_imputation_inputs_raise(bad, match):
    model = make("csdi")
    kwargs = dict(x=walks(3), mask=None)
    kwargs.update(bad)
    with pytest.raises(ValueError, match=match):
        model.impute(kwargs.pop("x"), **kwargs)


@pytest.mark.parametrize("backbone,length,match", [("dimts", 6, "DiM-TS window length"),
                                                   ("stagediff", 6, "multiple of the stage length")])
def test_backbone_lengths_are_checked(backbone, length, match):
    with pytest.raises(ValueError, match=match):
        make(backbone).impute(walks(2, length=length))


def test_bad_constructor_arguments():
    for kwargs, match in [(dict(backbone="rnn"), "backbone"), (dict(mask_strategy="all"), "mask_strategy"),
                          (dict(horizon=8), "horizon"), (dict(objective="mse"), "objective"),
                          (dict(covariate_dim=-1), "covariate_dim"), (dict(ema_decay=1.0), "ema_decay")]:
        with pytest.raises(ValueError, match=match):
            ConditionalDiffusion(2, 8, **kwargs)
    with pytest.raises(ValueError, match="multiple"):
        ConditionalDiffusion(2, 10, backbone="stagediff", stage_length=4)


def test_forecast_history_checks():
    model = make("csdi")
    with pytest.raises(ValueError, match="too short"):
        forecast(model, walks(2, length=3), horizon=2, num_samples=2)
    with pytest.raises(ValueError, match="horizon"):
        forecast(model, walks(2), horizon=8, num_samples=2)


def test_forecasts_use_the_model_sampler():
    # Network calls per draw: Heun 2 n - 1, DPM-Solver++(2M) and Euler n (the number of batches is the same).
    calls = {}
    for sampler in ("heun", "dpm2m", "euler"):
        model = ConditionalDiffusion(2, 8, backbone="csdi", channels=8, num_layers=1, num_steps=4, sampler=sampler)
        calls[sampler] = []
        model.net.register_forward_hook(lambda *args, c=calls[sampler]: c.append(1))
        out = forecast(model.eval(), torch.randn(3, 4, 2), 4, num_samples=2, seed=0)
        assert out.shape == (2, 3, 4, 2) and torch.isfinite(out).all()
    batches = len(calls["heun"]) // 7
    assert len(calls["heun"]) == 7 * batches and len(calls["dpm2m"]) == len(calls["euler"]) == 4 * batches


def test_unknown_sampler_raises():
    with pytest.raises(ValueError, match="sampler must be one of"):
        ConditionalDiffusion(2, 8, backbone="csdi", sampler="rk4")
