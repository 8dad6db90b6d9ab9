"""Shape and value checks shared by pyroseq's distributions.

Shape checks are cheap and always run. Checks that read whole tensors (finiteness, the values of masks) run only
when validation is on, following Pyro's switch: :func:`pyro.enable_validation` (the default of
``torch.distributions.Distribution``) or a distribution's own ``validate_args``.
"""

import torch
from torch.distributions import Distribution

__all__ = [
    "broadcast_batch_shapes",
    "check_expand_shape",
    "check_finite_arg",
    "check_positive_int",
    "check_value",
    "validation_enabled",
]


def validation_enabled(validate_args=None):
    """Whether a distribution built with ``validate_args`` validates its arguments and values.

    :param bool validate_args: the distribution's ``validate_args`` (None: the global default that
        :func:`pyro.enable_validation` sets).
    :rtype: bool
    """
    return Distribution._validate_args if validate_args is None else bool(validate_args)


def broadcast_batch_shapes(**shapes):
    """:func:`torch.broadcast_shapes` of named batch shapes, with a ValueError that names the arguments.

    :param shapes: ``name=shape`` pairs; None values are skipped.
    :returns: the broadcast shape.
    :rtype: torch.Size
    """
    shapes = {k: torch.Size(v) for k, v in shapes.items() if v is not None}
    try:
        return torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        listed = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        raise ValueError(f"batch shapes do not broadcast: {listed}") from None


def check_positive_int(name, value):
    """Return ``value`` as an int, or raise ValueError naming ``name`` unless it is a positive integer (an int, or
    a number equal to one; not a string, bool or None)."""
    if isinstance(value, (str, bool)) or value is None:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        as_int = int(value)
        ok = as_int == value and as_int >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return as_int


def check_finite_arg(name, tensor):
    """Raise ValueError naming ``name`` if ``tensor`` has NaN or infinite entries (a full-tensor check: call
    it only when validation is on)."""
    if not torch.isfinite(tensor).all():
        bad = tuple((~torch.isfinite(tensor)).nonzero()[0].tolist())
        raise ValueError(f"{name} contains NaN or infinite values (first at index {bad})")


def check_expand_shape(old, new):
    """Raise ValueError unless ``old`` batch shape can be expanded to ``new`` (sizes equal or 1, aligned on the
    right, no dims dropped), as :meth:`torch.Tensor.expand` requires.

    :returns: ``new`` as a :class:`torch.Size`.
    """
    new = torch.Size(new)
    if len(new) < len(old) or any(o != 1 and o != n for o, n in zip(reversed(old), reversed(new))):
        raise ValueError(f"batch_shape {tuple(old)} cannot be expanded to {tuple(new)}")
    return new


def check_value(value, batch_shape, event_shape, validate, finite=True):
    """Check a value given to ``log_prob``.

    Always: ``value`` is a tensor ending with ``event_shape`` whose batch part broadcasts with ``batch_shape``.
    With ``validate``: ``value`` is finite (if ``finite``), and it does not broadcast against the batch as an
    outer product, the mark of a forgotten squeeze: a value of shape ``(N, 1)`` scored by a distribution of
    batch shape ``(N,)`` (or ``(K, 1, N)`` with an enumerated dim) and event shape ``()`` would give
    log-densities of shape ``(N, N)``. That is refused when the value's batch part ends with ``m >= 1`` dims of
    size 1 where the batch has larger sizes, and the value's dim just before them has the size of the batch's
    last dim (the batch shifted left by ``m``).

    :param torch.Tensor value: shape ``sample_shape + batch_shape + event_shape`` (broadcastable).
    :raises ValueError: naming ``value``.
    """
    if not torch.is_tensor(value):
        raise ValueError(f"value must be a torch.Tensor, got {type(value).__name__}")
    ed = len(event_shape)
    if value.dim() < ed or value.shape[value.dim() - ed:] != event_shape:
        raise ValueError(f"value must have shape (...,) + event_shape {tuple(event_shape)}, got {tuple(value.shape)}")
    value_batch = value.shape[: value.dim() - ed]
    try:
        out = torch.broadcast_shapes(value_batch, batch_shape)
    except RuntimeError:
        raise ValueError(f"value of shape {tuple(value.shape)} does not broadcast with batch_shape "
                         f"{tuple(batch_shape)} + event_shape {tuple(event_shape)}") from None
    if not validate:
        return
    if finite and not torch.isfinite(value).all():
        raise ValueError("value contains NaN or infinite entries; mask missing data instead")
    m = 0  # trailing dims where the value has size 1 and the batch a larger size
    while m < min(len(batch_shape), len(value_batch)) and value_batch[-m - 1] == 1 and batch_shape[-m - 1] > 1:
        m += 1
    if m and len(value_batch) > m and value_batch[-m - 1] == batch_shape[-1]:
        raise ValueError(
            f"value of shape {tuple(value.shape)} would broadcast against batch_shape {tuple(batch_shape)} "
            f"(event_shape {tuple(event_shape)}) to log-densities of shape {tuple(out)}, an outer product: its "
            f"batch part {tuple(value_batch)} is the batch shifted left by {m} dim(s) of size 1. A forgotten "
            "squeeze? Scalar states have event_shape () (e.g. DiffusionTransition(..., event_dim=0))")
