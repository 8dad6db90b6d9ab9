r"""DiM-TS: a Mamba denoiser as a learned likelihood over whole windows, for time-series generation."""

import math

import pyro
import torch

from ..checks import nonnegative_float as _nonnegative_float
from ..checks import positive_int as _positive_int
from ..diffusion import function_evaluations as _function_evaluations
from .range_scaling import RangeScaler
from .window_diffusion import DiffusionSettings, WindowDiffusion

__all__ = ["DiMTS", "correlation_mmd", "fourier_loss", "window_correlations"]


def fourier_loss(x0_hat, x, norm="l2"):
    r"""Fourier-domain error of a window estimate, per window: with
    :math:`E = \mathrm{FFT}_t(\hat x_0 - x) / L` (all ``L`` frequencies, per channel),
    ``"l2"`` gives :math:`\sum_{k,c} (\mathrm{Re}\,E_{kc})^2 + (\mathrm{Im}\,E_{kc})^2` and ``"l1"`` gives
    :math:`\sum_{k,c} |\mathrm{Re}\,E_{kc}| + |\mathrm{Im}\,E_{kc}|` (Diffusion-TS's Fourier term, summed
    rather than averaged). By Parseval the ``"l2"`` value equals :math:`\|\hat x_0 - x\|^2 / L`.

    :param torch.Tensor x0_hat: estimates ``(N, L, C)``.
    :param torch.Tensor x: targets ``(N, L, C)``.
    :param str norm: ``"l2"`` or ``"l1"``.
    :returns: a tensor of shape ``(N,)``.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    err = torch.fft.fft(x0_hat - x, dim=-2, norm="forward")
    if norm == "l2":
        return (err.real.pow(2) + err.imag.pow(2)).sum((-2, -1))
    return (err.real.abs() + err.imag.abs()).sum((-2, -1))


def window_correlations(x, eps=1e-6):
    """Pearson correlations between the channels of every window, upper triangle.

    :param torch.Tensor x: windows ``(N, L, C)``.
    :param float eps: floor of the variances (keeps flat windows finite).
    :returns: a tensor of shape ``(N, C (C - 1) / 2)``.
    """
    C = x.shape[-1]
    centred = x - x.mean(-2, keepdim=True)
    cov = centred.transpose(-1, -2) @ centred / x.shape[-2]
    inv_std = cov.diagonal(dim1=-2, dim2=-1).clamp_min(eps).rsqrt()
    corr = cov * inv_std[..., :, None] * inv_std[..., None, :]
    rows, cols = torch.triu_indices(C, C, 1, device=x.device)
    return corr[..., rows, cols]


def correlation_mmd(a, b, bandwidth=None):
    r"""Squared maximum mean discrepancy (biased V-statistic) between two sets of vectors with a Gaussian
    kernel :math:`\exp(-\|u - v\|^2 / (2 h^2))`; differentiable in both sets.

    :param torch.Tensor a: shape ``(N, P)``.
    :param torch.Tensor b: shape ``(M, P)``.
    :param float bandwidth: ``h``; default: the median pairwise distance of the pooled sets (no gradient).
    :returns: a scalar tensor.
    """
    pooled = torch.cat([a, b], 0)
    d2 = torch.cdist(pooled, pooled).pow(2)
    if bandwidth is None:
        off = d2.detach()[~torch.eye(len(pooled), dtype=torch.bool, device=d2.device)]
        h2 = off.median().clamp_min(1e-6) / 2  # median heuristic on squared distances
    else:
        h2 = torch.as_tensor(float(bandwidth) ** 2, dtype=d2.dtype)
    k = torch.exp(-d2 / (2 * h2))
    n = len(a)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


class DiMTS(WindowDiffusion):
    r"""DiM-TS (Mamba diffusion for time-series generation) as a Pyro model over windows of shape ``(L, C)``:

    .. code-block:: python

        pyro.sample("x", DiffusionLikelihood(EDMPrecond(DiMTSNet(C, L), sigma_data=0.5), event_shape=(L, C)),
                    obs=windows_scaled_to_minus1_1)

    The network is :class:`~pyroseq.nn.DiMTSNet` (temporal branch with Lag Fusion Mamba, channel branch
    with Permutation Scanning Mamba); the channel scan order is derived from the training windows by
    :meth:`initialize` (called by :func:`~pyroseq.inference.fit`; correlations over the first 70% of the
    windows) unless ``channel_order`` is given, and is saved in the ``state_dict``. The objective, ``"edm"`` or
    ``"bound"``, and the covariates ``u`` ``(N, L, p)`` of :math:`p(x \mid u)` are those of
    :class:`~pyroseq.models.WindowDiffusion`.

    **Auxiliary terms** (DiM-TS's multi-feature loss; ``aux_losses=True``): a second denoiser pass at
    EDM-distributed noise levels feeds two extra ``pyro.factor`` sites (negative weights, i.e. added to the
    loss):

    - ``"fourier"`` (in the window plate): ``fourier_weight * 0.5 * lambda(sigma) * fourier_loss(x0_hat, x)``
      with EDM's weight ``lambda``; default weight ``sqrt(L) / 5`` as DiM-TS. With ``fourier_norm="l2"``
      (DiM-TS's MSE) Parseval makes this exactly ``fourier_weight / L`` times the per-window x0 error, so it
      only re-weights the denoising loss (it keeps the posterior-mean minimiser); ``"l1"`` is
      Diffusion-TS's variant, which does change the minimiser.
    - ``"correlation_mmd"`` (batch level): ``correlation_weight * N * 0.5 L C * MMD^2`` between the per-window
      channel-correlation vectors of the estimates and of the data (default weight ``5e-4``, relative to a
      per-element mean squared error as in DiM-TS; the ``0.5 L C`` converts to the summed units of the
      likelihood term). Needs ``C >= 2``.

    The auxiliary pass roughly doubles the cost of a training step, so the terms are off by default.

    **Data** are windows ``(N, L, C)`` in the user's units, mapped per channel to ``[-1, 1]`` (``sigma_data =
    0.5``) by :class:`~pyroseq.models.range_scaling.RangeScaler`: by their range in the training windows (learned
    by :meth:`initialize`, saved in the state dict) or by a fixed ``data_range``; :meth:`generate` maps back.

    ``objective``, ``sigma_data``, ``sigma_min``, ``sigma_max``, ``num_noise_draws``, ``num_steps`` and
    ``sample_chunk_size`` are those of :class:`~pyroseq.models.window_diffusion.DiffusionSettings`, ``ema_decay``
    and ``covariate_dim`` those of :class:`~pyroseq.models.WindowDiffusion`.

    :param int obs_dim: number of channels ``C``.
    :param int length: window length ``L``.
    :param bool aux_losses: add the auxiliary factors.
    :param float fourier_weight: weight of the Fourier term (default ``sqrt(L) / 5``).
    :param str fourier_norm: ``"l2"`` or ``"l1"``.
    :param float correlation_weight: weight of the correlation MMD term.
    :param tuple data_range: a fixed ``(low, high)`` range of the data (mapped to ``[-1, 1]``; values outside it
        are refused), or None (default) to learn each channel's range from the training windows.
    :param bool clip: clip generated windows to the data range.
    :param channel_order: fixed channel scan order (default: derived from data in :meth:`initialize`).
    :param float train_fraction: leading fraction of the windows used for the channel order.
    :param net_kwargs: passed to :class:`~pyroseq.nn.DiMTSNet` (``hidden_dim``, ``d_state``,
        ``num_encoder_layers``, ``num_decoder_layers``, ``num_lags``, ``channel_branch``, ...).

    Example::

        gen = DiMTS(obs_dim=C, length=24)
        fit(gen, windows, num_steps=5000, batch_size=64)   # windows: (N, 24, C), in your units
        fake = gen.generate(10000)                         # (10000, 24, C), Heun with 39 evaluations

        cond = DiMTS(obs_dim=C, length=24, covariate_dim=p)
        fit(cond, windows, num_steps=5000, batch_size=64, covariates=u)   # u: (N, 24, p)
        fake = cond.generate(len(u_new), covariates=u_new)                # u_new: (n, 24, p)
    """

    def __init__(self, obs_dim, length, objective="edm", sigma_data=0.5, sigma_min=0.002, sigma_max=80.0,
                 num_noise_draws=1, num_steps=20, aux_losses=False, fourier_weight=None, fourier_norm="l2",
                 correlation_weight=5e-4, ema_decay=0.999, data_range=None, clip=True,
                 sample_chunk_size=256, channel_order=None, train_fraction=0.7, covariate_dim=0, **net_kwargs):
        settings = DiffusionSettings(sigma_data, sigma_min, sigma_max, objective, num_noise_draws=num_noise_draws,
                                     num_steps=num_steps, sample_chunk_size=sample_chunk_size,
                                     clip=(-1.0, 1.0) if clip else None)
        super().__init__("dimts", obs_dim, _positive_int("length", length), covariate_dim, settings,
                         RangeScaler(_positive_int("obs_dim", obs_dim), data_range), ema_decay,
                         channel_order=channel_order, **net_kwargs)
        self.length = int(length)
        self.aux_losses = bool(aux_losses)
        self.fourier_weight = math.sqrt(self.length) / 5 if fourier_weight is None else _nonnegative_float(
            "fourier_weight", fourier_weight)
        if fourier_norm not in ("l1", "l2"):
            raise ValueError(f"fourier_norm must be 'l1' or 'l2', got {fourier_norm!r}")
        self.fourier_norm = fourier_norm
        self.correlation_weight = _nonnegative_float("correlation_weight", correlation_weight)
        if not 0.0 < float(train_fraction) <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction!r}")
        self.train_fraction = float(train_fraction)
        self.order_from_data = channel_order is None

    clip = property(lambda self: self.settings.clip is not None, doc="Whether generated windows are clipped.")

    # -- data ------------------------------------------------------------------------------------------

    @property
    def data_range(self):
        """The fixed ``(low, high)`` of the data, or None if each channel's range is learned from data."""
        return self.scaler.data_range

    @property
    def channel_order(self):
        """The channel scan order of the Permutation Scanning branch, shape ``(C,)``."""
        return self.net.channel_order

    def set_channel_order(self, order):
        """Fix the channel scan order (a permutation of ``range(C)``), in the network and its average."""
        self.net.set_channel_order(order)
        self.net_ema.set_channel_order(order)
        return self

    def fit_channel_order(self, series):
        """Derive the channel scan order from data (correlations over the first ``train_fraction``).

        :param torch.Tensor series: ``(T, C)`` series or ``(N, L, C)`` windows.
        """
        self.net.fit_channel_order(series, self.train_fraction)
        self.net_ema.set_channel_order(self.net.channel_order)
        return self

    @torch.no_grad()
    def initialize(self, x, mask=None, covariates=None):
        """Called once by :func:`~pyroseq.inference.fit` before training (not on resume): learns each channel's
        range (unless ``data_range`` was given), restarts the moving average and derives the channel order from
        the training windows (unless one was given).

        :param torch.Tensor x: training windows ``(N, L, C)``.
        """
        super().initialize(x, mask, covariates)
        if self.order_from_data:
            self.fit_channel_order(x)

    # -- the Pyro model ----------------------------------------------------------------------------------

    def auxiliary_losses(self, x, context=None):
        """The auxiliary terms of one denoiser pass at EDM log-normal noise levels (``P_mean = -1.2``,
        ``P_std = 1.2``).

        :param torch.Tensor x: windows in ``[-1, 1]``, shape ``(N, L, C)``.
        :param torch.Tensor context: network context ``(N, L, p C)`` of the covariate planes, or None.
        :returns: ``(fourier, correlation)``: the weighted Fourier term per window ``(N,)`` and the weighted
            correlation MMD term (a scalar, already multiplied by ``N``), both to be subtracted from the
            log-likelihood.
        """
        N, L, C = x.shape
        sigma = (torch.randn(N, dtype=x.dtype, device=x.device) * 1.2 - 1.2).exp()
        x0_hat = self.denoiser(x + sigma[:, None, None] * torch.randn_like(x), sigma, context)
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        fourier = self.fourier_weight * 0.5 * weight * fourier_loss(x0_hat, x, self.fourier_norm)
        correlation = x.new_zeros(())
        if self.correlation_weight > 0 and C >= 2 and N >= 2:
            mmd = correlation_mmd(window_correlations(x0_hat), window_correlations(x))
            correlation = self.correlation_weight * N * 0.5 * L * C * mmd
        return fourier, correlation

    def model(self, x, mask=None, covariates=None):
        """
        :param torch.Tensor x: windows ``(N, L, C)`` in the data's units.
        :param mask: unsupported (must be None).
        :param torch.Tensor covariates: ``(N, L, p)`` if ``covariate_dim = p > 0``, else None.
        """
        self.register_params()
        self.check_inputs(x, mask, covariates)
        z = self.scaler.to_unit(x)
        N = x.shape[0]
        likelihood = self.distribution({"planes": self.covariate_planes(covariates)}, (N,),
                                       event_shape=(self.length, self.obs_dim))
        with pyro.plate("windows", N):
            pyro.sample("x", likelihood, obs=z)
            if self.aux_losses:
                fourier, correlation = self.auxiliary_losses(z, likelihood.context)
                if self.fourier_weight > 0:
                    pyro.factor("fourier", -fourier)
        if self.aux_losses and self.correlation_weight > 0:
            pyro.factor("correlation_mmd", -correlation)

    # -- generation ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, num_samples, length=None, *, covariates=None, seed=None, sampler="heun", num_steps=None,
                 chunk_size=None, use_ema=True, **sampler_kwargs):
        """Generate windows, ``chunk_size`` at a time (memory does not grow with ``num_samples``), by sampling the
        model's likelihood. ``sampler``, ``num_steps``, ``chunk_size``, ``seed``, ``use_ema`` and ``sampler_kwargs``
        are the arguments of :meth:`~pyroseq.models.WindowDiffusion.generation_options`.

        :param int num_samples: number of windows ``n``.
        :param int length: window length ``<= L`` (default ``L``); shorter windows are the first ``length``
            steps of generated length-``L`` windows.
        :param torch.Tensor covariates: covariates of the generated windows, shape ``(n, L, p)`` (the whole
            trained length ``L`` even if ``length < L``); required iff ``covariate_dim = p > 0``.
        :returns: windows of shape ``(n, length, C)`` in the data's units, on the model's device and dtype.
        """
        num_samples = _positive_int("num_samples", num_samples)
        length = self.length if length is None else _positive_int("length", length)
        if length > self.length:
            raise ValueError(f"length must be at most the trained window length {self.length}, got {length}")
        self.check_covariates(covariates, num_samples, self.length)
        options = self.generation_options(sampler, num_steps, chunk_size, seed, use_ema, **sampler_kwargs)
        with self.sampling():
            likelihood = self.distribution({"planes": self.covariate_planes(covariates)}, (num_samples,),
                                           event_shape=(self.length, self.obs_dim), **options)
            return self.scaler.from_unit(likelihood.sample()[:, :length])

    @staticmethod
    def function_evaluations(sampler="heun", num_steps=20):
        """Network evaluations per window of :meth:`generate` (Heun: ``2 num_steps - 1``; DDPM: ``num_steps``)."""
        return _function_evaluations(sampler, num_steps)
