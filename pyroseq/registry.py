"""The built-in models by name: one table that the command line, the run configurations and the model builder
all read. Importing it does not import torch (the command line parses its arguments without it); the model
classes are imported when a model is built.

Adding a model means adding one :class:`ModelEntry` here (and its class in :mod:`pyroseq.models`)."""

import importlib
from dataclasses import dataclass, field

__all__ = ["ModelEntry", "MODEL_REGISTRY", "model_names", "get_model_entry"]


def _tuples(kwargs):
    """JSON lists as the tuples the constructors expect (one level deep)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


@dataclass(frozen=True)
class ModelEntry:
    """A built-in model.

    :param str name: the name in configurations and on the command line.
    :param str target: ``"module:Class"`` of the model class.
    :param frozenset abilities: among ``"forecast"`` (a guide and a forecast model, for
        :func:`~pyroseq.inference.forecast`), ``"generate"`` (whole windows from the prior: the generative models
        the command line scales to ``[0, 1]``) and ``"impute"`` (``impute`` of missing values).
    :param tuple positional: constructor arguments filled from the data, in order: ``"obs_dim"``,
        ``"latent_dim"`` (default ``obs_dim``), ``"length"`` (the window length) or ``"stage_length"`` (default
        ``min(64, length)``, a divisor of it).
    :param dict defaults: further keyword defaults of a run (e.g. DiM-TS's ``data_range``).
    :param str summary: one line for listings.
    """

    name: str
    target: str
    abilities: frozenset
    positional: tuple = ("obs_dim",)
    defaults: dict = field(default_factory=dict)
    summary: str = ""

    @property
    def cls(self):
        """The model class (imports :mod:`pyroseq.models`)."""
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)

    def build(self, obs_dim, length, **kwargs):
        """Construct the model for data with ``obs_dim`` channels in windows of ``length`` steps.

        :param int obs_dim: number of channels ``C``.
        :param int length: the training window length ``T``.
        :param kwargs: the model's keyword arguments (JSON lists become tuples, also inside
            ``emission_net_kwargs``).
        :raises ValueError: for a bad ``stage_length`` or bad arguments of the constructor.
        """
        kwargs = _tuples({**self.defaults, **kwargs})
        if isinstance(kwargs.get("emission_net_kwargs"), dict):
            kwargs["emission_net_kwargs"] = _tuples(kwargs["emission_net_kwargs"])
        args = []
        for name in self.positional:
            if name == "obs_dim":
                args.append(obs_dim)
            elif name == "latent_dim":
                args.append(kwargs.pop("latent_dim", obs_dim))
            elif name == "length":
                args.append(length)
            elif name == "stage_length":
                stage_length = kwargs.pop("stage_length", min(64, length))
                if not isinstance(stage_length, int) or stage_length < 1 or length % stage_length:
                    raise ValueError(f"model_kwargs.stage_length={stage_length!r} must be a positive integer that "
                                     f"divides data.length={length}")
                args.append(stage_length)
        return self.cls(*args, **kwargs)


MODEL_REGISTRY = {entry.name: entry for entry in (
    ModelEntry("dkf", "pyroseq.models:DKF", frozenset({"forecast"}), ("obs_dim", "latent_dim"),
               summary="deep Kalman filter: Gaussian latent transition (the baseline of DDSSM)"),
    ModelEntry("ddssm", "pyroseq.models:DDSSM", frozenset({"forecast"}), ("obs_dim", "latent_dim"),
               summary="diffusion-driven state-space model: diffusion latent transition"),
    ModelEntry("conditional", "pyroseq.models:ConditionalDiffusion", frozenset({"forecast", "impute"}),
               ("obs_dim", "length"), summary="conditional diffusion of windows: imputation, forecasting"),
    ModelEntry("latent_diffusion", "pyroseq.models:LatentDiffusionSSM", frozenset({"forecast"}),
               ("obs_dim", "latent_dim", "length"),
               summary="DDSSM dynamics with a diffusion emission over whole windows"),
    ModelEntry("dimts", "pyroseq.models:DiMTS", frozenset({"generate"}), ("obs_dim", "length"),
               summary="DiM-TS: Mamba diffusion generator of fixed-length windows"),
    ModelEntry("stagediff", "pyroseq.models:StageDiff", frozenset({"generate"}), ("obs_dim", "stage_length"),
               summary="Stage-Diff: staged diffusion generator of series of any length"),
)}


def model_names(ability=None):
    """Names of the built-in models, in registry order; only those with ``ability`` if given.

    :param str ability: ``"forecast"``, ``"generate"``, ``"impute"`` or None.
    """
    return tuple(name for name, entry in MODEL_REGISTRY.items() if ability is None or ability in entry.abilities)


def get_model_entry(name):
    """The :class:`ModelEntry` of ``name``.

    :raises ValueError: for an unknown name, listing the known ones.
    """
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_REGISTRY)}") from None
