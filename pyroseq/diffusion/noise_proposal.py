"""Noise-level proposals for the unbiased Monte Carlo estimate of the diffusion bound."""

import math

import torch

from .validation import check_noise_range, check_positive

__all__ = ["DefensiveNoiseProposal"]


class DefensiveNoiseProposal:
    r"""A defensive mixture proposal over :math:`u = \log\sigma \in [\log\sigma_\min, \log\sigma_\max]`:

    .. math:: r(u) = w\,\mathcal{U}(u) + (1-w)\,\mathcal{N}_{[a,b]}(u; P_\text{mean}, P_\text{std}^2),

    half log-uniform (keeps the importance weights bounded by ``1/(w (b - a))``, hence low variance)
    and half EDM's truncated log-normal (concentrates draws where the denoising error changes most).
    Draws are stratified: ``n`` draws use the quantiles ``(perm(i) + U_i) / n`` of ``r``, so each draw is
    marginally distributed as ``r`` (the estimate stays unbiased per example) while the batch as a
    whole covers the noise range evenly.

    :param float sigma_min: smallest noise level.
    :param float sigma_max: largest noise level.
    :param float P_mean: mean of the log-normal component (EDM default -1.2).
    :param float P_std: standard deviation of the log-normal component (EDM default 1.2).
    :param float uniform_weight: mixture weight ``w`` of the log-uniform component, in (0, 1].
    """

    def __init__(self, sigma_min=0.002, sigma_max=80.0, P_mean=-1.2, P_std=1.2, uniform_weight=0.5):
        sigma_min, sigma_max, _ = check_noise_range(sigma_min, sigma_max, 1.0)
        self.P_std = check_positive("P_std", P_std)
        if not 0.0 < uniform_weight <= 1.0:
            raise ValueError(f"uniform_weight must be in (0, 1], got {uniform_weight}")
        self.a = math.log(sigma_min)
        self.b = math.log(sigma_max)
        self.P_mean = float(P_mean)
        self.w = float(uniform_weight)
        self._normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
        za = (self.a - self.P_mean) / self.P_std
        zb = (self.b - self.P_mean) / self.P_std
        self._cdf_a = float(self._normal.cdf(torch.tensor(za, dtype=torch.float64)))
        self._mass = float(self._normal.cdf(torch.tensor(zb, dtype=torch.float64))) - self._cdf_a

    def log_prob(self, u):
        """Log density of ``u = log(sigma)`` (any shape; float64 recommended)."""
        u = u.double()
        uniform = self.w / (self.b - self.a)
        z = (u - self.P_mean) / self.P_std
        normal = (1 - self.w) * z.pow(2).mul(-0.5).exp() / (
            self.P_std * math.sqrt(2 * math.pi) * self._mass
        )
        inside = (u >= self.a) & (u <= self.b)
        return torch.where(inside, (uniform + normal).log(), torch.full_like(u, -math.inf))

    def cdf(self, u):
        """Cumulative distribution function of ``u = log(sigma)``."""
        u = u.double().clamp(self.a, self.b)
        uniform = (u - self.a) / (self.b - self.a)
        z = (u - self.P_mean) / self.P_std
        normal = (self._normal.cdf(z) - self._cdf_a) / self._mass
        return self.w * uniform + (1 - self.w) * normal

    def icdf(self, v, iterations=60):
        """Quantile function by bisection (the mixture CDF has no closed-form inverse).

        :param torch.Tensor v: probabilities in [0, 1], any shape.
        :returns: ``u`` with ``cdf(u) = v``, float64.
        """
        lo = torch.full_like(v, self.a, dtype=torch.float64)
        hi = torch.full_like(v, self.b, dtype=torch.float64)
        v = v.double()
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < v
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def sample(self, n, stratified=True, generator=None, device=None):
        """Draw ``n`` log noise levels.

        :param int n: number of draws.
        :param bool stratified: use stratified quantiles (see class docstring).
        :returns: a pair ``(u, log_r)`` of float64 tensors of shape ``(n,)``.
        """
        uniform = torch.rand(n, generator=generator, dtype=torch.float64)
        if stratified:
            perm = torch.randperm(n, generator=generator).double()
            uniform = (perm + uniform) / n
        u = self.icdf(uniform)
        if device is not None:
            u = u.to(device)
        return u, self.log_prob(u)
