"""Gaussian noise drawn where it is used."""

import torch

__all__ = ["standard_normal"]


def standard_normal(shape, dtype=None, device=None, generator=None):
    """Standard normal noise of ``shape`` with ``dtype`` on ``device``.

    Without a ``generator`` the noise is drawn on ``device`` directly (no host-to-device copy); with one it is
    drawn on the generator's device, so a seeded generator gives the same numbers everywhere, then moved.

    :param tuple shape: the shape.
    :param torch.dtype dtype: floating point dtype (default: the default dtype).
    :param torch.device device: target device (default: CPU).
    :param torch.Generator generator: optional random generator.
    :rtype: torch.Tensor
    """
    draw_on = device if generator is None else generator.device
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=draw_on).to(device)
