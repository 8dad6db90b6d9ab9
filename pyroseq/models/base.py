"""The model protocol of :func:`pyroseq.inference.fit` and the shared body of deep state-space models
(DKF, DDSSM): structured guide, learned initial prior, masked Gaussian emission, forecasting model."""

import copy

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.params.param_store import param_with_module_name
from torch import nn

from ..nn.encoders import Combiner, FutureSummary
from ..seeding import seeded
from .emission import GaussianEmission
from .initial_prior import InitialPrior
from .latent_sequence import AutoregressiveGaussianSequence, LatentMarkovSequence

__all__ = ["SequenceModel", "DeepStateSpaceModel", "as_float_tensor", "channel_standardization", "check_sequences",
           "series_standardization",
           "ema_update", "register_parameters", "series_plate"]


def register_parameters(module, prefix):
    """Expose every trainable parameter of ``module`` to Pyro as ``pyro.param(prefix + "$$$" + name, p)``
    (what :func:`pyro.module` does), so that :class:`~pyro.infer.SVI` with any :mod:`pyro.optim` optimiser
    trains the module the caller holds.

    If the param store already holds another tensor under one of these names (a model built earlier in the
    session under the same name), that entry is replaced by this module's parameter: the module object is
    the source of truth, never a stale copy in the store. Frozen parameters (``requires_grad=False``, e.g.
    moving averages) are not registered.

    :param torch.nn.Module module: the module.
    :param str prefix: the name prefix (a model's :attr:`SequenceModel.pyro_name`).
    """
    store = pyro.get_param_store()
    stored = store._params  # read-only look-up: indexing the store itself builds a constraint transform per name
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        full = param_with_module_name(prefix, name)
        if stored.get(full, param) is not param:
            del store[full]
        pyro.param(full, param)


def as_float_tensor(value, dtype, name="x"):
    """Convert a floating point numpy array, or a tensor of another floating dtype (e.g. float64), to a
    tensor of ``dtype``; boolean arrays become boolean tensors (masks). Everything else passes through
    unchanged, so that the validators downstream name what is wrong with it (integer data, lists, ...).

    :param value: a :class:`numpy.ndarray`, a tensor or None.
    :param torch.dtype dtype: the model's floating point dtype.
    :param str name: argument name used in error messages.
    """
    if isinstance(value, np.ndarray) and (value.dtype == np.bool_ or np.issubdtype(value.dtype, np.floating)):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if torch.is_tensor(value) and torch.is_floating_point(value) and value.dtype != dtype:
        value = value.to(dtype)
    return value


def series_plate(name, size, index=None, num_series=None):
    """The plate over the ``N`` series of a batch: ``pyro.plate(name, size)``, or, when the batch is the
    subsample ``index`` of a data set of ``num_series`` series (local guides with per-series parameters),
    ``pyro.plate(name, num_series, subsample=index)`` (which scales log-densities by ``num_series / N``).

    :param str name: plate name.
    :param int size: number of series ``N`` in the batch.
    :param torch.Tensor index: optional long tensor ``(N,)`` of the batch's positions in the data set.
    :param int num_series: size of the data set (required with ``index``).
    """
    if index is None:
        return pyro.plate(name, size)
    if num_series is None:
        raise ValueError("num_series (the size of the data set) is required with index")
    index = torch.as_tensor(index)
    if index.shape != (size,):
        raise ValueError(f"index must have shape (N,) = ({size},), got {tuple(index.shape)}")
    return pyro.plate(name, int(num_series), subsample=index)


class SequenceModel(PyroModule):
    """The protocol a model object follows to be trained by :func:`~pyroseq.inference.fit`, forecast by
    :func:`~pyroseq.inference.forecast` and checked by :func:`~pyroseq.inference.to_inference_data`.

    Required:

    - ``model(x, mask=None, covariates=None)`` and ``guide(x, mask=None, covariates=None)``: a Pyro
      model/guide pair; ``x`` has shape ``(N, T, C)``; all sample sites live in a plate of size ``N``
      and the observation site is named ``"x"`` with value shape ``(N, T, C)``. Both call
      :meth:`register_params` first, so every trainable parameter is visible to Pyro and plain
      :class:`~pyro.infer.SVI` trains the whole model. Under :func:`pyro.poutine.uncondition` the site
      ``"x"`` is sampled, which makes :class:`~pyro.infer.Predictive` give replicates of the data::

          svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
          ppc = Predictive(poutine.uncondition(m.model), guide=m.guide, num_samples=S, parallel=True)(x)
          ppc["x"]   # (S, N, T, C)

    Local guides: a model/guide pair whose methods take the keyword arguments ``index`` (a long tensor
    ``(N,)``, the batch's positions in the data set) and ``num_series`` (the data set's size) get them from
    :func:`~pyroseq.inference.fit`, :func:`~pyroseq.inference.forecast` and
    :func:`~pyroseq.inference.to_inference_data`, for plates ``pyro.plate("series", num_series,
    subsample=index)`` (see :func:`series_plate`). The state-space models accept them.

    Optional:

    - ``latent_sites``: names of the latent sites the KL weight of :func:`fit` scales.
    - ``param_groups() -> dict[str, list[Parameter]]`` with keys among ``"encoder"``, ``"decoder"``,
      ``"transition"``, ``"initial"``, ``"denoiser"`` (per-group learning rates).
    - ``ema_decay`` (attribute) and ``on_step(step)``: called after every optimiser step (EMA updates).
    - ``kl_weight`` (attribute): set by :func:`fit` to the current KL weight before every step.
    - ``initialize(x, mask=None, covariates=None)``: called once by :func:`fit` before training starts
      (not on resume), e.g. to set data scaling buffers.
    - ``forecast_model(x, horizon, mask=None, covariates=None)``: a model with a ``"x_future"`` site of
      shape ``(N, horizon, C)``, used with the guide by :func:`~pyroseq.inference.forecast`.
    - ``check_inputs(x, mask=None, covariates=None, horizon=0)``: validates inputs, raising ValueError.
    """

    latent_sites = ()

    @property
    def pyro_name(self):
        """The prefix of this model's parameters in Pyro's param store: the attribute name if the model is a
        submodule of another :class:`~pyro.nn.PyroModule`, else the class name in lower case."""
        return self._pyro_name or type(self).__name__.lower()

    def register_params(self):
        """Register every trainable parameter with Pyro (called at the start of :meth:`model` and
        :meth:`guide`, so plain :class:`~pyro.infer.SVI` trains all of them); see
        :func:`register_parameters`."""
        register_parameters(self, self.pyro_name)

    def model(self, x, mask=None, covariates=None):
        """The generative model (observation site ``"x"``); ``x`` has shape ``(N, T, C)``."""
        raise NotImplementedError

    def guide(self, x, mask=None, covariates=None):
        """The variational distribution over the latent sites of :meth:`model`."""
        raise NotImplementedError


def check_sequences(x, mask=None, covariates=None, obs_dim=None, min_length=1, covariate_dim=0, horizon=0,
                    name="x", validate=True):
    """Validate a batch of sequences and build the observation mask.

    :param torch.Tensor x: sequences of shape ``(N, T, C)``; NaN marks a missing entry.
    :param torch.Tensor mask: optional boolean mask of shape ``(N, T, C)`` or ``(N, T)`` (True = observed).
    :param torch.Tensor covariates: optional covariates of shape ``(N, T + horizon, p)``.
    :param int obs_dim: expected number of channels ``C`` (None: any).
    :param int min_length: smallest allowed ``T``.
    :param int covariate_dim: expected ``p`` (0: covariates must be None).
    :param int horizon: number of future steps the covariates must also cover.
    :param str name: argument name used in error messages.
    :param bool validate: also check the values (infinite entries, series without observations, non-finite
        covariates), which reads every element; shapes are always checked. Models pass Pyro's validation
        switch here, so training with ``pyro.enable_validation(False)`` skips these passes.
    :returns: ``(x, mask)`` with ``mask`` boolean of shape ``(N, T, C)`` (False where ``x`` is NaN).
    :raises ValueError: for a wrong type or rank, a wrong number of channels, a too-short series,
        infinite values, a series without any observed entry, or mismatched mask/covariates.
    """
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, T, C), got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have rank 3, shape (N, T, C), got shape {tuple(x.shape)}")
    N, T, C = x.shape
    if N < 1:
        raise ValueError(f"{name} must hold at least one series, got shape {tuple(x.shape)}")
    if obs_dim is not None and C != obs_dim:
        raise ValueError(f"{name} must have {obs_dim} channels (last dim), got {C}")
    if T < min_length:
        raise ValueError(f"{name} is too short: {T} time steps, the model needs at least {min_length}")
    if validate and torch.isinf(x).any():
        raise ValueError(f"{name} contains infinite values (use NaN for missing entries)")
    observed = ~torch.isnan(x)
    if mask is not None:
        if not torch.is_tensor(mask):
            raise ValueError(f"mask must be a boolean tensor, got {type(mask).__name__}")
        if mask.shape == (N, T):
            mask = mask.unsqueeze(-1)
        if mask.dim() != 3 or mask.shape[:2] != (N, T) or mask.shape[2] not in (1, C):
            raise ValueError(f"mask must have shape (N, T, C) = {(N, T, C)} or (N, T), got {tuple(mask.shape)}")
        observed = observed & mask.bool()
    empty = (~observed.flatten(1).any(1)).nonzero().flatten() if validate else ()
    if len(empty):
        raise ValueError(f"{name} has {len(empty)} series with no observed value (all NaN or masked), e.g. "
                         f"series {empty[:5].tolist()}")
    if covariate_dim:
        if covariates is None:
            raise ValueError(f"covariates of shape (N, T + horizon, {covariate_dim}) are required")
        if not torch.is_tensor(covariates) or covariates.shape != (N, T + horizon, covariate_dim):
            raise ValueError(f"covariates must have shape {(N, T + horizon, covariate_dim)}, got "
                             f"{tuple(covariates.shape) if torch.is_tensor(covariates) else covariates}")
        if validate and not torch.isfinite(covariates).all():
            raise ValueError("covariates contain NaN or infinite values")
    elif covariates is not None:
        raise ValueError("covariates were given but the model has covariate_dim=0")
    return x, observed


@torch.no_grad()
def ema_update(average, module, updates, decay):
    """One step of an exponential moving average of ``module``'s parameters into ``average`` (same
    architecture; buffers are copied), with the warm-up ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates.

    :param torch.nn.Module average: the averaged copy (updated in place).
    :param torch.nn.Module module: the trained module.
    :param torch.Tensor updates: 0-dim long counter ``n`` (incremented in place).
    :param float decay: the target decay.
    """
    n = int(updates)
    rate = 1 - min(decay, (1 + n) / (10 + n))
    for p_ema, p in zip(average.parameters(), module.parameters()):
        p_ema.lerp_(p.detach(), rate)
    for b_ema, b in zip(average.buffers(), module.buffers()):
        b_ema.copy_(b)
    updates += 1


def channel_standardization(x, mask):
    """Per-channel mean and standard deviation of the observed entries of ``x``.

    :param torch.Tensor x: sequences ``(N, T, C)``.
    :param torch.Tensor mask: boolean ``(N, T, C)``, True where observed.
    :returns: ``(mean, std)``, each of shape ``(C,)``.
    :raises ValueError: if a channel is constant or has fewer than two observed values.
    """
    C = x.shape[-1]
    flat, observed = x.reshape(-1, C), mask.reshape(-1, C)
    count = observed.sum(0)
    if (count < 2).any():
        raise ValueError(f"x needs at least two observed values per channel, got counts {count.tolist()}")
    filled = torch.where(observed, flat, torch.zeros((), dtype=x.dtype))
    mean = filled.sum(0) / count
    var = torch.where(observed, flat - mean, torch.zeros((), dtype=x.dtype)).pow(2).sum(0) / (count - 1)
    constant = (var <= 1e-12 * (1 + mean.pow(2))).nonzero().flatten()
    if len(constant):
        raise ValueError(f"x has constant channels {constant.tolist()}: they carry no information to model")
    return mean, var.sqrt()


#: Floor of the per-series scale of ``local_scaling``, in global standard deviations: a near-constant
#: stretch would otherwise blow its series up.
LOCAL_SCALE_FLOOR = 0.2


def series_standardization(x, mask, steps, floor=LOCAL_SCALE_FLOOR):
    """Per-series, per-channel mean and standard deviation of the observed entries among the first ``steps``
    steps (instance normalisation, as RevIN).

    :param torch.Tensor x: sequences ``(..., T, C)`` (finite wherever ``mask`` is True).
    :param torch.Tensor mask: boolean ``(..., T, C)``, True where observed.
    :param int steps: number of leading steps ``K`` the statistics read (all ``T`` if ``T < K``).
    :param float floor: smallest standard deviation returned.
    :returns: ``(mean, std)``, each of shape ``(..., 1, C)``; a channel without observed entries among them gets
        ``(0, 1)``, one with a single entry ``(that entry, floor)``.
    """
    x, mask = x[..., :steps, :], mask[..., :steps, :]
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    count = mask.sum(-2, keepdim=True).to(x.dtype)
    mean = torch.where(mask, x, zero).sum(-2, keepdim=True) / count.clamp_min(1)
    var = torch.where(mask, x - mean, zero).pow(2).sum(-2, keepdim=True) / (count - 1).clamp_min(1)
    std = torch.where(count > 0, var.sqrt().clamp_min(floor), torch.ones((), dtype=x.dtype, device=x.device))
    return mean, std


def seasonal_inputs(x, mask, lag, length):
    """The values ``lag`` steps back, as inputs of the steps ``0 .. length - 1``: ``x_{t - lag}`` and its mask where
    ``0 <= t - lag < T`` and observed, else 0 and 0.

    :param torch.Tensor x: sequences ``(..., T, C)`` (finite wherever ``mask`` is True).
    :param torch.Tensor mask: boolean ``(..., T, C)``, True where observed.
    :param int lag: the season ``s >= 1``.
    :param int length: number of steps ``L`` to make inputs for (``T`` for the data, ``T + H`` to forecast).
    :returns: ``(..., L, 2C)``: lagged values (0 where unknown), then their mask as 0/1.
    """
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    parts = torch.cat([torch.where(mask, x, zero), mask.to(x.dtype)], -1)
    out = parts.new_zeros(parts.shape[:-2] + (length, parts.shape[-1]))
    n = min(length - lag, x.shape[-2])
    if n > 0:
        out[..., lag: lag + n, :] = parts[..., :n, :]
    return out


class DeepStateSpaceModel(SequenceModel):
    r"""Shared body of deep state-space models of order ``j``:

    .. math::

        p(x, z) = p(z_{1:j}) \prod_{t>j} p_\psi(z_t \mid z_{t-j:t-1}, u_t) \prod_t p_\theta(x_t \mid z_t),
        \qquad q(z \mid x) = \prod_t q(z_t \mid z_{t-j:t-1}, h_t),\ h_t = \mathrm{GRU}(x_{T:t}).

    Sample sites (all in the plate ``"series"``): ``"z_init_aux"`` (auxiliary variables of the learned
    initial prior, event ``(j, d)``), ``"z"`` (the whole trajectory, event ``(T, d)``; the model scores all
    its transitions with one call of the transition), ``"x"`` (observed, event ``(T, C)``, masked where
    data are missing); :meth:`forecast_model` adds ``"z_future"`` and ``"x_future"``.

    Subclasses define :meth:`transition_distribution` and ``self.transition`` (an ``nn.Module``;
    an exponential moving average copy is used for sampling).

    Observations are standardised internally with per-channel location/scale buffers set by
    :meth:`initialize` (called by :func:`~pyroseq.inference.fit`). With ``local_scaling=K`` each series is
    then standardised again by the mean and standard deviation of its own first ``K`` steps (instance
    normalisation, as RevIN; :func:`series_standardization`), and the emission maps back: the model describes
    each series relative to its recent level and spread, so forecasts follow the series' own level instead
    of being pulled towards the training mean. Train on windows whose first ``K`` steps play the history
    and forecast from histories of ``K`` steps; :meth:`generate` (no data to read) returns series at the
    global level and scale.

    :param int obs_dim: number of channels ``C``.
    :param int latent_dim: latent dimension ``d``.
    :param int order: Markov order ``j >= 1`` of the latent process.
    :param int covariate_dim: number of covariates ``p`` of the transition (0 for none).
    :param int rnn_dim: size of the guide's backward GRU.
    :param int hidden_dim: width of the combiner, emission and initial prior networks.
    :param bool state_dependent_scale: emission scale depends on :math:`z_t`.
    :param float min_scale: lower bound of all Gaussian scales (in standardised units).
    :param float ema_decay: decay of the moving average of the transition used for sampling.
    :param int local_scaling: number of leading steps ``K >= 2`` whose statistics standardise each series, or
        None (default: the global standardisation only).
    :param seasonal_lag: a season ``s`` (e.g. 24 for hourly data), several (e.g. ``(24, 48, 72)``), or None.
        The transition then also reads the (standardised) observations ``s`` steps back and their mask,
        :math:`p(z_t \mid z_{t-j:t-1}, u_t, x_{t-s})`, as DeepAR reads its seasonal lags: the latent state
        need not carry the whole last season. Steps whose lag lies before the data see it as missing. A forecast
        reaches at most the shortest lag ahead (its lags are then all in the history); :meth:`generate` samples
        one shortest lag at a time.
    """

    latent_sites = ("z", "z_init_aux")
    #: ArviZ dimension names of the latent sites (after the leading ``series`` dim).
    site_dims = {"z": ("time", "latent"), "z_init_aux": ("lag", "latent")}

    def __init__(self, obs_dim, latent_dim, order=1, covariate_dim=0, rnn_dim=64, hidden_dim=64,
                 state_dependent_scale=False, min_scale=1e-3, ema_decay=0.999, local_scaling=None,
                 seasonal_lag=None):
        super().__init__()
        for arg, value, low in (("obs_dim", obs_dim, 1), ("latent_dim", latent_dim, 1), ("order", order, 1),
                                ("covariate_dim", covariate_dim, 0), ("rnn_dim", rnn_dim, 1),
                                ("hidden_dim", hidden_dim, 1)):
            if int(value) != value or value < low:
                raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if local_scaling is not None and (int(local_scaling) != local_scaling or local_scaling < 2):
            raise ValueError(f"local_scaling must be None or an integer >= 2 (steps), got {local_scaling!r}")
        self.local_scaling = None if local_scaling is None else int(local_scaling)
        lags = () if seasonal_lag is None else tuple(seasonal_lag) if hasattr(seasonal_lag, "__len__") else (
            seasonal_lag,)
        if not all(int(s) == s and s >= 1 for s in lags) or (seasonal_lag is not None and not lags):
            raise ValueError(f"seasonal_lag must be None, an integer >= 1 (steps) or a sequence of them, got "
                             f"{seasonal_lag!r}")
        #: the seasonal lags the transition reads, shortest first (empty for none)
        self.seasonal_lags = tuple(sorted({int(s) for s in lags}))
        self.obs_dim, self.latent_dim, self.order = int(obs_dim), int(latent_dim), int(order)
        if self.seasonal_lags and self.seasonal_lags[0] < self.order:
            raise ValueError(f"seasonal_lag must be >= order={self.order}, got {seasonal_lag}")
        self.covariate_dim = int(covariate_dim)
        #: inputs of the transition per step: the covariates, then the seasonal lags and their mask
        self.transition_input_dim = self.covariate_dim + 2 * self.obs_dim * len(self.seasonal_lags)
        self.ema_decay = float(ema_decay)
        self.encoder = FutureSummary(self.obs_dim, rnn_dim, self.covariate_dim)
        # The combiner sees the backward-GRU summary h_t of x_{t:T} and, as a shortcut, x_t and its mask.
        self.combiner = Combiner(self.latent_dim, rnn_dim + 2 * self.obs_dim, self.order, hidden_dim, min_scale)
        # The learned states z_{1-j:0} that start the autoregressive guide.
        self.guide_initial = nn.ParameterDict({"states": nn.Parameter(torch.zeros(self.order, self.latent_dim))})
        self.emission = GaussianEmission(self.latent_dim, self.obs_dim, hidden_dim, state_dependent_scale,
                                         min_scale)
        self.initial = InitialPrior(self.latent_dim, self.order, hidden_dim, min_scale)
        self.register_buffer("x_loc", torch.zeros(self.obs_dim))
        self.register_buffer("x_scale", torch.ones(self.obs_dim))
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    # -- set-up ----------------------------------------------------------------------------------------

    def _init_ema(self):
        """Call at the end of a subclass constructor, after setting ``self.transition``."""
        self.transition_ema = copy.deepcopy(self.transition)
        for p in self.transition_ema.parameters():
            p.requires_grad_(False)

    def check_inputs(self, x, mask=None, covariates=None, horizon=0):
        """Validate ``x`` (N, T, C), ``mask`` and ``covariates`` (N, T + horizon, p); see
        :func:`check_sequences`. Returns ``(x, mask)`` with a full boolean mask."""
        if self.seasonal_lags and horizon > self.seasonal_lags[0]:
            raise ValueError(f"with seasonal lags {self.seasonal_lags} a forecast reaches at most "
                             f"{self.seasonal_lags[0]} steps ahead (its lags must be in the history), got "
                             f"horizon={horizon}")
        dtype = self.x_loc.dtype
        return check_sequences(as_float_tensor(x, dtype), as_float_tensor(mask, dtype),
                               as_float_tensor(covariates, dtype, "covariates"), obs_dim=self.obs_dim,
                               min_length=self.order, covariate_dim=self.covariate_dim, horizon=horizon,
                               validate=pyro.poutine.util.is_validation_enabled())

    @torch.no_grad()
    def initialize(self, x, mask=None, covariates=None):
        """Set the per-channel standardisation from the observed entries of ``x`` (N, T, C).

        :raises ValueError: if a channel is constant or has fewer than two observed values.
        """
        x, mask = self.check_inputs(x, mask, covariates)
        mean, std = channel_standardization(x, mask)
        self.x_loc.copy_(mean)
        self.x_scale.copy_(std)

    def _checked(self, x, mask, covariates, horizon=0):
        """:meth:`check_inputs`, also returning the covariates in the model's dtype."""
        x, mask = self.check_inputs(x, mask, covariates, horizon=horizon)
        return x, mask, as_float_tensor(covariates, x.dtype, "covariates")

    # -- pieces ----------------------------------------------------------------------------------------

    def transition_distribution(self, history, covariates=None, sampling=False):
        """The transition :math:`p(z_t \\mid z_{t-j:t-1}, u_t)`: a distribution with batch shape
        ``history.shape[:-2]`` and event shape ``(d,)``. ``sampling=True`` uses the moving average."""
        raise NotImplementedError

    def _transition_module(self, sampling):
        if sampling and int(self.ema_updates) > 0:
            return self.transition_ema
        return self.transition

    def series_scaling(self, x, mask):
        """Location and scale (data units) that standardise each series: the global per-channel buffers,
        refined by each series' first ``local_scaling`` steps if set.

        :param torch.Tensor x: sequences ``(N, T, C)``.
        :param torch.Tensor mask: boolean ``(N, T, C)``, True where observed.
        :returns: ``(loc, scale)``, each ``(C,)`` or, with ``local_scaling``, ``(N, 1, C)``.
        """
        if self.local_scaling is None:
            return self.x_loc, self.x_scale
        # series_standardization reads only the observed entries, so missing (NaN) ones need no filling.
        mean, std = series_standardization((x - self.x_loc) / self.x_scale, mask, self.local_scaling)
        return self.x_loc + self.x_scale * mean, self.x_scale * std

    def observation_distribution(self, z, loc=None, scale=None):
        """:math:`p(x_t \\mid z_t)` in data units: ``Normal`` with batch shape ``z.shape[:-1] + (C,)``.

        :param torch.Tensor z: latent states ``(..., T, d)``.
        :param loc: location of the standardisation (:meth:`series_scaling`; default the global one).
        :param scale: its scale.
        """
        loc = self.x_loc if loc is None else loc
        scale = self.x_scale if scale is None else scale
        mean, sd = self.emission(z)
        return dist.Normal(loc + scale * mean, scale * sd)

    def transition_inputs(self, x, mask, covariates, length, loc=None, scale=None):
        """Inputs of the transition at the steps ``0 .. length - 1``: the covariates, then for each seasonal lag
        ``s`` the observations ``s`` steps back standardised by ``loc``/``scale`` (:meth:`series_scaling`) and their
        mask (:func:`seasonal_inputs`).

        :param torch.Tensor x: sequences ``(N, T, C)``.
        :param torch.Tensor mask: boolean ``(N, T, C)``.
        :param torch.Tensor covariates: ``(N, length, p)`` or None.
        :param int length: number of steps ``L``.
        :returns: ``(N, L, p + 2C * len(seasonal_lags))`` with seasonal lags, else ``covariates``.
        """
        if not self.seasonal_lags:
            return covariates
        loc = self.x_loc if loc is None else loc
        scale = self.x_scale if scale is None else scale
        x = (x - loc) / scale
        parts = [] if covariates is None else [covariates[..., :length, :]]
        return torch.cat(parts + [seasonal_inputs(x, mask, s, length) for s in self.seasonal_lags], -1)

    def _latent_sequence(self, length, covariates, sampling, **start):
        """:class:`LatentMarkovSequence` of this model's transition, from ``initial=`` or ``history=``."""
        return LatentMarkovSequence(lambda h, u: self.transition_distribution(h, u, sampling=sampling), length,
                                    self.order, covariates=covariates, **start)

    def _latent_prior(self, N, length, covariates, sampling):
        """The prior of ``"z"``, after sampling the site ``"z_init_aux"``."""
        aux = pyro.sample("z_init_aux", self.initial.aux_prior((N,), dtype=self.x_loc.dtype, device=self.x_loc.device))
        return self._latent_sequence(length, covariates, sampling, initial=self.initial.conditional(aux))

    # -- Pyro model and guide --------------------------------------------------------------------------

    def model(self, x, mask=None, covariates=None, *, index=None, num_series=None):
        """Generative model.

        :param torch.Tensor x: observations of shape ``(N, T, C)``; NaN marks missing entries.
        :param torch.Tensor mask: optional boolean mask ``(N, T, C)`` or ``(N, T)`` (True = observed).
        :param torch.Tensor covariates: covariates ``(N, T, p)`` if ``covariate_dim > 0``.
        :param torch.Tensor index: optional positions ``(N,)`` of the batch in a data set of ``num_series``
            series (plate subsampling for local guides, see :func:`series_plate`).
        :param int num_series: the data set's size (with ``index``).
        """
        self.register_params()
        x, mask, covariates = self._checked(x, mask, covariates)
        N, T, _ = x.shape
        loc, scale = self.series_scaling(x, mask)
        inputs = self.transition_inputs(x, mask, covariates, T, loc, scale)
        with series_plate("series", N, index, num_series):
            z = pyro.sample("z", self._latent_prior(N, T, inputs, False))
            self._observe(x, mask, z, loc, scale)

    def _observe(self, x, mask, z, loc, scale):
        """The observation site ``"x"`` of :meth:`model`, given the latent paths and the standardisation."""
        # Missing entries are filled with a finite value and masked out, so nothing (and no NaN)
        # flows from them into the loss or the gradients.
        x_filled = torch.where(mask, x, torch.zeros((), dtype=x.dtype))
        pyro.sample("x", self.observation_distribution(z, loc, scale).mask(mask).to_event(2), obs=x_filled)

    def guide(self, x, mask=None, covariates=None, *, index=None, num_series=None):
        """Structured guide: backward GRU summary of the future, autoregressive reparameterised
        Gaussian over ``z``, auxiliary posterior of the initial prior. Arguments as :meth:`model`."""
        self.register_params()
        x, mask, covariates = self._checked(x, mask, covariates)
        loc, scale = self.series_scaling(x, mask)
        x_std = torch.where(mask, (x - loc) / scale, torch.zeros((), dtype=x.dtype))
        summary = torch.cat([self.encoder(x_std, mask, covariates), x_std, mask.to(x.dtype)], -1)
        with series_plate("series", x.shape[0], index, num_series):
            z = pyro.sample("z", AutoregressiveGaussianSequence(self.combiner, summary, self.guide_initial.states))
            pyro.sample("z_init_aux", self.initial.aux_posterior(z[..., : self.order, :]))

    def forecast_model(self, x, horizon, mask=None, covariates=None, *, index=None, num_series=None):
        """The generative model over the history ``x`` (its latent sites are meant to be replayed from
        the guide) continued ``horizon`` steps: sites ``"z_future"`` (N, H, d) and ``"x_future"``
        (N, H, C), sampled with the moving-average transition.

        :param torch.Tensor x: history of shape ``(N, T, C)``.
        :param int horizon: number of future steps ``H``.
        :param torch.Tensor covariates: covariates ``(N, T + H, p)`` if ``covariate_dim > 0``.
        :param torch.Tensor index: as in :meth:`model`.
        :param int num_series: as in :meth:`model`.
        :returns: ``x_future`` of shape ``(N, H, C)``.
        """
        x, mask, covariates = self._checked(x, mask, covariates, horizon)
        N, T, _ = x.shape
        loc, scale = self.series_scaling(x, mask)
        inputs = self.transition_inputs(x, mask, covariates, T + horizon, loc, scale)
        past = None if inputs is None else inputs[:, :T]
        future = None if inputs is None else inputs[:, T:]
        with series_plate("series", N, index, num_series):
            z = pyro.sample("z", self._latent_prior(N, T, past, True))
            z_future = pyro.sample("z_future", self._latent_sequence(horizon, future, True,
                                                                     history=z[..., T - self.order:, :]))
            return self._forecast_observations(x, mask, z, z_future, loc, scale)

    def _forecast_observations(self, x, mask, z, z_future, loc, scale):
        """The site ``"x_future"`` of :meth:`forecast_model`, given the latent paths of history and future."""
        return pyro.sample("x_future", self.observation_distribution(z_future, loc, scale).to_event(2))

    def _sample_latents(self, num_samples, length, covariates):
        aux = self.initial.aux_prior((num_samples,), dtype=self.x_loc.dtype, device=self.x_loc.device).sample()
        return self._latent_sequence(length, covariates, True, initial=self.initial.conditional(aux)).sample()

    def _sample_prior(self, num_samples, length, covariates):
        """``(z, x)`` from the prior, one shortest seasonal lag at a time (at once without seasonal lags): each
        block's transition reads the observations sampled before it (none for the first, as at the start of the
        data)."""
        lag = self.seasonal_lags[0] if self.seasonal_lags else length
        x = torch.zeros(num_samples, 0, self.obs_dim, dtype=self.x_loc.dtype, device=self.x_loc.device)
        z = None
        for start in range(0, length, lag):
            stop = min(start + lag, length)
            inputs = self.transition_inputs(x, torch.ones_like(x, dtype=torch.bool), covariates, stop)
            if z is None:
                z = z_new = self._sample_latents(num_samples, stop, inputs)
            else:  # later blocks only with seasonal lags, so the inputs are a tensor
                prior = self._latent_sequence(stop - start, inputs[:, start:], True, history=z[:, -self.order:])
                z_new = prior.sample()
                z = torch.cat([z, z_new], 1)
            x = torch.cat([x, self.observation_distribution(z_new).sample()], 1)
        return z, x

    def _check_generate(self, num_samples, length, covariates):
        if length is None:
            raise ValueError(f"length is required: {type(self).__name__} generates series of any length >= "
                             f"order={self.order}")
        if int(length) != length or length < self.order:
            raise ValueError(f"length must be an integer >= order={self.order}, got {length!r}")
        if int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        num_samples, length = int(num_samples), int(length)
        if self.covariate_dim or covariates is not None:
            covariates = as_float_tensor(covariates, self.x_loc.dtype, "covariates")
            check_sequences(torch.zeros(num_samples, length, self.obs_dim, dtype=self.x_loc.dtype), None,
                            covariates, covariate_dim=self.covariate_dim)
            covariates = covariates.to(self.x_loc.device)
        return num_samples, length, covariates

    @torch.no_grad()
    def generate(self, num_samples, length=None, *, covariates=None, seed=None, return_latents=False):
        """Sample series from the prior (moving-average transition), in data units.

        :param int num_samples: number of series ``n``.
        :param int length: length ``T >= order`` (required: the model has no intrinsic length).
        :param torch.Tensor covariates: covariates ``(n, T, p)`` if ``covariate_dim > 0``.
        :param int seed: seed of the sampling (reproducible output; the global random state is left as it was), or
            None (the global generators).
        :param bool return_latents: also return the latent paths.
        :returns: ``x`` of shape ``(n, T, C)`` on the model's device and dtype, or ``(x, z)`` with ``z`` of shape
            ``(n, T, d)`` if ``return_latents``.
        """
        num_samples, length, covariates = self._check_generate(num_samples, length, covariates)
        with seeded(seed, self.x_loc.device):
            z, x = self._sample_prior(num_samples, length, covariates)
        return (x, z) if return_latents else x

    # -- training hooks --------------------------------------------------------------------------------

    def param_groups(self):
        """Parameters by role, for per-group learning rates in :func:`~pyroseq.inference.fit`."""
        return {
            "encoder": [*self.encoder.parameters(), *self.combiner.parameters(),
                        *self.guide_initial.parameters()],
            "decoder": list(self.emission.parameters()),
            "initial": list(self.initial.parameters()),
            self.transition_group: list(self.transition.parameters()),
        }

    transition_group = "transition"

    @torch.no_grad()
    def on_step(self, step=None):
        """Update the moving average of the transition (call after every optimiser step); the decay
        warms up as ``min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates."""
        ema_update(self.transition_ema, self.transition, self.ema_updates, self.ema_decay)
