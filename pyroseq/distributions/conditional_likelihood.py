"""A diffusion likelihood of the missing entries of partially observed events (imputation, forecasting)."""

import math

import torch

from ..diffusion.inpainting import INPAINTING_METHODS, MaskedDenoiser
from .context import context_leaves, map_context
from .diffusion_likelihood import DiffusionLikelihood
from .util import broadcast_batch_shapes, check_value, validation_enabled

__all__ = ["ConditionalDiffusionLikelihood", "check_observation_mask"]


def check_observation_mask(observed, mask, event_dim, require_observed=True, validate=True):
    """Validate a partially observed batch of events and return ``(observed_filled, mask)``.

    :param torch.Tensor observed: values of shape ``batch_shape + event_shape``; entries where ``mask`` is
        False may be anything, including NaN.
    :param torch.Tensor mask: boolean tensor broadcastable to ``observed.shape`` (True = observed).
    :param int event_dim: number of event dims.
    :param bool require_observed: every event must have an observed entry.
    :param bool validate: also run the checks that read whole tensors (0/1 values of a non-boolean mask,
        finite observed entries, an observed entry in every event); shapes are always checked.
    :returns: ``observed`` with unobserved entries set to 0, and ``mask`` expanded to ``observed.shape``.
    :raises ValueError: for non-tensors, a mask that does not broadcast, and with ``validate`` non-finite
        observed entries or an event without any observed entry.
    """
    if not torch.is_tensor(observed) or not torch.is_floating_point(observed):
        raise ValueError(f"observed must be a floating point tensor, got {type(observed).__name__}")
    if observed.dim() < event_dim:
        raise ValueError(f"observed must have at least {event_dim} dims (the event), got shape {tuple(observed.shape)}")
    if not torch.is_tensor(mask):
        raise ValueError(f"mask must be a boolean tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        if validate and ((mask != 0) & (mask != 1)).any():
            raise ValueError("mask must be boolean (or 0/1)")
        mask = mask != 0
    try:
        if torch.broadcast_shapes(mask.shape, observed.shape) != observed.shape:
            raise RuntimeError
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not match observed of shape {tuple(observed.shape)}"
        ) from None
    mask = mask.expand(observed.shape)
    if validate:
        bad = mask & ~torch.isfinite(observed)
        if bad.any():
            raise ValueError(f"observed has {int(bad.sum())} NaN or infinite values at observed (mask=True) "
                             f"entries, first at index {tuple(bad.nonzero()[0].tolist())}")
        any_observed = mask.reshape(mask.shape[: mask.dim() - event_dim] + (-1,)).any(-1)
        if require_observed and not any_observed.all():
            empty = (~any_observed).nonzero()
            raise ValueError(f"mask has {len(empty)} event(s) with no observed entry (nothing to condition on), "
                             f"e.g. batch index {tuple(empty[0].tolist())}; use an unconditional DiffusionLikelihood")
    return torch.where(mask, observed, torch.zeros((), dtype=observed.dtype)), mask


class ConditionalDiffusionLikelihood(DiffusionLikelihood):
    r"""A diffusion model of the *unobserved* entries of partially observed events given the observed ones,
    :math:`p(x_{\bar m} \mid x_m = y_m, c)`, as a Pyro distribution over whole events whose observed entries
    are fixed at :math:`y_m` (imputation; forecasting is the mask that observes a history and hides a horizon).

    - ``sample`` generates the unobserved entries with the reverse-time sampler of
      :class:`DiffusionLikelihood` around a :class:`~pyroseq.diffusion.MaskedDenoiser`; observed entries of
      every sample equal ``observed`` exactly.
    - ``log_prob(value)`` is minus the diffusion bound over the unobserved entries of ``value`` only
      (``target_mask`` of :func:`~pyroseq.diffusion.diffusion_nll_bound`; CSDI-style training with
      random masks): a stochastic lower bound on :math:`\log p(x_{\bar m} \mid y_m, c)`. The observed entries
      of ``value`` are ignored. It needs ``method="trained"``, or an all-False mask (then it is the bound of
      the plain denoiser over the ``target`` entries).

    :param callable denoiser: ``denoiser(x_noisy, sigma, context) -> x0_hat`` (e.g. an
        :class:`~pyroseq.diffusion.EDMPrecond`): for ``"trained"`` a network reading the observation planes
        (see :class:`~pyroseq.diffusion.MaskedDenoiser`), for ``"replacement"`` any unconditional denoiser.
    :param torch.Tensor observed: values of shape ``batch_shape + event_shape``; unobserved entries may be
        NaN.
    :param torch.Tensor mask: boolean tensor broadcastable to ``observed.shape``, True where observed; every
        event needs at least one observed entry.
    :param tuple event_shape: event shape (default ``observed.shape[-2:]``, windows ``(T, C)``).
    :param context: extra conditioning with leading ``batch_shape`` (e.g. a latent path), or None.
    :param str method: ``"trained"`` (default) or ``"replacement"``.
    :param torch.Tensor target: optional boolean tensor broadcastable to ``observed.shape``: the unobserved
        entries ``log_prob`` scores (default: all of them). Training data with missing values score only
        entries that are really observed (CSDI: target = observed in the data and not in the conditioning).
    :param callable pack_context: ``pack_context(planes, context) -> network context`` (see
        :class:`~pyroseq.diffusion.MaskedDenoiser`).
    :param bool require_observed: raise ValueError for an event without observed entries (default; checked
        when validation is on). Set False only when ``context`` carries the conditioning of such events (e.g. a
        Stage-Diff history).
    :param int context_event_dim: number of trailing event dims of each ``context`` leaf. When given, the
        leaves' batch parts broadcast with the batch shape of ``observed`` (e.g. an enumerated regime of shape
        ``(K, 1, 1) + context_event_shape`` against windows ``(N, T, C)`` gives batch shape ``(K, 1, N)``);
        when None, every context leaf starts with ``observed``'s batch shape.
    :param kwargs: the other arguments of :class:`DiffusionLikelihood` (``sigma_data``, ``num_noise_draws``,
        ``num_steps``, ``objective``, ``sampler``, ...).
    """

    def __init__(self, denoiser, observed, mask, event_shape=None, context=None, method="trained",
                 pack_context=None, target=None, require_observed=True, context_event_dim=None,
                 validate_args=None, **kwargs):
        if method not in INPAINTING_METHODS:
            raise ValueError(f"method must be one of {INPAINTING_METHODS}, got {method!r}")
        if event_shape is None:
            if not torch.is_tensor(observed) or observed.dim() < 2:
                raise ValueError("observed must be a tensor with at least 2 dims, or give event_shape")
            event_shape = observed.shape[-2:]
        event_shape = torch.Size(event_shape)
        if not event_shape:
            raise ValueError("event_shape must be non-empty: a conditional likelihood conditions some entries of "
                             "an event on others")
        validate = validation_enabled(validate_args)
        observed, mask = check_observation_mask(observed, mask, len(event_shape), require_observed, validate)
        ed = len(event_shape)
        if observed.shape[observed.dim() - ed:] != event_shape:
            raise ValueError(f"observed must end with event_shape {tuple(event_shape)}, got {tuple(observed.shape)}")
        batch_shape = observed.shape[: observed.dim() - ed]
        if context_event_dim is not None:
            # The batch parts of the context leaves broadcast with the observed events' (e.g. an enumerated
            # regime in the context against a plate of windows).
            ced = int(context_event_dim)
            leaves = context_leaves(context)
            for leaf in leaves:
                if leaf.dim() < ced:
                    raise ValueError(f"context has {leaf.dim()} dims, fewer than context_event_dim={ced}")
            batch_shape = broadcast_batch_shapes(observed=batch_shape, **{
                f"context[{i}]": leaf.shape[: leaf.dim() - ced] for i, leaf in enumerate(leaves)})
            context = map_context(lambda c: c.expand(batch_shape + c.shape[c.dim() - ced:]), context)
            observed, mask = observed.expand(batch_shape + event_shape), mask.expand(batch_shape + event_shape)
        layout = {"observed": observed, "mask": mask, "context": context}
        if target is not None:
            if not torch.is_tensor(target) or target.dtype != torch.bool:
                raise ValueError("target must be a boolean tensor")
            try:
                target = target.expand(observed.shape)
            except RuntimeError:
                raise ValueError(f"target of shape {tuple(target.shape)} does not match observed of shape "
                                 f"{tuple(observed.shape)}") from None
            if validate and (target & mask).any():
                raise ValueError("target must not include observed (mask=True) entries")
            layout["target"] = target
        self.method = method
        self.pack_context = pack_context
        super().__init__(MaskedDenoiser(denoiser, method, pack_context), event_shape,
                         context=layout,
                         batch_shape=batch_shape, validate_args=validate_args, **kwargs)
        self.base_denoiser = denoiser

    @property
    def observed(self):
        """Observed values (0 where unobserved), shape ``batch_shape + event_shape``."""
        return self.context["observed"]

    @property
    def observation_mask(self):
        """Observation mask (True = observed), shape ``batch_shape + event_shape``. (Not ``mask``: that is
        Pyro's :meth:`~pyro.distributions.TorchDistributionMixin.mask`.)"""
        return self.context["mask"]

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ConditionalDiffusionLikelihood, _instance)
        new.method, new.pack_context, new.base_denoiser = self.method, self.pack_context, self.base_denoiser
        return super().expand(batch_shape, _instance=new)

    def _target_mask(self, out_batch):
        nb = len(self.batch_shape)
        target = self.context["target"] if "target" in self.context else ~self.observation_mask
        target = target.expand(out_batch + target.shape[nb:])
        return target.reshape((math.prod(out_batch),) + self.event_shape)

    def log_prob(self, value):
        """Minus the diffusion bound over the unobserved entries (observed entries of ``value`` are ignored).

        :param torch.Tensor value: shape ``sample_shape + batch_shape + event_shape``.
        :returns: shape ``sample_shape + batch_shape``.
        """
        if self.method != "trained" and self.observation_mask.any():
            raise ValueError("log_prob needs method='trained' (a network trained on the observation planes); "
                             "method='replacement' only samples (unless nothing is observed)")
        # Shapes before the masking broadcasts the value; finiteness after it.
        check_value(value, self.batch_shape, self.event_shape, self._validate_args, finite=False)
        # Observed entries of the value are not scored (and may be NaN in the data).
        value = torch.where(self.observation_mask, torch.nan_to_num(value), value)
        return super().log_prob(value)

    def sample(self, sample_shape=torch.Size()):
        """Draw the unobserved entries (observed ones are returned as they are), in chunks, without gradients. If
        every entry is observed there is nothing to draw and the sampler does not run (a forecast window's
        history stages, for example).

        :param torch.Size sample_shape: leading sample shape.
        :returns: a tensor of shape ``sample_shape + batch_shape + event_shape``.
        """
        if bool(self.observation_mask.all()):
            shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
            return self.observed.expand(shape).clone()
        return super().sample(sample_shape)

    def _untransform_sample(self, sample):
        return torch.where(self.observation_mask, self.observed, sample)

