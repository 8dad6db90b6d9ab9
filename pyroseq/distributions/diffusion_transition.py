"""A diffusion model as the latent transition of a state-space model."""

import torch

from .diffusion_likelihood import DiffusionLikelihood
from .util import broadcast_batch_shapes, check_finite_arg, validation_enabled

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

    The batch shape is the broadcast of the batch parts of ``history`` and ``covariates``, so a discrete
    regime that enters through the covariates can be enumerated by :class:`~pyro.infer.TraceEnum_ELBO`:
    covariates of shape ``(K, 1, p)`` against a history of shape ``(N, j, d)`` give batch shape ``(K, N)``.

    A scalar state (a 1-D latent) has ``event_shape ()`` with ``event_dim=0``: ``history`` then has shape
    ``batch_shape + (j,)`` and values ``batch_shape``, so they line up with plates and scalar emissions without
    squeezes. The denoiser sees the same tensors either way (residuals ``(M, 1)``, history ``(M, j, 1)``).

    :param callable denoiser: ``denoiser(r_noisy, sigma, context) -> r0_hat`` where ``r`` has shape
        ``(M, d)`` and ``context`` is the history ``(M, j, d)`` or, with covariates, the tuple
        ``(history, covariates)`` with covariates ``(M, p)``.
    :param torch.Tensor history: previous states :math:`z_{t-j:t-1}`, shape ``batch_shape + (j, d)``
        (``batch_shape + (j,)`` if ``event_dim=0``).
    :param torch.Tensor covariates: optional exogenous inputs :math:`u_t`, shape ``batch_shape + (p,)``.
    :param baseline: ``"none"`` (model :math:`z_t` itself), ``"persistence"`` (model
        :math:`z_t - z_{t-1}`), or a callable ``history -> history_batch + (d,)`` (it receives the history as
        given, before broadcasting, in the layout ``history_batch + (j, d)``, with ``d = 1`` if ``event_dim=0``).
    :param int event_dim: 1 (default; states of shape ``(d,)``) or 0 (scalar states, ``event_shape ()``).
    :param kwargs: passed to :class:`DiffusionLikelihood` (``sigma_data``, ``num_noise_draws``, ...).
    """

    _validate_context = False  # history and covariates are checked under their own names

    def __init__(self, denoiser, history, covariates=None, baseline="none", sigma_data=1.0, event_dim=1,
                 validate_args=None, **kwargs):
        if event_dim not in (0, 1):
            raise ValueError(f"event_dim must be 0 (scalar states) or 1, got {event_dim!r}")
        layout = "batch_shape + (j,)" if event_dim == 0 else "batch_shape + (j, d)"
        if not torch.is_tensor(history) or history.dim() < 1 + event_dim or not torch.is_floating_point(history):
            raise ValueError(
                f"history must be a floating point tensor of shape {layout}, got "
                + (str(tuple(history.shape)) if torch.is_tensor(history) else type(history).__name__)
            )
        if "context" in kwargs:
            raise ValueError("DiffusionTransition builds its context from history and covariates; pass no context")
        states = history.unsqueeze(-1) if event_dim == 0 else history  # batch + (j, d)
        if states.shape[-2] < 1:
            raise ValueError("history must hold at least one previous state (j >= 1)")
        validate = validation_enabled(validate_args)
        if validate:
            check_finite_arg("history", history)
        if covariates is not None:
            if not torch.is_tensor(covariates) or covariates.dim() < 1:
                raise ValueError(f"covariates must be a tensor of shape batch_shape + (p,), got "
                                 f"{tuple(covariates.shape) if torch.is_tensor(covariates) else covariates!r}")
            if validate and torch.is_floating_point(covariates):
                check_finite_arg("covariates", covariates)
        batch_shape = broadcast_batch_shapes(
            history=states.shape[:-2], covariates=None if covariates is None else covariates.shape[:-1])
        if baseline == "none" or baseline is None:
            loc = None
        elif baseline == "persistence":
            loc = states[..., -1, :]
        elif callable(baseline):
            loc = baseline(states)
            if not torch.is_tensor(loc) or loc.shape != states.shape[:-2] + states.shape[-1:]:
                raise ValueError(
                    f"baseline(history) must have shape {tuple(states.shape[:-2] + states.shape[-1:])}, "
                    f"got {tuple(loc.shape) if torch.is_tensor(loc) else type(loc).__name__}"
                )
        else:
            raise ValueError(
                f"baseline must be 'none', 'persistence' or a callable, got {baseline!r}"
            )
        states = states.expand(batch_shape + states.shape[-2:])
        if covariates is not None:
            covariates = covariates.expand(batch_shape + covariates.shape[-1:])
            context = (states, covariates)
        else:
            context = states
        if loc is not None:
            loc = loc.expand(batch_shape + loc.shape[-1:])
        self.history = history.expand(batch_shape + history.shape[history.dim() - 1 - event_dim:])
        self.covariates = covariates
        self.loc = None if loc is None else (loc if event_dim else loc.squeeze(-1))  # batch + event_shape
        super().__init__(
            denoiser, event_shape=states.shape[-1:] if event_dim else (), context=context, sigma_data=sigma_data,
            batch_shape=batch_shape, validate_args=validate_args, **kwargs
        )

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiffusionTransition, _instance)
        new = super().expand(batch_shape, _instance=new)
        batch_shape, nb = new.batch_shape, len(self.batch_shape)
        new.history = self.history.expand(batch_shape + self.history.shape[nb:])
        new.covariates = None if self.covariates is None else self.covariates.expand(
            batch_shape + self.covariates.shape[nb:])
        new.loc = None if self.loc is None else self.loc.expand(batch_shape + self.event_shape)
        return new

    def _transform_value(self, value):
        return value if self.loc is None else value - self.loc

    def _untransform_sample(self, sample):
        return sample if self.loc is None else sample + self.loc
