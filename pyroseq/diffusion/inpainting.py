"""Denoisers conditioned on partially observed events (imputation, forecasting as imputation)."""

import torch

__all__ = ["MaskedDenoiser", "observation_planes", "INPAINTING_METHODS"]

#: ``"trained"``: the network sees the observed values and the mask as conditioning planes (CSDI-style,
#: trained with random masks); ``"replacement"``: any unconditional denoiser, observed entries re-noised to the
#: current level and substituted into its input (training-free; Song et al. 2021, Lugmayr et al. 2022).
INPAINTING_METHODS = ("trained", "replacement")


def observation_planes(observed, mask):
    """The two CSDI conditioning planes of a partially observed event.

    :param torch.Tensor observed: values of shape ``(M,) + event_shape`` (finite; any value where unobserved).
    :param torch.Tensor mask: boolean tensor of the same shape, True where observed.
    :returns: a tensor of shape ``(M,) + event_shape + (2,)``: ``observed * mask`` and ``mask``.
    """
    m = mask.to(observed.dtype)
    return torch.stack([observed * m, m], dim=-1)


class MaskedDenoiser:
    r"""A denoiser of partially observed events. With mask :math:`m` (1 = observed) and observed values
    :math:`y` it returns

    .. math:: D_m(x; \sigma) = m \odot y + (1 - m) \odot D(\tilde x; \sigma, c'),

    so observed entries are reproduced exactly at every noise level (and hence by every sampler), and only the
    unobserved entries are generated. For ``method="trained"`` :math:`\tilde x = (1 - m) \odot x` (observed
    entries zeroed, as in CSDI) and :math:`c' =` ``pack_context(planes, context)`` with
    ``planes = observation_planes(y, m)`` of shape ``(M,) + event_shape + (2,)``: the network must have been
    built to read these planes (e.g. ``cond_dim=2`` of :class:`~pyroseq.nn.CSDIDenoiserNet`) and trained with
    random masks. For ``method="replacement"`` :math:`\tilde x = m \odot (y + \sigma\epsilon) + (1 - m) \odot
    x` with fresh noise :math:`\epsilon` and :math:`c' =` ``context`` (or ``pack_context(None, context)`` if
    given): a training-free approximation for any denoiser that does not read observation planes.

    Called as ``denoiser(x, sigma, context)`` with ``context = {"observed": y, "mask": m, "context": c}``
    (the layout :class:`~pyroseq.distributions.ConditionalDiffusionLikelihood` builds).

    :param callable denoiser: the underlying ``denoiser(x_noisy, sigma, context) -> x0_hat``.
    :param str method: ``"trained"`` or ``"replacement"``.
    :param callable pack_context: ``pack_context(planes, context) -> network context`` for ``"trained"``
        (default: ``planes`` reshaped to ``(M,) + event_shape[:-1] + (2 * event_shape[-1],)`` in CSDI's
        plane layout when ``context`` is None; required otherwise).
    """

    def __init__(self, denoiser, method="trained", pack_context=None):
        if not callable(denoiser):
            raise ValueError(f"denoiser must be callable, got {type(denoiser).__name__}")
        if method not in INPAINTING_METHODS:
            raise ValueError(f"method must be one of {INPAINTING_METHODS}, got {method!r}")
        if pack_context is not None and not callable(pack_context):
            raise ValueError(f"pack_context must be callable, got {type(pack_context).__name__}")
        self.denoiser = denoiser
        self.method = method
        self.pack_context = pack_context

    def _pack(self, planes, context):
        if self.pack_context is not None:
            return self.pack_context(planes, context)
        if context is not None:
            raise ValueError("pack_context is required to combine the observation planes with a context")
        # CSDI plane layout: plane k of the last event axis is [..., k * C:(k + 1) * C].
        return planes.movedim(-1, -2).flatten(-2)

    def __call__(self, x, sigma, context):
        if not isinstance(context, dict) or "observed" not in context or "mask" not in context:
            raise ValueError("MaskedDenoiser needs context={'observed': ..., 'mask': ..., 'context': ...}")
        observed, mask, inner = context["observed"], context["mask"], context.get("context")
        m = mask.to(x.dtype)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.dim() == 0:
            sigma = sigma.expand(x.shape[:1])
        if self.method == "trained":
            out = self.denoiser(x * (1 - m), sigma, self._pack(observation_planes(observed, mask), inner))
        else:
            view = (-1,) + (1,) * (x.dim() - 1)
            noisy = observed + sigma.reshape(view) * torch.randn_like(x)
            inner = inner if self.pack_context is None else self.pack_context(None, inner)
            out = self.denoiser(m * noisy + (1 - m) * x, sigma, inner)
        return torch.where(mask, observed, out)
