"""Stage-Diff: staged diffusion generation of long multivariate series as a Pyro model."""

import contextlib
import copy
import math

import pyro
import torch

from ..checks import nonnegative_float as _nonnegative_float
from ..checks import nonnegative_int as _nonnegative_int
from ..checks import positive_int as _positive_int
from ..diffusion import EDMPrecond, sample, sampler_steps
from ..diffusion.noise import standard_normal
from ..diffusion.validation import check_edm_noise, check_noise_range
from ..distributions import DiffusionLikelihood
from ..distributions.staged_sequence import StagedSequence
from ..nn.stagediff import StageDiffNet
from .base import SequenceModel, ema_update
from .covariates import check_covariates, covariate_planes
from .range_scaling import RangeScaler

__all__ = ["StageDiff"]


def _check_covariates(covariates, covariate_dim, num, length, name="covariates"):
    check_covariates(covariates, covariate_dim, num, length, model="StageDiff", name=name)


class StageDiff(SequenceModel):
    r"""Stage-Diff (staged diffusion for long series): a window of ``k * stage_length`` steps is cut into
    ``k`` consecutive stages :math:`x^{(1)}, \dots, x^{(k)}`, and

    .. math:: p(x) = p(x^{(1)} \mid \varnothing) \prod_{m=2}^{k} p(x^{(m)} \mid h(x^{(m-1)})),

    each factor a :class:`~pyroseq.distributions.DiffusionLikelihood` over a ``(stage_length, C)`` stage
    whose denoiser is :class:`~pyroseq.diffusion.EDMPrecond` around a :class:`~pyroseq.nn.StageDiffNet`,
    conditioned on the history :math:`h` (the fused multi-scale trends of the previous stage; learned
    "no history" tokens for the first). Training conditions on the *clean* previous stage (teacher
    forcing); :meth:`generate` conditions each stage on the previously *generated* one, so a model trained
    on short windows produces series of any length at a cost linear in the length.

    The only sample site is the observation ``"x"``; :meth:`guide` is empty, so
    :class:`~pyro.infer.Trace_ELBO` is minus the diffusion objective. With ``objective="bound"`` that is
    the continuous-time variational bound (``log_prob`` is a stochastic *lower* bound on
    :math:`\log p(x)`); ``objective="edm"`` trains with EDM's weighted denoising loss, a surrogate that is
    not a bound (use it for generation quality, not for likelihood comparisons).

    **Data** are in the user's units: each channel is mapped linearly to ``[-1, 1]`` (``sigma_data=0.5``) by its
    range in the training windows (learned by :meth:`initialize`, saved in the state dict:
    :class:`~pyroseq.models.range_scaling.RangeScaler`) or by a fixed ``data_range``; :meth:`generate` maps back.
    The observation site ``"x"`` holds the scaled windows.

    **Covariates** (``covariate_dim = p > 0``): per-step covariates :math:`u_t` (calendar features, exogenous
    series) of shape ``(N, T, p)`` make every factor :math:`p(x^{(m)} \mid h(x^{(m-1)}), u^{(m)})`, where
    :math:`u^{(m)}` of shape ``(stage_length, p)`` is cut from ``u`` like the stages from ``x``. Each covariate
    enters the network as one conditioning plane ``(stage_length, C)`` (its value at each step repeated over
    the channels), so the network is built with ``cond_dim = p`` and the per-stage context is the dict
    ``net.pack_context(history=..., cond=planes)`` (``{"cond": (stage_length, p C), "history": history
    tokens}`` per stage). :meth:`generate` feeds each stage its covariates with the history of the stage
    generated before it. With ``p = 0`` (default) covariates must be None and the parameters are those of the
    unconditional model.

    :param int obs_dim: number of channels ``C``.
    :param int stage_length: stage length ``L_sta``; training windows must be multiples of it.
    :param float sigma_data: data scale of the EDM preconditioning and the bound.
    :param float sigma_min: smallest noise level (bound and sampler).
    :param float sigma_max: largest noise level (bound and sampler).
    :param str objective: ``"edm"`` (default) or ``"bound"``. EDM's surrogate trains markedly better for
        generation: on ETTh after 592 steps (same architecture and batch) the discriminative score at
        length 64 was 0.12 with ``"edm"`` and 0.25 with ``"bound"``, and a bound step costs twice as much
        (reconstruction and diffusion terms each need a denoiser call). Use ``"bound"`` when ``log_prob``
        must be a lower bound on :math:`\log p(x)` (likelihood comparisons).
    :param tuple edm_noise: ``(P_mean, P_std)``, the log-normal noise levels of ``objective="edm"`` (see
        :class:`~pyroseq.distributions.DiffusionLikelihood`). The default ``(-0.6, 1.2)`` trains the higher
        noise levels more often than EDM's ``(-1.2, 1.2)``: those decide how much a stage varies given its
        history, and with EDM's levels the generated stages came out too calm, more so stage after stage. On
        ETTh at length 256 (``benchmarks/long_generation.py``, 60 CPU minutes of training each, same
        network) it scored context-FID 0.366 and discriminative 0.040 against 0.474 and 0.065 with
        ``(-1.2, 1.2)``; moving the levels down instead, to ``(-1.8, 1.2)``, made the stages calmer still.
    :param int num_noise_draws: noise draws per stage and step for ``objective="bound"``.
    :param int num_steps: Heun steps of :meth:`generate` (``2 * num_steps - 1`` network evaluations).
    :param float ema_decay: decay of the exponential moving average of the weights used by
        :meth:`generate` (updated by :meth:`on_step`; 0 disables it).
    :param tuple clip: range, in the scaled space, the generated stages are clipped to (default ``(-1, 1)``: the
        training range), or None.
    :param tuple data_range: a fixed ``(low, high)`` range of the data, or None (default) to learn each channel's
        range from the training windows.
    :param int sample_chunk_size: number of series generated at a time (bounds memory).
    :param int covariate_dim: number of covariates per step ``p`` (0: none).
    :param float history_noise: standard deviation :math:`\tau` of Gaussian noise added to the previous stage
        before it is encoded as history, in training *and* in :meth:`generate` (conditioning augmentation, as
        in Ho et al. 2022, "Cascaded Diffusion Models"). Training conditions on clean stages but generation
        on generated ones, whose small errors then compound over stages; with :math:`\tau > 0` both
        condition on :math:`x^{(m-1)} + \tau \varepsilon`, which hides those errors below the noise. The
        model is then :math:`p(x^{(m)} \mid h(x^{(m-1)} + \tau \varepsilon))` with :math:`\varepsilon` drawn
        once per stage, so ``log_prob`` (one draw of :math:`\varepsilon`) is a stochastic lower bound on the
        log density of the process :meth:`generate` samples from. 0 (default) conditions on clean stages.
    :param net_kwargs: passed to :class:`~pyroseq.nn.StageDiffNet` (``patch_size``, ``d_model``,
        ``num_heads``, ``num_encoder_layers``, ``kernel_sizes``, ``history_kernel_sizes``, ``fusion_dim``,
        ``fusion_kernel_size``, ``dim_feedforward``, ``dropout``, ``decomposition``, ``fusion``).

    Example::

        long = StageDiff(obs_dim=C, stage_length=64)
        fit(long, windows, num_steps=5000, batch_size=64)   # windows: (N, 128, C), in your units
        series = long.generate(100, length=1024)            # (100, 1024, C)

        cond = StageDiff(obs_dim=C, stage_length=64, covariate_dim=p)
        fit(cond, windows, num_steps=5000, batch_size=64, covariates=u)   # u: (N, 128, p)
        series = cond.generate(100, 1000, covariates=u_new)               # u_new: (100, 1024, p), 16 stages
    """

    def __init__(self, obs_dim, stage_length=64, sigma_data=0.5, sigma_min=0.002, sigma_max=80.0, objective="edm",
                 edm_noise=(-0.6, 1.2), num_noise_draws=1, num_steps=20, ema_decay=0.999, clip=(-1.0, 1.0),
                 sample_chunk_size=256, covariate_dim=0, history_noise=0.0, data_range=None, **net_kwargs):
        super().__init__()
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        self.stage_length = _positive_int("stage_length", stage_length)
        if objective not in ("bound", "edm"):
            raise ValueError(f"objective must be 'bound' or 'edm', got {objective!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if clip is not None and not (len(clip) == 2 and clip[0] < clip[1]):
            raise ValueError(f"clip must be None or a pair (low, high) with low < high, got {clip!r}")
        self.objective = objective
        self.edm_noise = check_edm_noise(edm_noise)
        self.num_noise_draws = _positive_int("num_noise_draws", num_noise_draws)
        self.num_steps = _positive_int("num_steps", num_steps)
        self.ema_decay = float(ema_decay)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        self.sample_chunk_size = _positive_int("sample_chunk_size", sample_chunk_size)
        self.covariate_dim = _nonnegative_int("covariate_dim", covariate_dim)
        self.history_noise = _nonnegative_float("history_noise", history_noise)
        self.scaler = RangeScaler(self.obs_dim, data_range)
        if "cond_dim" in net_kwargs:
            raise ValueError("cond_dim is set by StageDiff from covariate_dim; pass covariate_dim instead")
        self.net = StageDiffNet(self.obs_dim, self.stage_length, cond_dim=self.covariate_dim, **net_kwargs)
        self.denoiser = EDMPrecond(self.net, sigma_data=sigma_data)
        self.sigma_min, self.sigma_max, self.sigma_data = check_noise_range(sigma_min, sigma_max, sigma_data)
        # The moving average is a frozen copy of the network (never optimised; saved with the state dict), updated
        # by ema_update like every model's.
        self.net_ema = copy.deepcopy(self.net).requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    # -- the Pyro model ------------------------------------------------------------------------------

    @torch.no_grad()
    def initialize(self, x, mask=None, covariates=None):
        """Called once by :func:`~pyroseq.inference.fit` before training (not on resume): learns each channel's
        range from the training windows ``(N, k * stage_length, C)`` (unless ``data_range`` was given)."""
        if mask is not None:
            raise ValueError("mask is not supported by StageDiff: pass complete windows (mask=None)")
        self._check_windows(x)
        self.scaler.check(x)
        self.scaler.fit(x)

    def _check_windows(self, x):
        if not torch.is_tensor(x) or x.dim() != 3:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (N, T, C), got {shape}")
        N, T, C = x.shape
        if C != self.obs_dim:
            raise ValueError(f"x must have obs_dim={self.obs_dim} channels, got {C}")
        if T < self.stage_length or T % self.stage_length:
            raise ValueError(
                f"x must have a length T that is a positive multiple of stage_length={self.stage_length}, "
                f"got T={T}"
            )
        if N < 1:
            raise ValueError("x must contain at least one window")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values")

    def noisy_history(self, previous, generator=None):
        """The previous stage as the history encoder sees it: ``previous + history_noise * eps``.

        :param torch.Tensor previous: stages of shape ``(N, stage_length, C)``.
        :param torch.Generator generator: optional random generator for ``eps``.
        :returns: a tensor of the same shape (``previous`` itself if ``history_noise = 0``).
        """
        if not self.history_noise:
            return previous
        eps = standard_normal(previous.shape, previous.dtype, previous.device, generator)
        return previous + self.history_noise * eps

    def stage_history(self, stages):
        """History tokens of every stage under teacher forcing: learned "no history" tokens for the first
        stage, the encoded previous stage (clean, plus ``history_noise``) for the others.

        :param torch.Tensor stages: shape ``(N, k, stage_length, C)``.
        :returns: a tensor of shape ``(N, k) + net.history_shape``.
        """
        return self.staged_likelihood(stages.shape[:1], stages.shape[1]).history(stages)

    def stage_context(self, history, covariates=None):
        """The network context of stages with any batch shape: the history tokens if ``covariate_dim = 0``,
        else the dict :meth:`~pyroseq.nn.StageDiffNet.pack_context` builds from the history and the
        covariate planes (each covariate repeated over the channels), with the batch dims restored.

        :param torch.Tensor history: shape ``batch_shape + net.history_shape``.
        :param torch.Tensor covariates: the stages' covariates ``batch_shape + (stage_length, p)``, or None
            (``covariate_dim = 0``).
        :returns: ``history``, or a dict ``{"cond": batch_shape + (stage_length, p C), "history": history}``.
        """
        if not self.covariate_dim:
            _check_covariates(covariates, 0, None, None)
            return history
        batch_shape = history.shape[: history.dim() - len(self.net.history_shape)]
        expected = tuple(batch_shape) + (self.stage_length, self.covariate_dim)
        if not torch.is_tensor(covariates) or tuple(covariates.shape) != expected:
            got = tuple(covariates.shape) if torch.is_tensor(covariates) else type(covariates).__name__
            raise ValueError(f"covariates of the stages must have shape batch_shape + (stage_length, p) = "
                             f"{expected}, got {got}")
        n = batch_shape.numel()
        planes = covariate_planes(covariates.to(history.dtype).reshape(n, self.stage_length, self.covariate_dim),
                                  self.obs_dim)
        context = self.net.pack_context(history=history.reshape((n,) + self.net.history_shape), cond=planes)
        return {key: value.reshape(batch_shape + value.shape[1:]) for key, value in context.items()}

    def likelihood(self, history, objective=None, covariates=None):
        """The per-stage :class:`~pyroseq.distributions.DiffusionLikelihood` given history tokens (and the
        stages' covariates if ``covariate_dim > 0``).

        :param torch.Tensor history: shape ``batch_shape + net.history_shape``.
        :param str objective: overrides the model's objective.
        :param torch.Tensor covariates: ``batch_shape + (stage_length, p)`` if ``covariate_dim = p > 0``.
        :returns: a distribution with ``event_shape == (stage_length, C)``.
        """
        batch_shape = history.shape[: history.dim() - len(self.net.history_shape)]
        return DiffusionLikelihood(
            self.denoiser, event_shape=(self.stage_length, self.obs_dim),
            context=self.stage_context(history, covariates),
            batch_shape=batch_shape, sigma_data=self.sigma_data, sigma_min=self.sigma_min,
            sigma_max=self.sigma_max, num_noise_draws=self.num_noise_draws,
            num_steps=self.num_steps, objective=objective or self.objective, edm_noise=self.edm_noise,
            sample_chunk_size=self.sample_chunk_size,
        )

    def staged_likelihood(self, batch_shape, num_stages, covariates=None, objective=None):
        """The window distribution: a :class:`~pyroseq.distributions.StagedSequence` of ``num_stages``
        per-stage likelihoods (:meth:`likelihood`), each stage conditioned on the encoded previous stage
        (teacher-forced in ``log_prob``, sequential in ``sample``).

        :param tuple batch_shape: batch shape ``(N,)``.
        :param int num_stages: number of stages ``k``.
        :param torch.Tensor covariates: ``batch_shape + (k * stage_length, p)`` if ``covariate_dim = p > 0``.
        :param str objective: overrides the model's objective.
        :returns: a distribution with event shape ``(k * stage_length, C)``.
        """
        L, C, H = self.stage_length, self.obs_dim, self.net.history_shape
        stage_cov = None if covariates is None else covariates.reshape(
            covariates.shape[:-2] + (num_stages, L, covariates.shape[-1]))
        reference = self.net.patch_embed.weight

        def stage_fn(history, stages):
            batch = history.shape[: history.dim() - len(H)]
            cov = None if stage_cov is None else stage_cov[..., stages, :, :].expand(batch + stage_cov.shape[-2:])
            return self.likelihood(history, objective, cov)

        def encode_fn(previous):
            flat = self.noisy_history(previous.reshape((-1, L, C)))
            return self.net.encode_history(flat).reshape(previous.shape[:-2] + H)

        def null_fn(batch):
            return self.net.null_history(batch.numel(), reference.dtype, reference.device).reshape(batch + (1,) + H)

        return StagedSequence(stage_fn, encode_fn, null_fn, num_stages, (L, C), batch_shape)

    def model(self, x, mask=None, covariates=None):
        """
        :param torch.Tensor x: windows of shape ``(N, k * stage_length, C)`` in the data's units.
        :param mask: unsupported (must be None; Stage-Diff needs complete windows).
        :param torch.Tensor covariates: ``(N, k * stage_length, p)`` if ``covariate_dim = p > 0``, else None.
        """
        self.register_params()
        if mask is not None:
            raise ValueError("mask is not supported by StageDiff: pass complete windows (mask=None)")
        self._check_windows(x)
        N, T, C = x.shape
        _check_covariates(covariates, self.covariate_dim, N, T)
        with pyro.plate("windows", N):
            pyro.sample("x", self.staged_likelihood((N,), T // self.stage_length, covariates),
                        obs=self.scaler.to_unit(x))

    def guide(self, x, mask=None, covariates=None):
        """Empty: Stage-Diff has no latent variables."""

    def param_groups(self):
        """Parameter groups for :func:`~pyroseq.inference.fit`: everything is the ``"denoiser"``."""
        return {"denoiser": list(self.net.parameters())}

    # -- exponential moving average --------------------------------------------------------------------

    @torch.no_grad()
    def on_step(self, step=None):
        """Update the exponential moving average of the weights (call after every optimiser step); the
        decay warms up as ``min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates."""
        if self.ema_decay == 0.0:
            return
        ema_update(self.net_ema, self.net, self.ema_updates, self.ema_decay)

    @contextlib.contextmanager
    def ema_weights(self):
        """Context manager that swaps the averaged weights into the network (if any updates happened)
        and restores the trained weights afterwards."""
        if self.ema_decay == 0.0 or int(self.ema_updates) == 0:
            yield
            return
        saved = {}
        with torch.no_grad():
            for (name, p), average in zip(self.net.named_parameters(), self.net_ema.parameters()):
                saved[name] = p.detach().clone()
                p.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.net.named_parameters():
                    p.copy_(saved[name])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # State dicts from before the moving average was a copy of the network kept it as buffers
        # "ema_<name with . as __>": map them to "net_ema.<name>", once, here.
        for key in [k for k in state_dict if k.startswith(prefix + "ema_") and k != prefix + "ema_updates"]:
            name = key[len(prefix) + len("ema_"):].replace("__", ".")
            state_dict[prefix + "net_ema." + name] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # -- generation ------------------------------------------------------------------------------------

    def guided_denoiser(self, context, null_context, guidance):
        r"""A denoiser with classifier-free guidance on the history (Ho and Salimans 2022):
        :math:`D_w(x, \sigma) = D(x, \sigma; \varnothing) + w \, (D(x, \sigma; h) - D(x, \sigma; \varnothing))`,
        where :math:`\varnothing` are the learned "no history" tokens every first stage is trained with, so the
        unconditional denoiser needs no extra training. :math:`w = 1` is the plain conditional denoiser;
        :math:`w > 1` strengthens the dependence of a stage on its predecessor. Both terms are evaluated in
        one network batch of ``2 N``.

        :param context: the stages' context (history tokens ``(N,) + history_shape``, or the dict of
            :meth:`stage_context`).
        :param null_context: the same with the "no history" tokens.
        :param float guidance: the weight :math:`w`.
        :returns: a callable ``(x, sigma, context) -> x0_hat`` (its ``context`` argument is ignored).
        """
        if isinstance(context, dict):
            both = {key: torch.cat([context[key], null_context[key]]) for key in context}
        else:
            both = torch.cat([context, null_context])

        def denoise(x, sigma, _context=None):
            cond, uncond = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), both).chunk(2)
            return uncond + guidance * (cond - uncond)

        return denoise

    @torch.no_grad()
    def generate(self, num_samples, length=None, *, covariates=None, seed=None, chunk_size=None, num_steps=None,
                 use_ema=True, guidance=1.0, sampler="heun", **sampler_kwargs):
        """Generate series of any length, stage by stage: the first stage is conditioned on the "no
        history" tokens, each later stage on the fused history of the stage generated before it.
        Series are generated ``chunk_size`` at a time, so memory does not grow with ``num_samples``.

        :param int num_samples: number of series ``n``.
        :param int length: series length ``T >= 1`` (``ceil(T / stage_length)`` stages are generated
            and the last one is cut to fit; default ``stage_length``).
        :param int chunk_size: series per chunk (default ``sample_chunk_size``).
        :param int num_steps: sampler steps per stage (default: ``num_steps`` of the model for Heun, 500 for
            DDPM).
        :param bool use_ema: use the moving-average weights (if :meth:`on_step` was called).
        :param int seed: seed for a private random generator (reproducible output), or None.
        :param torch.Tensor covariates: covariates of the generated series, shape
            ``(n, ceil(T / stage_length) * stage_length, p)`` (whole stages: the steps past ``T`` condition the
            last, cut stage); required iff ``covariate_dim = p > 0``.
        :param float guidance: classifier-free guidance weight ``w >= 0`` on the history of every stage
            after the first (:meth:`guided_denoiser`; doubles their network cost). 1 (default) samples the
            learned conditionals.
        :param str sampler: ``"heun"`` (EDM Heun, ``2 num_steps - 1`` network evaluations per stage) or
            ``"ddpm"`` (ancestral DDPM with a cosine schedule, ``num_steps`` evaluations per stage).
        :param sampler_kwargs: extra arguments of the sampler (e.g. ``S_churn``, ``S_min``, ``S_max`` for
            stochastic Heun steps, ``sigma_data=None`` for the plain EDM ODE), used for every stage.
        :returns: a tensor of shape ``(n, T, C)`` in the data scale (clipped to ``clip``), on the model's device
            and dtype.
        """
        num_samples = _positive_int("num_samples", num_samples)
        length = self.stage_length if length is None else _positive_int("length", length)
        chunk_size = self.sample_chunk_size if chunk_size is None else _positive_int("chunk_size", chunk_size)
        num_steps = sampler_steps(sampler, num_steps, self.num_steps)
        guidance = _nonnegative_float("guidance", guidance)
        heun_defaults = {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "sigma_data": self.sigma_data}
        L, C = self.stage_length, self.obs_dim
        num_stages = math.ceil(length / L)
        _check_covariates(covariates, self.covariate_dim, num_samples, num_stages * L)
        dtype, device = self.net.patch_embed.weight.dtype, self.net.patch_embed.weight.device
        out = torch.empty(num_samples, length, C, dtype=dtype, device=device)
        was_training = self.training
        self.eval()
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        weights = self.ema_weights() if use_ema else contextlib.nullcontext()
        try:
            with weights, pyro.validation_enabled(False):
                for start in range(0, num_samples, chunk_size):
                    n = min(chunk_size, num_samples - start)
                    history = self.net.null_history(n, dtype, device)
                    null = history
                    for m in range(num_stages):
                        stage_covariates = (None if covariates is None
                                            else covariates[start:start + n, m * L:(m + 1) * L])
                        context = self.stage_context(history, stage_covariates)
                        denoiser = self.denoiser
                        if m > 0 and guidance != 1.0:
                            denoiser = self.guided_denoiser(context, self.stage_context(null, stage_covariates),
                                                            guidance)
                        stage = sample(denoiser, (n, L, C), context, sampler, num_steps, generator=generator,
                                       dtype=dtype, device=device, heun_defaults=heun_defaults, **sampler_kwargs)
                        if self.clip is not None:
                            stage = stage.clamp(*self.clip)
                        stop = min((m + 1) * L, length)
                        out[start:start + n, m * L:stop] = stage[:, : stop - m * L]
                        if m + 1 < num_stages:
                            history = self.net.encode_history(self.noisy_history(stage, generator))
        finally:
            self.train(was_training)
        return self.scaler.from_unit(out)
