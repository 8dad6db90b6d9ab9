r"""Learned prior over the first ``j`` latent states: an infinite mixture of Gaussian autoregressions,
:math:`p(z_{1:j}) = \int \mathcal{N}(a; 0, I) \prod_i \mathcal{N}(z_i; \mu(a_i, z_{i-1}), \sigma^2(a_i, z_{i-1}))\,da`,
bounded in the ELBO with an auxiliary posterior :math:`r(a \mid z_{1:j})` in the guide."""

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ..distributions.util import check_finite_arg, check_value, validation_enabled
from .latent_sequence import TrajectoryDistribution

__all__ = ["InitialPrior", "GaussianAutoregression"]


class GaussianAutoregression(TrajectoryDistribution):
    r""":math:`\prod_{i=1}^{j} \mathcal{N}(z_i; \mu_i, \sigma_i^2)` with
    :math:`(\mu_i, \sigma_i) = \mathrm{net}(a_i, z_{i-1})`, :math:`z_0 = 0`: event shape ``(j, d)``.
    ``log_prob`` is parallel over ``i``; ``rsample`` is sequential.

    :param callable net: ``net(inputs) -> (loc, scale)`` with inputs ``(..., 2 d)``.
    :param torch.Tensor aux: auxiliary variables :math:`a_{1:j}`, shape ``batch_shape + (j, d)``.
    """

    has_rsample = True

    def __init__(self, net, aux, validate_args=None):
        if not torch.is_tensor(aux) or aux.dim() < 2 or not torch.is_floating_point(aux):
            raise ValueError(f"aux must be a floating point tensor of shape batch_shape + (j, d), got "
                             f"{tuple(aux.shape) if torch.is_tensor(aux) else type(aux).__name__}")
        if validation_enabled(validate_args):
            check_finite_arg("aux", aux)
        self.net = net
        self.aux = aux
        super().__init__(aux.shape[:-2], aux.shape[-2:], validate_args=validate_args)

    def expanded_attributes(self, batch_shape):
        return {"aux": self.aux.expand(batch_shape + self.event_shape)}

    def log_prob(self, value):
        check_value(value, self.batch_shape, self.event_shape, self._validate_args)
        shape = torch.broadcast_shapes(value.shape, self.aux.shape)
        value, aux = value.expand(shape), self.aux.expand(shape)
        prev = torch.cat([torch.zeros_like(value[..., :1, :]), value[..., :-1, :]], -2)
        loc, scale = self.net(torch.cat([aux, prev], -1))
        return dist.Normal(loc, scale).log_prob(value).sum((-1, -2))

    def rsample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape
        aux = self.aux.expand(shape + self.event_shape)
        prev = torch.zeros_like(aux[..., 0, :])
        states = []
        for i in range(self.event_shape[0]):
            loc, scale = self.net(torch.cat([aux[..., i, :], prev], -1))
            prev = loc + scale * torch.randn_like(loc)
            states.append(prev)
        return torch.stack(states, -2)


class _GaussianHead(nn.Module):
    """MLP returning ``(loc, scale)`` with ``scale = softplus(.) + min_scale``."""

    def __init__(self, in_dim, out_dim, hidden_dim, min_scale):
        super().__init__()
        self.min_scale = float(min_scale)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, 2 * out_dim))

    def forward(self, inputs):
        loc, raw = self.net(inputs).chunk(2, -1)
        return loc, softplus(raw) + self.min_scale


class InitialPrior(nn.Module):
    r"""The learned initial prior of a deep state-space model of order ``j`` (model side:
    :meth:`aux_prior` and :meth:`conditional`) and its auxiliary posterior (guide side:
    :meth:`aux_posterior`). In the model::

        a = pyro.sample("z_init_aux", initial.aux_prior(batch_shape))
        z = pyro.sample("z", LatentMarkovSequence(..., initial=initial.conditional(a)))

    and in the guide, after sampling ``z``::

        pyro.sample("z_init_aux", initial.aux_posterior(z[..., :j, :]))

    which makes the ELBO a bound on :math:`\log p(z_{1:j})` for the marginal (infinite mixture) prior.

    :param int latent_dim: latent dimension ``d``.
    :param int order: number ``j`` of initial states.
    :param int hidden_dim: MLP width.
    :param float min_scale: lower bound of the scales.
    """

    def __init__(self, latent_dim, order=1, hidden_dim=64, min_scale=1e-3):
        super().__init__()
        self.latent_dim, self.order = int(latent_dim), int(order)
        self.conditional_net = _GaussianHead(2 * self.latent_dim, self.latent_dim, hidden_dim, min_scale)
        self.posterior_net = _GaussianHead(self.order * self.latent_dim, self.order * self.latent_dim,
                                           hidden_dim, min_scale)

    def aux_prior(self, batch_shape, dtype=None, device=None):
        """:math:`\\mathcal{N}(0, I)` over :math:`a_{1:j}`: batch ``batch_shape``, event ``(j, d)``."""
        shape = torch.Size(batch_shape) + (self.order, self.latent_dim)
        zero = torch.zeros((), dtype=dtype or torch.get_default_dtype(), device=device)
        return dist.Normal(zero, 1.0).expand(shape).to_event(2)

    def conditional(self, aux):
        """:math:`p(z_{1:j} \\mid a)`, a :class:`GaussianAutoregression` (aux: ``batch + (j, d)``)."""
        return GaussianAutoregression(self.conditional_net, aux)

    def aux_posterior(self, z_init):
        """:math:`r(a \\mid z_{1:j})`: a diagonal Gaussian with batch ``z_init.shape[:-2]``, event ``(j, d)``."""
        loc, scale = self.posterior_net(z_init.flatten(-2))
        return dist.Normal(loc.reshape(z_init.shape), scale.reshape(z_init.shape)).to_event(2)
