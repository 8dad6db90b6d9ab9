"""Reproducible sampling without touching the caller's random state."""

import contextlib

import torch

__all__ = ["seeded"]


@contextlib.contextmanager
def seeded(seed, device=None):
    """Run the block with torch's global generators seeded with ``seed`` and restore their state afterwards, so
    that a ``generate(..., seed=s)`` call is reproducible and leaves the caller's random stream as it was.
    With ``seed=None`` the block uses (and advances) the global generators as usual.

    :param int seed: the seed, or None.
    :param torch.device device: the device sampled on (its CUDA generator is forked too).
    """
    if seed is None:
        yield
        return
    device = torch.device("cpu") if device is None else torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        yield
