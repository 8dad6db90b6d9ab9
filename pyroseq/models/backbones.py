"""The registry of denoiser networks of the window diffusion models: adding a backbone is one entry here."""

from dataclasses import dataclass

import torch

from ..nn.csdi import CSDIDenoiserNet
from ..nn.dimts import DiMTSNet
from ..nn.stagediff import StageDiffNet

__all__ = ["BACKBONES", "Backbone", "build_backbone", "check_forecast_window", "forecast_window"]


@dataclass(frozen=True)
class Backbone:
    """One entry of :data:`BACKBONES`.

    :param callable factory: ``factory(obs_dim, length, cond_dim, stage_length, **net_kwargs) -> network``; the
        network reads ``cond_dim`` conditioning planes ``(N, T, C, K)`` through its ``pack_context``.
    :param dict defaults: keyword arguments of the conditional models (:class:`~pyroseq.models.ConditionalDiffusion`
        and the emission of :class:`~pyroseq.models.LatentDiffusionSSM`).
    :param str lengths: the windows the network denoises: ``"any"``, ``"fixed"`` (its ``length``) or ``"stages"``
        (multiples of its ``stage_length``, modelled stage by stage).
    """

    factory: object
    defaults: dict
    lengths: str = "any"

    @property
    def staged(self):
        """Whether windows are modelled stage by stage."""
        return self.lengths == "stages"

    def check_length(self, net, length, name="length"):
        """Raise ValueError if ``net`` cannot denoise windows of ``length`` steps."""
        if self.lengths == "fixed" and length != net.length:
            raise ValueError(f"{name} must equal the DiM-TS window length {net.length}, got {length}")
        if self.staged and length % net.stage_length:
            raise ValueError(f"{name} must be a multiple of the stage length {net.stage_length}, got {length}")


#: ``"csdi"``: :class:`~pyroseq.nn.CSDIDenoiserNet` (attention over time and channels, any length);
#: ``"dimts"``: :class:`~pyroseq.nn.DiMTSNet` (Mamba, fixed length); ``"stagediff"``:
#: :class:`~pyroseq.nn.StageDiffNet` (stage by stage, lengths that are multiples of the stage length).
BACKBONES = {
    "csdi": Backbone(lambda C, L, K, stage_length, **kw: CSDIDenoiserNet(C, cond_dim=K, **kw),
                     dict(channels=64, num_layers=4, time_embedding_dim=32, channel_embedding_dim=16)),
    "dimts": Backbone(lambda C, L, K, stage_length, **kw: DiMTSNet(C, L, cond_dim=K, **kw),
                      dict(hidden_dim=64, num_encoder_layers=1, num_decoder_layers=2, num_lags=2), "fixed"),
    # carry="residual": the decoder the conditional benchmarks (forecasting, imputation) were measured with;
    # StageDiffNet's default "residual_and_mean" was chosen on unconditional generation and is untested there.
    "stagediff": Backbone(lambda C, L, K, stage_length, **kw: StageDiffNet(C, stage_length or L, cond_dim=K, **kw),
                          dict(patch_size=4, d_model=64, num_heads=4, num_encoder_layers=2, kernel_sizes=(5, 3, 1),
                               carry="residual"), "stages"),
}


def build_backbone(backbone, obs_dim, length, cond_dim, stage_length=None, conditional_defaults=True, **net_kwargs):
    """Build a denoiser network (to be wrapped by :class:`~pyroseq.diffusion.EDMPrecond`) that reads
    ``cond_dim`` conditioning planes per entry.

    :param str backbone: a key of :data:`BACKBONES`.
    :param int obs_dim: number of channels ``C``.
    :param int length: window length ``L`` (the network's length for ``"dimts"``).
    :param int cond_dim: number of planes ``K``.
    :param int stage_length: stage length for ``"stagediff"`` (default ``length``).
    :param bool conditional_defaults: start from the entry's ``defaults`` (else the network's own).
    :param net_kwargs: overrides of the network's keyword arguments.
    :returns: the network.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {backbone!r}")
    entry = BACKBONES[backbone]
    kwargs = {**(entry.defaults if conditional_defaults else {}), **net_kwargs}
    return entry.factory(obs_dim, length, cond_dim, stage_length, **kwargs)


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
