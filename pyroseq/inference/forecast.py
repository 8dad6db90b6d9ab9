"""Probabilistic forecasts by posterior predictive sampling (:class:`pyro.infer.Predictive`)."""

import pyro
import torch
from pyro.infer import Predictive
from pyro.poutine.util import site_is_subsample

__all__ = ["forecast", "check_history"]


def check_history(model, x, mask=None, covariates=None, horizon=0, name="x_hist"):
    """Validate a history batch ``x`` of shape ``(N, T, C)``: generic checks here, model-specific
    ones (channels, minimum length, covariates) by ``model.check_inputs`` if the model has it.

    :raises ValueError: for a wrong type or rank, an empty batch, or a series without observed values.
    """
    if not torch.is_tensor(x) or not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating point torch.Tensor of shape (N, T, C), got "
                         f"{type(x).__name__ if not torch.is_tensor(x) else x.dtype}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have rank 3, shape (N, T, C), got shape {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one series of at least one step, got {tuple(x.shape)}")
    if torch.isnan(x).flatten(1).all(1).any():
        raise ValueError(f"{name} has series with no observed value (all NaN)")
    if hasattr(model, "check_inputs"):
        try:
            model.check_inputs(x, mask, covariates, horizon=horizon)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None


def _repeat(t, times):
    return None if t is None else t.repeat((times,) + (1,) * (t.dim() - 1))


def forecast(model, x_hist, horizon, num_samples=100, mask=None, covariates=None, chunk_size=8192, seed=None,
             return_sites=("x_future",)):
    r"""Sample forecasts :math:`x_{T+1:T+H} \sim p(x_{T+1:T+H} \mid x_{1:T})`: the guide encodes the
    history, the transition is rolled forward from the encoded latent state, the emission decodes.
    Uses :class:`pyro.infer.Predictive` on ``model.forecast_model`` conditioned on one draw of the latent
    history from ``model.guide`` per replicated series; the ``S``
    samples of all ``N`` series are drawn as one batch of ``S * N`` replicated series (in chunks of at
    most ``chunk_size`` series, so memory stays bounded).

    :param model: a model with ``guide(x, mask, covariates)`` and ``forecast_model(x, horizon, mask,
        covariates)`` (see :class:`~pyroseq.models.SequenceModel`).
    :param torch.Tensor x_hist: histories of shape ``(N, T, C)``; NaN marks missing entries.
    :param int horizon: number of future steps ``H >= 1``.
    :param int num_samples: number of samples ``S``.
    :param torch.Tensor mask: optional observation mask ``(N, T, C)`` or ``(N, T)``.
    :param torch.Tensor covariates: covariates ``(N, T + H, p)`` if the model uses them.
    :param int chunk_size: maximum number of replicated series per Predictive call.
    :param int seed: if given, seed the global generators first.
    :param tuple return_sites: sites to return; with the default the result is a tensor.
    :returns: samples of shape ``(S, N, H, C)`` (or a dict site -> ``(S, N, ...)`` for other
        ``return_sites``).
    :raises ValueError: for a bad history (rank, too short, all-NaN series) or bad arguments.
    """
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    check_history(model, x_hist, mask, covariates, horizon=int(horizon))
    if seed is not None:
        pyro.set_rng_seed(seed)
    N, T, _ = x_hist.shape
    horizon, S = int(horizon), int(num_samples)

    def guide(x, horizon, mask=None, covariates=None):
        return model.guide(x, mask=mask, covariates=None if covariates is None else covariates[:, :T])

    def forecast_model(x, horizon, mask=None, covariates=None):
        return model.forecast_model(x, horizon, mask=mask, covariates=covariates)

    def predictive(x, horizon, mask=None, covariates=None):
        # Draw the latent history from the guide once and condition the forecast model on it: Predictive
        # traces its model more than once (plate-nesting guess, site shapes), and with the guide passed to
        # it those extra passes would sample the whole latent history from the prior (a T-step rollout of
        # the transition) only to throw it away.
        guide_trace = pyro.poutine.trace(guide).get_trace(x, horizon, mask=mask, covariates=covariates)
        history = {name: site["value"] for name, site in guide_trace.nodes.items()
                   if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)}
        conditioned = pyro.poutine.condition(forecast_model, data=history)
        return Predictive(conditioned, num_samples=1, return_sites=list(return_sites))(
            x, horizon, mask=mask, covariates=covariates)
    # Replicate whole series S times; chunk over series so that every chunk holds all S copies.
    per_chunk = max(1, chunk_size // S)
    outputs = {site: [] for site in return_sites}
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            for start in range(0, N, per_chunk):
                sl = slice(start, min(start + per_chunk, N))
                n = sl.stop - sl.start
                out = predictive(_repeat(x_hist[sl], S), horizon, mask=_repeat(None if mask is None else mask[sl], S),
                                 covariates=_repeat(None if covariates is None else covariates[sl], S))
                for site in return_sites:
                    value = out[site][0]
                    outputs[site].append(value.reshape((S, n) + value.shape[1:]))
    finally:
        if was_training:
            model.train()
    result = {site: torch.cat(values, 1) for site, values in outputs.items()}
    return result["x_future"] if tuple(return_sites) == ("x_future",) else result
