"""The deep Kalman filter / deep Markov model: a deep state-space model with a gated Gaussian transition."""

import pyro.distributions as dist

from ..nn.transition import GatedTransition
from .base import DeepStateSpaceModel

__all__ = ["DKF"]


class DKF(DeepStateSpaceModel):
    r"""Deep Kalman filter (Krishnan et al. 2015, 2017) of order ``j``: the latent transition is the
    gated Gaussian :math:`p_\psi(z_t \mid z_{t-j:t-1}, u_t) = \mathcal{N}(\mu_\psi, \mathrm{diag}\,\sigma_\psi^2)`
    of :class:`~pyroseq.nn.GatedTransition`; everything else (structured guide, learned initial prior,
    masked Gaussian emission) is shared with :class:`~pyroseq.models.DDSSM`, see
    :class:`~pyroseq.models.DeepStateSpaceModel`. The baseline that DDSSM is compared with.

    Example::

        model = DKF(obs_dim=C, latent_dim=d)
        fit(model, x, num_steps=2000, batch_size=64)          # x: (N, T, C), NaN = missing
        fc = forecast(model, x_hist, horizon=H, num_samples=S)  # (S, N, H, C)

    :param int transition_dim: width of the gate and proposal networks; other arguments as
        :class:`~pyroseq.models.DeepStateSpaceModel`.
    """

    def __init__(self, obs_dim, latent_dim, order=1, covariate_dim=0, transition_dim=64, **kwargs):
        super().__init__(obs_dim, latent_dim, order=order, covariate_dim=covariate_dim, **kwargs)
        self.transition = GatedTransition(self.latent_dim, self.order, self.transition_input_dim, transition_dim,
                                          kwargs.get("min_scale", 1e-3))
        self._init_ema()

    def transition_distribution(self, history, covariates=None, sampling=False):
        """Gaussian :math:`p(z_t \\mid z_{t-j:t-1}, u_t)`: batch ``history.shape[:-2]``, event ``(d,)``."""
        loc, scale = self._transition_module(sampling)(history, covariates)
        return dist.Normal(loc, scale).to_event(1)
