"""The Stage-Diff network: a per-stage, channel-independent Transformer denoiser with progressive
trend decomposition, conditioned on the fused multi-scale trends of the previous stage."""

import math

import torch
from torch import nn

from ..checks import positive_int as _positive_int
from .decomposition import MovingAverage, ProgressiveDecomposition
from .embeddings import _nonnegative_int
from .planes import describe_shape, pack_cond_planes
from .stage_fusion import StageFusion

__all__ = ["StageDiffNet", "sinusoidal_embedding"]

_FUSIONS = ("channels", "independent", "none")
_CARRIES = ("residual", "residual_and_mean")
_HISTORY_ATTENTIONS = ("scale", "all")


def sinusoidal_embedding(values, dim, max_period=10000.0):
    r"""Transformer sinusoidal features :math:`[\cos(v \omega_i), \sin(v \omega_i)]`,
    :math:`\omega_i = \mathrm{max\_period}^{-i / (\mathrm{dim}/2)}`.

    :param torch.Tensor values: positions or noise levels of any shape ``batch_shape``.
    :param int dim: even feature dimension.
    :returns: a tensor of shape ``batch_shape + (dim,)``.
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=values.dtype, device=values.device) / half)
    angles = values.unsqueeze(-1) * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


_shape = describe_shape


class _ChannelAttention(nn.Module):
    """Pre-norm self-attention across the channels of each patch position (tokens ``(N * C, T, d)``)."""

    def __init__(self, d_model, num_heads, dropout):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)

    def forward(self, h, N, C):
        T, d = h.shape[1:]
        x = h.reshape(N, C, T, d).transpose(1, 2).reshape(N * T, C, d)
        y = self.norm(x)
        x = x + self.attention(y, y, y, need_weights=False)[0]
        return x.reshape(N, T, C, d).transpose(1, 2).reshape(N * C, T, d)


class StageDiffNet(nn.Module):
    r"""Stage-Diff network :math:`F(x_\mathrm{in}, c_\mathrm{noise}, h)` for one stage of ``stage_length``
    steps and ``channels`` channels, meant to be wrapped by :class:`~pyroseq.diffusion.EDMPrecond` (so the
    denoiser predicts the clean stage, :math:`D = c_\mathrm{skip} x + c_\mathrm{out} F`).

    *Inside a stage* every channel is processed with shared weights (channel independence): the stage is
    cut into patches of ``patch_size`` steps, embedded linearly, given sinusoidal positional features, a
    channel embedding and the noise-level embedding, and passed through a Transformer encoder over time
    (per channel), each layer followed by attention across the channels at the same patch position
    (``channel_attention``; the only in-stage coupling of channels).
    Then ``S = len(kernel_sizes)`` Transformer decoder layers follow, layer ``s`` cross-attending to the
    history of scale ``s``. After each decoder layer a moving average over the patch tokens (window
    ``kernel_sizes[s]``) extracts a trend, and only the residual is handed to the next layer
    (progressive decomposition). Each trend is projected back to patches; the output is the mean over
    the ``S`` scales.

    *Between stages* the previous stage (clean in training, generated in sampling) is decomposed
    progressively by moving averages over time (windows ``history_kernel_sizes``) into ``S`` trends that
    sum to it exactly; :class:`~pyroseq.nn.stage_fusion.StageFusion` convolves all channels' trends at each
    scale with a ``C x L_conv`` kernel and splits the result back per channel; patched and embedded, these
    become the history tokens (:meth:`encode_history`). The first stage of a series has no predecessor
    and uses learned "no history" tokens instead (:meth:`null_history`).

    *Conditioning planes* (``cond_dim = K > 0``, e.g. observed values and their mask for CSDI-style
    imputation or forecasting): ``K`` planes of shape ``(stage_length, C)`` in the layout of
    :class:`~pyroseq.nn.CSDIDenoiserNet`, a tensor ``cond`` of shape ``(N, stage_length, K * C)`` whose plane
    ``k`` is ``cond[..., k * C:(k + 1) * C]``. They enter the patch embedding: the token of channel ``c`` and
    patch ``j`` embeds the ``P = patch_size`` values of ``x_in`` followed by the ``P`` values of each plane
    for that channel and patch (``P * (1 + K)`` values, in plane order). With ``K = 0`` the parameters are
    those of the unconditional network.

    **Context** of :meth:`forward` (build it with :meth:`pack_context`):

    - ``K = 0``: the history tokens, shape ``(N,) + history_shape``, or None ("no history"); a dict
      ``{"history": tokens}`` is accepted too.
    - ``K > 0``: a dict ``{"cond": cond, "history": tokens}``: ``cond`` of shape ``(N,) + cond_shape =
      (N, stage_length, K * C)`` is required, ``"history"`` (shape ``(N,) + history_shape``) may be missing
      or None. :meth:`pack_context` puts ``"cond"`` first: :class:`~pyroseq.distributions.DiffusionLikelihood`
      infers its batch shape from the first context leaf (with two event dims by default), which is then
      right; a dict with ``"history"`` first needs ``batch_shape`` given explicitly.

    :param int channels: number of channels ``C``.
    :param int stage_length: stage length ``L_sta`` (a multiple of ``patch_size``).
    :param int patch_size: steps per patch token.
    :param int d_model: token width.
    :param int num_heads: attention heads (must divide ``d_model``).
    :param int num_encoder_layers: Transformer encoder layers.
    :param tuple kernel_sizes: moving-average windows (in tokens) of the ``S`` decoder layers, coarse to
        fine; the default ends with 1 so the finest scale keeps the whole remaining residual.
    :param tuple history_kernel_sizes: moving-average windows (in steps) of the history decomposition;
        default ``k * patch_size + 1`` for each ``k > 1`` of ``kernel_sizes`` and 1 for ``k = 1``.
    :param int fusion_dim: features per channel and step produced by the fusion convolution.
    :param int fusion_kernel_size: temporal extent ``L_conv`` of the fusion convolution.
    :param int dim_feedforward: width of the Transformer feed-forward layers (default ``2 * d_model``).
    :param float dropout: dropout in the Transformer layers.
    :param bool decomposition: progressive decomposition on (default) or off (ablation: the decoder
        layers are stacked plainly, the output is read from the last one, and the history is the fused
        previous stage at a single scale).
    :param str fusion: ``"channels"`` (default, ``C x L_conv`` fusion), ``"independent"`` (``1 x L_conv``
        per channel, ablation) or ``"none"`` (no history is handed between stages, ablation).
    :param bool channel_attention: after every encoder layer, let the tokens at the same patch position
        attend across channels (one pre-norm attention block). Without it the channels of a stage are
        conditionally independent given the history, so the first stage of a series (which has none)
        could not be cross-correlated; set False for strict channel independence.
    :param int cond_dim: conditioning planes per entry ``K`` (0: none).
    :param str carry: what a decoder layer hands on after its trend is taken out: ``"residual_and_mean"``
        (default, ``h - (trend - mean_t trend)``: the moving average also removes the part common to all
        tokens of the stage, the level and the conditioning information, which this keeps in the carried
        state; the heads still read the whole trend) or ``"residual"`` (``h - trend``, the plain progressive
        decomposition). On ETTh at length 256 (``benchmarks/long_generation.py``, 60 CPU minutes of
        training each) ``"residual_and_mean"`` scored context-FID 0.474 and discriminative 0.065 against
        0.612 and 0.101 for ``"residual"``.
    :param str history_attention: ``"scale"`` (default: decoder layer ``s`` cross-attends to the history of
        scale ``s``) or ``"all"`` (every decoder layer cross-attends to the history tokens of all scales).
    """

    def __init__(self, channels, stage_length, patch_size=4, d_model=64, num_heads=4, num_encoder_layers=2,
                 kernel_sizes=(5, 3, 1), history_kernel_sizes=None, fusion_dim=16, fusion_kernel_size=5,
                 dim_feedforward=None, dropout=0.0, decomposition=True, fusion="channels", channel_attention=True,
                 cond_dim=0, carry="residual_and_mean", history_attention="scale"):
        super().__init__()
        self.channels = _positive_int("channels", channels)
        self.stage_length = _positive_int("stage_length", stage_length)
        self.patch_size = _positive_int("patch_size", patch_size)
        self.cond_dim = _nonnegative_int("cond_dim", cond_dim)
        if self.stage_length % self.patch_size:
            raise ValueError(
                f"stage_length ({stage_length}) must be a multiple of patch_size ({patch_size})"
            )
        self.d_model = _positive_int("d_model", d_model)
        if self.d_model % 2:
            raise ValueError(f"d_model must be even, got {d_model}")
        num_heads = _positive_int("num_heads", num_heads)
        if self.d_model % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide d_model ({d_model})")
        if fusion not in _FUSIONS:
            raise ValueError(f"fusion must be one of {_FUSIONS}, got {fusion!r}")
        if carry not in _CARRIES:
            raise ValueError(f"carry must be one of {_CARRIES}, got {carry!r}")
        if history_attention not in _HISTORY_ATTENTIONS:
            raise ValueError(f"history_attention must be one of {_HISTORY_ATTENTIONS}, got {history_attention!r}")
        self.carry = carry
        self.history_attention = history_attention
        kernel_sizes = tuple(_positive_int("kernel_sizes", k) for k in kernel_sizes)
        if not kernel_sizes:
            raise ValueError("kernel_sizes must contain at least one window length")
        self.num_tokens = self.stage_length // self.patch_size
        self.kernel_sizes = kernel_sizes
        self.decomposition = bool(decomposition)
        self.fusion = fusion
        if history_kernel_sizes is None:
            history_kernel_sizes = tuple(k * self.patch_size + 1 if k > 1 else 1 for k in kernel_sizes)
        if not self.decomposition:
            history_kernel_sizes = (1,)
        self.history_kernel_sizes = tuple(_positive_int("history_kernel_sizes", k) for k in history_kernel_sizes)
        num_layers = len(kernel_sizes)
        if self.decomposition and len(self.history_kernel_sizes) != num_layers:
            raise ValueError(
                f"history_kernel_sizes must have one window per decoder layer ({num_layers}), "
                f"got {history_kernel_sizes}"
            )
        self.num_history_scales = len(self.history_kernel_sizes)
        d = self.d_model
        ff = d * 2 if dim_feedforward is None else _positive_int("dim_feedforward", dim_feedforward)

        # Stage embedding (shared by all channels).
        # Per channel and patch: the P values of x_in, then the P values of each conditioning plane.
        self.patch_embed = nn.Linear(self.patch_size * (1 + self.cond_dim), d)
        self.channel_embed = nn.Embedding(self.channels, d)
        self.register_buffer("positions", sinusoidal_embedding(torch.arange(self.num_tokens).float(), d),
                             persistent=False)
        # History tokens sit just before the stage (positions -T..-1), so "the adjacent patch" is one
        # fixed relative offset for the attention.
        self.register_buffer("history_positions",
                             sinusoidal_embedding(torch.arange(-self.num_tokens, 0).float(), d), persistent=False)
        self.noise_embed = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(d, num_heads, ff, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(num_encoder_layers)
        )
        self.channel_attention = nn.ModuleList(
            _ChannelAttention(d, num_heads, dropout) for _ in range(num_encoder_layers)
        ) if channel_attention else None
        self.decoder = nn.ModuleList(
            nn.TransformerDecoderLayer(d, num_heads, ff, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(num_layers)
        )
        self.decoder_noise = nn.ModuleList(nn.Linear(d, d) for _ in range(num_layers))
        self.trend_layers = nn.ModuleList(MovingAverage(k) for k in kernel_sizes)
        num_heads_out = num_layers if self.decomposition else 1
        self.heads = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, self.patch_size))
                                   for _ in range(num_heads_out))

        # History: decomposition of the previous stage, fusion over channels, per-channel tokens.
        self.history_decomposition = ProgressiveDecomposition(self.history_kernel_sizes)
        self.stage_fusion = StageFusion(self.channels, self.num_history_scales, fusion_dim, fusion_kernel_size,
                                        mix_channels=(fusion == "channels"))
        self.history_embed = nn.Linear(self.patch_size * fusion_dim, d)
        self.history_scale_embed = nn.Parameter(torch.randn(self.num_history_scales, d) * 0.02)
        self.null_history_tokens = nn.Parameter(torch.randn(self.num_history_scales, self.num_tokens, d) * 0.02)

    @property
    def history_shape(self):
        """Event shape ``(C, S_h, L_sta / patch_size, d_model)`` of the history tokens of one example."""
        return (self.channels, self.num_history_scales, self.num_tokens, self.d_model)

    @property
    def cond_shape(self):
        """Shape ``(stage_length, K * C)`` of the conditioning planes of one example, or None if
        ``cond_dim = 0``."""
        return (self.stage_length, self.cond_dim * self.channels) if self.cond_dim else None

    def pack_context(self, history=None, cond=None):
        """Build the ``context`` of :meth:`forward` from its parts (see the class docstring).

        :param torch.Tensor history: history tokens of shape ``(N,) + history_shape`` (from
            :meth:`encode_history` or :meth:`null_history`), or None ("no history").
        :param torch.Tensor cond: conditioning planes of shape ``(N, stage_length, C, K)`` (``cond[..., k]`` is
            plane ``k``); required iff ``cond_dim > 0``.
        :returns: ``history`` if ``cond_dim = 0``, else the dict ``{"cond": (N, stage_length, K * C),
            "history": history}`` (without ``"history"`` if it is None).
        """
        L, C, K = self.stage_length, self.channels, self.cond_dim
        if history is not None and (not torch.is_tensor(history) or history.dim() != 1 + len(self.history_shape)
                                    or history.shape[1:] != self.history_shape):
            raise ValueError(f"history must have shape (N,) + {self.history_shape}, got {_shape(history)}")
        packed = pack_cond_planes(cond, K, L, C, length_name="stage_length")
        if packed is None:
            return history
        N = cond.shape[0]
        context = {"cond": packed}
        if history is not None:
            if history.shape[0] != N:
                raise ValueError(f"history and cond must have the same N, got {history.shape[0]} and {N}")
            context["history"] = history
        return context

    def _split_context(self, context, N):
        # Returns (history tokens or None, cond (N, L, K * C) or None), validated.
        K = self.cond_dim
        if isinstance(context, dict):
            unknown = sorted(set(context) - {"history", "cond"})
            if unknown:
                raise ValueError(f"context dict may only have the keys 'history' and 'cond', got {unknown}")
            history, cond = context.get("history"), context.get("cond")
            history_name, cond_name = "context['history']", "context['cond']"
        elif K:
            raise ValueError(
                f"context must be a dict with key 'cond' of shape (N,) + {self.cond_shape} for a network built "
                f"with cond_dim={K} (see pack_context), got {_shape(context)}"
            )
        else:
            history, cond, history_name, cond_name = context, None, "context", "context['cond']"
        if not K and cond is not None:
            raise ValueError(f"{cond_name} must be None for a network built with cond_dim=0, got {_shape(cond)}")
        if K and cond is None:
            raise ValueError(f"{cond_name} is required for a network built with cond_dim={K}")
        if cond is not None and (not torch.is_tensor(cond) or cond.shape != (N,) + self.cond_shape):
            raise ValueError(
                f"{cond_name} must have shape (N, stage_length, K * C) = {(N,) + self.cond_shape}, got {_shape(cond)}"
            )
        if history is not None and (not torch.is_tensor(history) or history.shape != (N,) + self.history_shape):
            raise ValueError(
                f"{history_name} must have shape (N,) + {self.history_shape} = {(N,) + self.history_shape}, "
                f"got {_shape(history)}"
            )
        return history, cond

    def _check_stage(self, name, x):
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[1:] != (self.stage_length, self.channels):
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(
                f"{name} must have shape (N, stage_length={self.stage_length}, channels={self.channels}), "
                f"got {shape}"
            )

    def null_history(self, num, dtype=None, device=None):
        """Learned "no history" tokens for ``num`` first stages.

        :returns: a tensor of shape ``(num,) + history_shape``.
        """
        tokens = self.null_history_tokens.unsqueeze(0) + self.channel_embed.weight[:, None, None, :]
        tokens = tokens.to(dtype=dtype or tokens.dtype, device=device or tokens.device)
        return tokens.expand((num,) + tokens.shape)

    def encode_history(self, previous):
        """History tokens handed to a stage by its predecessor.

        :param torch.Tensor previous: the previous stage, shape ``(N, stage_length, C)`` (clean in
            training, generated in sampling; same scale as the data).
        :returns: a tensor of shape ``(N,) + history_shape``.
        """
        self._check_stage("previous", previous)
        N = previous.shape[0]
        if self.fusion == "none":
            return self.null_history(N, previous.dtype, previous.device)
        trends, _ = self.history_decomposition(previous)  # S_h x (N, L, C); they sum to previous
        fused = self.stage_fusion(torch.stack(trends, dim=1))  # (N, C, S_h, L, f)
        fused = fused.reshape(N, self.channels, self.num_history_scales, self.num_tokens, -1)
        tokens = self.history_embed(fused)  # (N, C, S_h, n_tok, d)
        tokens = tokens + self.history_positions + self.history_scale_embed[:, None, :]
        return tokens + self.channel_embed.weight[:, None, None, :]

    def forward(self, x_in, c_noise, context=None):
        """
        :param torch.Tensor x_in: preconditioned noisy stage of shape ``(N, stage_length, C)``.
        :param torch.Tensor c_noise: noise conditioning of shape ``(N,)``.
        :param context: with ``cond_dim = 0`` the history tokens of shape ``(N,) + history_shape`` from
            :meth:`encode_history` or :meth:`null_history`, None meaning "no history"; with ``cond_dim > 0`` the
            dict ``{"cond": (N, stage_length, K * C), "history": (N,) + history_shape or None}`` (see the class
            docstring and :meth:`pack_context`).
        :returns: the network output ``F`` of shape ``(N, stage_length, C)``.
        """
        self._check_stage("x_in", x_in)
        N, L, C = x_in.shape
        if not torch.is_tensor(c_noise) or c_noise.shape != (N,):
            raise ValueError(f"c_noise must have shape (N,) = ({N},), got {_shape(c_noise)}")
        history, cond = self._split_context(context, N)
        if history is None:
            history = self.null_history(N, x_in.dtype, x_in.device)
        P, T, d, K = self.patch_size, self.num_tokens, self.d_model, self.cond_dim
        # Channel independence: every (example, channel) pair is one sequence of T patch tokens.
        patches = x_in.transpose(1, 2).reshape(N, C, T, P)
        if K:
            # (N, L, K * C) -> (N, C, T, K * P): per channel and patch, plane 0's P values, plane 1's, ...
            planes = cond.to(x_in.dtype).reshape(N, T, P, K, C).permute(0, 4, 1, 3, 2).reshape(N, C, T, K * P)
            patches = torch.cat([patches, planes], dim=-1)
        h = self.patch_embed(patches) + self.positions + self.channel_embed.weight[:, None, :]
        temb = self.noise_embed(sinusoidal_embedding(c_noise, d))  # (N, d)
        h = (h + temb[:, None, None, :]).reshape(N * C, T, d)
        temb = temb.repeat_interleave(C, dim=0)[:, None, :]  # (N * C, 1, d)
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if self.channel_attention is not None:
                h = self.channel_attention[i](h, N, C)
        memory = history.reshape(N * C, self.num_history_scales, T, d)
        if self.history_attention == "all":
            memories = [memory.reshape(N * C, self.num_history_scales * T, d)] * len(self.decoder)
        else:
            memories = [memory[:, min(s, self.num_history_scales - 1)] for s in range(len(self.decoder))]
        out = 0.0
        for s, layer in enumerate(self.decoder):
            h = layer(h + self.decoder_noise[s](temb), memories[s])
            if self.decomposition:
                trend = self.trend_layers[s](h)
                out = out + self.heads[s](trend)
                if self.carry == "residual_and_mean":
                    # The trend also holds the tokens' common part (what the whole stage is about: its level,
                    # channel, history); keep that in the carried state and take out only the local trend.
                    trend = trend - trend.mean(dim=1, keepdim=True)
                h = h - trend  # progressive decomposition: only the residual goes on
        out = out / len(self.decoder) if self.decomposition else self.heads[0](h)
        return out.reshape(N, C, T * P).transpose(1, 2)
