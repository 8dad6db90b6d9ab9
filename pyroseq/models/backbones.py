"""Denoiser networks that read conditioning planes, built by name: the shared choice of the conditional
diffusion model and the latent-diffusion state-space model."""

import torch

from ..nn.csdi import CSDIDenoiserNet
from ..nn.dimts import DiMTSNet
from ..nn.stagediff import StageDiffNet

__all__ = ["BACKBONES", "build_backbone", "pack_planes", "check_backbone_length", "check_forecast_window",
           "forecast_window"]

#: ``"csdi"``: :class:`~pyroseq.nn.CSDIDenoiserNet` (attention over time and channels, any length);
#: ``"dimts"``: :class:`~pyroseq.nn.DiMTSNet` (Mamba, fixed length); ``"stagediff"``:
#: :class:`~pyroseq.nn.StageDiffNet` (stage by stage, lengths that are multiples of the stage length).
BACKBONES = ("csdi", "dimts", "stagediff")

_DEFAULTS = {
    "csdi": dict(channels=64, num_layers=4, time_embedding_dim=32, channel_embedding_dim=16),
    "dimts": dict(hidden_dim=64, num_encoder_layers=1, num_decoder_layers=2, num_lags=2),
    # carry="residual": the decoder the conditional benchmarks (forecasting, imputation) were measured with;
    # StageDiffNet's default "residual_and_mean" was chosen on unconditional generation and is untested here.
    "stagediff": dict(patch_size=4, d_model=64, num_heads=4, num_encoder_layers=2, kernel_sizes=(5, 3, 1),
                      carry="residual"),
}


def build_backbone(backbone, obs_dim, length, cond_dim, stage_length=None, **net_kwargs):
    """Build a denoiser network (to be wrapped by :class:`~pyroseq.diffusion.EDMPrecond`) that reads
    ``cond_dim`` conditioning planes per entry.

    :param str backbone: one of :data:`BACKBONES`.
    :param int obs_dim: number of channels ``C``.
    :param int length: window length ``L`` (the network's length for ``"dimts"``).
    :param int cond_dim: number of planes ``K``.
    :param int stage_length: stage length for ``"stagediff"`` (default ``length``).
    :param net_kwargs: overrides of the network's keyword arguments.
    :returns: the network.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    kwargs = {**_DEFAULTS[backbone], **net_kwargs}
    if backbone == "csdi":
        return CSDIDenoiserNet(obs_dim, cond_dim=cond_dim, **kwargs)
    if backbone == "dimts":
        return DiMTSNet(obs_dim, length, cond_dim=cond_dim, **kwargs)
    return StageDiffNet(obs_dim, length if stage_length is None else stage_length, cond_dim=cond_dim, **kwargs)


def check_backbone_length(backbone, net, length, name="length"):
    """Raise ValueError if ``net`` cannot denoise windows of ``length`` steps."""
    if backbone == "dimts" and length != net.length:
        raise ValueError(f"{name} must equal the DiM-TS window length {net.length}, got {length}")
    if backbone == "stagediff" and length % net.stage_length:
        raise ValueError(f"{name} must be a multiple of the stage length {net.stage_length}, got {length}")


def check_forecast_window(length, history_length, horizon):
    """Forecasting as imputation in a window of ``length`` steps: raise ValueError unless
    ``1 <= horizon < length`` and the history covers the window's first ``length - horizon`` steps."""
    if not 1 <= horizon < length:
        raise ValueError(f"horizon must be in [1, {length - 1}] for a window of {length} steps, got {horizon}")
    if history_length < length - horizon:
        raise ValueError(f"x is too short: {history_length} steps; forecasting {horizon} steps with a window of "
                         f"{length} needs a history of at least {length - horizon}")


def forecast_window(x, observed, length, horizon):
    """The imputation window of a forecast: the last ``length - horizon`` steps of the histories followed by
    ``horizon`` missing steps.

    :param torch.Tensor x: histories ``(N, T, C)``.
    :param torch.Tensor observed: boolean ``(N, T, C)``, True where observed.
    :returns: ``(window, window_mask)`` of shape ``(N, length, C)``; ``window`` is NaN wherever the mask is False.
    """
    N, T, C = x.shape
    past = length - horizon
    window_mask = torch.cat([observed[:, T - past:], observed.new_zeros(N, horizon, C)], 1)
    window = torch.cat([x[:, T - past:], x.new_zeros(N, horizon, C)], 1)
    return torch.where(window_mask, window, torch.full((), float("nan"), dtype=x.dtype)), window_mask


def pack_planes(net, backbone, planes, extra=None, history=None):
    """The network context for conditioning planes.

    :param net: a network from :func:`build_backbone`.
    :param str backbone: its name.
    :param torch.Tensor planes: planes ``(M, L, C, K1)`` (e.g. observation planes), or None.
    :param torch.Tensor extra: further planes ``(M, L, C, K2)`` (covariates, latent path), or None.
    :param torch.Tensor history: history tokens of a ``"stagediff"`` stage, or None.
    :returns: the context ``net`` expects.
    """
    parts = [p for p in (planes, extra) if p is not None]
    cond = (parts[0] if len(parts) == 1 else torch.cat(parts, -1)) if parts else None
    if backbone == "stagediff":
        return net.pack_context(history=history, cond=cond)
    return net.pack_context(cond=cond)
