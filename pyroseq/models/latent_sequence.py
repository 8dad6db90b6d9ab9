"""Whole latent trajectories as single Pyro sample sites: the Markov prior of order ``j`` (scored in
parallel over time) and the autoregressive Gaussian guide (sampled step by step, scored in parallel)."""

import copy

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints

from ..distributions.density import with_density
from ..distributions.util import (
    broadcast_batch_shapes,
    check_expand_shape,
    check_finite_arg,
    check_positive_int,
    check_value,
    validation_enabled,
)

__all__ = ["LatentMarkovSequence", "AutoregressiveGaussianSequence", "TrajectoryDistribution", "history_windows"]


def history_windows(z, order):
    r"""All length-``order`` windows of a trajectory that precede a target:
    ``out[..., i, :, :] = z[..., i:i + order, :]`` for ``i = 0, ..., T - order - 1`` (the history of
    :math:`z_{i + \text{order}}`).

    :param torch.Tensor z: trajectory of shape ``batch_shape + (T, d)``.
    :param int order: window length ``j``.
    :returns: a view of shape ``batch_shape + (T - j, j, d)``.
    """
    T = z.shape[-2]
    return z.unfold(-2, order, 1)[..., : T - order, :, :].transpose(-1, -2)


class TrajectoryDistribution(TorchDistribution):
    """Base of the distributions over whole trajectories: real-valued events (event shape ``(T, d)``, ``(T,)``,
    ``(j, d)`` or windows ``(T, C)``), and an :meth:`expand` that shares every attribute but those
    :meth:`expanded_attributes` returns."""

    arg_constraints = {}

    @constraints.dependent_property(is_discrete=False, event_dim=2)
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def expanded_attributes(self, batch_shape):
        """The attributes that depend on the batch shape, expanded to ``batch_shape`` (a dict)."""
        return {}

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = check_expand_shape(self.batch_shape, batch_shape)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(self.expanded_attributes(batch_shape))
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _states(self, x):
        """Trajectories in the layout ``... + (time, d)`` (scalar states, event shape ``(T,)``, get a trailing dim
        of size 1)."""
        return x if len(self.event_shape) == 2 else x.unsqueeze(-1)

    def _unstates(self, x):
        return x if len(self.event_shape) == 2 else x.squeeze(-1)


class LatentMarkovSequence(TrajectoryDistribution):
    r"""The prior of a latent trajectory of a state-space model of order ``j``,

    .. math:: p(z_{1:T}) = p(z_{1:j}) \prod_{t=j+1}^{T} p(z_t \mid z_{t-j:t-1}, u_t),

    as one distribution with event shape ``(T, d)``. ``log_prob`` evaluates **all transitions with one
    call** of ``transition_fn`` on the unfolded history (one batched denoiser call for a diffusion
    transition); ``sample`` is sequential. Instead of an initial distribution a fixed ``history``
    :math:`z_{1-j:0}` can be given (forecasting): then all ``T`` steps are transitions.

    The batch shape is the broadcast of the batch shapes of ``initial`` (or ``history``) and ``covariates``,
    so a discrete regime enumerated by :class:`~pyro.infer.TraceEnum_ELBO` may enter through the covariates.
    With ``event_dim=1`` the states are scalars (a 1-D latent): the event shape is ``(T,)``, ``history`` has
    shape ``batch_shape + (j,)``, ``initial`` event shape ``(j,)``, and ``transition_fn`` receives histories
    ``batch + (j,)`` and returns a distribution with event shape ``()`` (e.g. a
    :class:`~pyroseq.distributions.DiffusionTransition` with ``event_dim=0``).

    If the transition is a :class:`~pyroseq.distributions.DiffusionTransition`, ``log_prob`` is a
    stochastic lower bound: use this distribution in a model, never in a guide.

    :param callable transition_fn: ``transition_fn(history, covariates) -> distribution`` with history of
        shape ``batch + (j, d)``, covariates ``batch + (p,)`` or None (the same ``batch``), and the returned
        distribution of batch shape ``batch`` and event shape ``(d,)``.
    :param int length: number of time steps ``T``.
    :param int order: Markov order ``j``.
    :param initial: distribution of :math:`z_{1:j}` with event shape ``(j, d)`` (exclusive with ``history``).
    :param torch.Tensor history: states before the sequence, shape ``batch_shape + (j, d)``.
    :param torch.Tensor covariates: covariates of every step, shape ``batch_shape + (T, p)``, or None.
    :param int event_dim: 2 (default; states of shape ``(d,)``) or 1 (scalar states).
    :param bool validate_args: validate arguments and values (default: Pyro's global switch). Shapes are always
        checked; NaN in ``history``, ``covariates`` or values only with validation.
    """

    has_rsample = False

    def __init__(self, transition_fn, length, order, initial=None, history=None, covariates=None, event_dim=2,
                 validate_args=None):
        if not callable(transition_fn):
            raise ValueError(f"transition_fn must be callable, got {type(transition_fn).__name__}")
        if (initial is None) == (history is None):
            raise ValueError("exactly one of initial and history must be given")
        if event_dim not in (1, 2):
            raise ValueError(f"event_dim must be 2 (states of shape (d,)) or 1 (scalar states), got {event_dim!r}")
        self.order, self.length = j, length = check_positive_int("order", order), check_positive_int("length", length)
        validate = validation_enabled(validate_args)
        state = "(j, d)" if event_dim == 2 else "(j,)"
        if initial is not None:
            ev = getattr(initial, "event_shape", None)
            if ev is None or len(ev) != event_dim or ev[0] != j:
                raise ValueError(f"initial must be a distribution with event shape {state} with j = {j}, got "
                                 f"{tuple(ev) if ev is not None else type(initial).__name__}")
            if length < j:
                raise ValueError(f"length must be at least the order {j}, got {length}")
            base_batch, state_shape = initial.batch_shape, ev[1:]
        else:
            if (not torch.is_tensor(history) or history.dim() < event_dim
                    or history.shape[history.dim() - event_dim] != j):
                raise ValueError(f"history must be a tensor of shape batch_shape + {state} with j = {j}, got "
                                 f"{tuple(history.shape) if torch.is_tensor(history) else type(history).__name__}")
            if validate:
                check_finite_arg("history", history)
            nb = history.dim() - event_dim
            base_batch, state_shape = history.shape[:nb], history.shape[nb + 1:]
        cov_batch = None
        if covariates is not None:
            if not torch.is_tensor(covariates) or covariates.dim() < 2 or covariates.shape[-2] != length:
                got = tuple(covariates.shape) if torch.is_tensor(covariates) else type(covariates).__name__
                raise ValueError(f"covariates must have shape batch_shape + ({length}, p), got {got}")
            if validate and torch.is_floating_point(covariates):
                check_finite_arg("covariates", covariates)
            cov_batch = covariates.shape[:-2]
        batch_shape = broadcast_batch_shapes(**{"initial" if initial is not None else "history": base_batch,
                                                "covariates": cov_batch})
        self.transition_fn = transition_fn
        self.state_shape = torch.Size(state_shape)
        self.initial = None if initial is None else (
            initial if initial.batch_shape == batch_shape else initial.expand(batch_shape))
        self.history = None if history is None else history.expand(batch_shape + (j,) + self.state_shape)
        self.covariates = None if covariates is None else covariates.expand(batch_shape + covariates.shape[-2:])
        super().__init__(batch_shape, torch.Size((length,)) + self.state_shape, validate_args=validate_args)

    def expanded_attributes(self, batch_shape):
        return dict(initial=None if self.initial is None else self.initial.expand(batch_shape),
                    history=None if self.history is None else self.history.expand(
                        batch_shape + self.history.shape[len(self.batch_shape):]),
                    covariates=None if self.covariates is None else self.covariates.expand(
                        batch_shape + self.covariates.shape[-2:]))

    def with_density(self, density="ode", num_steps=64, exact_trace=None):
        """A copy whose initial distribution and transitions score values by ``density`` (see
        :func:`~pyroseq.distributions.with_density`), e.g. the probability-flow ODE of a diffusion transition."""
        settings = dict(density=density, num_steps=num_steps, exact_trace=exact_trace)
        new = copy.copy(self)
        transition_fn = self.transition_fn
        new.transition_fn = lambda history, covariates: with_density(transition_fn(history, covariates), **settings)
        new.initial = None if self.initial is None else with_density(self.initial, **settings)
        return new

    def log_prob(self, value):
        """:param torch.Tensor value: shape ``sample_shape + batch_shape + event_shape``.
        :returns: shape ``sample_shape + batch_shape``."""
        check_value(value, self.batch_shape, self.event_shape, self._validate_args)
        j = self.order
        ed = len(self.event_shape)
        out_batch = torch.broadcast_shapes(value.shape[: value.dim() - ed], self.batch_shape)
        value = self._states(value.expand(out_batch + self.event_shape))
        if self.initial is not None:
            lp = self.initial.log_prob(self._unstates(value[..., :j, :]))
            full, first = value, j
        else:
            history = self._states(self.history).expand(out_batch + (j,) + value.shape[-1:])
            full, first = torch.cat([history, value], -2), 0
            lp = value.new_zeros(out_batch)
        targets = value[..., first:, :]
        if targets.shape[-2] == 0:
            return lp
        windows = history_windows(full, j)
        cov = None
        if self.covariates is not None:
            cov = self.covariates[..., first:, :].expand(targets.shape[:-1] + self.covariates.shape[-1:])
        return lp + self.transition_fn(self._unstates(windows), cov).log_prob(self._unstates(targets)).sum(-1)

    def sample(self, sample_shape=torch.Size()):
        """Sequential ancestral sampling; returns ``sample_shape + batch_shape + event_shape``."""
        shape = torch.Size(sample_shape) + self.batch_shape
        j = self.order
        with torch.no_grad():
            if self.initial is not None:
                states = list(self._states(self.initial.sample(sample_shape)).unbind(-2))
                start = j
            else:
                history = self._states(self.history)
                states = list(history.expand(shape + history.shape[-2:]).unbind(-2))
                start = 0
            covariates = None if self.covariates is None else self.covariates.expand(shape + self.covariates.shape[-2:])
            for t in range(start, self.length):
                history = self._unstates(torch.stack(states[-j:], -2))
                step = self.transition_fn(history, None if covariates is None else covariates[..., t, :]).sample()
                states.append(self._states(step))
            return self._unstates(torch.stack(states[-self.length:], -2))  # without the given history


class AutoregressiveGaussianSequence(TrajectoryDistribution):
    r"""Structured Gaussian guide over a latent trajectory,

    .. math:: q(z_{1:T} \mid x) = \prod_{t=1}^{T} \mathcal{N}(z_t; \mu_t, \sigma_t^2),\quad
        (\mu_t, \sigma_t) = \mathrm{combiner}(z_{t-j:t-1}, h_t),

    with learned states :math:`z_{1-j:0}` before the sequence. ``rsample`` is sequential and
    reparameterised; ``log_prob`` of a given trajectory evaluates all steps in parallel (it is exact,
    so this distribution may be used in a guide). Samples and their noise have the dtype and device of
    ``summary``.

    :param callable combiner: ``combiner(history, summary) -> (loc, scale)``, see
        :class:`~pyroseq.nn.Combiner`.
    :param torch.Tensor summary: per-step summaries :math:`h_{1:T}`, shape ``batch_shape + (T, H)``.
    :param torch.Tensor initial_history: states :math:`z_{1-j:0}`, shape ``(j, d)`` (or with batch dims that
        broadcast with ``summary``'s); ``(j,)`` with ``event_dim=1``.
    :param int event_dim: 2 (default; event shape ``(T, d)``) or 1 (scalar states, event shape ``(T,)``, the
        guide of a :class:`LatentMarkovSequence` with ``event_dim=1``; the combiner still sees histories
        ``(..., j, 1)`` and returns ``(..., 1)``).
    :param bool validate_args: validate arguments and values (default: Pyro's global switch).
    """

    has_rsample = True

    def __init__(self, combiner, summary, initial_history, event_dim=2, validate_args=None):
        if not callable(combiner):
            raise ValueError(f"combiner must be callable, got {type(combiner).__name__}")
        if event_dim not in (1, 2):
            raise ValueError(f"event_dim must be 2 (states of shape (d,)) or 1 (scalar states), got {event_dim!r}")
        for name, value, dims in (("summary", summary, 2), ("initial_history", initial_history, event_dim)):
            if not torch.is_tensor(value) or value.dim() < dims or not torch.is_floating_point(value):
                raise ValueError(f"{name} must be a floating point tensor with at least {dims} dims, got "
                                 f"{tuple(value.shape) if torch.is_tensor(value) else type(value).__name__}")
            if validation_enabled(validate_args):
                check_finite_arg(name, value)
        init = initial_history if event_dim == 2 else initial_history.unsqueeze(-1)  # (..., j, d)
        batch_shape = broadcast_batch_shapes(summary=summary.shape[:-2], initial_history=init.shape[:-2])
        self.combiner = combiner
        self.summary = summary.expand(batch_shape + summary.shape[-2:])
        self.initial_history = initial_history
        self._init = init
        self.order = init.shape[-2]
        state_shape = init.shape[-1:] if event_dim == 2 else ()
        super().__init__(batch_shape, torch.Size((summary.shape[-2],) + tuple(state_shape)),
                         validate_args=validate_args)

    def expanded_attributes(self, batch_shape):
        return {"summary": self.summary.expand(batch_shape + self.summary.shape[-2:])}

    def rsample(self, sample_shape=torch.Size()):
        """Sequential reparameterised sample of shape ``sample_shape + batch_shape + event_shape``."""
        shape = torch.Size(sample_shape) + self.batch_shape
        summary = self.summary.expand(shape + self.summary.shape[-2:])
        states = list(self._init.expand(shape + self._init.shape[-2:]).unbind(-2))
        noise = torch.randn(shape + self.event_shape[:1] + self._init.shape[-1:], dtype=summary.dtype,
                            device=summary.device)
        for t in range(self.event_shape[0]):
            loc, scale = self.combiner(torch.stack(states[-self.order:], -2), summary[..., t, :])
            states.append(loc + scale * noise[..., t, :])
        return self._unstates(torch.stack(states[self.order:], -2))

    def log_prob(self, value):
        """:param torch.Tensor value: shape ``sample_shape + batch_shape + event_shape``.
        :returns: shape ``sample_shape + batch_shape``."""
        check_value(value, self.batch_shape, self.event_shape, self._validate_args)
        out_batch = torch.broadcast_shapes(value.shape[: value.dim() - len(self.event_shape)], self.batch_shape)
        value = self._states(value.expand(out_batch + self.event_shape))
        init = self._init.expand(out_batch + self._init.shape[-2:])
        windows = history_windows(torch.cat([init, value], -2), self.order)
        loc, scale = self.combiner(windows, self.summary.expand(out_batch + self.summary.shape[-2:]))
        return dist.Normal(loc, scale).log_prob(value).sum((-1, -2))
