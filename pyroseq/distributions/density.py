"""Which density a diffusion distribution's ``log_prob`` returns: the training bound, or the probability-flow ODE
for evaluation, chosen explicitly per distribution or per Pyro program."""

import pyro.distributions as dist
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from pyro.poutine.messenger import Messenger

from ..diffusion.validation import check_positive

__all__ = ["DENSITIES", "EvaluationDensity", "density_settings", "with_density"]

#: ``"bound"``: minus the stochastic variational bound (or the training objective); ``"ode"``: the deterministic
#: probability-flow-ODE log-density.
DENSITIES = ("bound", "ode")


def density_settings(density="ode", num_steps=64, exact_trace=None):
    """Validated settings of a density: None for ``"bound"``, else ``{"num_steps", "exact_trace"}``.

    :param str density: one of :data:`DENSITIES`.
    :param int num_steps: RK4 steps in :math:`\\log\\sigma` of the ODE.
    :param bool exact_trace: exact Jacobian trace (default for ``d <= 16``) or Hutchinson's estimator.
    """
    if density not in DENSITIES:
        raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")
    if density == "bound":
        return None
    check_positive("num_steps", num_steps)
    return {"num_steps": int(num_steps), "exact_trace": exact_trace}


def with_density(fn, density="ode", num_steps=64, exact_trace=None):
    r"""A copy of the distribution ``fn`` whose ``log_prob`` returns ``density`` (see :data:`DENSITIES`), reaching
    through Pyro's wrappers (``to_event``, ``mask``, ``expand``) and into composite distributions
    (:class:`~pyroseq.models.LatentMarkovSequence`, :class:`~pyroseq.distributions.StagedSequence`, ...) that
    have a ``with_density`` method. Distributions without one (exact densities) are returned unchanged.

    The ODE value is deterministic, so importance-weighted bounds built from it are valid bounds on the ODE
    model's likelihood, whereas a log-mean-exp of *noisy* bound estimates is biased upwards. It costs
    ``4 * num_steps`` denoiser calls per value and is not differentiable: use it for evaluation only.

    :param fn: a distribution.
    :param str density: ``"ode"`` or ``"bound"``.
    :param int num_steps: RK4 steps of the ODE.
    :param bool exact_trace: exact Jacobian trace or Hutchinson's estimator (default: exact for ``d <= 16``).
    """
    density_settings(density, num_steps, exact_trace)  # validates
    if hasattr(fn, "with_density"):
        return fn.with_density(density, num_steps=num_steps, exact_trace=exact_trace)
    if isinstance(fn, dist.Independent):
        return dist.Independent(with_density(fn.base_dist, density, num_steps, exact_trace),
                                fn.reinterpreted_batch_ndims)
    if isinstance(fn, MaskedDistribution):
        return MaskedDistribution(with_density(fn.base_dist, density, num_steps, exact_trace), fn._mask)
    if isinstance(fn, ExpandedDistribution):
        return with_density(fn.base_dist, density, num_steps, exact_trace).expand(fn.batch_shape)
    return fn


class EvaluationDensity(Messenger):
    """A Pyro effect handler that scores every sample site of the program it wraps with ``density`` (see
    :func:`with_density`), e.g. the probability-flow ODE for an importance-weighted evaluation::

        with EvaluationDensity("ode", num_steps=32):
            loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x)

    It changes what ``log_prob`` means only inside the ``with`` block and only for the sites of that program;
    never train under it (the ODE density is not differentiable).

    :param str density: ``"ode"`` or ``"bound"``.
    :param int num_steps: RK4 steps of the ODE.
    :param bool exact_trace: exact Jacobian trace or Hutchinson's estimator.
    """

    def __init__(self, density="ode", num_steps=64, exact_trace=None):
        super().__init__()
        density_settings(density, num_steps, exact_trace)
        self.density, self.num_steps, self.exact_trace = density, num_steps, exact_trace

    def _pyro_sample(self, msg):
        msg["fn"] = with_density(msg["fn"], self.density, self.num_steps, self.exact_trace)
