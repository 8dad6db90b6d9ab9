r"""Conditional diffusion models of windows: imputation and forecasting (CSDI-style) with a CSDI, DiM-TS
or Stage-Diff denoiser."""

import copy
import math

import pyro
import torch

from ..checks import positive_int as _positive_int
from ..diffusion import EDMPrecond, MaskedDenoiser, heun_sample
from ..diffusion.validation import check_noise_range
from ..distributions import ConditionalDiffusionLikelihood, check_observation_mask
from ..distributions.staged_sequence import StagedSequence
from ..seeding import seeded
from .backbones import (
    BACKBONES,
    build_backbone,
    check_backbone_length,
    check_forecast_window,
    forecast_window,
    pack_planes,
)
from .base import DeepStateSpaceModel, SequenceModel, as_float_tensor, check_sequences, ema_update
from .covariates import check_covariates, covariate_planes
from .masking import MASK_STRATEGIES, conditioning_mask

__all__ = ["ConditionalDiffusion"]


class ConditionalDiffusion(SequenceModel):
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

    Data are standardised per channel (:meth:`initialize`, called by :func:`~pyroseq.inference.fit`), so
    ``sigma_data = 1``. :meth:`guide` is empty (no latent variables).

    Example::

        model = ConditionalDiffusion(obs_dim=7, length=120, backbone="csdi", horizon=24)
        fit(model, windows, num_steps=3000, batch_size=32)            # windows (N, 120, 7)
        fc = forecast(model, history, horizon=24, num_samples=100)   # (100, N, 24, 7)
        filled = model.impute(x_with_nans, num_samples=50)           # (50, N, L, 7)

    :param int obs_dim: number of channels ``C``.
    :param int length: training window length ``L``.
    :param str backbone: ``"csdi"``, ``"dimts"`` or ``"stagediff"``.
    :param int stage_length: stage length of ``"stagediff"`` (a divisor of ``length``; default ``length``).
    :param int covariate_dim: number of per-step covariates ``p`` (each enters as a plane repeated over the
        channels); inputs then need ``covariates`` of shape ``(N, T, p)``.
    :param bool observation_planes: True (default): the network reads the conditioning values and mask and is
        trained CSDI-style as above. False: it reads only the covariate planes and is trained on whole windows
        (the observation site is then the plain diffusion likelihood :math:`p(x \mid u)`, a proper density
        bound); imputation and forecasting then use training-free replacement inpainting
        (:class:`~pyroseq.diffusion.MaskedDenoiser`), and :meth:`sample` generates whole windows. This is the
        emission of :class:`~pyroseq.models.LatentDiffusionSSM` (the covariates being the latent path).
    :param str mask_strategy: training masks, one of :data:`~pyroseq.models.masking.MASK_STRATEGIES`.
    :param int horizon: forecast horizon of the ``"forecast"`` training masks (None: random).
    :param str objective: ``"edm"`` (EDM's weighted loss; default) or ``"bound"`` (the variational bound).
    :param float sigma_data: data scale of the preconditioning (1 for standardised data).
    :param float sigma_min: smallest noise level.
    :param float sigma_max: largest noise level.
    :param int num_noise_draws: noise draws per window for ``"bound"``.
    :param int num_steps: Heun steps of sampling (``2 num_steps - 1`` network evaluations).
    :param float ema_decay: decay of the moving average of the weights used for sampling (0: off).
    :param int sample_chunk_size: windows sampled per network batch.
    :param net_kwargs: passed to the network (see :func:`~pyroseq.models.backbones.build_backbone`).
    """

    def __init__(self, obs_dim, length, backbone="csdi", stage_length=None, covariate_dim=0, observation_planes=True,
                 mask_strategy="mixed",
                 horizon=None, objective="edm", sigma_data=1.0, sigma_min=0.002, sigma_max=80.0, num_noise_draws=1,
                 num_steps=20, ema_decay=0.999, sample_chunk_size=512, **net_kwargs):
        super().__init__()
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        self.length = _positive_int("length", length)
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        self.backbone = backbone
        self.stage_length = self.length if stage_length is None else _positive_int("stage_length", stage_length)
        if backbone == "stagediff" and self.length % self.stage_length:
            raise ValueError(f"length ({length}) must be a multiple of stage_length ({stage_length})")
        if int(covariate_dim) != covariate_dim or covariate_dim < 0:
            raise ValueError(f"covariate_dim must be a non-negative integer, got {covariate_dim!r}")
        self.covariate_dim = int(covariate_dim)
        self.observation_planes = bool(observation_planes)
        self.method = "trained" if self.observation_planes else "replacement"
        if mask_strategy not in MASK_STRATEGIES:
            raise ValueError(f"mask_strategy must be one of {MASK_STRATEGIES}, got {mask_strategy!r}")
        self.mask_strategy = mask_strategy
        if horizon is not None and (int(horizon) != horizon or not 1 <= horizon < self.length):
            raise ValueError(f"horizon must be None or an integer in [1, {self.length - 1}], got {horizon!r}")
        self.horizon = None if horizon is None else int(horizon)
        if objective not in ("edm", "bound"):
            raise ValueError(f"objective must be 'edm' or 'bound', got {objective!r}")
        self.objective = objective
        self.sigma_min, self.sigma_max, self.sigma_data = check_noise_range(sigma_min, sigma_max, sigma_data)
        self.num_noise_draws = _positive_int("num_noise_draws", num_noise_draws)
        self.num_steps = _positive_int("num_steps", num_steps)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.ema_decay = float(ema_decay)
        self.sample_chunk_size = _positive_int("sample_chunk_size", sample_chunk_size)
        cond_dim = (2 if self.observation_planes else 0) + self.covariate_dim
        self.net = build_backbone(backbone, self.obs_dim, self.length, cond_dim,
                                  stage_length=self.stage_length, **net_kwargs)
        self.denoiser = EDMPrecond(self.net, sigma_data=self.sigma_data)
        self.net_ema = copy.deepcopy(self.net)
        for p in self.net_ema.parameters():
            p.requires_grad_(False)
        self.denoiser_ema = EDMPrecond(self.net_ema, sigma_data=self.sigma_data)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("x_loc", torch.zeros(self.obs_dim))
        self.register_buffer("x_scale", torch.ones(self.obs_dim))

    # -- inputs ----------------------------------------------------------------------------------------

    def check_inputs(self, x, mask=None, covariates=None, horizon=0):
        """Validate ``x`` ``(N, T, C)`` (NaN = missing), ``mask`` and ``covariates`` ``(N, T + horizon, p)``.
        Training and imputation windows must fit the backbone (``T = length`` for ``"dimts"``, a multiple
        of ``stage_length`` for ``"stagediff"``); forecasting histories need ``T >= length - horizon``.

        :returns: ``(x, mask)`` with a full boolean mask.
        """
        dtype = self.x_loc.dtype
        x, mask = check_sequences(as_float_tensor(x, dtype), as_float_tensor(mask, dtype),
                                  as_float_tensor(covariates, dtype, "covariates"), obs_dim=self.obs_dim,
                                  covariate_dim=self.covariate_dim, horizon=horizon,
                                  validate=pyro.poutine.util.is_validation_enabled())
        T = x.shape[1]
        if horizon:
            check_forecast_window(self.length, T, horizon)
        else:
            check_backbone_length(self.backbone, self.net, T, name="x's length")
        return x, mask

    #: Per-channel standardisation from the observed entries (as :meth:`DeepStateSpaceModel.initialize`).
    initialize = DeepStateSpaceModel.initialize

    def _standardize(self, x, mask):
        return torch.where(mask, (x - self.x_loc) / self.x_scale, torch.zeros((), dtype=x.dtype))

    def _covariate_planes(self, covariates, length):
        return covariate_planes(covariates, self.obs_dim, length)

    def _pack(self, net):
        def pack(planes, context):
            context = context or {}
            return pack_planes(net, self.backbone, planes, context.get("planes"), context.get("history"))
        return pack

    # -- the Pyro model --------------------------------------------------------------------------------

    def likelihood(self, z, cond, target=None, planes=None):
        """The observation distribution of standardised windows.

        :param torch.Tensor z: standardised windows ``(N, T, C)`` (any value where not observed).
        :param torch.Tensor cond: boolean conditioning mask ``(N, T, C)``.
        :param torch.Tensor target: boolean mask of the scored entries (default: all non-conditioning).
        :param torch.Tensor planes: covariate planes ``(N, T, C, p)`` or None.
        :returns: a distribution with batch shape ``(N,)`` and event ``(T, C)``: a
            :class:`~pyroseq.distributions.ConditionalDiffusionLikelihood`, or for ``"stagediff"`` a
            :class:`~pyroseq.distributions.StagedSequence` of them (one per stage, each conditioned on the
            encoded previous stage).
        """
        kwargs = dict(sigma_data=self.sigma_data, sigma_min=self.sigma_min, sigma_max=self.sigma_max,
                      num_noise_draws=self.num_noise_draws, num_steps=self.num_steps, objective=self.objective,
                      pack_context=self._pack(self.net), method=self.method)
        if self.backbone != "stagediff":
            return ConditionalDiffusionLikelihood(self.denoiser, z, cond, context={"planes": planes}, target=target,
                                                  require_observed=self.observation_planes, **kwargs)
        N, T, C = z.shape
        k, L, net = T // self.stage_length, self.stage_length, self.net
        H = net.history_shape

        def stages(t):
            return None if t is None else t.reshape((N, k, L) + t.shape[2:])

        z_st, cond_st, target_st, planes_st = stages(z), stages(cond), stages(target), stages(planes)

        def stage_fn(history, sl):
            batch = history.shape[: history.dim() - len(H)]

            def cut(t):
                return None if t is None else t[:, sl].expand(batch + t.shape[2:])

            return ConditionalDiffusionLikelihood(self.denoiser, cut(z_st), cut(cond_st),
                                                  context={"history": history, "planes": cut(planes_st)},
                                                  target=cut(target_st), require_observed=False, **kwargs)

        def encode_fn(previous):
            return net.encode_history(previous.reshape(-1, L, C)).reshape(previous.shape[:-2] + H)

        def null_fn(batch):
            return net.null_history(batch.numel(), z.dtype, z.device).reshape(batch + (1,) + H)

        return StagedSequence(stage_fn, encode_fn, null_fn, k, (L, C), (N,))

    def model(self, x, mask=None, covariates=None):
        """Training model: a random conditioning/target split of every window's observed entries.

        :param torch.Tensor x: windows ``(N, T, C)``; NaN marks missing entries (never targets).
        :param torch.Tensor mask: optional boolean observation mask ``(N, T, C)`` or ``(N, T)``.
        :param torch.Tensor covariates: ``(N, T, p)`` if ``covariate_dim > 0``.
        """
        self.register_params()
        x, observed = self.check_inputs(x, mask, covariates)
        N, T, _ = x.shape
        if self.observation_planes:
            cond, target = conditioning_mask(observed, self.mask_strategy, self.horizon)
        else:  # the plain likelihood of the observed entries given the covariates
            cond, target = torch.zeros_like(observed), observed
        z = self._standardize(x, observed)
        with pyro.plate("windows", N):
            pyro.sample("x", self.likelihood(z, cond, target, self._covariate_planes(covariates, T)), obs=z)

    def guide(self, x, mask=None, covariates=None):
        """Empty: the model has no latent variables."""

    def param_groups(self):
        """Parameter groups for :func:`~pyroseq.inference.fit`: everything is the ``"denoiser"``."""
        return {"denoiser": list(self.net.parameters())}

    @torch.no_grad()
    def on_step(self, step=None):
        """Update the moving average of the weights (decay warms up as ``min(ema_decay, (1+n)/(10+n))``)."""
        ema_update(self.net_ema, self.net, self.ema_updates, self.ema_decay)

    # -- sampling --------------------------------------------------------------------------------------

    def _sampling_modules(self, use_ema):
        if use_ema and self.ema_decay > 0 and int(self.ema_updates) > 0:
            return self.net_ema, self.denoiser_ema
        return self.net, self.denoiser

    def _sample_standardized(self, z, cond, planes, num_steps, use_ema, generator):
        """Sample all non-conditioning entries of standardised windows ``z`` ``(M, T, C)``."""
        net, denoiser = self._sampling_modules(use_ema)
        masked = MaskedDenoiser(denoiser, self.method, self._pack(net))
        M, T, C = z.shape
        out = torch.empty_like(z)
        chunk = self.sample_chunk_size
        for start in range(0, M, chunk):
            sl = slice(start, min(start + chunk, M))
            n = sl.stop - sl.start
            if self.backbone != "stagediff":
                ctx = {"observed": z[sl], "mask": cond[sl], "context": {"planes": None if planes is None
                                                                         else planes[sl]}}
                out[sl] = heun_sample(masked, (n, T, C), ctx, num_steps=num_steps, sigma_min=self.sigma_min,
                                      sigma_max=self.sigma_max, generator=generator, dtype=z.dtype, device=z.device,
                                      sigma_data=self.sigma_data)
                continue
            L = self.stage_length
            history = None
            for m in range(T // L):
                st = slice(m * L, (m + 1) * L)
                ctx = {"observed": z[sl, st], "mask": cond[sl, st],
                       "context": {"planes": None if planes is None else planes[sl, st], "history": history}}
                stage = heun_sample(masked, (n, L, C), ctx, num_steps=num_steps, sigma_min=self.sigma_min,
                                    sigma_max=self.sigma_max, generator=generator, dtype=z.dtype, device=z.device,
                                    sigma_data=self.sigma_data)
                out[sl, st] = stage
                history = net.encode_history(stage)
        return out

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
        return self._impute(x, observed, covariates, num_samples, num_steps, use_ema, seed)

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
        x = torch.full((N, T, self.obs_dim), math.nan, dtype=self.x_loc.dtype, device=self.x_loc.device)
        observed = torch.zeros(N, T, self.obs_dim, dtype=torch.bool, device=self.x_loc.device)
        if self.covariate_dim and torch.is_tensor(covariates):
            N = covariates.shape[0]
            x, observed = x[:1].expand(N, -1, -1), observed[:1].expand(N, -1, -1)
        check_covariates(covariates, self.covariate_dim, N, T, model="ConditionalDiffusion")
        check_backbone_length(self.backbone, self.net, T)
        return self._impute(x, observed, covariates, 1, num_steps, use_ema, seed)[0]

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
        with seeded(seed, self.x_loc.device):  # the inpainting wrapper's own draws, too
            return self.sample(num_samples, length, covariates=covariates, num_steps=num_steps, use_ema=use_ema,
                               seed=seed)

    def _impute(self, x, observed, covariates, num_samples, num_steps, use_ema, seed):
        S = _positive_int("num_samples", num_samples)
        num_steps = self.num_steps if num_steps is None else _positive_int("num_steps", num_steps)
        N, T, C = x.shape
        z = self._standardize(x, observed)
        planes = self._covariate_planes(covariates, T)

        def rep(t):
            return None if t is None else t.repeat((S,) + (1,) * (t.dim() - 1))

        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        was_training = self.training
        self.eval()
        try:
            sample = self._sample_standardized(rep(z), rep(observed), rep(planes), num_steps, use_ema, generator)
        finally:
            self.train(was_training)
        sample = self.x_loc + self.x_scale * sample.reshape(S, N, T, C)
        return torch.where(observed, x, sample)

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
