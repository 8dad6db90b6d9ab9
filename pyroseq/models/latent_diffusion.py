r"""Latent-diffusion state-space model: diffusion latent dynamics and a diffusion emission over whole windows."""

import copy

import pyro
import torch

from ..distributions.density import with_density
from ..distributions.util import check_finite_arg, check_value, validation_enabled
from ..seeding import seeded
from .backbones import BACKBONES, check_forecast_window, forecast_window
from .conditional import ConditionalDiffusion
from .ddssm import DDSSM
from .latent_sequence import TrajectoryDistribution

__all__ = ["LatentDiffusionSSM", "WindowEmission"]


def _flat_batch(t, batch):
    """``t`` expanded to ``batch + t.shape[-2:]`` and flattened to ``(-1,) + t.shape[-2:]``."""
    return t.expand(batch + t.shape[-2:]).reshape((-1,) + t.shape[-2:])


class WindowEmission(TrajectoryDistribution):
    r"""The emission :math:`p(x_{1:T} \mid z_{1:T})` of :class:`LatentDiffusionSSM` in data units: a
    :class:`~pyroseq.models.ConditionalDiffusion` (``observation_planes=False``) over standardised windows,
    conditioned on the latent path, composed with the per-channel affine map to data units.

    ``log_prob(x)`` is the emission's ``log_prob`` (minus its bound, or its EDM surrogate) of the standardised
    window over the observed entries, minus the log-Jacobian :math:`\sum \log s_c` of those entries. For a
    Stage-Diff emission the stages are scored with teacher forcing (each stage conditioned on the previous
    stage of ``x``), while ``sample`` generates stage by stage.

    The batch shape is ``z.shape[:-2]`` (e.g. ``(N,)``, or ``(P, N)`` under vectorised particles or a
    parallel :class:`~pyro.infer.Predictive`); values broadcast against it.

    :param ConditionalDiffusion emission: the emission model.
    :param torch.Tensor z: latent paths ``batch_shape + (T, d)``.
    :param torch.Tensor loc: location ``(C,)``, or per series ``batch_shape + (1, C)`` (broadcastable).
    :param torch.Tensor scale: scale of the same shape as ``loc``.
    :param torch.Tensor observed: boolean ``(T, C)`` or ``batch_shape + (T, C)`` (broadcastable), entries scored
        by ``log_prob`` (default all).
    """

    has_rsample = False

    def __init__(self, emission, z, loc, scale, observed=None, validate_args=None):
        if not torch.is_tensor(z) or z.dim() < 2:
            raise ValueError(f"z must be a tensor of shape batch_shape + (T, d), got "
                             f"{tuple(z.shape) if torch.is_tensor(z) else type(z).__name__}")
        if validation_enabled(validate_args):
            check_finite_arg("z", z)
        T, C = z.shape[-2], emission.obs_dim
        self.emission, self.z, self.loc, self.scale = emission, z, loc, scale
        self.observed = observed
        self.density = None  # the emission's own log_prob (minus its bound); see with_density
        super().__init__(z.shape[:-2], torch.Size([T, C]), validate_args=validate_args)

    def expanded_attributes(self, batch_shape):
        return {"z": self.z.expand(batch_shape + self.z.shape[-2:])}

    def with_density(self, density="ode", num_steps=64, exact_trace=None):
        """A copy whose emission scores windows by ``density`` (see :func:`~pyroseq.distributions.with_density`;
        the ODE needs a fully observed window)."""
        new = copy.copy(self)
        new.density = None if density == "bound" else dict(density=density, num_steps=num_steps,
                                                           exact_trace=exact_trace)
        return new

    def log_prob(self, value):
        """:param torch.Tensor value: windows ``batch_shape + (T, C)`` in data units (broadcastable).
        :returns: a tensor of the broadcast batch shape."""
        check_value(value, self.batch_shape, self.event_shape, self._validate_args)
        batch = torch.broadcast_shapes(value.shape[:-2], self.batch_shape)
        T, C = self.event_shape
        value = _flat_batch(value, batch)
        observed = torch.ones((), dtype=torch.bool, device=value.device) if self.observed is None else self.observed
        observed = observed.expand(batch + (T, C)).reshape(-1, T, C)
        loc, scale = self._affine(batch)
        v = torch.where(observed, (value - loc) / scale, torch.zeros((), dtype=value.dtype))
        lik = self.emission.likelihood(v, torch.zeros_like(observed), observed, _flat_batch(self.z, batch))
        if self.density is not None:
            lik = with_density(lik, **self.density)
        log_jacobian = (observed * scale.log()).sum((-1, -2))
        return (lik.log_prob(v) - log_jacobian).reshape(batch)

    def _affine(self, batch):
        """``loc`` and ``scale`` broadcast to ``batch + (1, C)`` and flattened to ``(-1, 1, C)``."""
        C = self.event_shape[1]
        return tuple(t.expand(batch + (1, C)).reshape(-1, 1, C) for t in (self.loc, self.scale))

    def sample(self, sample_shape=torch.Size()):
        """Generate windows in data units. :returns: ``sample_shape + batch_shape + (T, C)``."""
        shape = torch.Size(sample_shape) + self.batch_shape
        z = _flat_batch(self.z, shape)
        with torch.no_grad():
            x = self.emission.sample(z.shape[0], self.event_shape[0], covariates=z)
        loc, scale = self._affine(shape)
        return (loc + scale * x).reshape(shape + self.event_shape)


class LatentDiffusionSSM(DDSSM):
    r"""A deep state-space model whose two conditionals are both diffusion models:

    .. math::

        p(x_{1:T}, z_{1:T}) = p(z_{1:j}) \prod_{t>j} p_\psi(z_t \mid z_{t-j:t-1}, u_t)\; p_\theta(x_{1:T} \mid z_{1:T}),

    the transition a :class:`~pyroseq.distributions.DiffusionTransition` (as in :class:`DDSSM`) and the emission a
    diffusion likelihood over the whole window whose denoiser (``backbone``: ``"dimts"``, ``"stagediff"`` or
    ``"csdi"``) reads the latent path as conditioning planes (each latent coordinate a plane repeated over the
    channels): the emission is a :class:`~pyroseq.models.ConditionalDiffusion` with ``observation_planes=False``
    and ``covariate_dim = latent_dim``. Guide, initial prior and transition are :class:`DDSSM`'s, so
    :func:`~pyroseq.inference.fit`, :func:`~pyroseq.inference.forecast` and
    :func:`~pyroseq.inference.to_inference_data` work unchanged (the pointwise log-likelihood is per series:
    the emission scores whole windows).

    The observation site ``"x"`` is the emission in data units (per-channel standardisation composed with the
    diffusion likelihood of the standardised window; missing entries are not scored). With
    ``emission_objective="bound"`` (default) its ``log_prob`` is minus the diffusion bound, so the ELBO stays a
    lower bound on :math:`\log p(x)`; ``"edm"`` trains the emission with EDM's surrogate instead.

    Forecasting (:meth:`forecast_model`, ``1 <= H < length``) rolls the transition ``H`` steps forward and samples
    the emission over a window of ``length`` steps whose first ``length - H`` steps are the end of the history (which
    must cover them), fixed by replacement inpainting (:class:`~pyroseq.diffusion.MaskedDenoiser`), conditioned on
    the latent path of that window; the last ``H`` steps are the forecast.

    :param int obs_dim: number of channels ``C``.
    :param int latent_dim: latent dimension ``d``.
    :param int length: window length ``T`` of the emission (training windows have this length for ``"dimts"``,
        a multiple of ``stage_length`` for ``"stagediff"``, any length for ``"csdi"``; forecasting uses windows
        of exactly ``length``).
    :param str backbone: the emission's denoiser, one of :data:`~pyroseq.models.backbones.BACKBONES`.
    :param int order: Markov order ``j`` of the latent process.
    :param int stage_length: stage length of ``"stagediff"`` (default ``length``).
    :param str emission_objective: ``"bound"`` or ``"edm"``.
    :param int emission_num_steps: Heun steps of the emission sampler.
    :param int emission_noise_draws: noise draws per window of the emission bound.
    :param dict emission_net_kwargs: passed to the emission network.
    :param kwargs: passed to :class:`DDSSM` (``covariate_dim``, ``sigma_data``, ``num_steps``, ``denoiser_dim``,
        ``rnn_dim``, ``hidden_dim``, ``ema_decay``, ``local_scaling``, ``seasonal_lag``, ...). With ``seasonal_lag``
        the model fits and forecasts, but :meth:`generate` is not available (the emission samples whole windows,
        while each season's latents need the observations of the season before).
    """

    @property
    def ema_decay(self):
        """Decay of the moving averages of the transition and of the emission network (one setting for both)."""
        return self._ema_decay

    @ema_decay.setter
    def ema_decay(self, value):
        self._ema_decay = float(value)
        if "emission" in self._modules:
            self.emission.ema_decay = self._ema_decay

    def __init__(self, obs_dim, latent_dim, length, backbone="dimts", order=1, stage_length=None,
                 emission_objective="bound", emission_num_steps=20, emission_noise_draws=1, emission_net_kwargs=None,
                 **kwargs):
        super().__init__(obs_dim, latent_dim, order=order, **kwargs)
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {backbone!r}")
        self.backbone = backbone
        self.length = int(length)
        if self.length <= self.order:
            raise ValueError(f"length must exceed order={self.order}, got {length!r}")
        self.emission = ConditionalDiffusion(
            self.obs_dim, self.length, backbone=backbone, stage_length=stage_length, covariate_dim=self.latent_dim,
            observation_planes=False, objective=emission_objective, num_steps=emission_num_steps,
            num_noise_draws=emission_noise_draws, ema_decay=self.ema_decay, **(emission_net_kwargs or {}))

    def check_inputs(self, x, mask=None, covariates=None, horizon=0):
        """As :meth:`DDSSM.check_inputs`; for forecasting the history must also cover ``length - horizon`` steps
        (:meth:`model` checks that the window length suits the emission's backbone)."""
        x, mask = super().check_inputs(x, mask, covariates, horizon=horizon)
        if horizon:
            check_forecast_window(self.length, x.shape[1], horizon)
        return x, mask

    # -- emission --------------------------------------------------------------------------------------

    def emission_distribution(self, z, observed=None, loc=None, scale=None):
        """:math:`p(x_{1:T} \\mid z_{1:T})` in data units (a :class:`WindowEmission`).

        :param torch.Tensor z: latent paths ``(N, T, d)``.
        :param torch.Tensor observed: boolean ``(N, T, C)`` of the entries to score (default all).
        :param loc: location of the standardisation (:meth:`series_scaling`; default the global one).
        :param scale: its scale.
        :returns: a distribution with batch shape ``(N,)`` and event shape ``(T, C)``.
        """
        return WindowEmission(self.emission, z, self.x_loc if loc is None else loc,
                              self.x_scale if scale is None else scale, observed)

    # -- Pyro model: the emission sites of DeepStateSpaceModel.model and forecast_model ----------------

    def _observe(self, x, mask, z, loc, scale):
        """The site ``"x"``: NaN or ``mask=False`` entries are not scored; ``x``'s length must suit the backbone."""
        BACKBONES[self.backbone].check_length(self.emission.net, x.shape[1], name="x's length")
        x_filled = torch.where(mask, x, self.x_loc.to(x.dtype))
        pyro.sample("x", self.emission_distribution(z, mask, loc, scale), obs=x_filled)

    def _forecast_observations(self, x, mask, z, z_future, loc, scale):
        """The site ``"x_future"``: the last ``H`` steps of an emission window inpainted from the end of the history
        (``T >= length - H`` steps), conditioned on the latent path of that window (see the class docstring)."""
        T, C = x.shape[1:]
        horizon = z_future.shape[-2]
        past = self.length - horizon
        window, window_mask = forecast_window((x - loc) / scale, mask, self.length, horizon)
        z_window = torch.cat([z[..., T - past:, :], z_future], -2)
        batch = z_window.shape[:-2]
        sample = self.emission.sample_missing(_flat_batch(window, batch), _flat_batch(window_mask, batch),
                                              _flat_batch(z_window, batch))[0]
        sample = loc + scale * sample[:, past:].reshape(batch + (horizon, C))
        return pyro.deterministic("x_future", sample, event_dim=2)

    @torch.no_grad()
    def generate(self, num_samples, length=None, *, covariates=None, seed=None, return_latents=False,
                 **sampler_settings):
        """Sample series from the prior, in data units.

        :param int num_samples: number of series ``n``.
        :param int length: length ``T`` (default ``length``; must suit the backbone).
        :param torch.Tensor covariates: ``(n, T, p)`` if ``covariate_dim > 0``.
        :param int seed: seed of the sampling (reproducible output; the global random state is left as it was).
        :param bool return_latents: also return the latent paths.
        :param sampler_settings: the emission sampler's ``num_steps`` and ``use_ema``.
        :returns: ``x`` of shape ``(n, T, C)``, or ``(x, z)`` with ``z`` ``(n, T, d)`` if ``return_latents``.
        """
        if self.seasonal_lags:
            raise ValueError("generate needs the observations of each season before the next one's latents, but "
                             "the emission samples whole windows: it is not available with seasonal_lag")
        length = self.length if length is None else length
        if int(length) != length or length <= self.order:
            raise ValueError(f"length must be an integer > order={self.order}, got {length!r}")
        num_samples, length, covariates = self._check_generate(num_samples, length, covariates)
        with seeded(seed, self.x_loc.device):
            z = self._sample_latents(num_samples, length, covariates)
            x = self.emission.sample(num_samples, length, covariates=z, **sampler_settings)
        x = self.x_loc + self.x_scale * x
        return (x, z) if return_latents else x

    # -- training hooks --------------------------------------------------------------------------------

    def param_groups(self):
        """As :meth:`DDSSM.param_groups`, the ``"decoder"`` group being the emission network."""
        groups = super().param_groups()
        groups["decoder"] = list(self.emission.net.parameters())
        return groups

    @torch.no_grad()
    def on_step(self, step=None):
        """Update the moving averages of the transition and of the emission network."""
        super().on_step(step)
        self.emission.on_step(step)
