"""The model protocol of :func:`~pyroseq.inference.fit`, written once: what training calls on a model, with the
default of every optional hook."""

from typing import Protocol, runtime_checkable

import torch

__all__ = ["TrainableModel", "TrainingHooks"]


@runtime_checkable
class TrainableModel(Protocol):
    """What :func:`~pyroseq.inference.fit` requires: a Pyro model/guide pair over sequences ``(N, T, C)`` whose
    observation site is ``"x"`` (every built-in model; :class:`~pyroseq.models.SequenceModel` documents the
    optional hooks :class:`TrainingHooks` calls)."""

    def model(self, x, mask=None, covariates=None):
        ...

    def guide(self, x, mask=None, covariates=None):
        ...


class TrainingHooks:
    """The optional hooks of a :class:`TrainableModel`, as :func:`~pyroseq.inference.fit` calls them, each with its
    default for a model that does not define it:

    - ``check_inputs(x, mask, covariates, horizon=0)``: validate inputs, returning ``(x, observed)`` (default: no
      check, the entries that are not NaN);
    - ``initialize(x, mask, covariates)``: set data-dependent state before training, not on resume (nothing);
    - ``param_groups()``: parameters by role, for per-group learning rates (none: one group);
    - ``latent_sites``: the sites the KL weight scales (none);
    - ``kl_weight``: the current KL weight, told before every step when the model keeps one;
    - ``ema_decay``: the model's moving-average decay, which a caller may restate but not change (a model without
      one refuses any);
    - ``on_step(step)``: after every optimiser step, e.g. moving averages (nothing).

    :param model: a :class:`TrainableModel`.
    :raises ValueError: if ``model`` lacks ``model`` or ``guide`` methods.
    """

    def __init__(self, model):
        if not isinstance(model, TrainableModel):
            raise ValueError("model must have model(x, mask, covariates) and guide(x, mask, covariates) methods")
        self.model = model

    def check_inputs(self, x, mask=None, covariates=None, horizon=0):
        """Validate inputs (with ``horizon`` future steps of covariates) and return ``(x, observed)``: the
        model's answer, or without a check the entries that are not NaN (and not masked)."""
        check = getattr(self.model, "check_inputs", None)
        checked = None
        if check is not None:
            checked = check(x, mask, covariates, horizon=horizon) if horizon else check(x, mask, covariates)
        if checked is not None:
            return checked
        observed = ~torch.isnan(x)
        return x, observed if mask is None else observed & mask.reshape(observed.shape[:2] + (-1,)).bool()

    def initialize(self, x, mask=None, covariates=None):
        initialize = getattr(self.model, "initialize", None)
        if initialize is not None:
            initialize(x, mask=mask, covariates=covariates)

    def param_groups(self):
        groups = getattr(self.model, "param_groups", None)
        return groups() if groups is not None else {}

    @property
    def latent_sites(self):
        return tuple(getattr(self.model, "latent_sites", ()))

    def set_kl_weight(self, weight):
        if hasattr(self.model, "kl_weight"):
            self.model.kl_weight = weight

    def set_ema_decay(self, decay):
        # The model owns its moving-average decay: training may restate it, never change it behind its back.
        if not hasattr(self.model, "ema_decay"):
            raise ValueError(f"ema_decay={decay} was given but {type(self.model).__name__} keeps no moving average")
        if float(decay) != float(self.model.ema_decay):
            raise ValueError(f"fit(ema_decay={decay}) differs from the moving-average decay {self.model.ema_decay} of "
                             f"the {type(self.model).__name__}; the model owns this setting: build it with "
                             f"ema_decay={decay} (or set model.ema_decay) instead")

    def on_step(self, step):
        on_step = getattr(self.model, "on_step", None)
        if on_step is not None:
            on_step(step)
