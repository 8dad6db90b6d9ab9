"""Training masks of conditional diffusion models (CSDI-style self-supervision): which observed entries
are given to the denoiser as conditioning and which are its targets."""

import torch

__all__ = ["MASK_STRATEGIES", "conditioning_mask", "forecast_mask"]

#: ``"random"``: every window hides a fraction ``r ~ U(0, 1)`` of its observed entries (CSDI's random
#: strategy); ``"forecast"``: the last ``h`` steps are hidden (``h`` = the model's horizon, or uniform in
#: ``[1, L / 2]`` without one); ``"mixed"``: each window picks one of the two with probability 1/2.
MASK_STRATEGIES = ("random", "forecast", "mixed")


def forecast_mask(num, length, channels, horizon, dtype=torch.bool, device=None):
    """The mask that observes the first ``length - horizon`` steps and hides the last ``horizon``.

    :returns: a boolean tensor of shape ``(num, length, channels)`` (True = observed/conditioning).
    """
    if int(horizon) != horizon or not 1 <= horizon < length:
        raise ValueError(f"horizon must be an integer in [1, {length - 1}] for windows of {length} steps, "
                         f"got {horizon!r}")
    mask = torch.ones(num, length, channels, dtype=torch.bool, device=device)
    mask[:, length - int(horizon):] = False
    return mask


def conditioning_mask(observed, strategy="mixed", horizon=None, generator=None):
    """Draw a conditioning mask for training windows.

    Every window keeps at least one conditioning entry and one target entry among its observed entries
    (windows with fewer than two observed entries get no target).

    :param torch.Tensor observed: boolean tensor ``(N, L, C)``, True where the data are observed.
    :param str strategy: one of :data:`MASK_STRATEGIES`.
    :param int horizon: forecast horizon of the ``"forecast"`` part (None: uniform in ``[1, L // 2]``).
    :param torch.Generator generator: optional random generator.
    :returns: ``(cond, target)``: boolean tensors ``(N, L, C)``; ``cond & target`` is empty and both lie
        inside ``observed``.
    """
    if strategy not in MASK_STRATEGIES:
        raise ValueError(f"strategy must be one of {MASK_STRATEGIES}, got {strategy!r}")
    if not torch.is_tensor(observed) or observed.dtype != torch.bool or observed.dim() != 3:
        raise ValueError("observed must be a boolean tensor of shape (N, L, C)")
    N, L, C = observed.shape
    if L < 2 and strategy != "random":
        raise ValueError(f"the forecast strategy needs windows of at least 2 steps, got {L}")
    device = observed.device

    def rand(*shape):
        return torch.rand(shape, generator=generator).to(device)

    # random: hide each observed entry with a per-window probability r ~ U(0, 1)
    ratio = rand(N, 1, 1)
    hide = rand(N, L, C) < ratio
    if strategy != "random":
        if horizon is None:
            h = 1 + (rand(N) * (L // 2)).long().clamp_max(max(L // 2 - 1, 0))
        else:
            if int(horizon) != horizon or not 1 <= horizon < L:
                raise ValueError(f"horizon must be an integer in [1, {L - 1}], got {horizon!r}")
            h = torch.full((N,), int(horizon), device=device)
        steps = torch.arange(L, device=device)
        future = (steps[None, :] >= (L - h)[:, None]).unsqueeze(-1).expand(N, L, C)
        if strategy == "forecast":
            hide = future
        else:
            hide = torch.where(rand(N, 1, 1) < 0.5, future, hide)
    target = observed & hide
    cond = observed & ~hide
    # Keep at least one conditioning entry (the first observed one) and then one target (the last observed one).
    flat_obs, flat_cond, flat_target = observed.reshape(N, -1), cond.reshape(N, -1), target.reshape(N, -1)
    first, last = flat_obs.float().argmax(1), (L * C - 1) - flat_obs.flip(1).float().argmax(1)
    for gain, lose, index in ((flat_cond, flat_target, first), (flat_target, flat_cond, last)):
        rows = (~gain.any(1) & (flat_obs.sum(1) >= 2)).nonzero().flatten()
        gain[rows, index[rows]] = True
        lose[rows, index[rows]] = False
    return flat_cond.reshape(N, L, C), flat_target.reshape(N, L, C)
