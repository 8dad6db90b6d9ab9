"""The model protocol of :func:`~pyroseq.inference.fit`, written once: what training calls on a model, with the
default of every optional hook."""

from typing import Protocol, runtime_checkable

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

    - ``check_inputs(x, mask, covariates)``: validate the whole data set once (default: nothing);
    - ``initialize(x, mask, covariates)``: set data-dependent state before training, not on resume (nothing);
    - ``param_groups()``: parameters by role, for per-group learning rates (none: one group);
    - ``latent_sites``: the sites the KL weight scales (none);
    - ``kl_weight``: the current KL weight, told before every step when the model keeps one;
    - ``ema_decay``: the moving-average decay a caller may set (a model without one refuses a setting);
    - ``on_step(step)``: after every optimiser step, e.g. moving averages (nothing).

    :param model: a :class:`TrainableModel`.
    :raises ValueError: if ``model`` lacks ``model`` or ``guide`` methods.
    """

    def __init__(self, model):
        if not isinstance(model, TrainableModel):
            raise ValueError("model must have model(x, mask, covariates) and guide(x, mask, covariates) methods")
        self.model = model

    def check_inputs(self, x, mask=None, covariates=None):
        check = getattr(self.model, "check_inputs", None)
        if check is not None:
            check(x, mask, covariates)

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
        if not hasattr(self.model, "ema_decay"):
            raise ValueError(f"ema_decay={decay} was given but {type(self.model).__name__} keeps no moving average")
        self.model.ema_decay = float(decay)

    def on_step(self, step):
        on_step = getattr(self.model, "on_step", None)
        if on_step is not None:
            on_step(step)
