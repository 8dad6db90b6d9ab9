"""Probabilistic forecasts by posterior predictive sampling (:class:`pyro.infer.Predictive`)."""

import pyro
import torch
from pyro.infer import Predictive
from pyro.poutine.util import site_is_subsample

from .protocol import TrainingHooks

__all__ = ["forecast", "check_history", "explain_plate_error", "subsample_kwargs"]


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
    try:
        TrainingHooks(model).check_inputs(x, mask, covariates, horizon=horizon)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def _repeat(t, times):
    return None if t is None else t.repeat((times,) + (1,) * (t.dim() - 1))


def subsample_kwargs(model, index, num_series, n, times=1, fn=None):
    """The ``index``/``num_series`` keyword arguments of a model or guide with a plate subsampled from a data
    set (a local guide), for a batch of ``n`` series replicated ``times`` times; empty if ``index`` is None.

    :raises ValueError: if ``index`` is given but the guide does not take it, or has the wrong shape.
    """
    if index is None:
        return {}
    from .fit import takes_index

    for name in ("guide", "forecast_model") if fn is None else ():
        if hasattr(model, name) and not takes_index(getattr(model, name)):
            raise ValueError(f"index was given but the model's {name} does not take the keyword arguments index "
                             f"and num_series")
    if fn is not None and not takes_index(fn):
        raise ValueError("index was given but the guide does not take the keyword arguments index and num_series")
    index = torch.as_tensor(index)
    if index.shape != (n,) or index.dtype in (torch.bool,) or index.is_floating_point():
        raise ValueError(f"index must be an integer tensor of shape (N,) = ({n},), the positions of the series in "
                         f"the training data, got {tuple(index.shape)} {index.dtype}")
    if num_series is None:
        raise ValueError("num_series (the number of series the local guide was trained on) is required with index")
    return dict(index=index.long().repeat(times), num_series=int(num_series))


def explain_plate_error(error, index):
    """Re-raise a plate shape mismatch of a local guide called without ``index`` as a ValueError that names
    the requirement; other errors are returned unchanged."""
    if index is None and "plate" in str(error) and ("Shape mismatch" in str(error) or "subsample" in str(error)):
        return ValueError(
            "the guide's plate did not match the batch of series (a local guide with per-series parameters?): "
            "pass index= (the positions of these series in the training data, a long tensor (N,)) and "
            f"num_series= (the number of training series). Pyro said: {str(error).splitlines()[0]}")
    return error


def forecast(model, x_hist, horizon, num_samples=100, mask=None, covariates=None, chunk_size=8192, seed=None,
             return_sites=("x_future",), index=None, num_series=None):
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
    :param torch.Tensor index: for a local guide (per-series parameters, a plate subsampled from the training
        series): the positions ``(N,)`` of the histories' series in the training data; passed with
        ``num_series`` to the guide and the forecast model (see :class:`~pyroseq.models.SequenceModel`).
    :param int num_series: the number of training series (with ``index``).
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
    from .fit import as_model_input

    x_hist = as_model_input(model, x_hist, "x_hist")
    mask = as_model_input(model, mask, "mask")
    covariates = as_model_input(model, covariates, "covariates")
    check_history(model, x_hist, mask, covariates, horizon=int(horizon))
    if seed is not None:
        pyro.set_rng_seed(seed)
    N, T, _ = x_hist.shape
    horizon, S = int(horizon), int(num_samples)
    subsample_kwargs(model, index, num_series, N)  # validates index before any work

    def guide(x, horizon, mask=None, covariates=None, **extra):
        return model.guide(x, mask=mask, covariates=None if covariates is None else covariates[:, :T], **extra)

    def forecast_model(x, horizon, mask=None, covariates=None, **extra):
        return model.forecast_model(x, horizon, mask=mask, covariates=covariates, **extra)

    def predictive(x, horizon, mask=None, covariates=None, **extra):
        # Draw the latent history from the guide once and condition the forecast model on it: Predictive
        # traces its model more than once (plate-nesting guess, site shapes), and with the guide passed to
        # it those extra passes would sample the whole latent history from the prior (a T-step rollout of
        # the transition) only to throw it away.
        try:
            guide_trace = pyro.poutine.trace(guide).get_trace(x, horizon, mask=mask, covariates=covariates, **extra)
        except (ValueError, RuntimeError) as e:
            raise explain_plate_error(e, index) from e
        history = {name: site["value"] for name, site in guide_trace.nodes.items()
                   if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)}
        conditioned = pyro.poutine.condition(forecast_model, data=history)
        try:
            return Predictive(conditioned, num_samples=1, return_sites=list(return_sites))(
                x, horizon, mask=mask, covariates=covariates, **extra)
        except (ValueError, RuntimeError) as e:
            raise explain_plate_error(e, index) from e
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
                extra = subsample_kwargs(model, None if index is None else torch.as_tensor(index)[sl], num_series, n,
                                         times=S)
                out = predictive(_repeat(x_hist[sl], S), horizon, mask=_repeat(None if mask is None else mask[sl], S),
                                 covariates=_repeat(None if covariates is None else covariates[sl], S), **extra)
                for site in return_sites:
                    value = out[site][0]
                    outputs[site].append(value.reshape((S, n) + value.shape[1:]))
    finally:
        if was_training:
            model.train()
    result = {site: torch.cat(values, 1) for site, values in outputs.items()}
    return result["x_future"] if tuple(return_sites) == ("x_future",) else result
