r"""Conditional diffusion models of windows: imputation and forecasting (CSDI-style) with a CSDI, DiM-TS
or Stage-Diff denoiser."""

import math

import pyro
import torch

from ..checks import positive_int as _positive_int
from ..distributions import check_observation_mask
from ..seeding import seeded
from .backbones import BACKBONES, check_forecast_window, forecast_window
from .base import as_float_tensor, check_sequences, series_standardization
from .masking import MASK_STRATEGIES, conditioning_mask
from .range_scaling import ChannelStandardizer
from .window_diffusion import DiffusionSettings, WindowDiffusion

__all__ = ["ConditionalDiffusion"]


class ConditionalDiffusion(WindowDiffusion):
    r"""A conditional diffusion model of windows of ``length`` steps and ``C`` channels,
    :math:`p(x_\mathrm{target} \mid x_\mathrm{cond}, u)`, trained CSDI-style (Tashiro et al. 2021): every
    training window splits its observed entries at random into conditioning and targets
    (:func:`~pyroseq.models.masking.conditioning_mask`), and the observation site is a
    :class:`~pyroseq.distributions.ConditionalDiffusionLikelihood` over the targets, whose denoiser reads the
    conditioning values and mask as two planes (plus one plane per covariate). The same model then

    - imputes any pattern of missing entries (:meth:`impute`), and
    - forecasts: the last ``length - H`` steps of a history are the conditioning of a window whose last ``H``
      steps are generated (:meth:`forecast_model`, used by :func:`~pyroseq.inference.forecast`).

    Observed entries are never changed. The denoiser is chosen by ``backbone`` (:data:`BACKBONES`):

    - ``"csdi"``: :class:`~pyroseq.nn.CSDIDenoiserNet`;
    - ``"dimts"``: :class:`~pyroseq.nn.DiMTSNet` (DiM-TS's Mamba network, fixed length);
    - ``"stagediff"``: :class:`~pyroseq.nn.StageDiffNet`: a window of ``k`` stages is modelled stage by stage,
      each stage conditioned on the fused history of the previous (clean) stage and on its own planes; sampling
      runs stage by stage on the previously *imputed* stage.

    Data are standardised per channel (:meth:`initialize`, called by :func:`~pyroseq.inference.fit`;
    :class:`~pyroseq.models.range_scaling.ChannelStandardizer`), so ``sigma_data = 1``. With
    ``local_scaling=True`` each window is standardised again by the mean and standard deviation of its own
    conditioning entries (per channel; :func:`~pyroseq.models.base.series_standardization`), which for a
    forecast are the history: the network sees every window at a common level and scale, and its draws are
    mapped back to the window's own.

    Example::

        model = ConditionalDiffusion(obs_dim=7, length=120, backbone="csdi", horizon=24)
        fit(model, windows, num_steps=3000, batch_size=32)            # windows (N, 120, 7)
        fc = forecast(model, history, horizon=24, num_samples=100)   # (100, N, 24, 7)
        filled = model.impute(x_with_nans, num_samples=50)           # (50, N, L, 7)

    ``objective``, ``sigma_data`` (1 for standardised data), ``sigma_min``, ``sigma_max``, ``num_noise_draws``,
    ``num_steps``, ``sample_chunk_size`` and ``sampler`` (of imputation and forecasts; also settable later,
    ``model.sampler = "dpm2m"``) are those of :class:`~pyroseq.models.window_diffusion.DiffusionSettings`,
    ``ema_decay`` and ``covariate_dim`` (inputs then need ``covariates`` ``(N, T, p)``) those of
    :class:`~pyroseq.models.WindowDiffusion`.

    :param int obs_dim: number of channels ``C``.
    :param int length: training window length ``L``.
    :param str backbone: ``"csdi"``, ``"dimts"`` or ``"stagediff"``.
    :param int stage_length: stage length of ``"stagediff"`` (a divisor of ``length``; default ``length``).
    :param bool observation_planes: True (default): the network reads the conditioning values and mask and is
        trained CSDI-style as above. False: it reads only the covariate planes and is trained on whole windows
        (the observation site is then the plain diffusion likelihood :math:`p(x \mid u)`, a proper density
        bound); imputation and forecasting then use training-free replacement inpainting
        (:class:`~pyroseq.diffusion.MaskedDenoiser`), and :meth:`sample` generates whole windows. This is the
        emission of :class:`~pyroseq.models.LatentDiffusionSSM` (the covariates being the latent path).
    :param str mask_strategy: training masks, one of :data:`~pyroseq.models.masking.MASK_STRATEGIES`.
    :param int horizon: forecast horizon of the ``"forecast"`` training masks (None: random).
    :param bool local_scaling: standardise each window by its conditioning entries as well (default False).
    :param net_kwargs: passed to the network (see :func:`~pyroseq.models.backbones.build_backbone`).
    """

    def __init__(self, obs_dim, length, backbone="csdi", stage_length=None, covariate_dim=0, observation_planes=True,
                 mask_strategy="mixed", horizon=None, objective="edm", sigma_data=1.0, sigma_min=0.002, sigma_max=80.0,
                 num_noise_draws=1, num_steps=20, ema_decay=0.999, sample_chunk_size=512, local_scaling=False,
                 sampler="heun", **net_kwargs):
        length = _positive_int("length", length)
        stage_length = length if stage_length is None else _positive_int("stage_length", stage_length)
        if mask_strategy not in MASK_STRATEGIES:
            raise ValueError(f"mask_strategy must be one of {MASK_STRATEGIES}, got {mask_strategy!r}")
        if horizon is not None and (int(horizon) != horizon or not 1 <= horizon < length):
            raise ValueError(f"horizon must be None or an integer in [1, {length - 1}], got {horizon!r}")
        settings = DiffusionSettings(sigma_data, sigma_min, sigma_max, objective, num_noise_draws=num_noise_draws,
                                     num_steps=num_steps, sample_chunk_size=sample_chunk_size, sampler=sampler)
        super().__init__(backbone, obs_dim, length, covariate_dim, settings,
                         ChannelStandardizer(_positive_int("obs_dim", obs_dim)), ema_decay,
                         stage_length, 2 if observation_planes else 0, conditional_defaults=True, **net_kwargs)
        if self.staged_backbone and length % stage_length:
            raise ValueError(f"length ({length}) must be a multiple of stage_length ({stage_length})")
        self.length, self.stage_length = length, stage_length
        self.observation_planes = bool(observation_planes)
        self.method = "trained" if self.observation_planes else "replacement"
        self.mask_strategy = mask_strategy
        self.horizon = None if horizon is None else int(horizon)
        if not isinstance(local_scaling, bool):
            raise ValueError(f"local_scaling must be True or False, got {local_scaling!r}")
        self.local_scaling = local_scaling

    # -- inputs ----------------------------------------------------------------------------------------

    def check_inputs(self, x, mask=None, covariates=None, horizon=0):
        """Validate ``x`` ``(N, T, C)`` (NaN = missing), ``mask`` and ``covariates`` ``(N, T + horizon, p)``.
        Training and imputation windows must fit the backbone (``T = length`` for ``"dimts"``, a multiple
        of ``stage_length`` for ``"stagediff"``); forecasting histories need ``T >= length - horizon``.

        :returns: ``(x, mask)`` with a full boolean mask.
        """
        dtype = next(self.net.parameters()).dtype
        x, mask = check_sequences(as_float_tensor(x, dtype), as_float_tensor(mask, dtype),
                                  as_float_tensor(covariates, dtype, "covariates"), obs_dim=self.obs_dim,
                                  covariate_dim=self.covariate_dim, horizon=horizon,
                                  validate=pyro.poutine.util.is_validation_enabled())
        T = x.shape[1]
        if horizon:
            check_forecast_window(self.length, T, horizon)
        else:
            BACKBONES[self.backbone].check_length(self.net, T, name="x's length")
        return x, mask

    def _standardize(self, x, mask, cond=None):
        """Standard units of the entries of ``x`` where ``mask`` (zero elsewhere), and the per-window location and
        scale ``(N, 1, C)`` (standard units) that :attr:`local_scaling` reads from the entries where ``cond``
        (default ``mask``), or ``(0, 1)`` without it."""
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        z = torch.where(mask, self.scaler.to_unit(x), zero)
        if not self.local_scaling:
            return z, zero, torch.ones((), dtype=x.dtype, device=x.device)
        loc, scale = series_standardization(z, mask if cond is None else cond & mask, x.shape[-2])
        return torch.where(mask, (z - loc) / scale, zero), loc, scale

    # -- the Pyro model --------------------------------------------------------------------------------

    def likelihood(self, z, cond, target=None, covariates=None, denoiser=None, **options):
        """The observation distribution of standardised windows.

        :param torch.Tensor z: standardised windows ``(N, T, C)`` (any value where not observed).
        :param torch.Tensor cond: boolean conditioning mask ``(N, T, C)``.
        :param torch.Tensor target: boolean mask of the scored entries (default: all non-conditioning).
        :param torch.Tensor covariates: covariates ``(N, T, p)`` (or a latent path), or None.
        :param denoiser: the :class:`~pyroseq.diffusion.EDMPrecond` (default :attr:`denoiser`).
        :param options: further arguments of the distributions (``sampler_kwargs``, ...).
        :returns: a distribution with batch shape ``(N,)`` and event ``(T, C)``: a
            :class:`~pyroseq.distributions.ConditionalDiffusionLikelihood`, or for ``"stagediff"`` a
            :class:`~pyroseq.distributions.StagedSequence` of them (one per stage, each conditioned on the
            encoded previous stage).
        """
        N, T, _ = z.shape
        parts = {"observed": z, "mask": cond, "target": target,
                 "planes": self.covariate_planes(covariates, T)}
        if not self.staged_backbone:
            return self.distribution(parts, (N,), denoiser, require_observed=self.observation_planes, **options)
        return self.staged(parts, T // self.stage_length, (N,), denoiser=denoiser, **options)

    def model(self, x, mask=None, covariates=None):
        """Training model: a random conditioning/target split of every window's observed entries.

        :param torch.Tensor x: windows ``(N, T, C)``; NaN marks missing entries (never targets).
        :param torch.Tensor mask: optional boolean observation mask ``(N, T, C)`` or ``(N, T)``.
        :param torch.Tensor covariates: ``(N, T, p)`` if ``covariate_dim > 0``.
        """
        self.register_params()
        x, observed = self.check_inputs(x, mask, covariates)
        if self.observation_planes:
            cond, target = conditioning_mask(observed, self.mask_strategy, self.horizon)
        else:  # the plain likelihood of the observed entries given the covariates
            cond, target = torch.zeros_like(observed), observed
        z, _, _ = self._standardize(x, observed, cond)
        with pyro.plate("windows", x.shape[0]):
            pyro.sample("x", self.likelihood(z, cond, target, covariates), obs=z)

    # -- sampling --------------------------------------------------------------------------------------

    @torch.no_grad()
    def impute(self, x, mask=None, covariates=None, num_samples=100, num_steps=None, use_ema=True, seed=None):
        """Sample the missing entries of ``x``.

        :param torch.Tensor x: windows ``(N, T, C)``; NaN (or ``mask=False``) marks the entries to impute.
        :param torch.Tensor mask: optional boolean mask ``(N, T, C)`` or ``(N, T)``, True = observed.
        :param torch.Tensor covariates: ``(N, T, p)`` if ``covariate_dim > 0``.
        :param int num_samples: number of imputations ``S``.
        :param int num_steps: Heun steps (default the model's).
        :param bool use_ema: sample with the moving-average weights.
        :param int seed: seed of a private generator (reproducible output), or None.
        :returns: a tensor ``(S, N, T, C)`` equal to ``x`` at every observed entry.
        :raises ValueError: for bad shapes, or a window without any observed entry.
        """
        x, observed = self.check_inputs(x, mask, covariates)
        covariates = as_float_tensor(covariates, x.dtype, "covariates")
        check_observation_mask(x, observed, 2)
        return self.sample_missing(x, observed, covariates, num_samples, num_steps, use_ema, seed)

    @torch.no_grad()
    def sample(self, num_samples, length=None, covariates=None, num_steps=None, use_ema=True, seed=None):
        """Generate whole windows (no observed entries); needs ``observation_planes=False``.

        :param int num_samples: number of windows ``N`` (with covariates: ``covariates.shape[0]``).
        :param int length: window length ``T`` (default ``length``).
        :param torch.Tensor covariates: ``(N, T, p)`` if ``covariate_dim > 0``.
        :returns: a tensor ``(N, T, C)``.
        """
        if self.observation_planes:
            raise ValueError("a network trained with observation planes (CSDI-style, on observed entries) imputes "
                             "and forecasts but does not generate whole windows: use impute() or forecast(), or "
                             "train with observation_planes=False")
        T = self.length if length is None else _positive_int("length", length)
        N = _positive_int("num_samples", num_samples)
        if self.covariate_dim and torch.is_tensor(covariates):
            N = covariates.shape[0]
        reference = next(self.net.parameters())
        x = torch.full((N, T, self.obs_dim), math.nan, dtype=reference.dtype, device=reference.device)
        observed = torch.zeros(N, T, self.obs_dim, dtype=torch.bool, device=reference.device)
        self.check_covariates(covariates, N, T)
        BACKBONES[self.backbone].check_length(self.net, T)
        return self.sample_missing(x, observed, covariates, 1, num_steps, use_ema, seed)[0]

    @torch.no_grad()
    def generate(self, num_samples, length=None, *, covariates=None, seed=None, num_steps=None, use_ema=True):
        """Generate whole windows in data units (:meth:`sample`); needs ``observation_planes=False`` (a CSDI-style
        network trained with observed entries imputes and forecasts instead).

        :param int num_samples: number of windows ``n``.
        :param int length: window length ``T`` (default ``length``).
        :param torch.Tensor covariates: ``(n, T, p)`` if ``covariate_dim > 0``.
        :param int seed: seed of a private generator (reproducible output), or None.
        :param int num_steps: Heun steps (default the model's).
        :param bool use_ema: sample with the moving-average weights.
        :returns: a tensor ``(n, T, C)`` on the model's device and dtype.
        """
        with seeded(seed, next(self.net.parameters()).device):  # the inpainting wrapper's own draws, too
            return self.sample(num_samples, length, covariates=covariates, num_steps=num_steps, use_ema=use_ema,
                               seed=seed)

    @torch.no_grad()
    def sample_missing(self, x, observed, covariates=None, num_samples=1, num_steps=None, use_ema=True, seed=None):
        """:meth:`impute` without its checks: draws of the entries of ``x`` ``(N, T, C)`` where ``observed`` is
        False, given the others and the covariates (validated inputs; used by the models this one is part of).

        :returns: a tensor ``(S, N, T, C)`` in data units, equal to ``x`` where ``observed``.
        """
        S = _positive_int("num_samples", num_samples)
        # The model's own num_steps for every sampler (generation_options' default would give DDPM 500 steps).
        options = self.generation_options(self.sampler, self.num_steps if num_steps is None else num_steps,
                                          seed=seed, use_ema=use_ema)
        N, T, C = x.shape
        z, loc, scale = self._standardize(x, observed)

        def rep(t):
            return None if t is None else t.repeat((S,) + (1,) * (t.dim() - 1))

        z, observed_z, covariates = rep(z), rep(observed), rep(covariates)
        chunk = self.sample_chunk_size if self.staged_backbone else S * N
        with self.sampling():  # the staged backbone: chunk by chunk, each stage by stage
            draws = torch.cat([self.likelihood(z[i:i + chunk], observed_z[i:i + chunk], None,
                                               None if covariates is None else covariates[i:i + chunk],
                                               **options).sample() for i in range(0, S * N, chunk)])
        draws = self.scaler.from_unit(loc + scale * draws.reshape(S, N, T, C))
        return torch.where(observed, x, draws)

    def forecast_model(self, x, horizon, mask=None, covariates=None):
        """Forecasting as imputation: a window of ``length`` steps whose first ``length - horizon`` steps are
        the end of the history and whose last ``horizon`` steps are generated (site ``"x_future"``).

        :param torch.Tensor x: histories ``(N, T, C)`` with ``T >= length - horizon``.
        :param int horizon: ``H`` in ``[1, length)``.
        :param torch.Tensor covariates: ``(N, T + H, p)`` if ``covariate_dim > 0``.
        :returns: ``x_future`` ``(N, H, C)``.
        """
        x, observed = self.check_inputs(x, mask, covariates, horizon=horizon)
        N, T, C = x.shape
        past = self.length - horizon
        window, window_mask = forecast_window(x, observed, self.length, horizon)
        cov = None if covariates is None else covariates[:, T - past:T + horizon]
        sample = self.impute(window, window_mask, cov, num_samples=1)[0]
        with pyro.plate("series", N):
            return pyro.deterministic("x_future", sample[:, past:], event_dim=2)
