"""Evaluation mode in which diffusion distributions score values by the probability-flow ODE."""

import contextlib

from ..diffusion.validation import check_positive

__all__ = ["ode_log_prob", "ode_log_prob_settings"]

_STATE = {"settings": None}


def ode_log_prob_settings():
    """The active settings of :func:`ode_log_prob` as a dict, or None outside it."""
    return _STATE["settings"]


@contextlib.contextmanager
def ode_log_prob(num_steps=64, exact_trace=None):
    r"""Within this context, :class:`~pyroseq.distributions.DiffusionLikelihood` and
    :class:`~pyroseq.distributions.DiffusionTransition` return the probability-flow-ODE log-density
    (:func:`~pyroseq.diffusion.probability_flow_log_prob`) from ``log_prob`` instead of minus the
    stochastic variational bound.

    Use it for evaluation: the ODE value is deterministic, so importance-weighted bounds
    (:func:`~pyroseq.inference.iwae_bound`) built from it are valid bounds on the ODE model's
    likelihood, whereas a log-mean-exp of *noisy* bound estimates is biased upwards (Jensen's
    inequality runs the other way inside the log). It costs ``4 * num_steps`` denoiser calls (times
    ``d`` backward passes for the exact trace) per value and is not differentiable: never train in it.

    :param int num_steps: RK4 steps in :math:`\log\sigma`.
    :param bool exact_trace: exact Jacobian trace (default for ``d <= 16``) or Hutchinson's estimator.
    """
    check_positive("num_steps", num_steps)
    previous = _STATE["settings"]
    _STATE["settings"] = {"num_steps": int(num_steps), "exact_trace": exact_trace}
    try:
        yield
    finally:
        _STATE["settings"] = previous
