"""Atomic training checkpoints that resume exactly (model, optimiser and random number generators)."""

import os
import tempfile

import pyro.util
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "get_rng_states", "set_rng_states"]


def get_rng_states(generators=None):
    """The states of Python's, NumPy's and torch's global generators, plus those of ``generators``
    (a dict of :class:`torch.Generator`)."""
    states = {"global": pyro.util.get_rng_state()}
    for name, gen in (generators or {}).items():
        states[name] = gen.get_state()
    return states


def set_rng_states(states, generators=None):
    """Inverse of :func:`get_rng_states`."""
    pyro.util.set_rng_state(states["global"])
    for name, gen in (generators or {}).items():
        gen.set_state(states[name])


def save_checkpoint(path, state):
    """Write ``state`` (a dict of tensors, numbers, RNG states, ...) to ``path`` atomically: the data
    go to a temporary file in the same directory which then replaces ``path`` (:func:`os.replace`),
    so an interrupted save never leaves a truncated checkpoint.

    :param str path: destination file.
    :param dict state: what to save (``torch.save``-able).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path):
    """Load a checkpoint written by :func:`save_checkpoint` (it contains NumPy RNG states, so it is
    loaded with ``weights_only=False``: only load files you wrote).

    :param str path: checkpoint file.
    :returns: the saved dict.
    """
    return torch.load(os.fspath(path), map_location="cpu", weights_only=False)
