"""Export posterior (guide) samples, posterior predictive samples and pointwise log-likelihoods of a
sequence model to :class:`arviz.InferenceData`."""

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from .fit import as_model_input
from .forecast import check_history, explain_plate_error, subsample_kwargs
from .protocol import TrainingHooks

__all__ = ["to_inference_data"]

_POINTWISE = ("series", "time", "element")


def _observation_mask(model, x, mask, covariates):
    return TrainingHooks(model).check_inputs(x, mask, covariates)[1]


def _elementwise_log_prob(fn, value):
    """Log-density of every element of ``value`` (unwrapping ``Independent``), masked entries 0."""
    while isinstance(fn, pyro.distributions.Independent):
        fn = fn.base_dist
    return fn.log_prob(value)


def to_inference_data(model, x, num_samples=100, mask=None, covariates=None, pointwise="series", seed=None,
                      chunk_size=8192, index=None, num_series=None):
    r"""Draw ``S = num_samples`` latent trajectories from the guide :math:`q(z \mid x)` and, for each, a
    replicate of the data from :math:`p(x \mid z)`, and collect them with the pointwise
    log-likelihood :math:`\log p(x \mid z)` in an :class:`arviz.InferenceData` (one chain):

    - ``posterior``: every latent site of the guide (e.g. ``z`` with dims ``series, time, latent``),
    - ``posterior_predictive`` and ``observed_data``: ``x`` with dims ``series, time, channel``
      (missing observations are NaN in ``observed_data``),
    - ``log_likelihood``: ``x`` per series (``pointwise="series"``, dims ``series``: leave-one-series-out
      LOO, valid for independent series), per time step (``"time"``: ``series, time``) or per element
      (``"element"``: ``series, time, channel``); missing entries contribute 0. Models whose observation site
      scores whole windows (e.g. :class:`~pyroseq.models.LatentDiffusionSSM`) support only ``"series"``.

    The "posterior" is the variational approximation, so ``az.loo`` importance-samples from it and
    its Pareto-k diagnostics warn when the guide is too narrow. The result works with
    ``az.plot_ppc``, ``az.loo`` and ``to_netcdf``/``from_netcdf``.

    :param model: a model with ``model(x, mask, covariates)`` (observation site ``"x"``) and ``guide``.
    :param torch.Tensor x: sequences of shape ``(N, T, C)``.
    :param int num_samples: number of posterior draws ``S``.
    :param torch.Tensor mask: optional observation mask ``(N, T, C)`` or ``(N, T)``.
    :param torch.Tensor covariates: optional covariates ``(N, T, p)``.
    :param str pointwise: ``"series"``, ``"time"`` or ``"element"`` (see above).
    :param int seed: if given, seed the global generators first.
    :param int chunk_size: maximum number of replicated series per evaluation.
    :param torch.Tensor index: for a local guide (per-series parameters, a plate subsampled from the training
        series): the positions ``(N,)`` of ``x``'s series in the training data (see
        :class:`~pyroseq.models.SequenceModel`). Plate index sites are never reported as variables.
    :param int num_series: the number of training series (with ``index``).
    :returns: an :class:`arviz.InferenceData`.
    """
    import arviz as az  # imported lazily: importing arviz is slow and prints a FutureWarning

    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if pointwise not in _POINTWISE:
        raise ValueError(f"pointwise must be one of {_POINTWISE}, got {pointwise!r}")
    x = as_model_input(model, x)
    mask = as_model_input(model, mask, "mask")
    covariates = as_model_input(model, covariates, "covariates")
    check_history(model, x, mask, covariates, name="x")
    if seed is not None:
        pyro.set_rng_seed(seed)
    S, (N, T, C) = int(num_samples), x.shape
    subsample_kwargs(model, index, num_series, N, fn=model.guide)  # validates index before any work
    observed = _observation_mask(model, x, mask, covariates)
    x_filled = torch.where(observed, x, torch.zeros((), dtype=x.dtype))
    per_chunk = max(1, int(chunk_size) // S)
    latents, predictive, loglik = {}, [], []
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, N, per_chunk):
                sl = slice(start, min(start + per_chunk, N))
                n = sl.stop - sl.start

                def rep(t):
                    return None if t is None else t[sl].repeat((S,) + (1,) * (t.dim() - 1))

                args, kwargs = (rep(x),), {"mask": rep(mask), "covariates": rep(covariates)}
                kwargs.update(subsample_kwargs(model, None if index is None else torch.as_tensor(index)[sl],
                                               num_series, n, times=S, fn=model.guide))
                try:
                    guide_trace = poutine.trace(model.guide).get_trace(*args, **kwargs)
                    # Replay the latents and sample the observation site instead of conditioning on it.
                    model_trace = poutine.trace(poutine.uncondition(poutine.replay(model.model, trace=guide_trace))
                                                ).get_trace(*args, **kwargs)
                except (ValueError, RuntimeError) as e:
                    raise explain_plate_error(e, index) from e
                for name, site in guide_trace.nodes.items():
                    if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
                        value = site["value"]
                        latents.setdefault(name, []).append(value.reshape((S, n) + value.shape[1:]))
                site = model_trace.nodes["x"]
                predictive.append(site["value"].reshape(S, n, T, C))
                lp = _elementwise_log_prob(site["fn"], rep(x_filled))
                if lp.dim() == 1:  # a likelihood of whole windows (diffusion emission): one value per series
                    if pointwise != "series":
                        raise ValueError(f"pointwise={pointwise!r} needs a likelihood that factorises over time; "
                                         "this model scores whole windows, use pointwise='series'")
                    lp = lp.reshape(S, n, 1, 1)
                loglik.append(lp.reshape(S, n, T, -1) if lp.dim() > 1 and lp.numel() > S * n else lp)
    finally:
        if was_training:
            model.train()

    def to_numpy(chunks):
        return torch.cat(chunks, 1).unsqueeze(0).double().numpy()  # (chain=1, draw, series, ...)

    loglik = torch.cat(loglik, 1)
    if pointwise == "series":
        loglik, ll_dims = loglik.sum((-1, -2)), ["series"]
    elif pointwise == "time":
        loglik, ll_dims = loglik.sum(-1), ["series", "time"]
    else:
        ll_dims = ["series", "time", "channel"]
    site_dims = dict(getattr(model, "site_dims", {}))
    posterior = {name: to_numpy(values) for name, values in latents.items()}
    dims = {name: ["series"] + list(site_dims[name]) for name in posterior if name in site_dims}
    dims["x"] = ["series", "time", "channel"]
    coords = {"series": np.arange(N), "time": np.arange(T), "channel": np.arange(C)}
    idata = az.from_dict(
        posterior=posterior,
        posterior_predictive={"x": to_numpy(predictive)},
        observed_data={"x": torch.where(observed, x, torch.full((), np.nan, dtype=x.dtype)).double().numpy()},
        coords=coords,
        dims=dims,
    )
    ll = az.dict_to_dataset({"x": loglik.unsqueeze(0).double().numpy()}, coords=coords, dims={"x": ll_dims})
    idata.add_groups({"log_likelihood": ll})
    return idata
