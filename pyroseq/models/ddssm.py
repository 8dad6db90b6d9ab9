"""DDSSM: a deep state-space model whose latent transition is a conditional diffusion model."""

import torch

from ..diffusion import EDMPrecond
from ..distributions import DiffusionTransition
from ..nn.transition import TransitionDenoiserNet
from .base import DeepStateSpaceModel

__all__ = ["DDSSM"]

_BASELINES = ("none", "persistence")
_OBJECTIVES = ("bound", "edm")


class DDSSM(DeepStateSpaceModel):
    r"""Diffusion-driven state-space model of order ``j``: the latent transition
    :math:`p_\psi(z_t \mid z_{t-j:t-1}, u_t)` is a :class:`~pyroseq.distributions.DiffusionTransition`
    whose denoiser is :class:`~pyroseq.diffusion.EDMPrecond` around a
    :class:`~pyroseq.nn.TransitionDenoiserNet`, so it can represent multimodal dynamics that a Gaussian
    transition (:class:`~pyroseq.models.DKF`) cannot. Guide, initial prior and emission are shared with
    DKF (:class:`~pyroseq.models.DeepStateSpaceModel`).

    Training is parallel in time: the model's ``"z"`` site scores all ``T - j`` transitions of a batch
    with **one** denoiser call (``2 * num_noise_draws`` evaluations per transition). The transition's
    ``log_prob`` is minus the continuous-time diffusion bound, a stochastic lower bound on
    :math:`\log p`, so :class:`~pyro.infer.Trace_ELBO` stays a lower bound on :math:`\log p(x)`;
    :func:`~pyroseq.inference.iwae_bound` is then only approximately a bound (tighten it with more
    ``num_noise_draws``). Forecasting and :meth:`generate` sample the moving-average denoiser with
    Heun's method (``2 * num_steps - 2`` calls per step).

    ``objective="edm"`` replaces the bound by EDM's weighted denoising loss for the transition term:
    a training surrogate, not a bound (the reported loss is then not an ELBO).

    ``split_loss=True`` trains the denoiser on the *un-annealed* transition term while the KL weight
    :math:`\lambda` of :func:`~pyroseq.inference.fit` anneals encoder and decoder: the gradient reaching
    the denoiser's parameters through the (``lambda``-scaled) ``"z"`` site is multiplied by
    ``1 / max(lambda, 0.01)``; the gradient with respect to the latents (hence the encoder) keeps the
    factor ``lambda``. ``fit`` sets :attr:`kl_weight` every step. Loss values are unchanged.

    Example::

        model = DDSSM(obs_dim=C, latent_dim=d, order=1)
        fit(model, x, num_steps=3000, batch_size=64, kl_schedule=("linear", 500, 1.0))
        fc = forecast(model, x_hist, horizon=H, num_samples=S)   # (S, N, H, C)

    Arguments not listed below (``obs_dim``, ``latent_dim``, ``order``, ``covariate_dim``, ``rnn_dim``, ...) are
    those of :class:`~pyroseq.models.DeepStateSpaceModel`.

    :param float sigma_data: data scale of the (residual) latent transition (preconditioning, bound
        prior and sampler scaling).
    :param str baseline: ``"persistence"`` (the diffusion models :math:`z_t - z_{t-1}`) or ``"none"``.
    :param int num_noise_draws: noise draws per transition in the bound.
    :param int num_steps: Heun steps used for sampling.
    :param str objective: ``"bound"`` or ``"edm"`` (see above).
    :param int denoiser_dim: width of the denoiser network.
    :param int denoiser_blocks: residual blocks of the denoiser network.
    :param float sigma_min: smallest noise level.
    :param float sigma_max: largest noise level.
    :param bool split_loss: train the denoiser on the un-annealed loss (see above).
    """

    transition_group = "denoiser"

    def __init__(self, obs_dim, latent_dim, order=1, covariate_dim=0, sigma_data=1.0, baseline="persistence",
                 num_noise_draws=1, num_steps=18, objective="bound", denoiser_dim=128, denoiser_blocks=3,
                 sigma_min=0.002, sigma_max=80.0, split_loss=False, **kwargs):
        super().__init__(obs_dim, latent_dim, order=order, covariate_dim=covariate_dim, **kwargs)
        if baseline not in _BASELINES:
            raise ValueError(f"baseline must be one of {_BASELINES}, got {baseline!r}")
        if objective not in _OBJECTIVES:
            raise ValueError(f"objective must be one of {_OBJECTIVES}, got {objective!r}")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        for arg, value in (("num_noise_draws", num_noise_draws), ("num_steps", num_steps)):
            if int(value) != value or value < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        self.sigma_data = float(sigma_data)
        self.baseline = baseline
        self.num_noise_draws = int(num_noise_draws)
        self.num_steps = int(num_steps)
        self.objective = objective
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.split_loss = bool(split_loss)
        #: the current KL weight (set by :func:`~pyroseq.inference.fit`; used by ``split_loss``)
        self.kl_weight = 1.0
        net = TransitionDenoiserNet(self.latent_dim, self.order, self.transition_input_dim, denoiser_dim,
                                    denoiser_blocks)
        self.transition = EDMPrecond(net, sigma_data=self.sigma_data)
        self._init_ema()

    def transition_distribution(self, history, covariates=None, sampling=False):
        """:class:`~pyroseq.distributions.DiffusionTransition` with batch ``history.shape[:-2]``,
        event ``(d,)``; ``sampling=True`` uses the moving-average denoiser."""
        denoiser = self._transition_module(sampling)
        if self.split_loss and not sampling and self.kl_weight < 1.0:
            denoiser = _ParameterGradientScale(denoiser, 1.0 / max(self.kl_weight, 0.01))
        return DiffusionTransition(
            denoiser, history, covariates=covariates, baseline=self.baseline,
            sigma_data=self.sigma_data, num_noise_draws=self.num_noise_draws, num_steps=self.num_steps,
            sigma_min=self.sigma_min, sigma_max=self.sigma_max, objective=self.objective)


class _ParameterGradientScale:
    """Calls ``module`` with its parameters' gradients multiplied by ``scale`` (values unchanged)."""

    def __init__(self, module, scale):
        self.module, self.scale = module, scale

    def __call__(self, *args):
        params = {name: p.detach() + self.scale * (p - p.detach()) for name, p in self.module.named_parameters()}
        return torch.func.functional_call(self.module, params, args)
