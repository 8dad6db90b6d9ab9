import importlib.util
import os

import pytest
import torch

from pyroseq.diffusion import (
    SAMPLERS,
    ddpm_sample,
    ddpm_schedule,
    dpm_solver_sample,
    edm_sigma_steps,
    euler_sample,
    function_evaluations,
    heun_sample,
    sample,
    sampler_steps,
)

_spec = importlib.util.spec_from_file_location(
    "exact", os.path.join(os.path.dirname(__file__), "exact.py"))
exact = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(exact)


def _check_standard_normal(samples, pooled=False):
    if pooled:  # pool dims: checks the discretisation bias rather than one dim's sampling noise
        samples = samples.reshape(-1, 1)
    assert samples.mean(0).abs().max() < 0.05
    assert (samples.var(0) - 1).abs().max() < 0.05


@pytest.mark.parametrize("d", [1, 4])
@pytest.mark.parametrize("num_steps,sigma_data", [(18, 1.0), (40, None)])
def test_heun_recovers_standard_normal(d, num_steps, sigma_data):
    g = torch.Generator().manual_seed(0)
    x = heun_sample(exact.gaussian_denoiser, (4000, d), num_steps=num_steps, generator=g,
                    dtype=torch.float64, sigma_data=sigma_data)
    # The plain EDM sampler (sigma_data=None) has a ~1.6% variance bias at 40 steps on N(0, 1).
    _check_standard_normal(x, pooled=sigma_data is None)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_ddpm_recovers_standard_normal(schedule):
    g = torch.Generator().manual_seed(0)
    x = ddpm_sample(exact.gaussian_denoiser, (4000, 2), num_steps=500, schedule=schedule,
                    generator=g, dtype=torch.float64)
    _check_standard_normal(x)


def test_heun_recovers_bimodal_mixture():
    g = torch.Generator().manual_seed(0)
    den = exact.mixture_denoiser([-2.0, 2.0], 0.3)
    x = heun_sample(den, (8000, 1), num_steps=20, generator=g, dtype=torch.float64,
                    sigma_data=2.0).squeeze(-1)
    assert abs((x > 0).double().mean().item() - 0.5) < 0.03
    assert abs(x[x > 0].mean().item() - 2.0) < 0.03
    assert abs(x[x > 0].std().item() - 0.3) < 0.03


def test_euler_and_churn_run_and_are_reasonable():
    g = torch.Generator().manual_seed(0)
    x = euler_sample(exact.gaussian_denoiser, (4000, 1), num_steps=200, generator=g,
                     dtype=torch.float64)
    _check_standard_normal(x)
    x = heun_sample(exact.gaussian_denoiser, (4000, 1), num_steps=40, S_churn=10, S_min=0.05,
                    S_max=50, generator=g, dtype=torch.float64, sigma_data=1.0)
    _check_standard_normal(x)


@pytest.mark.parametrize("d", [1, 3])
def test_dpm_solver_recovers_standard_normal(d):
    g = torch.Generator().manual_seed(0)
    x = dpm_solver_sample(exact.gaussian_denoiser, (4000, d), num_steps=64, generator=g, dtype=torch.float64)
    _check_standard_normal(x, pooled=True)


def test_dpm_solver_recovers_bimodal_mixture():
    g = torch.Generator().manual_seed(0)
    den = exact.mixture_denoiser([-2.0, 2.0], 0.3)
    x = dpm_solver_sample(den, (8000, 1), num_steps=20, generator=g, dtype=torch.float64).squeeze(-1)
    assert abs((x > 0).double().mean().item() - 0.5) < 0.03
    assert abs(x[x > 0].mean().item() - 2.0) < 0.03
    assert abs(x[x > 0].std().item() - 0.3) < 0.03


def _ode_end_error(draw, num_steps):
    # Same start (fixed noise), exact Gaussian denoiser: the probability-flow ODE maps x_T to
    # x_T / sqrt(1 + sigma_max^2), so the error is the solver's discretisation error alone.
    g = torch.Generator().manual_seed(0)
    x = draw(exact.gaussian_denoiser, (500, 1), num_steps=num_steps, generator=g, dtype=torch.float64,
             sigma_max=80.0)
    start = torch.randn((500, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
    return (x - start / (1 + 80.0**2) ** 0.5).abs().max().item()


def test_dpm_solver_is_second_order_and_beats_euler_per_evaluation():
    errors = [_ode_end_error(dpm_solver_sample, n) for n in (16, 32, 64)]
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3  # second order: ~4x per doubling
    euler = [_ode_end_error(euler_sample, n) for n in (32, 64)]
    assert euler[1] > euler[0] / 2.5  # first order: ~2x per doubling
    assert errors[1] < euler[0] / 4 and errors[2] < euler[1] / 4


def test_heun_uses_two_calls_per_step():
    calls = []

    def den(x, sigma, context=None):
        calls.append(1)
        return exact.gaussian_denoiser(x, sigma)

    heun_sample(den, (3, 1), num_steps=20)
    assert len(calls) == 39


def test_sigma_grid_and_schedule():
    t = edm_sigma_steps(18, 0.002, 80.0)
    assert t.shape == (19,) and t[0] == 80.0 and abs(t[-2] - 0.002) < 1e-12 and t[-1] == 0
    assert (t[1:] < t[:-1]).all()
    b = ddpm_schedule(500, "cosine")
    assert b.shape == (500,) and (b > 0).all() and (b <= 0.999).all()
    with pytest.raises(ValueError, match="schedule"):
        ddpm_schedule(10, "quadratic")
    with pytest.raises(ValueError, match="num_steps"):
        edm_sigma_steps(0)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sample_dispatches_with_heun_defaults(sampler):
    # sample() is the named sampler; heun_defaults apply to the EDM samplers (Heun, Euler) and explicit arguments
    # override them.
    calls = []

    def den(x, sigma, context=None):
        calls.append(float(sigma.max()))
        return exact.gaussian_denoiser(x, sigma)

    defaults = dict(sigma_max=5.0, sigma_data=1.0)
    x = sample(den, (3, 2), sampler=sampler, num_steps=6, generator=torch.Generator().manual_seed(1),
               dtype=torch.float64, heun_defaults=defaults)
    assert len(calls) == function_evaluations(sampler, 6)
    draw = {"heun": heun_sample, "euler": euler_sample, "dpm2m": dpm_solver_sample, "ddpm": ddpm_sample}[sampler]
    kwargs = defaults if sampler != "ddpm" else {}
    y = draw(exact.gaussian_denoiser, (3, 2), num_steps=6, generator=torch.Generator().manual_seed(1),
             dtype=torch.float64, **kwargs)
    assert torch.equal(x, y)
    if sampler != "ddpm":
        assert max(calls) == pytest.approx(5.0)
        calls.clear()
        sample(den, (3, 2), sampler=sampler, num_steps=6, heun_defaults=defaults, sigma_max=3.0)
        assert max(calls) == pytest.approx(3.0)


def test_sampler_steps_defaults_and_errors():
    assert sampler_steps("heun", None, heun_steps=18) == 18
    assert sampler_steps("ddpm") == 500
    assert function_evaluations("heun", 20) == 39 and function_evaluations("ddpm", 100) == 100
    with pytest.raises(ValueError, match="sampler must be one of"):
        sampler_steps("dpm++")
    for bad in (0, -3, 1.5, True, "20"):
        with pytest.raises(ValueError, match="num_steps"):
            sampler_steps("heun", bad)
