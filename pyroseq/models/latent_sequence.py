"""Whole latent trajectories as single Pyro sample sites: the Markov prior of order ``j`` (scored in
parallel over time) and the autoregressive Gaussian guide (sampled step by step, scored in parallel)."""

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints

__all__ = ["LatentMarkovSequence", "AutoregressiveGaussianSequence", "history_windows"]


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


class LatentMarkovSequence(TorchDistribution):
    r"""The prior of a latent trajectory of a state-space model of order ``j``,

    .. math:: p(z_{1:T}) = p(z_{1:j}) \prod_{t=j+1}^{T} p(z_t \mid z_{t-j:t-1}, u_t),

    as one distribution with event shape ``(T, d)``. ``log_prob`` evaluates **all transitions with one
    call** of ``transition_fn`` on the unfolded history (one batched denoiser call for a diffusion
    transition); ``sample`` is sequential. Instead of an initial distribution a fixed ``history``
    :math:`z_{1-j:0}` can be given (forecasting): then all ``T`` steps are transitions.

    If the transition is a :class:`~pyroseq.distributions.DiffusionTransition`, ``log_prob`` is a
    stochastic lower bound: use this distribution in a model, never in a guide.

    :param callable transition_fn: ``transition_fn(history, covariates) -> distribution`` with history of
        shape ``batch + (j, d)``, covariates ``batch + (p,)`` or None, and the returned distribution of
        batch shape ``batch`` and event shape ``(d,)``.
    :param int length: number of time steps ``T``.
    :param int order: Markov order ``j``.
    :param initial: distribution of :math:`z_{1:j}` with event shape ``(j, d)`` (exclusive with ``history``).
    :param torch.Tensor history: states before the sequence, shape ``batch_shape + (j, d)``.
    :param torch.Tensor covariates: covariates of every step, shape ``batch_shape + (T, p)``, or None.
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(self, transition_fn, length, order, initial=None, history=None, covariates=None,
                 validate_args=None):
        if (initial is None) == (history is None):
            raise ValueError("exactly one of initial and history must be given")
        self.transition_fn = transition_fn
        self.order = int(order)
        self.initial = initial
        self.history = history
        self.covariates = covariates
        if initial is not None:
            if len(initial.event_shape) != 2 or initial.event_shape[0] != self.order:
                raise ValueError(f"initial must have event shape (j, d) = ({self.order}, d), got "
                                 f"{tuple(initial.event_shape)}")
            batch_shape, d = initial.batch_shape, initial.event_shape[-1]
            if length < self.order:
                raise ValueError(f"length must be at least the order {self.order}, got {length}")
        else:
            if history.dim() < 2 or history.shape[-2] != self.order:
                raise ValueError(f"history must have shape batch_shape + ({self.order}, d), got "
                                 f"{tuple(history.shape)}")
            batch_shape, d = history.shape[:-2], history.shape[-1]
        if covariates is not None and covariates.shape[:-1] != batch_shape + (length,):
            raise ValueError(f"covariates must have shape {tuple(batch_shape + (length,))} + (p,), got "
                             f"{tuple(covariates.shape)}")
        self.length = int(length)
        super().__init__(batch_shape, torch.Size((self.length, d)), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=2)
    def support(self):
        return constraints.independent(constraints.real, 2)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new_cov = None if self.covariates is None else self.covariates.expand(
            batch_shape + self.covariates.shape[-2:])
        if self.initial is not None:
            return LatentMarkovSequence(self.transition_fn, self.length, self.order,
                                        initial=self.initial.expand(batch_shape), covariates=new_cov)
        return LatentMarkovSequence(self.transition_fn, self.length, self.order,
                                    history=self.history.expand(batch_shape + self.history.shape[-2:]),
                                    covariates=new_cov)

    def _step_covariates(self, t, like):
        if self.covariates is None:
            return None
        return self.covariates[..., t, :].expand(like.shape[:-2] + self.covariates.shape[-1:])

    def log_prob(self, value):
        """:param torch.Tensor value: shape ``sample_shape + batch_shape + (T, d)``.
        :returns: shape ``sample_shape + batch_shape``."""
        if self._validate_args:
            self._validate_sample(value)
        j = self.order
        value = value.expand(torch.broadcast_shapes(value.shape[:-2], self.batch_shape) + value.shape[-2:])
        if self.initial is not None:
            lp = self.initial.log_prob(value[..., :j, :])
            full, first = value, j
        else:
            history = self.history.expand(value.shape[:-2] + self.history.shape[-2:])
            full, first = torch.cat([history, value], -2), 0
            lp = value.new_zeros(value.shape[:-2])
        targets = value[..., first:, :]
        if targets.shape[-2] == 0:
            return lp
        windows = history_windows(full, j)
        cov = None
        if self.covariates is not None:
            cov = self.covariates[..., first:, :].expand(targets.shape[:-1] + self.covariates.shape[-1:])
        return lp + self.transition_fn(windows, cov).log_prob(targets).sum(-1)

    def sample(self, sample_shape=torch.Size()):
        """Sequential ancestral sampling; returns ``sample_shape + batch_shape + (T, d)``."""
        shape = torch.Size(sample_shape) + self.batch_shape
        j = self.order
        with torch.no_grad():
            if self.initial is not None:
                states = list(self.initial.sample(sample_shape).unbind(-2))
                start = j
            else:
                states = list(self.history.expand(shape + self.history.shape[-2:]).unbind(-2))
                start = 0
            for t in range(start, self.length):
                history = torch.stack(states[-j:], -2)
                states.append(self.transition_fn(history, self._step_covariates(t, history)).sample())
            out = torch.stack(states, -2)
        return out if self.initial is not None else out[..., j:, :]


class AutoregressiveGaussianSequence(TorchDistribution):
    r"""Structured Gaussian guide over a latent trajectory,

    .. math:: q(z_{1:T} \mid x) = \prod_{t=1}^{T} \mathcal{N}(z_t; \mu_t, \sigma_t^2),\quad
        (\mu_t, \sigma_t) = \mathrm{combiner}(z_{t-j:t-1}, h_t),

    with learned states :math:`z_{1-j:0}` before the sequence. ``rsample`` is sequential and
    reparameterised; ``log_prob`` of a given trajectory evaluates all steps in parallel (it is exact,
    so this distribution may be used in a guide).

    :param callable combiner: ``combiner(history, summary) -> (loc, scale)``, see
        :class:`~pyroseq.nn.Combiner`.
    :param torch.Tensor summary: per-step summaries :math:`h_{1:T}`, shape ``batch_shape + (T, H)``.
    :param torch.Tensor initial_history: states :math:`z_{1-j:0}`, shape ``(j, d)``.
    """

    arg_constraints = {}
    has_rsample = True

    def __init__(self, combiner, summary, initial_history, validate_args=None):
        self.combiner = combiner
        self.summary = summary
        self.initial_history = initial_history
        self.order = initial_history.shape[-2]
        batch_shape = summary.shape[:-2]
        super().__init__(batch_shape, torch.Size((summary.shape[-2], initial_history.shape[-1])),
                         validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=2)
    def support(self):
        return constraints.independent(constraints.real, 2)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return AutoregressiveGaussianSequence(self.combiner, self.summary.expand(batch_shape + self.summary.shape[-2:]),
                                              self.initial_history)

    def rsample(self, sample_shape=torch.Size()):
        """Sequential reparameterised sample of shape ``sample_shape + batch_shape + (T, d)``."""
        shape = torch.Size(sample_shape) + self.batch_shape
        summary = self.summary.expand(shape + self.summary.shape[-2:])
        states = list(self.initial_history.expand(shape + self.initial_history.shape[-2:]).unbind(-2))
        noise = torch.randn(shape + self.event_shape, dtype=summary.dtype, device=summary.device)
        for t in range(self.event_shape[0]):
            loc, scale = self.combiner(torch.stack(states[-self.order:], -2), summary[..., t, :])
            states.append(loc + scale * noise[..., t, :])
        return torch.stack(states[self.order:], -2)

    def log_prob(self, value):
        """:param torch.Tensor value: shape ``sample_shape + batch_shape + (T, d)``.
        :returns: shape ``sample_shape + batch_shape``."""
        if self._validate_args:
            self._validate_sample(value)
        init = self.initial_history.expand(value.shape[:-2] + self.initial_history.shape[-2:])
        windows = history_windows(torch.cat([init, value], -2), self.order)
        loc, scale = self.combiner(windows, self.summary.expand(value.shape[:-2] + self.summary.shape[-2:]))
        return dist.Normal(loc, scale).log_prob(value).sum((-1, -2))
