"""Probability-flow ODE log-likelihood (evaluation only)."""

import math

import torch

from .validation import check_noise_range

__all__ = ["probability_flow_log_prob"]


def _divergence(denoiser, x, sigma, context, exact, generator):
    """Returns ``(D(x), tr dD/dx)`` with the trace exact (``d`` backward passes) or Hutchinson."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = denoiser(x, sigma, context)
        flat = out.reshape(out.shape[0], -1)
        if exact:
            trace = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for j in range(flat.shape[1]):
                (g,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=True)
                trace = trace + g.reshape(x.shape[0], -1)[:, j]
        else:
            eps = torch.randint(0, 2, x.shape, generator=generator).to(x) * 2 - 1
            (g,) = torch.autograd.grad((out * eps).sum(), x)
            trace = (g * eps).reshape(x.shape[0], -1).sum(-1)
    return out.detach(), trace.detach()


def probability_flow_log_prob(denoiser, x, context=None, sigma_data=1.0, sigma_min=0.002,
                              sigma_max=80.0, num_steps=64, exact_trace=None, generator=None):
    r"""Log-likelihood of ``x`` under the probability-flow ODE of a VE diffusion (Song et al. 2021).

    With :math:`u = \log\sigma` the ODE is :math:`dx/du = x - D(x; e^u)`, and

    .. math:: \log p_{\sigma_\min}(x) = \log\mathcal{N}(x_{\sigma_\max}; 0, (\sigma_\max^2+\sigma_d^2)I)
        + \int_{\log\sigma_\min}^{\log\sigma_\max} \big(d - \mathrm{tr}\,\partial_x D(x_u; e^u)\big)\,du,

    integrated with fixed-step RK4 in :math:`u`. Evaluation only (``num_steps * 4`` denoiser calls with
    gradients); not differentiable.

    :param torch.Tensor x: data of shape ``(N,) + event_shape``.
    :param int num_steps: RK4 steps.
    :param bool exact_trace: exact Jacobian trace (default when ``d <= 16``) or Hutchinson's estimator.
    :returns: log-densities of shape ``(N,)``.
    """
    sigma_min, sigma_max, sigma_data = check_noise_range(sigma_min, sigma_max, sigma_data)
    n = x.shape[0]
    d = math.prod(x.shape[1:])
    exact = d <= 16 if exact_trace is None else bool(exact_trace)
    u_grid = torch.linspace(math.log(sigma_min), math.log(sigma_max), num_steps + 1).tolist()

    def f(state, u):
        sigma = state.new_full((n,), math.exp(u))
        den, tr = _divergence(denoiser, state, sigma, context, exact, generator)
        return state - den, d - tr

    y = x.detach()
    integral = torch.zeros(n, dtype=x.dtype, device=x.device)
    for u0, u1 in zip(u_grid[:-1], u_grid[1:]):
        h = u1 - u0
        k1, a1 = f(y, u0)
        k2, a2 = f(y + 0.5 * h * k1, u0 + 0.5 * h)
        k3, a3 = f(y + 0.5 * h * k2, u0 + 0.5 * h)
        k4, a4 = f(y + h * k3, u1)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        integral = integral + h / 6 * (a1 + 2 * a2 + 2 * a3 + a4)
    var = sigma_max**2 + sigma_data**2
    log_prior = -0.5 * (d * math.log(2 * math.pi * var) + y.reshape(n, -1).pow(2).sum(-1) / var)
    return log_prior + integral
