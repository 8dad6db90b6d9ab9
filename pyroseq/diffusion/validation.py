"""Argument checks shared by the diffusion estimators and samplers."""

import math

import torch

__all__ = ["check_noise_range", "check_finite", "check_positive", "check_edm_noise"]


def check_positive(name, value):
    """Raise :class:`ValueError` unless ``value`` is a finite positive number.

    :param str name: argument name used in the message.
    :param float value: the value to check.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return v


def check_noise_range(sigma_min, sigma_max, sigma_data):
    """Validate the noise-level range and data scale of a VE diffusion.

    :returns: ``(sigma_min, sigma_max, sigma_data)`` as floats.
    :raises ValueError: if any value is non-positive or ``sigma_min >= sigma_max``.
    """
    sigma_min = check_positive("sigma_min", sigma_min)
    sigma_max = check_positive("sigma_max", sigma_max)
    sigma_data = check_positive("sigma_data", sigma_data)
    if sigma_min >= sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be smaller than sigma_max ({sigma_max})")
    return sigma_min, sigma_max, sigma_data


def check_finite(name, tensor):
    """Raise :class:`ValueError` if ``tensor`` has NaN or infinite entries."""
    if not torch.is_tensor(tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).nonzero()[0].tolist()
        raise ValueError(f"{name} contains NaN or infinite values (first at index {tuple(bad)})")
    return tensor


def check_edm_noise(edm_noise):
    r"""Validate EDM's log-normal noise distribution ``(P_mean, P_std)``: a finite mean and a finite positive
    standard deviation of :math:`\log\sigma`.

    :param tuple edm_noise: the pair ``(P_mean, P_std)``.
    :returns: the pair as floats.
    :raises ValueError: for anything else.
    """
    try:
        P_mean, P_std = (float(v) for v in edm_noise)
    except (TypeError, ValueError):
        raise ValueError(f"edm_noise must be a pair (P_mean, P_std) of numbers, got {edm_noise!r}") from None
    if not math.isfinite(P_mean):
        raise ValueError(f"edm_noise: P_mean must be finite, got {P_mean}")
    return P_mean, check_positive("edm_noise: P_std", P_std)
