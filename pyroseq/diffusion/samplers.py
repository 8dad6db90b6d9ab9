"""Samplers for VE (EDM) diffusions: Heun / Euler with churn, DPM-Solver++(2M) for few steps, and a DDPM ancestral
baseline."""

import math

import torch

from .noise import standard_normal
from .validation import check_noise_range

__all__ = [
    "SAMPLERS",
    "DDPM_STEPS",
    "edm_sigma_steps",
    "heun_sample",
    "euler_sample",
    "dpm_solver_sample",
    "ddpm_schedule",
    "ddpm_sample",
    "sampler_steps",
    "function_evaluations",
    "sample",
]

#: The sampler registry's names: EDM's Heun (2nd order) and Euler (1st order) on the rho grid, DPM-Solver++(2M)
#: (2nd order, one network evaluation per step) and DDPM's ancestral sampler (the baseline). :func:`sample`
#: dispatches on them; every sampling path uses it.
SAMPLERS = ("heun", "euler", "dpm2m", "ddpm")
#: Default steps of the DDPM baseline (Diffusion-TS samples with 500).
DDPM_STEPS = 500


def edm_sigma_steps(num_steps=18, sigma_min=0.002, sigma_max=80.0, rho=7.0, dtype=torch.float64):
    r"""Karras et al.'s noise levels :math:`\sigma_i = (\sigma_\max^{1/\rho} + \tfrac{i}{N-1}
    (\sigma_\min^{1/\rho} - \sigma_\max^{1/\rho}))^\rho`, with a final 0 appended.

    :returns: a tensor of shape ``(num_steps + 1,)``, decreasing, ending at 0.
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps}")
    sigma_min, sigma_max, _ = check_noise_range(sigma_min, sigma_max, 1.0)
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    i = torch.arange(num_steps, dtype=dtype)
    frac = i / max(num_steps - 1, 1)
    t = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, t.new_zeros(1)])


def _edm_sample(denoiser, shape, context, num_steps, sigma_min, sigma_max, rho, S_churn, S_min,
                S_max, S_noise, generator, dtype, device, second_order, sigma_data):
    dtype = dtype or torch.get_default_dtype()
    t_steps = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho).tolist()
    n = shape[0]
    x = standard_normal(shape, dtype, device, generator) * t_steps[0]

    def D(state, t):
        return denoiser(state, state.new_full((n,), t), context)

    # Optionally integrate y = x / sqrt(t^2 + sigma_data^2) (EDM's general ODE with scaling
    # s(t) = 1/sqrt(t^2 + sigma_data^2)): trajectories are straight when the data are Gaussian with
    # scale sigma_data, so the same number of steps makes a smaller discretisation error.
    def scale(t):
        return math.sqrt(t * t + sigma_data * sigma_data) if sigma_data else 1.0

    def drift(state, t):  # d(state)/dt in the integration variable
        if not sigma_data:
            return (state - D(state, t)) / t
        a = scale(t)
        return state * (sigma_data**2 / (t * a * a)) - D(state * a, t) / (t * a)

    for i in range(num_steps):
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        # Churn: temporarily raise the noise level, adding fresh noise (EDM Algorithm 2).
        gamma = min(S_churn / num_steps, math.sqrt(2) - 1) if S_min <= t_cur <= S_max else 0.0
        t_hat = t_cur * (1 + gamma)
        if gamma > 0:
            eps = standard_normal(shape, dtype, device, generator)
            x = x + math.sqrt(t_hat**2 - t_cur**2) * S_noise * eps
        if t_next == 0:  # the last Euler step to sigma = 0 returns the denoised estimate
            x = D(x, t_hat)
            break
        y = x / scale(t_hat)
        d_cur = drift(y, t_hat)
        y_next = y + (t_next - t_hat) * d_cur
        if second_order:
            y_next = y + (t_next - t_hat) * 0.5 * (d_cur + drift(y_next, t_next))
        x = y_next * scale(t_next)
    return x


def heun_sample(denoiser, shape, context=None, num_steps=18, sigma_min=0.002, sigma_max=80.0,
                rho=7.0, S_churn=0.0, S_min=0.0, S_max=float("inf"), S_noise=1.0, generator=None,
                dtype=None, device=None, sigma_data=None):
    r"""EDM's 2nd-order Heun sampler (Karras et al. 2022, Algorithm 2) on the :math:`\rho` grid.

    Uses ``2 * num_steps - 2`` denoiser evaluations (the last step to 0 is one call). Call under :func:`torch.no_grad`.

    :param callable denoiser: ``denoiser(x_noisy, sigma, context) -> x0_hat``.
    :param tuple shape: ``(N,) + event_shape`` of the output.
    :param context: conditioning with leading dim ``N``, or None.
    :param int num_steps: number of noise levels.
    :param float S_churn: total stochasticity; ``S_min``, ``S_max`` bound where it applies and
        ``S_noise`` scales the fresh noise.
    :param torch.Generator generator: optional random generator.
    :param float sigma_data: if given, integrate the scaled state ``x / sqrt(sigma^2 + sigma_data^2)``
        (EDM's ODE with scaling; exact in one step for Gaussian data of scale ``sigma_data`` and
        markedly more accurate at 18-20 steps on real data). ``None`` gives the plain EDM sampler.
    :returns: samples of shape ``shape``.
    """
    return _edm_sample(denoiser, tuple(shape), context, num_steps, sigma_min, sigma_max, rho,
                       S_churn, S_min, S_max, S_noise, generator, dtype, device, True, sigma_data)


def euler_sample(denoiser, shape, context=None, num_steps=18, sigma_min=0.002, sigma_max=80.0,
                 rho=7.0, S_churn=0.0, S_min=0.0, S_max=float("inf"), S_noise=1.0, generator=None,
                 dtype=None, device=None, sigma_data=None):
    """First-order (Euler) version of :func:`heun_sample`; ``num_steps`` denoiser evaluations.
    Same arguments and return value."""
    return _edm_sample(denoiser, tuple(shape), context, num_steps, sigma_min, sigma_max, rho,
                       S_churn, S_min, S_max, S_noise, generator, dtype, device, False, sigma_data)


def dpm_solver_sample(denoiser, shape, context=None, num_steps=10, sigma_min=0.002, sigma_max=80.0, rho=7.0,
                      generator=None, dtype=None, device=None, sigma_data=None):
    r"""DPM-Solver++(2M) (Lu et al. 2022, multistep, second order) on EDM's :math:`\rho` grid: one denoiser
    evaluation per step, so it suits budgets of a handful of evaluations where Heun (two per step) is too coarse.

    With :math:`h = \log(\sigma_i / \sigma_{i+1})` each step is the exponential integrator of the probability-flow
    ODE in its data-prediction form, :math:`x_{i+1} = (\sigma_{i+1}/\sigma_i)\,x_i + (1 - \sigma_{i+1}/\sigma_i)
    \,\hat D`, where :math:`\hat D = (1 + \tfrac{1}{2r}) D_i - \tfrac{1}{2r} D_{i-1}` extrapolates the last two
    denoised estimates (:math:`r = h_{i-1}/h_i`; the first step uses :math:`D_0`). The last step, from
    ``sigma_min`` to 0, returns the denoised estimate. The update is the same whatever scaling of the state is
    integrated, so ``sigma_data`` is accepted (for :func:`sample`'s shared defaults) and not needed.

    :param callable denoiser: ``denoiser(x_noisy, sigma, context) -> x0_hat``.
    :param tuple shape: ``(N,) + event_shape`` of the output.
    :param context: conditioning with leading dim ``N``, or None.
    :param int num_steps: number of noise levels (= denoiser evaluations).
    :param torch.Generator generator: optional random generator.
    :returns: samples of shape ``shape``.
    """
    dtype = dtype or torch.get_default_dtype()
    t_steps = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho).tolist()
    n = shape[0]
    x = standard_normal(tuple(shape), dtype, device, generator) * t_steps[0]
    previous = None
    for i in range(num_steps):
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        denoised = denoiser(x, x.new_full((n,), t_cur), context)
        if t_next == 0:
            return denoised
        h = math.log(t_cur / t_next)
        estimate = denoised
        if previous is not None:
            r = previous[1] / h
            estimate = (1 + 0.5 / r) * denoised - (0.5 / r) * previous[0]
        x = (t_next / t_cur) * x + (1 - t_next / t_cur) * estimate
        previous = (denoised, h)
    return x


def ddpm_schedule(num_steps=500, schedule="cosine"):
    r"""Discrete variance-preserving noise schedule.

    :param int num_steps: number of diffusion steps ``T``.
    :param str schedule: ``"cosine"`` (Nichol & Dhariwal 2021, used by Diffusion-TS) or ``"linear"``
        (Ho et al. 2020, betas from 1e-4 to 0.02 rescaled to ``T`` steps).
    :returns: ``betas`` of shape ``(T,)``, float64.
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps}")
    T = int(num_steps)
    if schedule == "cosine":
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(0, 0.999)
    elif schedule == "linear":
        scale = 1000 / T
        betas = torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
    else:
        raise ValueError(f"schedule must be 'cosine' or 'linear', got {schedule!r}")
    return betas


def ddpm_sample(denoiser, shape, context=None, num_steps=500, schedule="cosine", generator=None,
                dtype=None, device=None):
    r"""DDPM ancestral sampling (Ho et al. 2020) with an x0-predicting VE denoiser: the Diffusion-TS
    style baseline (``num_steps`` full ancestral steps, one denoiser call each).

    The VP state :math:`x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1-\bar\alpha_t}\epsilon` is the VE state
    :math:`x_t/\sqrt{\bar\alpha_t}` at :math:`\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}`, so
    :math:`\hat x_0 = D(x_t/\sqrt{\bar\alpha_t}; \sigma_t)`; the step draws from
    :math:`q(x_{t-1} \mid x_t, \hat x_0)`.

    :param tuple shape: ``(N,) + event_shape`` of the output.
    :returns: samples of shape ``shape``.
    """
    dtype = dtype or torch.get_default_dtype()
    betas = ddpm_schedule(num_steps, schedule)
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, 0)
    alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    n = shape[0]
    x = standard_normal(shape, dtype, device, generator)
    for t in reversed(range(int(num_steps))):
        ab, ab_prev, beta = float(alpha_bar[t]), float(alpha_bar_prev[t]), float(betas[t])
        sigma = math.sqrt((1 - ab) / ab)
        x0_hat = denoiser(x / math.sqrt(ab), x.new_full((n,), sigma), context)
        mean = (math.sqrt(ab_prev) * beta / (1 - ab)) * x0_hat + (
            math.sqrt(float(alphas[t])) * (1 - ab_prev) / (1 - ab)
        ) * x
        if t > 0:
            var = beta * (1 - ab_prev) / (1 - ab)
            x = mean + math.sqrt(var) * standard_normal(shape, dtype, device, generator)
        else:
            x = mean
    return x


def sampler_steps(sampler, num_steps=None, heun_steps=20):
    """Validate a sampler name and resolve its number of steps.

    :param str sampler: one of :data:`SAMPLERS`.
    :param int num_steps: steps, or None for the default (``heun_steps`` for Heun, 500 for DDPM).
    :param int heun_steps: the caller's default number of Heun steps.
    :returns: ``num_steps`` as a positive int.
    :raises ValueError: for an unknown sampler or a non-positive number of steps.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if num_steps is None:
        num_steps = DDPM_STEPS if sampler == "ddpm" else heun_steps
    if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    return int(num_steps)


def function_evaluations(sampler="heun", num_steps=20):
    """Denoiser evaluations of one draw by :func:`sample` (Heun: ``2 num_steps - 1``; Euler, DPM-Solver++(2M)
    and DDPM: ``num_steps``)."""
    num_steps = sampler_steps(sampler, num_steps)
    return 2 * num_steps - 1 if sampler == "heun" else num_steps


def sample(denoiser, shape, context=None, sampler="heun", num_steps=20, generator=None, dtype=None, device=None,
           heun_defaults=None, **sampler_kwargs):
    """Draw with the named sampler of the registry :data:`SAMPLERS`: :func:`heun_sample`, :func:`euler_sample`,
    :func:`dpm_solver_sample` or :func:`ddpm_sample`.

    :param callable denoiser: ``denoiser(x_noisy, sigma, context) -> x0_hat``.
    :param tuple shape: ``(N,) + event_shape`` of the output.
    :param context: conditioning with leading dim ``N``, or None.
    :param str sampler: one of :data:`SAMPLERS`.
    :param int num_steps: sampler steps.
    :param dict heun_defaults: a model's own arguments of the EDM samplers (its ``sigma_min``, ``sigma_max``,
        ``sigma_data``), used for Heun, Euler and DPM-Solver++; ``sampler_kwargs`` override them.
    :param sampler_kwargs: further arguments of the chosen sampler (e.g. ``S_churn`` or ``sigma_data`` for Heun,
        ``schedule`` for DDPM).
    :returns: samples of shape ``shape``.
    """
    num_steps = sampler_steps(sampler, num_steps)
    if sampler != "ddpm":
        sampler_kwargs = {**(heun_defaults or {}), **sampler_kwargs}
    return _DRAW[sampler](denoiser, shape, context, num_steps=num_steps, generator=generator, dtype=dtype,
                          device=device, **sampler_kwargs)


_DRAW = {"heun": heun_sample, "euler": euler_sample, "dpm2m": dpm_solver_sample, "ddpm": ddpm_sample}
