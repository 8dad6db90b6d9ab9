"""Conditioning planes of the denoiser networks: the layout shared by CSDI, DiM-TS and Stage-Diff networks."""

import torch

__all__ = ["describe_shape", "pack_cond_planes"]


def describe_shape(value):
    """The shape of a tensor, or the type name of anything else (for error messages)."""
    return tuple(value.shape) if torch.is_tensor(value) else type(value).__name__


def pack_cond_planes(cond, cond_dim, length, channels, length_name="L"):
    """Validate ``K = cond_dim`` conditioning planes ``cond`` ``(N, length, C, K)`` and lay them out as
    ``(N, length, K * C)``, plane ``k`` being ``[..., k * C:(k + 1) * C]``.

    :returns: the packed tensor, or None when ``cond_dim = 0`` (then ``cond`` must be None).
    :raises ValueError: if ``cond`` is given with ``cond_dim = 0``, missing with ``cond_dim > 0``, or
        misshapen.
    """
    K, L, C = cond_dim, length, channels
    if not K:
        if cond is not None:
            raise ValueError(f"cond must be None for a network built with cond_dim=0, got {describe_shape(cond)}")
        return None
    if cond is None:
        raise ValueError(f"cond is required for a network built with cond_dim={K}")
    if not torch.is_tensor(cond) or cond.dim() != 4 or cond.shape[1:] != (L, C, K):
        raise ValueError(f"cond must have shape (N, {length_name}={L}, C={C}, K={K}), got {describe_shape(cond)}")
    return cond.transpose(2, 3).reshape(cond.shape[0], L, K * C)
