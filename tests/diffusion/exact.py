"""Exact denoisers of known distributions, shared by the diffusion and distribution tests."""

import torch


def gaussian_denoiser(x, sigma, context=None):
    """Exact denoiser E[x0 | x0 + sigma eps = x] of standard normal data: x / (1 + sigma^2)."""
    return x / (1 + sigma.reshape((-1,) + (1,) * (x.dim() - 1)) ** 2)


def mixture_denoiser(locs, scale):
    """Exact denoiser of the 1-D mixture sum_k 1/K N(locs[k], scale^2), events of shape (1,)."""
    locs = torch.as_tensor(locs, dtype=torch.float64)

    def denoiser(x, sigma, context=None):
        var = scale**2 + sigma.reshape(-1, 1) ** 2
        logw = -0.5 * (x - locs.to(x)) ** 2 / var
        w = torch.softmax(logw, -1)
        post = locs.to(x) + scale**2 / var * (x - locs.to(x))
        return (w * post).sum(-1, keepdim=True)

    return denoiser
