"""Warm-up schedules of the KL weight and a Pyro handler that scales chosen sample sites."""

import math

from pyro.poutine.messenger import Messenger

__all__ = ["kl_weight", "check_kl_schedule", "SiteScaleMessenger", "scale_sites"]

_KINDS = ("linear", "cosine")


def check_kl_schedule(schedule):
    """Validate a KL schedule and return it as ``(kind, warmup_steps, lambda_end, lambda_start)``.

    :param schedule: None (constant weight 1), or a tuple ``(kind, warmup_steps, lambda_end)`` or
        ``(kind, warmup_steps, lambda_end, lambda_start)`` with ``kind`` in ``"linear"``, ``"cosine"``
        (``lambda_start`` defaults to 0) or ``kind`` None (constant ``lambda_end``).
    :raises ValueError: for an unknown kind, a negative number of steps or a negative weight.
    """
    if schedule is None:
        return (None, 0, 1.0, 1.0)
    if not isinstance(schedule, (tuple, list)) or len(schedule) not in (3, 4):
        raise ValueError(f"kl_schedule must be None or (kind, warmup_steps, lambda_end[, lambda_start]), "
                         f"got {schedule!r}")
    kind, warmup, end = schedule[0], schedule[1], schedule[2]
    start = schedule[3] if len(schedule) == 4 else 0.0
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"kl_schedule kind must be one of {_KINDS} or None, got {kind!r}")
    if int(warmup) != warmup or warmup < 0:
        raise ValueError(f"kl_schedule warmup_steps must be a non-negative integer, got {warmup!r}")
    if not (end >= 0 and start >= 0):
        raise ValueError(f"kl_schedule weights must be non-negative, got lambda_end={end}, lambda_start={start}")
    return (kind, int(warmup), float(end), float(start))


def kl_weight(step, schedule):
    r"""The KL weight :math:`\lambda` at ``step`` (0-based): from ``lambda_start`` at step 0 to
    ``lambda_end`` at ``warmup_steps`` (linearly, or along half a cosine), constant afterwards.

    :param int step: optimisation step.
    :param schedule: see :func:`check_kl_schedule`.
    :returns: a float.
    """
    kind, warmup, end, start = check_kl_schedule(schedule)
    if kind is None or warmup == 0 or step >= warmup:
        return end
    frac = max(step, 0) / warmup
    if kind == "cosine":
        frac = 0.5 * (1 - math.cos(math.pi * frac))
    return start + (end - start) * frac


class SiteScaleMessenger(Messenger):
    """Multiply the log-density scale of the sample sites named in ``sites`` by ``scale`` (like
    :class:`pyro.poutine.scale`, but for chosen sites only). Applied to both a model and its guide, it
    weights the KL term of the ELBO of those latent sites.

    :param sites: names of the sites to scale.
    :param float scale: non-negative factor.
    """

    def __init__(self, sites, scale):
        super().__init__()
        if scale < 0:
            raise ValueError(f"scale must be non-negative, got {scale}")
        self.sites = frozenset(sites)
        self.scale = scale

    def _process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.sites:
            msg["scale"] = self.scale * msg["scale"]


def scale_sites(fn=None, sites=(), scale=1.0):
    """Handler form of :class:`SiteScaleMessenger` (usable as a context manager or to wrap ``fn``)."""
    msngr = SiteScaleMessenger(sites, scale)
    return msngr(fn) if fn is not None else msngr
