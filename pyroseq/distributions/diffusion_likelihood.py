"""A diffusion model as a Pyro distribution over a whole event (vector, window, ...)."""

import copy
import math

import torch
from pyro.distributions import TorchDistribution, constraints

from ..diffusion.bound import diffusion_nll_bound, edm_loss
from ..diffusion.ode_likelihood import probability_flow_log_prob
from ..diffusion.samplers import SAMPLERS
from ..diffusion.samplers import sample as run_sampler
from ..diffusion.validation import check_edm_noise, check_noise_range
from .context import context_leaves, map_context
from .density import density_settings
from .util import (
    broadcast_batch_shapes,
    check_expand_shape,
    check_finite_arg,
    check_positive_int,
    check_value,
    validation_enabled,
)

__all__ = ["DiffusionLikelihood"]

_OBJECTIVES = ("bound", "edm")


class DiffusionLikelihood(TorchDistribution):
    r"""A learned diffusion model :math:`p(x \mid c)` over events of shape ``event_shape``, usable as
    an ordinary Pyro distribution inside a *model*::

        pyro.sample("x", DiffusionLikelihood(denoiser, event_shape=(T, C)), obs=windows)

    ``log_prob`` returns **minus the continuous-time variational bound** of
    :func:`~pyroseq.diffusion.diffusion_nll_bound`, i.e. an unbiased Monte Carlo estimate of a
    *lower bound* on :math:`\log p(x \mid c)` (VDM, Kingma et al. 2021, in EDM parameterisation).
    Inside a model this keeps :class:`~pyro.infer.Trace_ELBO` a valid lower bound on the evidence
    (a bound of a bound) with unbiased gradients. It is **not** an exact density: never use it in a
    guide (the entropy term would be wrong), with HMC/NUTS (the target would be noisy), or for exact
    LOO/WAIC. ``has_rsample`` is False. Use :func:`~pyroseq.diffusion.probability_flow_log_prob` for a
    (deterministic, evaluation-only) likelihood.

    ``sample`` runs a reverse-time sampler (Heun by default) under :func:`torch.no_grad`, in chunks
    of ``sample_chunk_size`` so memory does not grow with the number of samples. Samples have the dtype and
    device of the context (else of the denoiser's parameters), and so does the noise of the sampler and of the
    bound.

    Shape checks always run; checks that read whole tensors (NaN in ``context`` or in a ``log_prob`` value, the
    outer-product broadcast of a forgotten squeeze) run only when validation is on (``validate_args``, or
    :func:`pyro.enable_validation` by default), as in Pyro's own distributions.

    :param callable denoiser: ``denoiser(x_noisy, sigma, context) -> x0_hat`` with ``x_noisy`` of shape
        ``(M,) + event_shape`` (``(M, 1)`` for scalar events), ``sigma`` of shape ``(M,)`` and context leaves of
        shape ``(M,) + context_event_shape`` (e.g. an :class:`~pyroseq.diffusion.EDMPrecond`).
    :param tuple event_shape: the event shape, e.g. ``()`` (scalar events), ``(d,)`` or ``(T, C)``.
    :param context: conditioning: a tensor (or tuple/list/dict of tensors) of shape
        ``batch_shape + context_event_shape``, or None. The batch parts of the leaves broadcast (sizes 1, or
        missing leading dims when ``batch_shape`` is inferred).
    :param float sigma_data: data scale (prior term of the bound; scaled sampler).
    :param int num_noise_draws: Monte Carlo noise draws per ``log_prob`` element.
    :param float sigma_min: smallest noise level.
    :param float sigma_max: largest noise level.
    :param int num_steps: sampler steps (Heun uses ``2 * num_steps - 1`` denoiser calls).
    :param tuple batch_shape: batch shape; inferred from ``context`` when None.
    :param int context_event_dim: number of trailing event dims of every context leaf; used only to infer
        ``batch_shape``, as the broadcast of the leaves' batch parts (e.g. an enumerated regime in one leaf
        against a plate in another). When None, the first leaf's shape without its last ``len(event_shape)``
        dims is the batch shape and every other leaf must start with it (or with sizes 1).
    :param str objective: ``"bound"`` (default; minus the variational bound) or ``"edm"`` (minus EDM's
        weighted denoising loss: a training surrogate that is *not* a bound on anything; use it only
        to train the denoiser, e.g. in a split loss).
    :param tuple edm_noise: ``(P_mean, P_std)`` of the log-normal noise levels of ``objective="edm"``
        (:func:`~pyroseq.diffusion.edm_loss`; default EDM's ``(-1.2, 1.2)``). A lower ``P_mean`` trains the low
        noise levels, which decide fine detail, more often.
    :param str sampler: ``"heun"``, ``"euler"``, ``"dpm2m"`` (DPM-Solver++(2M), one evaluation per step) or
        ``"ddpm"`` (500-step ancestral baseline).
    :param dict sampler_kwargs: extra keyword arguments for the sampler (e.g. ``S_churn``).
    :param int sample_chunk_size: maximum number of events sampled per denoiser batch.
    :param tuple clip: ``(low, high)`` that samples are clamped to (e.g. the range of the training data), or None.
    :param bool validate_args: validate arguments and values (default: Pyro's global switch).
    """

    arg_constraints = {}
    has_rsample = False
    _validate_context = True  # subclasses that check their context's tensors themselves set False

    def __init__(
        self,
        denoiser,
        event_shape,
        context=None,
        sigma_data=1.0,
        num_noise_draws=16,
        sigma_min=0.002,
        sigma_max=80.0,
        num_steps=20,
        batch_shape=None,
        context_event_dim=None,
        objective="bound",
        edm_noise=(-1.2, 1.2),
        sampler="heun",
        sampler_kwargs=None,
        sample_chunk_size=4096,
        clip=None,
        validate_args=None,
    ):
        if not callable(denoiser):
            raise ValueError(f"denoiser must be callable, got {type(denoiser).__name__}")
        try:
            event_shape = torch.Size(event_shape)
        except TypeError:
            raise ValueError(f"event_shape must be a tuple of ints, got {event_shape!r}") from None
        if any(s <= 0 for s in event_shape):
            raise ValueError(f"event_shape must be a tuple of positive ints, got {tuple(event_shape)}")
        self.sigma_min, self.sigma_max, self.sigma_data = check_noise_range(
            sigma_min, sigma_max, sigma_data
        )
        num_noise_draws = check_positive_int("num_noise_draws", num_noise_draws)
        num_steps = check_positive_int("num_steps", num_steps)
        if objective not in _OBJECTIVES:
            raise ValueError(f"objective must be one of {_OBJECTIVES}, got {objective!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.edm_noise = check_edm_noise(edm_noise)
        sample_chunk_size = check_positive_int("sample_chunk_size", sample_chunk_size)
        leaves = context_leaves(context)
        if self._validate_context and validation_enabled(validate_args):
            for leaf in leaves:
                if torch.is_floating_point(leaf):
                    check_finite_arg("context", leaf)
        if batch_shape is None and context_event_dim is None and leaves:
            # Without context_event_dim the leaves may have event parts of different ranks (e.g. a history of
            # tokens beside conditioning planes): the first leaf gives the batch shape, as documented.
            ced = len(event_shape)
            if leaves[0].dim() < ced:
                raise ValueError(f"context has {leaves[0].dim()} dims, fewer than context_event_dim={ced}")
            batch_shape = leaves[0].shape[: leaves[0].dim() - ced]
        if batch_shape is None:
            # Each leaf is batch part + context_event_dim dims; the batch parts broadcast (e.g. a regime
            # enumerated by TraceEnum_ELBO in one leaf against a plate in another).
            ced = len(event_shape) if context_event_dim is None else int(context_event_dim)
            for leaf in leaves:
                if leaf.dim() < ced:
                    raise ValueError(f"context has {leaf.dim()} dims, fewer than context_event_dim={ced}")
            batch_shape = broadcast_batch_shapes(**{f"context[{i}]": leaf.shape[: leaf.dim() - ced]
                                                    for i, leaf in enumerate(leaves)})
            context = map_context(lambda c: c.expand(batch_shape + c.shape[c.dim() - ced:]), context)
        else:
            batch_shape = torch.Size(batch_shape)
            nb = len(batch_shape)
            for leaf in leaves:
                if leaf.dim() < nb or any(s != 1 and s != b for s, b in zip(leaf.shape[:nb], batch_shape)):
                    raise ValueError(
                        f"every context tensor must start with batch_shape {tuple(batch_shape)} (or sizes 1 that "
                        f"broadcast to it), got shape {tuple(leaf.shape)}"
                    )
            context = map_context(lambda c: c.expand(batch_shape + c.shape[nb:]), context)
        self.denoiser = denoiser
        self.density = None  # minus the bound; see with_density
        self.context = context
        self.num_noise_draws = int(num_noise_draws)
        self.num_steps = int(num_steps)
        self.objective = objective
        self.sampler = sampler
        self.sampler_kwargs = dict(sampler_kwargs or {})
        self.sample_chunk_size = int(sample_chunk_size)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        if not self.event_shape:
            return constraints.real
        return constraints.independent(constraints.real, len(self.event_shape))

    @property
    def diffusion_event_shape(self):
        """The shape of one event as the denoiser sees it: ``event_shape``, or ``(1,)`` for scalar events."""
        return self.event_shape if self.event_shape else torch.Size([1])

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiffusionLikelihood, _instance)
        batch_shape = check_expand_shape(self.batch_shape, batch_shape)
        nb = len(self.batch_shape)
        for name in ("denoiser", "sigma_min", "sigma_max", "sigma_data", "num_noise_draws", "num_steps", "objective",
                     "edm_noise", "sampler", "sampler_kwargs", "sample_chunk_size", "clip", "density"):
            setattr(new, name, getattr(self, name))
        new.context = map_context(
            lambda c: c.expand(batch_shape + c.shape[nb:]), self.context
        )
        super(DiffusionLikelihood, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # -- helpers -----------------------------------------------------------------------------------

    def _check_value(self, value):
        check_value(value, self.batch_shape, self.event_shape, self._validate_args)

    def _flat_context(self, out_batch):
        """Context broadcast to ``out_batch`` and flattened to ``(prod(out_batch),) + ...``."""
        nb = len(self.batch_shape)
        return map_context(
            lambda c: c.expand(out_batch + c.shape[nb:]).reshape((-1,) + c.shape[nb:]), self.context
        )

    def _transform_value(self, value):
        """Hook for subclasses (e.g. a baseline shift); identity here."""
        return value

    def _target_mask(self, out_batch):
        """Hook for subclasses: a boolean ``(prod(out_batch),) + event_shape`` mask of the entries the bound
        is over, or None for all (see :class:`~pyroseq.distributions.ConditionalDiffusionLikelihood`)."""
        return None

    def with_density(self, density="ode", num_steps=64, exact_trace=None):
        """A copy whose ``log_prob`` is ``density``: ``"ode"`` (the deterministic probability-flow-ODE
        log-density, :func:`~pyroseq.diffusion.probability_flow_log_prob`; evaluation only) or ``"bound"``
        (minus the bound, the default). See :func:`~pyroseq.distributions.with_density`.

        :param str density: ``"ode"`` or ``"bound"``.
        :param int num_steps: RK4 steps of the ODE.
        :param bool exact_trace: exact Jacobian trace (default for ``d <= 16``) or Hutchinson's estimator.
        """
        new = copy.copy(self)
        new.density = density_settings(density, num_steps, exact_trace)
        return new

    def ode_log_prob(self, value, num_steps=64, exact_trace=None):
        """The probability-flow-ODE log-density of ``value`` (deterministic, not differentiable; for evaluation):
        ``self.with_density("ode", num_steps, exact_trace).log_prob(value)``."""
        return self.with_density("ode", num_steps, exact_trace).log_prob(value)

    def log_prob(self, value):
        """Minus the diffusion bound (a stochastic lower bound on ``log p(value | context)``), or the
        probability-flow-ODE log-density for a copy made by :meth:`with_density`.

        :param torch.Tensor value: shape ``sample_shape + batch_shape + event_shape``.
        :returns: shape ``sample_shape + batch_shape`` (broadcast).
        """
        self._check_value(value)
        value = self._transform_value(value)
        out_batch = torch.broadcast_shapes(value.shape[: value.dim() - len(self.event_shape)], self.batch_shape)
        x = value.expand(out_batch + self.event_shape).reshape((-1,) + self.diffusion_event_shape)
        ed = len(self.diffusion_event_shape)
        context = self._flat_context(out_batch)
        target = self._target_mask(out_batch)
        ode = self.density
        if ode is not None:  # evaluation density: deterministic PF-ODE log-density
            if target is not None:
                raise ValueError("the probability-flow ODE density of a conditional (masked) likelihood is not "
                                 "implemented; use the bound (density='bound')")
            lp = probability_flow_log_prob(self.denoiser, x, context, sigma_data=self.sigma_data,
                                           sigma_min=self.sigma_min, sigma_max=self.sigma_max, **ode)
            return lp.reshape(out_batch)
        if self.objective == "edm":
            P_mean, P_std = self.edm_noise
            loss = edm_loss(self.denoiser, x, ed, context, sigma_data=self.sigma_data, P_mean=P_mean, P_std=P_std,
                            target_mask=target)
        else:
            loss = diffusion_nll_bound(
                self.denoiser, x, ed, context, sigma_data=self.sigma_data,
                sigma_min=self.sigma_min, sigma_max=self.sigma_max,
                num_noise_draws=self.num_noise_draws, target_mask=target,
            )
        return -loss.reshape(out_batch)

    def _run_sampler(self, n, context, dtype, device):
        kwargs = dict(self.sampler_kwargs)
        num_steps = kwargs.pop("num_steps", None if self.sampler == "ddpm" else self.num_steps)
        edm = dict(sigma_min=self.sigma_min, sigma_max=self.sigma_max, sigma_data=self.sigma_data)
        return run_sampler(self.denoiser, (n,) + tuple(self.diffusion_event_shape), context, self.sampler,
                           num_steps, dtype=dtype, device=device, heun_defaults=edm, **kwargs)

    def sample(self, sample_shape=torch.Size()):
        """Draw samples by the reverse-time sampler, in chunks, without gradients.

        :param torch.Size sample_shape: leading sample shape.
        :returns: a tensor of shape ``sample_shape + batch_shape + event_shape``.
        """
        shape = torch.Size(sample_shape) + self.batch_shape
        total = math.prod(shape)
        n_batch = math.prod(self.batch_shape)
        nb = len(self.batch_shape)
        dtype, device = self._dtype_device()
        flat_ctx = map_context(lambda c: c.reshape((n_batch,) + c.shape[nb:]), self.context)
        chunks = []
        with torch.no_grad():
            for start in range(0, total, self.sample_chunk_size):
                idx = torch.arange(start, min(start + self.sample_chunk_size, total))
                # Flattened index i of sample_shape + batch_shape maps to batch element i % n_batch.
                ctx = map_context(lambda c: c[idx % n_batch], flat_ctx)
                chunks.append(self._run_sampler(len(idx), ctx, dtype, device))
        if chunks:
            out = torch.cat(chunks, 0)
        else:
            out = torch.empty((0,) + tuple(self.diffusion_event_shape), dtype=dtype, device=device)
        if self.clip is not None:
            out = out.clamp(*self.clip)
        return self._untransform_sample(out.reshape(shape + self.event_shape))

    def _dtype_device(self):
        """dtype and device of samples: those of the first floating point context tensor, else of the
        denoiser's first floating point parameter (an :class:`torch.nn.Module`), else the defaults."""
        for leaf in context_leaves(self.context):
            if torch.is_floating_point(leaf):
                return leaf.dtype, leaf.device
        params = self.denoiser.parameters() if isinstance(self.denoiser, torch.nn.Module) else ()
        for p in params:
            if torch.is_floating_point(p):
                return p.dtype, p.device
        return torch.get_default_dtype(), torch.device("cpu")

    def _untransform_sample(self, sample):
        """Hook for subclasses (inverse of :meth:`_transform_value`); identity here."""
        return sample
