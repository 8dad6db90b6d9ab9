import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyroseq.diffusion import EDMPrecond
from pyroseq.distributions import DiffusionLikelihood
from pyroseq.inference import fit
from pyroseq.inference.precision import autocast, check_precision
from pyroseq.nn.transition import TransitionDenoiserNet


def _loss(model, x, precision, seed):
    pyro.set_rng_seed(seed)
    with autocast(precision):
        return Trace_ELBO().differentiable_loss(model.model, model.guide, x).float() / x.shape[0]


@pytest.mark.parametrize("name", ["dkf", "ddssm"])
def test_bf16_loss_matches_fp32(name, series, make_model):
    model = make_model(name)
    model.initialize(series)
    for seed in range(3):
        full, half = _loss(model, series, None, seed), _loss(model, series, "bf16", seed)
        assert half.dtype == torch.float32 and half.item() != full.item()  # autocast did something
        assert half.item() == pytest.approx(full.item(), rel=0.02)
    # the same gradients, to bfloat16 accuracy
    _loss(model, series, None, 0).backward()
    full = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad()
    _loss(model, series, "bf16", 0).backward()
    half = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert torch.nn.functional.cosine_similarity(full, half, dim=0) > 0.99


def test_bf16_denoiser_log_prob_matches_fp32():
    torch.manual_seed(0)
    net = TransitionDenoiserNet(2, order=1, hidden_dim=32, num_blocks=2)
    denoiser = EDMPrecond(net, sigma_data=1.0)
    x, context = torch.randn(256, 2), torch.randn(256, 1, 2)  # context: the history (M, j, d)
    values = {}
    for precision in (None, "bf16"):
        torch.manual_seed(1)  # the same noise draws
        with autocast(precision):
            values[precision] = DiffusionLikelihood(denoiser, event_shape=(2,), context=context,
                                                       context_event_dim=2).log_prob(x).float()
    assert torch.isfinite(values["bf16"]).all()
    assert (values["bf16"] - values[None]).abs().mean() < 0.02 * values[None].abs().mean()


@pytest.mark.parametrize("name", ["dkf", "ddssm"])
def test_fit_in_bf16(name, series, make_model):
    full = fit(make_model(name), series, num_steps=20, batch_size=8, lr=1e-2, progress=False)
    model = make_model(name)
    half = fit(model, series, num_steps=20, batch_size=8, lr=1e-2, progress=False, precision="bf16")
    assert all(torch.isfinite(torch.tensor(half)))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert half[0] == pytest.approx(full[0], rel=0.02)
    assert sum(half[-5:]) / 5 == pytest.approx(sum(full[-5:]) / 5, rel=0.15)


def test_check_precision():
    assert check_precision("bfloat16") == "bf16" and check_precision("fp32") is None and check_precision(None) is None
    with pytest.raises(ValueError, match="precision"):
        check_precision("fp16")
