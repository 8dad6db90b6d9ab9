"""Latent transition networks of deep state-space models: the gated Gaussian transition of the deep
Markov model, and a residual MLP denoiser network for latent vectors (the network inside a
:class:`~pyroseq.distributions.DiffusionTransition`)."""

import math

import torch
from torch import nn
from torch.nn.functional import softplus

__all__ = ["GatedTransition", "NoiseEmbedding", "TransitionDenoiserNet"]


def _split_context(context):
    """``context`` is the history ``(M, j, d)`` or the tuple ``(history, covariates)``."""
    if isinstance(context, (tuple, list)):
        return context[0], context[1]
    return context, None


class GatedTransition(nn.Module):
    r"""Gaussian transition :math:`p(z_t \mid z_{t-j:t-1}, u_t) = \mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)`
    of the deep Markov model (Krishnan et al. 2017): a sigmoid gate mixes a linear map of the
    previous states (initialised to persistence, :math:`\mu = z_{t-1}`) with a nonlinear proposal,

    .. math:: \mu = (1 - g) \odot L(z) + g \odot P(z),\quad \sigma = \mathrm{softplus}(W\,\mathrm{relu}(P(z))).

    :param int latent_dim: latent dimension ``d``.
    :param int order: number ``j`` of previous states.
    :param int covariate_dim: number of covariates ``p`` (0 for none).
    :param int hidden_dim: width of the gate and proposal networks.
    :param float min_scale: lower bound of the scale.
    """

    def __init__(self, latent_dim, order=1, covariate_dim=0, hidden_dim=64, min_scale=1e-3):
        super().__init__()
        d, j = int(latent_dim), int(order)
        in_dim = j * d + int(covariate_dim)
        self.min_scale = float(min_scale)
        self.gate = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, d))
        self.proposal = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, d))
        self.linear = nn.Linear(in_dim, d)
        self.scale = nn.Linear(d, d)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            self.linear.weight[:, (j - 1) * d : j * d] = torch.eye(d)

    def forward(self, history, covariates=None):
        """
        :param torch.Tensor history: previous states of shape ``batch_shape + (j, d)``.
        :param torch.Tensor covariates: optional covariates of shape ``batch_shape + (p,)``.
        :returns: ``(loc, scale)``, each of shape ``batch_shape + (d,)``.
        """
        inputs = history.flatten(-2)
        if covariates is not None:
            inputs = torch.cat([inputs, covariates], -1)
        gate = torch.sigmoid(self.gate(inputs))
        proposed = self.proposal(inputs)
        loc = (1 - gate) * self.linear(inputs) + gate * proposed
        scale = softplus(self.scale(torch.relu(proposed))) + self.min_scale
        return loc, scale


class NoiseEmbedding(nn.Module):
    r"""Embedding of the noise level :math:`c_\text{noise} = \tfrac14\log\sigma`: sinusoids at
    geometrically spaced frequencies followed by a two-layer MLP.

    :param int dim: output size.
    :param int num_frequencies: number of sinusoid frequencies.
    :param float max_frequency: highest frequency (in cycles per unit of ``c_noise``).
    """

    def __init__(self, dim, num_frequencies=16, max_frequency=16.0):
        super().__init__()
        freqs = torch.logspace(0, math.log10(max_frequency), num_frequencies) * (2 * math.pi)
        self.register_buffer("freqs", freqs)
        self.mlp = nn.Sequential(nn.Linear(2 * num_frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise):
        """
        :param torch.Tensor c_noise: shape ``(M,)``.
        :returns: shape ``(M, dim)``.
        """
        angles = c_noise.unsqueeze(-1) * self.freqs.to(c_noise.dtype)
        return self.mlp(torch.cat([angles.sin(), angles.cos()], -1))


class _ResidualBlock(nn.Module):
    """Pre-norm residual MLP block with a FiLM modulation by the conditioning vector."""

    def __init__(self, dim, cond_dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.film = nn.Linear(cond_dim, 2 * dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h, cond):
        scale, shift = self.film(cond).chunk(2, -1)
        y = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(torch.nn.functional.silu(self.fc1(y)))


class TransitionDenoiserNet(nn.Module):
    r"""Denoiser *network* :math:`F(x_\text{in}, c_\text{noise}, c)` for latent vectors, to be wrapped by
    :class:`~pyroseq.diffusion.EDMPrecond`: a residual MLP on the (preconditioned) noisy state, modulated
    (FiLM) by an embedding of the noise level plus an embedding of the history
    :math:`z_{t-j:t-1}` and optional covariates :math:`u_t`.

    :param int latent_dim: latent dimension ``d``.
    :param int order: number ``j`` of previous states in the context.
    :param int covariate_dim: number of covariates ``p`` (0 for none).
    :param int hidden_dim: width of the residual stream.
    :param int num_blocks: number of residual blocks.
    """

    def __init__(self, latent_dim, order=1, covariate_dim=0, hidden_dim=128, num_blocks=3):
        super().__init__()
        self.latent_dim, self.order, self.covariate_dim = int(latent_dim), int(order), int(covariate_dim)
        context_dim = self.order * self.latent_dim + self.covariate_dim
        self.noise_embedding = NoiseEmbedding(hidden_dim)
        self.context_net = nn.Sequential(nn.Linear(context_dim, hidden_dim), nn.SiLU(),
                                         nn.Linear(hidden_dim, hidden_dim))
        self.inp = nn.Linear(self.latent_dim + context_dim, hidden_dim)
        self.blocks = nn.ModuleList([_ResidualBlock(hidden_dim, hidden_dim) for _ in range(num_blocks)])
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.out = nn.Linear(hidden_dim, self.latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_in, c_noise, context=None):
        """
        :param torch.Tensor x_in: preconditioned noisy states, shape ``(M, d)``.
        :param torch.Tensor c_noise: noise levels :math:`\\tfrac14\\log\\sigma`, shape ``(M,)``.
        :param context: the history ``(M, j, d)``, or the tuple ``(history, covariates)`` with
            covariates ``(M, p)``.
        :returns: ``F`` of shape ``(M, d)``.
        """
        history, covariates = _split_context(context)
        if history is None:
            raise ValueError("TransitionDenoiserNet needs the history z_{t-j:t-1} as context")
        ctx = history.flatten(-2)
        if self.covariate_dim:
            if covariates is None:
                raise ValueError(f"this network expects {self.covariate_dim} covariates, got none")
            ctx = torch.cat([ctx, covariates], -1)
        cond = self.noise_embedding(c_noise) + self.context_net(ctx)
        h = self.inp(torch.cat([x_in, ctx], -1))
        for block in self.blocks:
            h = block(h, cond)
        return self.out(self.out_norm(h))
