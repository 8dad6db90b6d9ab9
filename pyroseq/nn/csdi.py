"""CSDI-style residual denoiser network for windows of multivariate time series (Tashiro et al. 2021)."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from .embeddings import (
    LearnedPositionalEmbedding,
    NoiseLevelEmbedding,
    _nonnegative_int,
    _positive_int,
    sinusoidal_features,
)
from .mixers import make_feature_mixer, make_time_mixer

__all__ = ["CSDIDenoiserNet"]

_TIME_EMBEDDINGS = ("sinusoidal", "learned")


def _shape(value):
    return tuple(value.shape) if torch.is_tensor(value) else type(value).__name__


class _CSDIResidualLayer(nn.Module):
    """One residual layer: noise embedding, time mixer, feature mixer, side information, gated activation,
    residual and skip outputs."""

    def __init__(self, channels, embedding_dim, position_dim, channel_embedding_dim, cond_dim, time_mixer,
                 feature_mixer):
        super().__init__()
        D = channels
        self.noise_proj = nn.Linear(embedding_dim, D)
        self.time_mixer = time_mixer
        self.feature_mixer = feature_mixer
        self.mid_proj = nn.Linear(D, 2 * D)
        # Side information enters as separate bias-free projections of its broadcastable parts, so the full
        # (N, L, C, side_dim) tensor is never built.
        self.position_proj = nn.Linear(position_dim, 2 * D, bias=False) if position_dim else None
        self.channel_proj = nn.Linear(channel_embedding_dim, 2 * D, bias=False) if channel_embedding_dim else None
        self.cond_proj = nn.Linear(cond_dim, 2 * D, bias=False) if cond_dim else None
        self.out_proj = nn.Linear(D, 2 * D)

    def forward(self, h, emb, positions, channel_emb, cond):
        # h: (N, L, C, D); emb: (N, E); positions: (L, P) or None; channel_emb: (C, Dc) or None;
        # cond: (N, L, C, K) or None.
        N, L, C, D = h.shape
        y = h + self.noise_proj(emb)[:, None, None, :]
        # Time mixing: one sequence of L tokens per (example, channel).
        y = y.transpose(1, 2).reshape(N * C, L, D)
        y = self.time_mixer(y).reshape(N, C, L, D).transpose(1, 2)
        # Feature mixing: one set of C tokens per (example, time step).
        y = self.feature_mixer(y.reshape(N * L, C, D)).reshape(N, L, C, D)
        y = self.mid_proj(y)
        if self.position_proj is not None:
            y = y + self.position_proj(positions)[:, None, :]
        if self.channel_proj is not None:
            y = y + self.channel_proj(channel_emb)
        if self.cond_proj is not None:
            y = y + self.cond_proj(cond)
        gate, filt = y.chunk(2, dim=-1)
        y = self.out_proj(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = y.chunk(2, dim=-1)
        return (h + residual) * (0.5 ** 0.5), skip


class CSDIDenoiserNet(nn.Module):
    r"""CSDI-style network :math:`F(x_\mathrm{in}, c_\mathrm{noise}, \mathrm{context})` for windows of shape
    ``(T, C)``, meant to be wrapped by :class:`~pyroseq.diffusion.EDMPrecond`.

    Every entry ``(t, c)`` of the window is a token: its scalar value is projected to ``channels`` features,
    giving a ``(N, T, C, channels)`` tensor. Each of ``num_layers`` residual layers adds a projection of the
    noise-level embedding (:class:`~pyroseq.nn.embeddings.NoiseLevelEmbedding` of ``c_noise``), mixes over
    time (one sequence per channel, shared weights), mixes over channels (one set per time step), adds the
    projected side information, applies the gated activation :math:`\tanh(a)\,\sigma(b)` and a 1x1 map to a
    residual (added to the layer input, scaled by :math:`1/\sqrt2`) and a skip output. The skip outputs are
    summed, scaled by :math:`1/\sqrt{\mathrm{num\_layers}}` and read out by 1x1 -> ReLU -> 1x1; the last
    projection is zero-initialised, so :math:`F = 0` (the denoiser returns :math:`c_\mathrm{skip} x`) at init.

    Side information of entry ``(t, c)``: sinusoidal (or learned) features of the position ``t``, a learned
    embedding of the channel ``c`` (unless ``channel_embedding_dim=0``), the ``cond_dim`` conditioning values
    of the entry, and, with a history, an indicator of history vs window rows. Unlike CSDI, positions and
    channel embeddings are also added to the input tokens, so the first layer's mixers can tell tokens apart
    (in a 150-step check on sine windows with 2 layers and attention over time, the EDM loss fell to 20
    instead of 41). Without channel embeddings
    and with ``feature_mixer="attention"`` (or ``"identity"``) the network is equivariant to permutations of
    the channels.

    **Context.** With ``T_h = context_length`` and ``K = cond_dim``, ``context`` must be:

    - ``T_h = 0, K = 0``: None.
    - ``T_h > 0, K = 0``: the history window preceding ``x``, shape ``(N, T_h, C)`` (forecasting).
    - ``T_h = 0, K > 0``: per-entry conditioning, shape ``(N, T, K * C)``: ``K`` planes of shape ``(T, C)``
      concatenated along the last axis, plane ``k`` being ``context[..., k * C:(k + 1) * C]``; e.g.
      ``torch.cat([observed * mask, mask], -1)`` with ``K = 2`` for imputation. Per-time-step covariates can
      be given as planes repeated over the channels.
    - ``T_h > 0, K > 0``: shape ``(N, T_h + T, (1 + K) * C)``: columns ``[:C]`` hold the history in rows
      ``[:T_h]`` (rows ``[T_h:]`` of those columns are ignored), columns ``[C:]`` the ``K`` conditioning planes
      over all ``T_h + T`` rows (so e.g. missing history values can be masked).

    :meth:`context_shape` gives the expected shape and :meth:`pack_context` builds the tensor. The history is
    encoded like the window (its own input projection) and concatenated before it along time, so the time
    mixers see ``T_h + T`` tokens; only the last ``T`` rows are read out.

    :param int obs_dim: number of channels ``C``.
    :param int channels: token width ``D``.
    :param int num_layers: number of residual layers.
    :param time_mixer: a name registered with :func:`~pyroseq.nn.mixers.register_time_mixer` (built in:
        ``"attention"``, ``"conv"``, ``"gru"``, ``"identity"``) or a factory callable.
    :param feature_mixer: a name registered with :func:`~pyroseq.nn.mixers.register_feature_mixer` (built in:
        ``"attention"``, ``"conv"``, ``"identity"``) or a factory callable.
    :param int context_length: history length ``T_h`` (0: no history).
    :param int cond_dim: conditioning values per entry ``K`` (0: none).
    :param int embedding_dim: width of the noise-level embedding.
    :param int time_embedding_dim: width of the positional features (even for sinusoidal; 0 disables them,
        making attention over time permutation equivariant).
    :param int channel_embedding_dim: width of the learned channel embedding (0 disables it).
    :param str time_embedding: ``"sinusoidal"`` (any length) or ``"learned"`` (needs ``max_length``).
    :param int max_length: largest ``T_h + T`` for the learned positional embedding.
    :param dict time_mixer_kwargs: extra keyword arguments of the time-mixer factory (e.g. ``num_heads``,
        ``dim_feedforward``, ``causal``; ``kernel_size``, ``padding`` for ``"conv"``).
    :param dict feature_mixer_kwargs: extra keyword arguments of the feature-mixer factory.
    :param dict noise_embedding_kwargs: extra keyword arguments of
        :class:`~pyroseq.nn.embeddings.NoiseLevelEmbedding` (``kind``, ``scale``, ...).
    """

    def __init__(self, obs_dim, channels=64, num_layers=4, time_mixer="attention", feature_mixer="attention",
                 context_length=0, cond_dim=0, embedding_dim=128, time_embedding_dim=32, channel_embedding_dim=16,
                 time_embedding="sinusoidal", max_length=None, time_mixer_kwargs=None, feature_mixer_kwargs=None,
                 noise_embedding_kwargs=None):
        super().__init__()
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        self.channels = _positive_int("channels", channels)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.context_length = _nonnegative_int("context_length", context_length)
        self.cond_dim = _nonnegative_int("cond_dim", cond_dim)
        self.time_embedding_dim = _nonnegative_int("time_embedding_dim", time_embedding_dim)
        self.channel_embedding_dim = _nonnegative_int("channel_embedding_dim", channel_embedding_dim)
        if time_embedding not in _TIME_EMBEDDINGS:
            raise ValueError(f"time_embedding must be one of {_TIME_EMBEDDINGS}, got {time_embedding!r}")
        self.time_embedding = time_embedding
        if time_embedding == "sinusoidal" and self.time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be even for sinusoidal features, got {time_embedding_dim}")
        self.max_length = None
        if time_embedding == "learned" and self.time_embedding_dim:
            if max_length is None:
                raise ValueError("max_length is required when time_embedding='learned'")
            self.max_length = _positive_int("max_length", max_length)
            self.positional_embedding = LearnedPositionalEmbedding(self.max_length, self.time_embedding_dim)

        D, C, K = self.channels, self.obs_dim, self.cond_dim
        self.noise_embedding = NoiseLevelEmbedding(embedding_dim, **(noise_embedding_kwargs or {}))
        self.input_proj = nn.Linear(1 + K, D)
        self.history_proj = nn.Linear(1 + K, D) if self.context_length else None
        self.channel_embedding = nn.Embedding(C, self.channel_embedding_dim) if self.channel_embedding_dim else None
        position_dim = self.time_embedding_dim + (1 if self.context_length else 0)
        self.layers = nn.ModuleList(
            _CSDIResidualLayer(
                D, self.noise_embedding.embedding_dim, position_dim, self.channel_embedding_dim, K,
                make_time_mixer(time_mixer, D, layer_index=i, **(time_mixer_kwargs or {})),
                make_feature_mixer(feature_mixer, D, C, layer_index=i, **(feature_mixer_kwargs or {})),
            )
            for i in range(self.num_layers)
        )
        # Positions and channel identities also enter the input tokens, so that the first layer's mixers can tell
        # tokens apart (in CSDI they only arrive after the mixers, leaving the first time attention orderless).
        self.input_position_proj = nn.Linear(position_dim, D, bias=False) if position_dim else None
        self.input_channel_proj = nn.Linear(self.channel_embedding_dim, D, bias=False) \
            if self.channel_embedding_dim else None
        self.skip_proj = nn.Linear(D, D)
        self.output_proj = nn.Linear(D, 1)
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    # -- context -------------------------------------------------------------------------------------------

    def context_shape(self, length):
        """Expected shape of ``context`` (without the leading ``N``) for windows of ``length`` steps.

        :param int length: window length ``T``.
        :returns: a tuple, or None if the network takes no context.
        """
        length = _positive_int("length", length)
        Th, K, C = self.context_length, self.cond_dim, self.obs_dim
        if Th and K:
            return (Th + length, (1 + K) * C)
        if Th:
            return (Th, C)
        if K:
            return (length, K * C)
        return None

    def pack_context(self, history=None, cond=None, history_cond=None):
        """Build the ``context`` tensor from its parts (see the class docstring for the layout).

        :param torch.Tensor history: history window of shape ``(N, T_h, C)``; required iff ``context_length > 0``.
        :param torch.Tensor cond: conditioning of the window entries, shape ``(N, T, C, K)``; required iff
            ``cond_dim > 0``.
        :param torch.Tensor history_cond: conditioning of the history entries, shape ``(N, T_h, C, K)``
            (default zeros); only with both a history and conditioning.
        :returns: the context tensor, or None if the network takes no context.
        """
        Th, K, C = self.context_length, self.cond_dim, self.obs_dim
        if (history is None) != (Th == 0):
            raise ValueError(f"history is required iff context_length > 0 (context_length={Th})")
        if (cond is None) != (K == 0):
            raise ValueError(f"cond is required iff cond_dim > 0 (cond_dim={K})")
        if history_cond is not None and not (Th and K):
            raise ValueError("history_cond is only used when both context_length and cond_dim are positive")
        if history is not None and (not torch.is_tensor(history) or history.dim() != 3
                                    or history.shape[1:] != (Th, C)):
            raise ValueError(f"history must have shape (N, {Th}, {C}), got {_shape(history)}")
        if cond is not None and (not torch.is_tensor(cond) or cond.dim() != 4 or cond.shape[2:] != (C, K)):
            raise ValueError(f"cond must have shape (N, T, {C}, {K}), got {_shape(cond)}")
        if cond is None:
            return history
        N, T = cond.shape[:2]
        if history is None:
            return cond.permute(0, 1, 3, 2).reshape(N, T, K * C)
        if history.shape[0] != N:
            raise ValueError(f"history and cond must have the same N, got {history.shape[0]} and {N}")
        if history_cond is None:
            history_cond = cond.new_zeros(N, Th, C, K)
        elif not torch.is_tensor(history_cond) or history_cond.shape != (N, Th, C, K):
            raise ValueError(f"history_cond must have shape ({N}, {Th}, {C}, {K}), got {_shape(history_cond)}")
        values = torch.cat([history, history.new_zeros(N, T, C)], dim=1)
        planes = torch.cat([history_cond, cond], dim=1).permute(0, 1, 3, 2).reshape(N, Th + T, K * C)
        return torch.cat([values, planes], dim=-1)

    def _split_context(self, context, N, T, dtype):
        # Returns history (N, T_h, C) or None and cond (N, T_h + T, C, K) or None.
        expected = self.context_shape(T)
        if expected is None:
            if context is not None:
                raise ValueError(
                    "context must be None for a network built with context_length=0 and cond_dim=0, "
                    f"got {_shape(context)}"
                )
            return None, None
        if context is None:
            raise ValueError(f"context is required: expected shape (N,) + {expected} = {(N,) + expected}")
        if not torch.is_tensor(context) or context.shape != (N,) + expected:
            raise ValueError(
                f"context must have shape (N,) + {expected} = {(N,) + expected} (context_length="
                f"{self.context_length}, cond_dim={self.cond_dim}), got {_shape(context)}"
            )
        context = context.to(dtype)
        Th, K, C = self.context_length, self.cond_dim, self.obs_dim
        if not K:
            return context, None
        history = context[:, :Th, :C] if Th else None
        planes = context[..., C:] if Th else context
        cond = planes.reshape(N, Th + T, K, C).transpose(2, 3)
        return history, cond

    # -- forward -------------------------------------------------------------------------------------------

    def _positions(self, L, dtype, device):
        # (L, P) features of the positions in the extended timeline, or None.
        parts = []
        if self.time_embedding_dim:
            if self.time_embedding == "learned":
                parts.append(self.positional_embedding(L).to(dtype))
            else:
                parts.append(sinusoidal_features(torch.arange(L, dtype=dtype, device=device), self.time_embedding_dim))
        if self.context_length:
            parts.append((torch.arange(L, device=device) >= self.context_length).to(dtype).unsqueeze(-1))
        return torch.cat(parts, dim=-1) if parts else None

    def forward(self, x_in, c_noise, context=None):
        """
        :param torch.Tensor x_in: preconditioned noisy window of shape ``(N, T, C)``.
        :param torch.Tensor c_noise: noise conditioning of shape ``(N,)``.
        :param torch.Tensor context: see the class docstring (:meth:`context_shape`).
        :returns: the network output ``F`` of shape ``(N, T, C)``.
        """
        if torch.jit.is_tracing():
            # Found with JitTrace_ELBO: the traced forward runs, but TorchScript's backward of this network fails
            # ("tensor does not have a device"), so refuse at the first step instead of mid-way.
            raise NotImplementedError("CSDIDenoiserNet cannot be traced by torch.jit (e.g. JitTrace_ELBO): the "
                                      "TorchScript backward of this network fails; use Trace_ELBO, or the 'dimts' "
                                      "backbone, which traces")
        if not torch.is_tensor(x_in) or x_in.dim() != 3 or x_in.shape[-1] != self.obs_dim or x_in.shape[1] < 1:
            raise ValueError(f"x_in must have shape (N, T, obs_dim={self.obs_dim}) with T >= 1, got {_shape(x_in)}")
        N, T, C = x_in.shape
        if not torch.is_tensor(c_noise) or c_noise.shape != (N,):
            raise ValueError(f"c_noise must have shape (N,) = ({N},), got {_shape(c_noise)}")
        Th = self.context_length
        L = Th + T
        if self.max_length is not None and L > self.max_length:
            raise ValueError(
                f"x_in is too long: context_length + T = {Th} + {T} exceeds max_length ({self.max_length})"
            )
        history, cond = self._split_context(context, N, T, x_in.dtype)

        tokens = x_in.unsqueeze(-1)
        if cond is not None:
            tokens = torch.cat([tokens, cond[:, Th:]], dim=-1)
        h = F.relu(self.input_proj(tokens))  # (N, T, C, D)
        if Th:
            past = history.unsqueeze(-1)
            if cond is not None:
                past = torch.cat([past, cond[:, :Th]], dim=-1)
            h = torch.cat([F.relu(self.history_proj(past)), h], dim=1)  # (N, L, C, D)

        emb = self.noise_embedding(c_noise.to(x_in.dtype))
        positions = self._positions(L, x_in.dtype, x_in.device)
        channel_emb = self.channel_embedding.weight if self.channel_embedding is not None else None
        if positions is not None:
            h = h + self.input_position_proj(positions)[:, None, :]
        if channel_emb is not None:
            h = h + self.input_channel_proj(channel_emb)
        skip = 0.0
        for layer in self.layers:
            h, s = layer(h, emb, positions, channel_emb, cond)
            skip = skip + s[:, Th:]
        out = F.relu(self.skip_proj(skip * (1.0 / math.sqrt(self.num_layers))))
        return self.output_proj(out).squeeze(-1)
