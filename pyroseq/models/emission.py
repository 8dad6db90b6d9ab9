"""Gaussian emission network :math:`p_\\theta(x_t \\mid z_t)` of deep state-space models."""

import torch
from torch import nn
from torch.nn.functional import softplus

__all__ = ["GaussianEmission"]


class GaussianEmission(nn.Module):
    r"""Gaussian emission :math:`p(x_t \mid z_t) = \mathcal{N}(\mu(z_t), \mathrm{diag}\,\sigma^2)`: an MLP
    with a linear skip connection gives the location; the scale is a learned per-channel constant
    (``state_dependent_scale=False``) or an output of the MLP.

    :param int latent_dim: latent dimension ``d``.
    :param int obs_dim: number of channels ``C``.
    :param int hidden_dim: MLP width.
    :param bool state_dependent_scale: let the scale depend on :math:`z_t`.
    :param float min_scale: lower bound of the scale.
    :param float init_scale: initial scale (in standardised units: small, so the latent must explain the data).
    """

    def __init__(self, latent_dim, obs_dim, hidden_dim=64, state_dependent_scale=False, min_scale=1e-3,
                 init_scale=0.1):
        super().__init__()
        self.obs_dim = int(obs_dim)
        self.min_scale = float(min_scale)
        self.state_dependent_scale = bool(state_dependent_scale)
        out = 2 * self.obs_dim if self.state_dependent_scale else self.obs_dim
        self.mlp = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.SiLU(), nn.Linear(hidden_dim, out))
        self.skip = nn.Linear(latent_dim, self.obs_dim)
        # softplus^{-1}(init_scale - min_scale)
        raw = torch.tensor(float(init_scale) - self.min_scale).expm1().log()
        self.raw_scale = nn.Parameter(raw.expand(self.obs_dim).clone())

    def forward(self, z):
        """
        :param torch.Tensor z: latent states of shape ``batch_shape + (d,)``.
        :returns: ``(loc, scale)``, each of shape ``batch_shape + (C,)``.
        """
        h = self.mlp(z)
        if self.state_dependent_scale:
            h, raw = h.split(self.obs_dim, -1)
            raw = raw + self.raw_scale
        else:
            raw = self.raw_scale.expand(h.shape)
        return h + self.skip(z), softplus(raw) + self.min_scale
