"""Synthetic state-space data: the bimodal switching process of the DDSSM paper, a linear-Gaussian SSM
and a nonlinear SSM. Every generator can return its latent states for oracle comparisons."""

import math
import numbers

import numpy as np
import pyro.distributions as dist
import torch

__all__ = [
    "bimodal",
    "bimodal_centred_density",
    "bimodal_log_likelihood",
    "bimodal_oracle_forecast",
    "lgssm",
    "lgssm_transition_matrix",
    "nonlinear_ssm",
]


def _check_sizes(num_series, length):
    for name, value in (("num_series", num_series), ("length", length)):
        # isinstance first: int(None), int('3') or int(nan) would raise TypeError/ValueError/OverflowError.
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and int(value) == value and value >= 1):
            raise ValueError("{} must be a positive integer, got {!r}".format(name, value))


def _finish(x, z, dtype, return_latents):
    x = torch.as_tensor(x, dtype=dtype)
    if return_latents:
        return x, torch.as_tensor(z, dtype=dtype)
    return x


def bimodal(num_series=1024, length=32, seed=0, phi=0.9, step=4.0, obs_scale=0.2, dtype=torch.float32,
            return_latents=False):
    r"""The bimodal switching process of the DDSSM paper (Ruder and Wojnowicz 2026):

    .. math::

        z_1 \sim \mathcal{N}(0, 1),\quad z_t = \phi z_{t-1} + \text{step}\, s_t,\quad
        s_t \sim \mathrm{Uniform}\{-1, +1\},\quad x_t = z_t + \text{obs\_scale}\, e_t.

    The latent transition is a two-point distribution, so a Gaussian transition cannot represent it.

    :param int num_series: number of independent series ``N``.
    :param int length: series length ``T``.
    :param int seed: seed of a :func:`numpy.random.default_rng` generator (use different seeds for the
        training and test splits).
    :param float phi: autoregressive coefficient.
    :param float step: half distance between the two modes of the transition.
    :param float obs_scale: observation noise standard deviation.
    :param torch.dtype dtype: output dtype.
    :param bool return_latents: also return the latent states.
    :returns: observations ``x`` of shape ``(N, T, 1)``, and with ``return_latents`` the latents
        ``z`` of shape ``(N, T, 1)``.
    """
    _check_sizes(num_series, length)
    rng = np.random.default_rng(seed)
    z = np.empty((num_series, length))
    z[:, 0] = rng.standard_normal(num_series)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(num_series, length))
    for t in range(1, length):
        z[:, t] = phi * z[:, t - 1] + step * signs[:, t]
    x = z + obs_scale * rng.standard_normal((num_series, length))
    return _finish(x[..., None], z[..., None], dtype, return_latents)


def bimodal_centred_density(phi=0.9, step=4.0, obs_scale=0.2):
    r"""The pooled distribution of the centred one-step quantity :math:`x_{t+1} - \phi x_t` of
    :func:`bimodal`: given the history it equals :math:`\text{step}\,s + \sigma e' - \phi(x_t - z_t)`,
    and pooled over series it is the mixture
    :math:`\tfrac12\mathcal{N}(-\text{step}, v) + \tfrac12\mathcal{N}(\text{step}, v)` with
    :math:`v = \sigma^2 + (\phi\sigma)^2`.

    :returns: a univariate :class:`pyro.distributions.MixtureSameFamily` (has ``cdf`` and ``log_prob``).
    """
    scale = math.sqrt(obs_scale**2 + (phi * obs_scale) ** 2)
    mix = dist.Categorical(torch.tensor([0.5, 0.5], dtype=torch.float64))
    comp = dist.Normal(torch.tensor([-step, step], dtype=torch.float64), torch.tensor(scale, dtype=torch.float64))
    return dist.MixtureSameFamily(mix, comp)


def bimodal_oracle_forecast(z_last, horizon, num_samples, seed=0, phi=0.9, step=4.0, obs_scale=0.2):
    r"""Forecast samples from the true bimodal process given the true last latent state :math:`z_T`:
    the best any model can do.

    :param torch.Tensor z_last: true latent states at the forecast origin, shape ``(N, 1)`` or ``(N,)``.
    :param int horizon: number of future steps ``H``.
    :param int num_samples: number of samples ``S``.
    :param int seed: seed of the sampler.
    :returns: samples of :math:`x_{T+1:T+H}`, shape ``(S, N, H, 1)``.
    """
    _check_sizes(num_samples, horizon)
    z_last = torch.as_tensor(z_last).reshape(-1)
    rng = np.random.default_rng(seed)
    n = z_last.shape[0]
    z = np.broadcast_to(z_last.double().numpy(), (num_samples, n)).copy()
    out = np.empty((num_samples, n, horizon))
    for h in range(horizon):
        z = phi * z + step * rng.choice(np.array([-1.0, 1.0]), size=z.shape)
        out[:, :, h] = z + obs_scale * rng.standard_normal(z.shape)
    return torch.as_tensor(out[..., None], dtype=z_last.dtype)


def bimodal_log_likelihood(x, phi=0.9, step=4.0, obs_scale=0.2, max_components=16):
    r"""Exact (up to pruning) log-likelihood :math:`\log p(x_{1:T})` of :func:`bimodal` series by a
    Gaussian-sum filter: every component is a Gaussian over :math:`z_t` that splits in two at each step
    (:math:`\pm\text{step}`); the ``max_components`` heaviest are kept. The modes are far apart
    relative to the noise, so the pruned mass is negligible.

    :param torch.Tensor x: series of shape ``(N, T, 1)`` or ``(N, T)``.
    :returns: a float64 tensor of shape ``(N,)`` (nats per series).
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.dim() == 3:
        if x.shape[-1] != 1:
            raise ValueError(f"x must have one channel, got shape {tuple(x.shape)}")
        x = x[..., 0]
    if x.dim() != 2 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (N, T, 1) or (N, T), got {tuple(x.shape)}")
    r2 = obs_scale**2

    def update(logw, m, v, xt):
        s2 = v + r2
        log_marg = -0.5 * (math.log(2 * math.pi) + s2.log() + (xt[:, None] - m) ** 2 / s2)
        joint = logw + log_marg
        inc = joint.logsumexp(-1)
        gain = v / s2
        return joint - inc[:, None], m + gain * (xt[:, None] - m), (1 - gain) * v, inc

    N = x.shape[0]
    logw, m, v = torch.zeros(N, 1, dtype=x.dtype), torch.zeros(N, 1, dtype=x.dtype), torch.ones(N, 1, dtype=x.dtype)
    logw, m, v, total = update(logw, m, v, x[:, 0])
    for t in range(1, x.shape[1]):
        logw = torch.cat([logw, logw], -1) + math.log(0.5)
        m = torch.cat([phi * m - step, phi * m + step], -1)
        v = torch.cat([v, v], -1) * phi**2
        logw, m, v, inc = update(logw, m, v, x[:, t])
        total = total + inc
        if logw.shape[-1] > max_components:
            keep = logw.topk(max_components, -1).indices
            logw, m, v = logw.gather(-1, keep), m.gather(-1, keep), v.gather(-1, keep)
            logw = logw - logw.logsumexp(-1, keepdim=True)
            # The renormalisation drops the pruned mass from later steps: it is negligible here.
    return total


def lgssm(num_series=1024, length=32, seed=0, latent_dim=2, obs_dim=2, trans_scale=0.3, obs_scale=0.1,
          dtype=torch.float32, return_latents=False):
    r"""A linear-Gaussian state-space model :math:`z_t = A z_{t-1} + q\,\epsilon_t`,
    :math:`x_t = B z_t + r\,e_t`, with :math:`z_1 \sim \mathcal{N}(0, I)`, ``A`` a damped rotation
    (spectral radius 0.95) and ``B`` a fixed random matrix (seeded), so exact Kalman filtering gives
    reference likelihoods.

    :param int latent_dim: latent dimension ``d``.
    :param int obs_dim: observation dimension ``C``.
    :param float trans_scale: transition noise standard deviation ``q``.
    :param float obs_scale: observation noise standard deviation ``r``.
    :returns: ``x`` of shape ``(N, T, C)`` (and ``z`` of shape ``(N, T, d)`` with ``return_latents``).
    """
    _check_sizes(num_series, length)
    _check_sizes(latent_dim, obs_dim)
    rng = np.random.default_rng(seed)
    A = lgssm_transition_matrix(latent_dim)
    B = rng.standard_normal((obs_dim, latent_dim)) / math.sqrt(latent_dim)
    z = np.empty((num_series, length, latent_dim))
    z[:, 0] = rng.standard_normal((num_series, latent_dim))
    for t in range(1, length):
        z[:, t] = z[:, t - 1] @ A.T + trans_scale * rng.standard_normal((num_series, latent_dim))
    x = z @ B.T + obs_scale * rng.standard_normal((num_series, length, obs_dim))
    return _finish(x, z, dtype, return_latents)


def lgssm_transition_matrix(latent_dim, radius=0.95, angle=0.3):
    """Block-diagonal damped rotations (a real 1x1 block ``radius`` when ``latent_dim`` is odd)."""
    A = np.zeros((latent_dim, latent_dim))
    c, s = radius * math.cos(angle), radius * math.sin(angle)
    for i in range(0, latent_dim - 1, 2):
        A[i : i + 2, i : i + 2] = [[c, -s], [s, c]]
    if latent_dim % 2:
        A[-1, -1] = radius
    return A


def nonlinear_ssm(num_series=1024, length=32, seed=0, trans_scale=0.5, obs_scale=0.5, dtype=torch.float32,
                  return_latents=False):
    r"""The classic univariate nonlinear growth model (Kitagawa 1996), with a time-invariant
    transition so that it suits a homogeneous latent model:

    .. math::

        z_t = \tfrac12 z_{t-1} + \frac{25 z_{t-1}}{1 + z_{t-1}^2} + q\,\epsilon_t,\quad
        x_t = \frac{z_t^2}{20} + r\,e_t,\quad z_1 \sim \mathcal{N}(0, 1).

    The observation is not invertible (the sign of :math:`z_t` is ambiguous), so filtering
    distributions are bimodal.

    :returns: ``x`` of shape ``(N, T, 1)`` (and ``z`` of shape ``(N, T, 1)`` with ``return_latents``).
    """
    _check_sizes(num_series, length)
    rng = np.random.default_rng(seed)
    z = np.empty((num_series, length))
    z[:, 0] = rng.standard_normal(num_series)
    for t in range(1, length):
        zp = z[:, t - 1]
        z[:, t] = 0.5 * zp + 25 * zp / (1 + zp**2) + trans_scale * rng.standard_normal(num_series)
    x = z**2 / 20 + obs_scale * rng.standard_normal((num_series, length))
    return _finish(x[..., None], z[..., None], dtype, return_latents)
