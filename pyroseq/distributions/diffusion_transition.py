"""A diffusion model as the latent transition of a state-space model."""

import torch

from .diffusion_likelihood import DiffusionLikelihood

__all__ = ["DiffusionTransition"]


class DiffusionTransition(DiffusionLikelihood):
    r"""Diffusion transition :math:`p_\psi(z_t \mid z_{t-j:t-1}, u_t)` of a DDSSM (a deep state-space
    model whose latent dynamics are a conditional diffusion model).

    The denoiser models the residual :math:`z_t - b(z_{t-j:t-1})` from a baseline ``b`` and receives
    the history (and covariates) as context, so one call scores any number of transitions in
    parallel: with ``history`` of shape ``(N, T, j, d)`` the batch shape is ``(N, T)``.
    The shift has unit Jacobian, so ``log_prob`` stays minus the bound of the residual's model:
    a stochastic **lower bound** on :math:`\log p`, valid in a Pyro model, never in a guide
    (see :class:`DiffusionLikelihood`).

    :param callable denoiser: ``denoiser(r_noisy, sigma, context) -> r0_hat`` where ``r`` has shape
        ``(M, d)`` and ``context`` is the history ``(M, j, d)`` or, with covariates, the tuple
        ``(history, covariates)`` with covariates ``(M, p)``.
    :param torch.Tensor history: previous states :math:`z_{t-j:t-1}`, shape ``batch_shape + (j, d)``.
    :param torch.Tensor covariates: optional exogenous inputs :math:`u_t`, shape ``batch_shape + (p,)``.
    :param baseline: ``"none"`` (model :math:`z_t` itself), ``"persistence"`` (model
        :math:`z_t - z_{t-1}`), or a callable ``history -> (*batch_shape, d)``.
    :param kwargs: passed to :class:`DiffusionLikelihood` (``sigma_data``, ``num_noise_draws``, ...).
    """

    def __init__(self, denoiser, history, covariates=None, baseline="none", sigma_data=1.0,
                 **kwargs):
        if not torch.is_tensor(history) or history.dim() < 2:
            raise ValueError(
                "history must be a tensor of shape batch_shape + (j, d), got "
                + (str(tuple(history.shape)) if torch.is_tensor(history) else type(history).__name__)
            )
        if history.shape[-2] < 1:
            raise ValueError("history must hold at least one previous state (j >= 1)")
        if not torch.isfinite(history).all():
            raise ValueError("history contains NaN or infinite values")
        batch_shape = history.shape[:-2]
        if covariates is not None:
            if not torch.is_tensor(covariates) or covariates.shape[:-1] != batch_shape:
                raise ValueError(
                    f"covariates must have shape batch_shape + (p,) = {tuple(batch_shape)} + (p,), "
                    f"got {tuple(covariates.shape) if torch.is_tensor(covariates) else covariates}"
                )
            context = (history, covariates)
        else:
            context = history
        if baseline == "none" or baseline is None:
            loc = None
        elif baseline == "persistence":
            loc = history[..., -1, :]
        elif callable(baseline):
            loc = baseline(history)
            if loc.shape != batch_shape + history.shape[-1:]:
                raise ValueError(
                    f"baseline(history) must have shape {tuple(batch_shape + history.shape[-1:])}, "
                    f"got {tuple(loc.shape)}"
                )
        else:
            raise ValueError(
                f"baseline must be 'none', 'persistence' or a callable, got {baseline!r}"
            )
        self.history = history
        self.loc = loc
        super().__init__(
            denoiser, event_shape=history.shape[-1:], context=context, sigma_data=sigma_data,
            batch_shape=batch_shape, **kwargs
        )

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiffusionTransition, _instance)
        batch_shape = torch.Size(batch_shape)
        new.history = self.history.expand(batch_shape + self.history.shape[-2:])
        new.loc = None if self.loc is None else self.loc.expand(batch_shape + self.event_shape)
        return super().expand(batch_shape, _instance=new)

    def _transform_value(self, value):
        return value if self.loc is None else value - self.loc

    def _untransform_sample(self, sample):
        return sample if self.loc is None else sample + self.loc
