"""Importance-weighted (IWAE-K) bounds on the log-likelihood of whole sequences."""

import contextlib
import math

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ..distributions.density import EvaluationDensity
from .forecast import check_history

__all__ = ["iwae_bound"]


def _per_series_log_prob(trace, n):
    """Sum of the log-densities of all sample sites of ``trace``, per element of the size-``n`` plate."""
    total = torch.zeros(n)
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        lp = site["fn"].log_prob(site["value"])
        if lp.shape != (n,):
            raise ValueError(f"site {name!r} has log_prob shape {tuple(lp.shape)}; iwae_bound needs every site "
                             f"in the series plate with batch shape (N,)")
        total = total + lp.to(total.dtype)
    return total


def iwae_bound(model, x, num_particles=64, mask=None, covariates=None, chunk_size=4096, seed=None,
               diffusion_log_prob="bound", ode_steps=32):
    r"""IWAE-K bound (Burda et al. 2016) on :math:`\log p(x_n)` of every sequence,

    .. math:: \mathcal{L}_K(x) = \mathbb{E}\Big[\log \frac1K \sum_{k=1}^K
        \frac{p(x, z^{(k)})}{q(z^{(k)} \mid x)}\Big] \le \log p(x),\quad z^{(k)} \sim q(\cdot \mid x),

    computed from traces of ``model.guide`` and ``model.model`` (replayed) with all ``K`` particles of
    all series in one batch (chunked). Unscaled (no KL weight). ``K = 1`` gives the ELBO.

    If a site's ``log_prob`` is itself a stochastic lower bound (a diffusion transition with
    ``diffusion_log_prob="bound"``), only ``K = 1`` is a valid bound in expectation: for ``K > 1`` the
    log-mean-exp of noisy estimates is biased *upwards* (Jensen's inequality runs the other way inside
    the log). With ``diffusion_log_prob="ode"`` diffusion sites are scored by the deterministic
    probability-flow ODE (:class:`~pyroseq.distributions.EvaluationDensity`), which makes ``K > 1`` valid
    for the ODE model at ``4 * ode_steps`` denoiser calls per transition.

    :param model: a model with ``model(x, mask, covariates)`` and ``guide(x, mask, covariates)`` whose
        sites all live in one plate over the ``N`` series.
    :param torch.Tensor x: sequences of shape ``(N, T, C)``.
    :param int num_particles: number of importance samples ``K``.
    :param torch.Tensor mask: optional observation mask.
    :param torch.Tensor covariates: optional covariates ``(N, T, p)``.
    :param int chunk_size: maximum number of replicated series per evaluation.
    :param int seed: if given, seed the global generators first.
    :param str diffusion_log_prob: ``"bound"`` (minus the stochastic variational bound) or ``"ode"``.
    :param int ode_steps: RK4 steps of the ODE log-density.
    :returns: a tensor of shape ``(N,)`` (nats per sequence).
    """
    if int(num_particles) != num_particles or num_particles < 1:
        raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
    if diffusion_log_prob not in ("bound", "ode"):
        raise ValueError(f"diffusion_log_prob must be 'bound' or 'ode', got {diffusion_log_prob!r}")
    check_history(model, x, mask, covariates, name="x")
    if seed is not None:
        pyro.set_rng_seed(seed)
    K, N = int(num_particles), x.shape[0]
    per_chunk = max(1, int(chunk_size) // K)
    results = []
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        scoring = EvaluationDensity("ode", ode_steps) if diffusion_log_prob == "ode" else contextlib.nullcontext()
        with torch.no_grad(), scoring:
            for start in range(0, N, per_chunk):
                sl = slice(start, min(start + per_chunk, N))
                n = sl.stop - sl.start

                def rep(t):
                    return None if t is None else t[sl].repeat((K,) + (1,) * (t.dim() - 1))

                args, kwargs = (rep(x),), {"mask": rep(mask), "covariates": rep(covariates)}
                guide_trace = poutine.trace(model.guide).get_trace(*args, **kwargs)
                model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(*args, **kwargs)
                log_w = _per_series_log_prob(model_trace, K * n) - _per_series_log_prob(guide_trace, K * n)
                results.append(log_w.reshape(K, n).logsumexp(0) - math.log(K))
    finally:
        if was_training:
            model.train()
    return torch.cat(results)
