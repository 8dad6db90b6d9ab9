"""Atomic training checkpoints that resume exactly (model, optimiser and random number generators)."""

import os
import tempfile
import zipfile

import pyro.util
import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "get_rng_states", "set_rng_states",
           "remove_stale_temporaries"]


class CheckpointError(ValueError):
    """A checkpoint file is unreadable: truncated, corrupt, or not a checkpoint of the expected kind."""


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


_TMP_PREFIX = ".tmp-"


def remove_stale_temporaries(path):
    """Delete temporary files that :func:`save_checkpoint` left next to ``path`` when its process was
    killed mid-write (the checkpoint itself is never affected). Call it only where no other process is
    writing the same checkpoint.

    :param str path: checkpoint file.
    :returns: the list of removed paths.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _TMP_PREFIX + os.path.basename(path)
    removed = []
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if name.startswith(prefix):
                try:
                    os.remove(os.path.join(directory, name))
                    removed.append(os.path.join(directory, name))
                except OSError:
                    pass
    return removed


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
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + os.path.basename(path), dir=directory)
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
    _fsync_directory(directory)


def _fsync_directory(directory):
    # Make the rename itself durable (a power cut after os.replace could otherwise lose it).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path, required=()):
    """Load a checkpoint written by :func:`save_checkpoint` (it contains NumPy RNG states, so it is
    loaded with ``weights_only=False``: only load files you wrote).

    The file is checked first: ``torch.save`` writes a zip archive with a CRC-32 per record, which
    :func:`torch.load` does not verify, so a flipped bit inside a tensor would load silently; every
    record's checksum is verified here.

    :param str path: checkpoint file.
    :param tuple required: keys the saved dict must have.
    :returns: the saved dict.
    :raises FileNotFoundError: if ``path`` does not exist.
    :raises CheckpointError: (a :class:`ValueError`) naming ``path`` if it is truncated, corrupt, not a
        dict, or lacks a ``required`` key.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise CheckpointError(f"checkpoint file {path!r} is corrupt: record {bad!r} fails its CRC check")
        state = torch.load(path, map_location="cpu", weights_only=False)
    except CheckpointError:
        raise
    except Exception as e:  # whatever a damaged archive or pickle stream makes zipfile / torch.load raise
        raise CheckpointError(f"checkpoint file {path!r} is truncated or corrupt and cannot be loaded "
                              f"({type(e).__name__}: {str(e)[:200]}); delete it to start afresh") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint file {path!r} holds a {type(state).__name__}, not a dict")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint file {path!r} lacks the entries {missing}; it was not written by "
                              f"this function")
    return state
