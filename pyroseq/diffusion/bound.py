"""The continuous-time variational bound on -log p of a VE diffusion, and EDM's surrogate loss."""

import math

import torch

from .noise import standard_normal
from .noise_proposal import DefensiveNoiseProposal
from .validation import check_noise_range

__all__ = ["prior_kl", "diffusion_nll_bound", "edm_loss", "repeat_context", "check_target_mask"]


def repeat_context(context, times):
    """Tile a context (tensor, tuple/list of tensors, dict of tensors or None) ``times`` times along
    dim 0, matching ``x.repeat(times, ...)``."""
    if context is None:
        return None
    if torch.is_tensor(context):
        return context.repeat((times,) + (1,) * (context.dim() - 1))
    if isinstance(context, (tuple, list)):
        return type(context)(repeat_context(c, times) for c in context)
    if isinstance(context, dict):
        return {k: repeat_context(v, times) for k, v in context.items()}
    raise ValueError(f"context must be a tensor, tuple, list, dict or None, got {type(context)}")


def check_target_mask(target_mask, x):
    """Validate a target mask for ``x`` and return it as ``x``'s dtype (1 = modelled entry), or None.

    :param torch.Tensor target_mask: boolean or 0/1 tensor of ``x``'s shape, or None (all entries).
    :param torch.Tensor x: data of shape ``(N,) + event_shape``.
    :raises ValueError: if the shape differs from ``x``'s.
    """
    if target_mask is None:
        return None
    if not torch.is_tensor(target_mask) or target_mask.shape != x.shape:
        shape = tuple(target_mask.shape) if torch.is_tensor(target_mask) else type(target_mask).__name__
        raise ValueError(f"target_mask must have the shape of x {tuple(x.shape)}, got {shape}")
    return target_mask.to(dtype=x.dtype, device=x.device)


def _event_sum(v, event_dim):
    return v.reshape(v.shape[: v.dim() - event_dim] + (-1,)).sum(-1)


def prior_kl(x, event_dim, sigma_max, sigma_data, target_mask=None):
    r""":math:`\mathrm{KL}(\mathcal{N}(x, \sigma_\max^2 I)\,\|\,\mathcal{N}(0, (\sigma_\max^2+\sigma_d^2) I))`.

    :param torch.Tensor x: data of shape ``batch_shape + event_shape``.
    :param int event_dim: number of event dimensions.
    :param torch.Tensor target_mask: optional 0/1 tensor of ``x``'s shape: only entries with 1 count.
    :returns: a tensor of shape ``batch_shape``.
    """
    var = sigma_max**2 + sigma_data**2
    sq = x.pow(2)
    if target_mask is None:
        d = math.prod(x.shape[x.dim() - event_dim :])
    else:
        d = _event_sum(target_mask, event_dim)
        sq = sq * target_mask
    return 0.5 * (d * (sigma_max**2 / var - 1.0 + math.log(var / sigma_max**2)) + _event_sum(sq, event_dim) / var)


def _integral_c_skip_sq(sigma_min, sigma_max, sigma_data):
    r""":math:`\int_{\log\sigma_\min}^{\log\sigma_\max} c_\text{skip}(\sigma)^2\,d\log\sigma` in closed
    form: with :math:`y = \sigma^2/\sigma_d^2` the antiderivative is
    :math:`\tfrac12(\log\tfrac{y}{1+y} + \tfrac1{1+y})`."""

    def antiderivative(sigma):
        y = sigma**2 / sigma_data**2
        return 0.5 * (math.log(y / (1 + y)) + 1 / (1 + y))

    return antiderivative(sigma_max) - antiderivative(sigma_min)


def diffusion_nll_bound(
    denoiser,
    x,
    event_dim,
    context=None,
    sigma_data=1.0,
    sigma_min=0.002,
    sigma_max=80.0,
    num_noise_draws=1,
    proposal=None,
    generator=None,
    target_mask=None,
):
    r"""Unbiased estimate of the continuous-time variational bound (VDM, Kingma et al. 2021, in EDM's
    variance-exploding parameterisation) on :math:`-\log p(x \mid c)`:

    .. math::

        -\log p(x) \le \mathrm{KL}(\mathcal{N}(x,\sigma_\max^2 I)\,\|\,\mathcal{N}(0,(\sigma_\max^2+\sigma_d^2)I))
        + \tfrac d2\log(2\pi\sigma_\min^2) + \frac{\mathbb{E}\|x - D(x+\sigma_\min\epsilon;\sigma_\min)\|^2}
        {2\sigma_\min^2}
        + \int_{\log\sigma_\min}^{\log\sigma_\max} \sigma^{-2}\,
        \mathbb{E}_\epsilon\|x - D(x+\sigma\epsilon;\sigma)\|^2\,d\log\sigma.

    The integral is estimated by importance sampling ``u = log sigma`` from a
    :class:`DefensiveNoiseProposal` stratified across the batch; every example gets
    ``num_noise_draws`` independent draws, averaged. All denoiser evaluations happen in one call.

    :param callable denoiser: ``denoiser(x_noisy, sigma, context) -> x0_hat``.
    :param torch.Tensor x: clean data of shape ``(N,) + event_shape``.
    :param int event_dim: ``len(event_shape)``.
    :param context: conditioning for each of the ``N`` examples (leading dim ``N``), or None.
    :param float sigma_data: data scale, used by the prior term.
    :param float sigma_min: smallest noise level (reconstruction term).
    :param float sigma_max: largest noise level (prior term).
    :param int num_noise_draws: Monte Carlo draws per example.
    :param DefensiveNoiseProposal proposal: proposal over ``log sigma`` (default: the defensive mixture).
    :param torch.Tensor target_mask: optional boolean (or 0/1) tensor of ``x``'s shape marking the entries
        the bound is over (CSDI-style conditional training: the other entries are conditioning, passed to the
        denoiser through ``context``). Every sum over the event (errors, noise, the dimension ``d`` of the
        Gaussian terms) then runs over the marked entries only, which bounds :math:`-\log p(x_\mathrm{target}
        \mid x_\mathrm{cond}, c)` when the denoiser returns the conditioning entries exactly.
    :returns: a tensor of shape ``(N,)``: an unbiased estimate of an upper bound on ``-log p(x)``.
    """
    sigma_min, sigma_max, sigma_data = check_noise_range(sigma_min, sigma_max, sigma_data)
    if int(num_noise_draws) < 1:
        raise ValueError(f"num_noise_draws must be a positive integer, got {num_noise_draws}")
    K = int(num_noise_draws)
    if proposal is None:
        proposal = DefensiveNoiseProposal(sigma_min, sigma_max)
    N = x.shape[0]
    event_shape = x.shape[1:]
    if len(event_shape) != event_dim:
        raise ValueError(f"x must have shape (N,) + event_shape with {event_dim} event dims")
    target = check_target_mask(target_mask, x)
    d = math.prod(event_shape) if target is None else _event_sum(target, event_dim).repeat(2 * K)
    view = (-1,) + (1,) * event_dim

    u, log_r = proposal.sample(K * N, generator=generator)
    sigma = u.exp().to(x.dtype).to(x.device)
    inv_r = (-log_r).exp().to(x.dtype).to(x.device)
    sigma_all = torch.cat([sigma, sigma.new_full((K * N,), sigma_min)])
    x_rep = x.repeat((2 * K,) + (1,) * event_dim)
    noise = standard_normal(x_rep.shape, x.dtype, x.device, generator)
    x0_hat = denoiser(x_rep + sigma_all.reshape(view) * noise, sigma_all, repeat_context(context, 2 * K))
    err, noise_sq = (x_rep - x0_hat).pow(2), noise.pow(2)
    if target is not None:
        target_rep = target.repeat((2 * K,) + (1,) * event_dim)
        err, noise_sq = err * target_rep, noise_sq * target_rep
    err, noise_sq = _event_sum(err, event_dim), _event_sum(noise_sq, event_dim)
    err_diff, err_rec = err[: K * N], err[K * N :]
    d_diff, d_rec = (d, d) if target is None else (d[: K * N], d[K * N :])

    # Control variate: a denoiser is near the identity at small sigma, where ||x - D||^2 / sigma^2
    # is close to w(sigma) ||eps||^2 with w = c_skip^2; that term has a closed-form integral, so we
    # subtract it draw by draw and add its exact expectation back. This keeps the estimate unbiased
    # and removes the chi-square noise that otherwise dominates its variance.
    w = (sigma_data**2 / (sigma_all.pow(2) + sigma_data**2)).pow(2)
    control = w * noise_sq
    l_diff = (err_diff / sigma.pow(2) - control[: K * N]) * inv_r + d_diff * _integral_c_skip_sq(
        sigma_min, sigma_max, sigma_data
    )
    w_min = (sigma_data**2 / (sigma_min**2 + sigma_data**2)) ** 2
    l_rec = (
        0.5 * d_rec * math.log(2 * math.pi * sigma_min**2)
        + (err_rec / sigma_min**2 - control[K * N :]) / 2
        + 0.5 * d_rec * w_min
    )
    per_draw = (l_diff + l_rec).reshape(K, N).mean(0)
    return prior_kl(x, event_dim, sigma_max, sigma_data, target) + per_draw


def edm_loss(denoiser, x, event_dim, context=None, sigma_data=1.0, P_mean=-1.2, P_std=1.2,
             generator=None, target_mask=None):
    r"""EDM's weighted denoising loss, a training *surrogate* (not a bound):

    .. math:: \lambda(\sigma)\,\|D(x+\sigma\epsilon;\sigma) - x\|^2,\quad
        \log\sigma\sim\mathcal{N}(P_\text{mean}, P_\text{std}^2),\quad
        \lambda = (\sigma^2+\sigma_d^2)/(\sigma\sigma_d)^2,

    summed over the event dims (so it scales like a log-likelihood) and halved.

    :param torch.Tensor x: clean data of shape ``(N,) + event_shape``.
    :param torch.Tensor target_mask: optional boolean (or 0/1) tensor of ``x``'s shape: the sum runs over
        the marked entries only (see :func:`diffusion_nll_bound`).
    :returns: a tensor of shape ``(N,)``.
    """
    target = check_target_mask(target_mask, x)
    N = x.shape[0]
    view = (-1,) + (1,) * event_dim
    z = standard_normal((N,), x.dtype, x.device, generator)
    sigma = (P_mean + P_std * z).exp()
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    noise = standard_normal(x.shape, x.dtype, x.device, generator)
    x0_hat = denoiser(x + sigma.reshape(view) * noise, sigma, context)
    err = (x0_hat - x).pow(2)
    if target is not None:
        err = err * target
    return 0.5 * weight * err.reshape(N, -1).sum(-1)
