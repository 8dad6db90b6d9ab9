"""Inference networks of deep state-space models (Krishnan et al.'s structured inference): a backward
GRU that summarises the future of a sequence, and a combiner that turns the summary and the previous
latent states into a Gaussian."""

import torch
from torch import nn
from torch.nn.functional import softplus

__all__ = ["FutureSummary", "Combiner"]


class FutureSummary(nn.Module):
    r"""Backward GRU over a sequence: :math:`h_t = \mathrm{GRU}(x_T, \dots, x_t)` summarises
    :math:`x_{t:T}`. Missing entries are fed as 0 together with the observation mask, so the network
    knows what it did not see. Sequences are not packed (the packed path is slow on CPU).

    :param int obs_dim: number of channels ``C``.
    :param int hidden_dim: GRU state size ``H``.
    :param int covariate_dim: number of covariates ``p`` appended to every input (0 for none).
    :param int num_layers: GRU layers.
    """

    def __init__(self, obs_dim, hidden_dim=64, covariate_dim=0, num_layers=1):
        super().__init__()
        self.obs_dim = int(obs_dim)
        self.covariate_dim = int(covariate_dim)
        self.hidden_dim = int(hidden_dim)
        self.rnn = nn.GRU(2 * self.obs_dim + self.covariate_dim, self.hidden_dim, num_layers=num_layers,
                          batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(num_layers, 1, self.hidden_dim))

    def forward(self, x, mask, covariates=None):
        """
        :param torch.Tensor x: inputs of shape ``(N, T, C)``; entries where ``mask`` is False are ignored
            (they may be NaN).
        :param torch.Tensor mask: boolean observation mask of shape ``(N, T, C)``.
        :param torch.Tensor covariates: optional covariates of shape ``(N, T, p)``.
        :returns: the summaries :math:`h_{1:T}`, shape ``(N, T, H)``.
        """
        x = torch.where(mask, x, torch.zeros((), dtype=x.dtype))
        parts = [x, mask.to(x.dtype)]
        if self.covariate_dim:
            parts.append(covariates)
        inputs = torch.cat(parts, -1).flip(1)
        h0 = self.h0.expand(-1, x.shape[0], -1).contiguous()
        out, _ = self.rnn(inputs, h0)
        return out.flip(1)


class Combiner(nn.Module):
    r"""Gaussian guide conditional :math:`q(z_t \mid z_{t-j:t-1}, h_t)`: an MLP (plus a linear skip for
    the location) on the concatenated previous latent states and the summary :math:`h_t` returns a
    location and a (positive) scale.

    :param int latent_dim: latent dimension ``d``.
    :param int summary_dim: size ``H`` of the future summary.
    :param int order: number ``j`` of previous states it conditions on.
    :param int hidden_dim: MLP width.
    :param float min_scale: lower bound of the scale (keeps the entropy finite).
    :param float init_scale: scale at initialisation (small, so that early latents are informative).
    """

    def __init__(self, latent_dim, summary_dim, order=1, hidden_dim=64, min_scale=1e-3, init_scale=0.1):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.order = int(order)
        self.min_scale = float(min_scale)
        in_dim = self.order * self.latent_dim + int(summary_dim)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, 2 * self.latent_dim),
        )
        # A linear path for the location makes simple encodings (z_t close to a linear map of x_t)
        # available from the start; the initial scale is small so that early latents are informative.
        self.skip = nn.Linear(in_dim, self.latent_dim)
        with torch.no_grad():
            self.net[-1].bias[self.latent_dim :].fill_(float(torch.tensor(init_scale - self.min_scale).expm1().log()))

    def forward(self, history, summary):
        """
        :param torch.Tensor history: previous states of shape ``batch_shape + (j, d)``.
        :param torch.Tensor summary: future summary of shape ``batch_shape + (H,)``.
        :returns: ``(loc, scale)``, each of shape ``batch_shape + (d,)``.
        """
        inputs = torch.cat([history.flatten(-2), summary], -1)
        loc, raw = self.net(inputs).chunk(2, -1)
        return loc + self.skip(inputs), softplus(raw) + self.min_scale
