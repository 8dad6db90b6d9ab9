"""Construct the model a run configuration names, with readable errors for bad model arguments."""

import torch

from ..registry import get_model_entry
from .errors import UsageError

__all__ = ["build_model"]


def build_model(config, obs_dim, length, covariate_dim=0):
    """Construct the model of a validated configuration (under ``train.seed``, so that rebuilding gives the
    same initial weights), through its :class:`~pyroseq.registry.ModelEntry`.

    ``ema_decay`` defaults to ``train.ema_decay``; the arguments filled in from the data and the JSON lists
    turned into tuples are those of :meth:`~pyroseq.registry.ModelEntry.build`.

    :param dict config: the configuration (see :func:`~pyroseq.runs.validate_config`).
    :param int obs_dim: number of channels ``C`` of the data.
    :param int length: window length ``T`` of the training data.
    :param int covariate_dim: number of calendar covariates ``p`` per step (``data.calendar``), 0 for none.
    :returns: a :class:`~pyro.nn.PyroModule` (DKF, DDSSM, DiMTS, StageDiff, ConditionalDiffusion or
        LatentDiffusionSSM).
    :raises UsageError: for unknown or invalid ``model_kwargs``.
    """
    name, kwargs = config["model"], dict(config["model_kwargs"])
    for key in ("obs_dim", "length") + (("channels",) if name == "stagediff" else ()):
        if key in kwargs:
            raise UsageError(f"config: model_kwargs.{key} is set from the data; remove it")
    if kwargs.get("covariate_dim"):
        # The only covariates of a run are the calendar covariates of data.calendar, which set covariate_dim.
        raise UsageError("config: model_kwargs.covariate_dim is not supported by the command line; remove it "
                         "(calendar covariates: data.calendar)")
    if covariate_dim:
        kwargs["covariate_dim"] = int(covariate_dim)
    kwargs.setdefault("ema_decay", config["train"]["ema_decay"])  # the model owns its moving average
    torch.manual_seed(config["train"]["seed"])
    try:
        return get_model_entry(name).build(obs_dim, length, **kwargs)
    except (TypeError, ValueError) as e:
        raise UsageError(f"config: bad model_kwargs for model {name!r}: {e}") from None
