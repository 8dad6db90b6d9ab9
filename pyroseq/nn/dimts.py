r"""The DiM-TS denoiser network (Mamba-based, two branches), an :math:`x_0`-predicting network ``F`` for
:class:`~pyroseq.diffusion.EDMPrecond`.

Both branches read the noisy window ``x_in`` of shape ``(N, L, C)`` and their outputs are summed:

- **temporal branch** (tokens = the ``L`` time steps, each the ``C``-vector of values): linear embedding
  plus learned positions, a bidirectional Mamba encoder, decoder blocks with DiT-style adaLN-Zero
  modulation from the noise-level embedding whose mixer is a bidirectional
  :class:`~pyroseq.nn.lag_fusion.LagFusionMamba`, and an adaLN-modulated linear read-out to ``C``;
- **channel branch** (tokens = the ``C`` channels, each the ``L``-vector of its values): linear embedding
  plus learned channel embeddings, then the same encoder/decoder stack over channels, scanned in the
  data-derived order of :class:`~pyroseq.nn.permutation_scan.ChannelPermutation` (Permutation Scanning
  Mamba), with a read-out to ``L``.

With ``cond_dim = K > 0`` the network also reads ``K`` conditioning planes of shape ``(L, C)`` (e.g. the
observed values and their mask for imputation, CSDI-style): every temporal token carries the ``C`` values
of ``x_in`` followed by the ``K * C`` plane values at its time step, every channel token the ``L`` values of
``x_in`` followed by the ``K * L`` plane values of its channel.

The tokens of the channel branch are put into scan order once after the embedding and back once after
the read-out; everything in between is per token except the scans, so this equals permuting around
every Mamba layer. The read-outs and all adaLN modulations are zero-initialised, so an untrained
network returns exactly 0 (the preconditioned denoiser then returns ``c_skip x``).
"""

import torch
from torch import nn

from .embeddings import LearnedPositionalEmbedding, NoiseLevelEmbedding, _nonnegative_int, _positive_int
from .mamba_mixer import BidirectionalMamba, MambaTimeMixer
from .permutation_scan import ChannelPermutation
from .planes import describe_shape, pack_cond_planes

__all__ = ["AdaLNBlock", "DiMTSNet"]


_shape = describe_shape


def _modulate(h, shift, scale):
    return h * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    r"""Transformer-style block with DiT's adaLN-Zero conditioning (Peebles & Xie 2023):

    .. math::
        h &\leftarrow h + g_1 \odot \mathrm{mixer}(\mathrm{LN}(h)(1 + a_1) + b_1),\\
        h &\leftarrow h + g_2 \odot \mathrm{MLP}(\mathrm{LN}(h)(1 + a_2) + b_2),

    with :math:`(b_1, a_1, g_1, b_2, a_2, g_2)` a zero-initialised linear map of the conditioning
    embedding (so the block starts as the identity).

    :param int hidden_dim: token width ``H``.
    :param int embedding_dim: width ``E`` of the conditioning embedding.
    :param torch.nn.Module mixer: token mixer ``(B, T, H) -> (B, T, H)`` (no residual inside).
    :param int mlp_ratio: hidden width of the MLP is ``mlp_ratio * H``.
    """

    def __init__(self, hidden_dim, embedding_dim, mixer, mlp_ratio=2):
        super().__init__()
        H = _positive_int("hidden_dim", hidden_dim)
        self.norm1 = nn.LayerNorm(H, elementwise_affine=False, eps=1e-6)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(H, elementwise_affine=False, eps=1e-6)
        width = _positive_int("mlp_ratio", mlp_ratio) * H
        self.mlp = nn.Sequential(nn.Linear(H, width), nn.GELU(approximate="tanh"), nn.Linear(width, H))
        self.modulation = nn.Linear(_positive_int("embedding_dim", embedding_dim), 6 * H)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h, emb):
        """
        :param torch.Tensor h: tokens ``(B, T, H)``.
        :param torch.Tensor emb: conditioning ``(B, E)``.
        :returns: tokens ``(B, T, H)``.
        """
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(emb).unsqueeze(1).chunk(6, dim=-1)
        h = h + gate1 * self.mixer(_modulate(self.norm1(h), shift1, scale1))
        return h + gate2 * self.mlp(_modulate(self.norm2(h), shift2, scale2))


class _Branch(nn.Module):
    """Embedding, bidirectional Mamba encoder, adaLN decoder blocks and a zero-initialised read-out over
    ``num_tokens`` tokens of ``in_dim`` values each."""

    def __init__(self, num_tokens, in_dim, out_dim, hidden_dim, embedding_dim, num_encoder_layers,
                 num_decoder_layers, num_lags, mlp_ratio, mamba_kwargs):
        super().__init__()
        H = hidden_dim
        self.num_tokens = num_tokens
        self.embed = nn.Linear(in_dim, H)
        self.positions = LearnedPositionalEmbedding(num_tokens, H)
        self.encoder = nn.ModuleList(
            [MambaTimeMixer(H, bidirectional=True, **mamba_kwargs) for _ in range(num_encoder_layers)])
        self.decoder = nn.ModuleList([
            AdaLNBlock(H, embedding_dim, BidirectionalMamba(H, num_lags=num_lags, **mamba_kwargs), mlp_ratio)
            for _ in range(num_decoder_layers)])
        self.final_norm = nn.LayerNorm(H, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(embedding_dim, 2 * H)
        self.readout = nn.Linear(H, out_dim)
        for layer in (self.final_modulation, self.readout):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, tokens, emb, permutation=None):
        h = self.embed(tokens) + self.positions(self.num_tokens)
        if permutation is not None:
            h = permutation.permute(h, dim=1)
        for layer in self.encoder:
            h = layer(h)
        for block in self.decoder:
            h = block(h, emb)
        shift, scale = self.final_modulation(emb).unsqueeze(1).chunk(2, dim=-1)
        out = self.readout(_modulate(self.final_norm(h), shift, scale))
        if permutation is not None:
            out = permutation.unpermute(out, dim=1)
        return out


class DiMTSNet(nn.Module):
    r"""DiM-TS network :math:`F(x_\mathrm{in}, c_\mathrm{noise}, \mathrm{context})` for windows of shape
    ``(L, C)`` (see the module docstring): temporal branch with Lag Fusion Mamba decoders plus channel branch
    with Permutation Scanning Mamba, summed. Wrap it in :class:`~pyroseq.diffusion.EDMPrecond` to get a
    denoiser.

    **Context.** With ``K = cond_dim``:

    - ``K = 0`` (default, unconditional): ``context`` must be None.
    - ``K > 0``: per-entry conditioning of shape ``(N, L, K * C)``, the layout of
      :class:`~pyroseq.nn.CSDIDenoiserNet`: ``K`` planes of shape ``(L, C)`` concatenated along the last axis,
      plane ``k`` being ``context[..., k * C:(k + 1) * C]``; e.g. ``torch.cat([observed * mask, mask], -1)``
      with ``K = 2`` for imputation. :meth:`context_shape` gives the expected shape and :meth:`pack_context`
      builds the tensor from a ``(N, L, C, K)`` stack of planes.

    The temporal branch embeds tokens of ``C * (1 + K)`` values (time step ``t``: ``x_in[t]`` followed by
    ``context[t]``), the channel branch tokens of ``L * (1 + K)`` values (channel ``c``: ``x_in[:, c]``
    followed by plane ``k``'s values ``[:, c]`` for ``k = 0..K-1``). With ``K = 0`` the parameters are those of
    the unconditional network.

    :param int obs_dim: number of channels ``C``.
    :param int length: window length ``L`` (the learned positions and the channel branch's embedding
        are tied to it).
    :param int hidden_dim: token width ``H`` of both branches.
    :param int embedding_dim: width of the noise-level embedding (default ``hidden_dim``).
    :param int d_state: Mamba state size per channel.
    :param int d_conv: Mamba convolution width.
    :param int expand: Mamba inner width factor.
    :param int num_encoder_layers: bidirectional Mamba encoder layers per branch.
    :param int num_decoder_layers: adaLN decoder blocks per branch.
    :param int num_lags: Lag Fusion dilations ``1..num_lags`` of the temporal decoder (0: plain Mamba).
    :param bool channel_branch: include the channel branch (False: temporal branch only).
    :param int mlp_ratio: MLP width factor of the decoder blocks.
    :param channel_order: initial scan order of the channels (default identity; usually set from data
        with :meth:`fit_channel_order`).
    :param dict noise_embedding_kwargs: passed to :class:`~pyroseq.nn.NoiseLevelEmbedding`.
    :param int cond_dim: conditioning planes per entry ``K`` (0: unconditional).
    """

    def __init__(self, obs_dim, length, hidden_dim=64, embedding_dim=None, d_state=16, d_conv=4, expand=2,
                 num_encoder_layers=1, num_decoder_layers=2, num_lags=2, channel_branch=True, mlp_ratio=2,
                 channel_order=None, noise_embedding_kwargs=None, cond_dim=0):
        super().__init__()
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        self.length = _positive_int("length", length)
        self.cond_dim = K = _nonnegative_int("cond_dim", cond_dim)
        H = _positive_int("hidden_dim", hidden_dim)
        E = H if embedding_dim is None else _positive_int("embedding_dim", embedding_dim)
        num_encoder_layers = _nonnegative_int("num_encoder_layers", num_encoder_layers)
        num_decoder_layers = _nonnegative_int("num_decoder_layers", num_decoder_layers)
        num_lags = _nonnegative_int("num_lags", num_lags)
        mamba_kwargs = dict(d_state=_positive_int("d_state", d_state), d_conv=_positive_int("d_conv", d_conv),
                            expand=_positive_int("expand", expand))
        self.noise_embedding = NoiseLevelEmbedding(E, **(noise_embedding_kwargs or {}))
        self.temporal = _Branch(self.length, self.obs_dim * (1 + K), self.obs_dim, H, E, num_encoder_layers,
                                num_decoder_layers, num_lags, mlp_ratio, mamba_kwargs)
        self.channel_branch = bool(channel_branch)
        self.channel_permutation = ChannelPermutation(self.obs_dim)
        if channel_order is not None:
            self.channel_permutation.set_order(channel_order)
        self.channel = _Branch(self.obs_dim, self.length * (1 + K), self.length, H, E, num_encoder_layers,
                               num_decoder_layers, 0, mlp_ratio, mamba_kwargs) if self.channel_branch else None

    @property
    def channel_order(self):
        """The scan order of the channel branch, a long tensor of shape ``(C,)``."""
        return self.channel_permutation.order

    def set_channel_order(self, order):
        """Set the scan order of the channel branch (a permutation of ``range(C)``)."""
        self.channel_permutation.set_order(order)
        return self

    def fit_channel_order(self, series, train_fraction=0.7):
        """Derive the channel scan order from data (:func:`~pyroseq.nn.permutation_scan.spectral_channel_order`).

        :param torch.Tensor series: ``(T, C)`` series or ``(N, L, C)`` windows.
        :param float train_fraction: leading fraction used for the correlations.
        """
        self.channel_permutation.fit(series, train_fraction)
        return self

    def context_shape(self):
        """Expected shape of ``context`` without the leading ``N``.

        :returns: ``(L, K * C)``, or None if ``cond_dim = 0`` (the network takes no context).
        """
        return (self.length, self.cond_dim * self.obs_dim) if self.cond_dim else None

    def pack_context(self, cond=None):
        """Build the ``context`` tensor from a stack of conditioning planes (see the class docstring).

        :param torch.Tensor cond: conditioning of the window entries, shape ``(N, L, C, K)`` (``cond[..., k]``
            is plane ``k``); required iff ``cond_dim > 0``.
        :returns: a tensor of shape ``(N, L, K * C)``, or None if ``cond_dim = 0``.
        """
        return pack_cond_planes(cond, self.cond_dim, self.length, self.obs_dim)

    def forward(self, x_in, c_noise, context=None):
        """
        :param torch.Tensor x_in: scaled noisy windows ``(N, L, C)``.
        :param torch.Tensor c_noise: noise conditioning ``(N,)``.
        :param torch.Tensor context: None if ``cond_dim = 0``, else the conditioning planes of shape
            ``(N, L, K * C)`` (:meth:`pack_context`).
        :returns: ``F`` of shape ``(N, L, C)``.
        """
        if not torch.is_tensor(x_in) or x_in.dim() != 3 or tuple(x_in.shape[1:]) != (self.length, self.obs_dim):
            shape = tuple(x_in.shape) if torch.is_tensor(x_in) else type(x_in).__name__
            raise ValueError(f"x_in must have shape (N, {self.length}, {self.obs_dim}), got {shape}")
        if not torch.is_tensor(c_noise) or c_noise.shape != x_in.shape[:1]:
            shape = tuple(c_noise.shape) if torch.is_tensor(c_noise) else type(c_noise).__name__
            raise ValueError(f"c_noise must have shape ({x_in.shape[0]},), got {shape}")
        N, L, C = x_in.shape
        K = self.cond_dim
        expected = self.context_shape()
        if expected is None:
            if context is not None:
                raise ValueError(f"context must be None for a network built with cond_dim=0, got {_shape(context)}")
        elif context is None:
            raise ValueError(f"context is required for a network built with cond_dim={K}: expected shape "
                             f"(N, L, K * C) = {(N,) + expected}")
        elif not torch.is_tensor(context) or tuple(context.shape) != (N,) + expected:
            raise ValueError(f"context must have shape (N, L, K * C) = {(N,) + expected} (cond_dim={K}), "
                             f"got {_shape(context)}")
        emb = self.noise_embedding(c_noise.to(x_in.dtype))
        temporal_tokens = x_in
        channel_tokens = x_in.transpose(1, 2)  # (N, C, L)
        if K:
            context = context.to(x_in.dtype)
            temporal_tokens = torch.cat([x_in, context], dim=-1)  # (N, L, (1 + K) C)
            # channel c: its L values of x_in, then plane 0's L values of channel c, plane 1's, ...
            planes = context.reshape(N, L, K, C).permute(0, 3, 2, 1).reshape(N, C, K * L)
            channel_tokens = torch.cat([channel_tokens, planes], dim=-1)  # (N, C, (1 + K) L)
        out = self.temporal(temporal_tokens, emb)
        if self.channel is not None:
            out = out + self.channel(channel_tokens, emb, self.channel_permutation).transpose(1, 2)
        return out
