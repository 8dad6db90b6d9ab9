"""EDM preconditioning (Karras et al. 2022): turns a raw network into a denoiser."""

import torch
from torch import nn

from .validation import check_positive

__all__ = ["edm_scalings", "EDMPrecond"]


def edm_scalings(sigma, sigma_data):
    r"""EDM preconditioning coefficients.

    .. math::

        c_\text{skip} = \frac{\sigma_d^2}{\sigma^2+\sigma_d^2},\quad
        c_\text{out} = \frac{\sigma\sigma_d}{\sqrt{\sigma^2+\sigma_d^2}},\quad
        c_\text{in} = \frac{1}{\sqrt{\sigma^2+\sigma_d^2}},\quad
        c_\text{noise} = \tfrac14\log\sigma.

    :param torch.Tensor sigma: noise levels of any shape.
    :param float sigma_data: data standard deviation.
    :returns: ``(c_skip, c_out, c_in, c_noise)``, each of ``sigma``'s shape.
    """
    s2 = sigma * sigma
    sd2 = sigma_data * sigma_data
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma * sigma_data / (s2 + sd2).sqrt()
    c_in = (s2 + sd2).rsqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


class EDMPrecond(nn.Module):
    r"""Wraps a network :math:`F` into an x0-predicting denoiser

    .. math:: D(x; \sigma) = c_\text{skip} x + c_\text{out} F(c_\text{in} x, c_\text{noise}, c).

    The result is a *denoiser* in pyroseq's sense: ``denoiser(x_noisy, sigma, context=None)``.

    :param torch.nn.Module net: a network ``net(x_in, c_noise, context=None) -> F`` with ``x_in`` of
        shape ``(N,) + event_shape``, ``c_noise`` of shape ``(N,)`` and output of ``x_in``'s shape.
    :param float sigma_data: data standard deviation (0.5 for data in [-1, 1]; 1.0 for latents).
    """

    def __init__(self, net, sigma_data=0.5):
        super().__init__()
        self.net = net
        self.sigma_data = check_positive("sigma_data", sigma_data)

    def forward(self, x, sigma, context=None):
        """
        :param torch.Tensor x: noisy input of shape ``(N,) + event_shape``.
        :param torch.Tensor sigma: noise levels, shape ``(N,)`` (or a scalar, broadcast to ``(N,)``).
        :param context: optional conditioning passed through to the network.
        :returns: the denoised estimate, of ``x``'s shape.
        """
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.dim() == 0:
            sigma = sigma.expand(x.shape[:1])
        if sigma.shape != x.shape[:1]:
            raise ValueError(
                f"sigma must have shape (N,) = {tuple(x.shape[:1])}, got {tuple(sigma.shape)}"
            )
        c_skip, c_out, c_in, c_noise = edm_scalings(sigma, self.sigma_data)
        view = (-1,) + (1,) * (x.dim() - 1)
        F = self.net(c_in.reshape(view) * x, c_noise, context)
        return c_skip.reshape(view) * x + c_out.reshape(view) * F
