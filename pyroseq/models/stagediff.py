"""Stage-Diff: staged diffusion generation of long multivariate series as a Pyro model."""

import math

import pyro
import torch

from ..checks import nonnegative_float as _nonnegative_float
from ..checks import positive_int as _positive_int
from .range_scaling import RangeScaler
from .window_diffusion import DiffusionSettings, WindowDiffusion, noisy_history

__all__ = ["StageDiff"]


class StageDiff(WindowDiffusion):
    r"""Stage-Diff (staged diffusion for long series): a window of ``k * stage_length`` steps is cut into
    ``k`` consecutive stages :math:`x^{(1)}, \dots, x^{(k)}`, and

    .. math:: p(x) = p(x^{(1)} \mid \varnothing) \prod_{m=2}^{k} p(x^{(m)} \mid h(x^{(m-1)})),

    each factor a :class:`~pyroseq.distributions.DiffusionLikelihood` over a ``(stage_length, C)`` stage
    whose denoiser is :class:`~pyroseq.diffusion.EDMPrecond` around a :class:`~pyroseq.nn.StageDiffNet`,
    conditioned on the history :math:`h` (the fused multi-scale trends of the previous stage; learned
    "no history" tokens for the first). Training conditions on the *clean* previous stage (teacher
    forcing); :meth:`generate` conditions each stage on the previously *generated* one, so a model trained
    on short windows produces series of any length at a cost linear in the length.

    The objective, ``"edm"`` or ``"bound"``, is that of :class:`~pyroseq.models.WindowDiffusion`. **Data** are
    in the user's units: each channel is mapped linearly to ``[-1, 1]`` (``sigma_data=0.5``) by its range in the
    training windows (learned by :meth:`initialize`, saved in the state dict:
    :class:`~pyroseq.models.range_scaling.RangeScaler`) or by a fixed ``data_range``; :meth:`generate` maps back.
    The observation site ``"x"`` holds the scaled windows.

    **Covariates** ``u`` ``(N, T, p)`` (``covariate_dim = p > 0``, planes as in
    :class:`~pyroseq.models.WindowDiffusion`) make every factor :math:`p(x^{(m)} \mid h(x^{(m-1)}), u^{(m)})`,
    where :math:`u^{(m)}` of shape ``(stage_length, p)`` is cut from ``u`` like the stages from ``x``: the
    per-stage context is ``net.pack_context(history=..., cond=planes)``. :meth:`generate` feeds each stage its
    covariates with the history of the stage generated before it.

    ``sigma_data``, ``sigma_min``, ``sigma_max``, ``num_noise_draws``, ``num_steps`` and ``sample_chunk_size`` are
    those of :class:`~pyroseq.models.window_diffusion.DiffusionSettings`, ``ema_decay`` and ``covariate_dim`` those
    of :class:`~pyroseq.models.WindowDiffusion`.

    :param int obs_dim: number of channels ``C``.
    :param int stage_length: stage length ``L_sta``; training windows must be multiples of it.
    :param str objective: ``"edm"`` (default) or ``"bound"``. EDM's surrogate trains markedly better for
        generation: on ETTh after 592 steps (same architecture and batch) the discriminative score at
        length 64 was 0.12 with ``"edm"`` and 0.25 with ``"bound"``, and a bound step costs twice as much
        (reconstruction and diffusion terms each need a denoiser call).
    :param tuple edm_noise: ``(P_mean, P_std)``, the log-normal noise levels of ``objective="edm"`` (see
        :class:`~pyroseq.distributions.DiffusionLikelihood`). The default ``(-0.6, 1.2)`` trains the higher
        noise levels more often than EDM's ``(-1.2, 1.2)``: those decide how much a stage varies given its
        history, and with EDM's levels the generated stages came out too calm, more so stage after stage. On
        ETTh at length 256 (``benchmarks/long_generation.py``, 60 CPU minutes of training each, same
        network) it scored context-FID 0.366 and discriminative 0.040 against 0.474 and 0.065 with
        ``(-1.2, 1.2)``; moving the levels down instead, to ``(-1.8, 1.2)``, made the stages calmer still.
    :param tuple clip: range, in the scaled space, the generated stages are clipped to (default ``(-1, 1)``: the
        training range), or None.
    :param tuple data_range: a fixed ``(low, high)`` range of the data, or None (default) to learn each channel's
        range from the training windows.
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
        settings = DiffusionSettings(sigma_data, sigma_min, sigma_max, objective, edm_noise, num_noise_draws,
                                     num_steps, sample_chunk_size, clip)
        super().__init__("stagediff", obs_dim, _positive_int("stage_length", stage_length), covariate_dim, settings,
                         RangeScaler(_positive_int("obs_dim", obs_dim), data_range), ema_decay, **net_kwargs)
        self.stage_length = int(stage_length)
        self.history_noise = _nonnegative_float("history_noise", history_noise)

    clip = property(lambda self: self.settings.clip, doc="The range generated stages are clipped to, or None.")

    # -- the Pyro model ------------------------------------------------------------------------------

    def noisy_history(self, previous, generator=None):
        """The previous stage as the history encoder sees it: ``previous + history_noise * eps``.

        :param torch.Tensor previous: stages of shape ``(N, stage_length, C)``.
        :param torch.Generator generator: optional random generator for ``eps``.
        :returns: a tensor of the same shape (``previous`` itself if ``history_noise = 0``).
        """
        return noisy_history(previous, self.history_noise, generator)

    def stage_history(self, stages):
        """History tokens of every stage under teacher forcing: learned "no history" tokens for the first
        stage, the encoded previous stage (clean, plus ``history_noise``) for the others.

        :param torch.Tensor stages: shape ``(N, k, stage_length, C)``.
        :returns: a tensor of shape ``(N, k) + net.history_shape``.
        """
        return self.staged_likelihood(stages.shape[:1], stages.shape[1]).history(stages)

    def likelihood(self, history, objective=None, covariates=None):
        """The per-stage :class:`~pyroseq.distributions.DiffusionLikelihood` given history tokens (and the
        stages' covariates if ``covariate_dim > 0``).

        :param torch.Tensor history: shape ``batch_shape + net.history_shape``.
        :param str objective: overrides the model's objective.
        :param torch.Tensor covariates: ``batch_shape + (stage_length, p)`` if ``covariate_dim = p > 0``.
        :returns: a distribution with ``event_shape == (stage_length, C)``.
        """
        batch_shape = history.shape[: history.dim() - len(self.net.history_shape)]
        if not self.covariate_dim:
            self.check_covariates(covariates, None, None)
        elif not torch.is_tensor(covariates) or covariates.shape != batch_shape + (self.stage_length,
                                                                                    self.covariate_dim):
            got = tuple(covariates.shape) if torch.is_tensor(covariates) else type(covariates).__name__
            raise ValueError(f"covariates of the stages must have shape batch_shape + (stage_length, p) = "
                             f"{tuple(batch_shape) + (self.stage_length, self.covariate_dim)}, got {got}")
        planes = self.covariate_planes(covariates)
        return self.distribution({"planes": planes, "history": history}, batch_shape, objective=objective)

    def staged_likelihood(self, batch_shape, num_stages, covariates=None, objective=None):
        """The window distribution: a :class:`~pyroseq.distributions.StagedSequence` of ``num_stages``
        per-stage likelihoods, each stage conditioned on the encoded previous stage (teacher-forced in
        ``log_prob``, sequential in ``sample``; :class:`~pyroseq.models.window_diffusion.StagePlan`).

        :param tuple batch_shape: batch shape ``(N,)``.
        :param int num_stages: number of stages ``k``.
        :param torch.Tensor covariates: ``batch_shape + (k * stage_length, p)`` if ``covariate_dim = p > 0``.
        :param str objective: overrides the model's objective.
        :returns: a distribution with event shape ``(k * stage_length, C)``.
        """
        return self.staged({"planes": self.covariate_planes(covariates)}, num_stages, batch_shape,
                           history_noise=self.history_noise, objective=objective)

    def model(self, x, mask=None, covariates=None):
        """
        :param torch.Tensor x: windows of shape ``(N, k * stage_length, C)`` in the data's units.
        :param mask: unsupported (must be None; Stage-Diff needs complete windows).
        :param torch.Tensor covariates: ``(N, k * stage_length, p)`` if ``covariate_dim = p > 0``, else None.
        """
        self.register_params()
        self.check_inputs(x, mask, covariates)
        N, T, C = x.shape
        with pyro.plate("windows", N):
            pyro.sample("x", self.staged_likelihood((N,), T // self.stage_length, covariates),
                        obs=self.scaler.to_unit(x))

    # -- generation ------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, num_samples, length=None, *, covariates=None, seed=None, chunk_size=None, num_steps=None,
                 use_ema=True, guidance=1.0, sampler="heun", **sampler_kwargs):
        r"""Generate series of any length, stage by stage, by sampling the staged likelihood: the first stage is
        conditioned on the "no history" tokens, each later stage on the fused history of the stage generated
        before it. Series are generated ``chunk_size`` at a time, so memory does not grow with ``num_samples``.
        ``sampler``, ``num_steps``, ``chunk_size``, ``seed``, ``use_ema`` and ``sampler_kwargs`` (used for every
        stage) are the arguments of :meth:`~pyroseq.models.WindowDiffusion.generation_options`.

        :param int num_samples: number of series ``n``.
        :param int length: series length ``T >= 1`` (``ceil(T / stage_length)`` stages are generated
            and the last one is cut to fit; default ``stage_length``).
        :param torch.Tensor covariates: covariates of the generated series, shape
            ``(n, ceil(T / stage_length) * stage_length, p)`` (whole stages: the steps past ``T`` condition the
            last, cut stage); required iff ``covariate_dim = p > 0``.
        :param float guidance: classifier-free guidance weight ``w >= 0`` on the history of every stage after
            the first (Ho and Salimans 2022): :math:`D(x; \varnothing) + w (D(x; h) - D(x; \varnothing))`, where
            :math:`\varnothing` are the learned "no history" tokens every first stage is trained with (no extra
            training); it doubles the network cost of those stages. 1 (default) samples the learned conditionals.
        :returns: a tensor of shape ``(n, T, C)`` in the data scale (clipped to ``clip``), on the model's device
            and dtype.
        """
        num_samples = _positive_int("num_samples", num_samples)
        length = self.stage_length if length is None else _positive_int("length", length)
        options = self.generation_options(sampler, num_steps, chunk_size, seed, use_ema, **sampler_kwargs)
        options.update(guidance=_nonnegative_float("guidance", guidance), history_noise=self.history_noise,
                       generator=options["sampler_kwargs"]["generator"])
        num_stages = math.ceil(length / self.stage_length)
        self.check_covariates(covariates, num_samples, num_stages * self.stage_length)
        planes, chunk, chunks = self.covariate_planes(covariates), options["sample_chunk_size"], []
        with self.sampling():
            for start in range(0, num_samples, chunk):  # chunk by chunk, each stage by stage
                n = min(chunk, num_samples - start)
                parts = {"planes": None if planes is None else planes[start:start + n]}
                chunks.append(self.staged(parts, num_stages, (n,), **options).sample()[:, :length])
        return self.scaler.from_unit(torch.cat(chunks))
