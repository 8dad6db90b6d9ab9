"""Per-step covariates of the window models: validation and conditioning planes."""

import torch

__all__ = ["check_covariates", "covariate_planes"]


def check_covariates(covariates, covariate_dim, num, length, model="the model", name="covariates"):
    """Covariates ``(num, length, p)`` are required iff ``p = covariate_dim > 0`` and must be finite floats.

    :param torch.Tensor covariates: the covariates, or None.
    :param int covariate_dim: ``p``.
    :param int num: expected number of series.
    :param int length: expected number of steps.
    :param str model: model name used in the error messages.
    :param str name: argument name used in the error messages.
    :raises ValueError: for covariates given with ``p = 0``, missing with ``p > 0``, or of a wrong type, shape or
        with non-finite values.
    """
    if not covariate_dim:
        if covariates is not None:
            raise ValueError(f"{name} were given but the model was built with covariate_dim=0 (pass "
                             f"covariate_dim=p to {model} to condition on p covariates per step)")
        return
    expected = (num, length, covariate_dim)
    if covariates is None:
        raise ValueError(f"{name} of shape (N, T, p) = {expected} are required (covariate_dim={covariate_dim})")
    if not torch.is_tensor(covariates) or not torch.is_floating_point(covariates):
        got = covariates.dtype if torch.is_tensor(covariates) else type(covariates).__name__
        raise ValueError(f"{name} must be a floating point tensor of shape (N, T, p) = {expected}, got {got}")
    if tuple(covariates.shape) != expected:
        raise ValueError(f"{name} must have shape (N, T, p) = {expected}, got {tuple(covariates.shape)}")
    if not torch.isfinite(covariates).all():
        raise ValueError(f"{name} contain NaN or infinite values")


def covariate_planes(covariates, channels, length=None):
    """Covariates ``(N, T, p)`` as conditioning planes ``(N, T, C, p)``: each covariate a plane repeated over the
    ``C`` channels (the CSDI plane layout of :class:`~pyroseq.nn.CSDIDenoiserNet`).

    :param torch.Tensor covariates: ``(N, T, p)`` or None.
    :param int channels: ``C``.
    :param int length: keep the first ``length`` steps (default all).
    :returns: a tensor ``(N, T, C, p)`` (a view), or None.
    """
    if covariates is None:
        return None
    if length is not None:
        covariates = covariates[:, :length]
    return covariates[:, :, None, :].expand(-1, -1, channels, -1)
