"""A small residual MLP network for vector events, for small problems and tests."""

import math

import torch
from torch import nn

from .embeddings import NoiseLevelEmbedding, _nonnegative_int, _positive_int

__all__ = ["MLPDenoiserNet"]

_CONDITIONINGS = ("film", "concat")


def _shape(value):
    return tuple(value.shape) if torch.is_tensor(value) else type(value).__name__


class _MLPBlock(nn.Module):
    # h + W2 SiLU(W1 m(LN(h))), with m a FiLM modulation by the noise embedding or the identity.
    def __init__(self, hidden, embedding_dim, film):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=not film)
        self.film = nn.Linear(embedding_dim, 2 * hidden) if film else None
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h, emb):
        y = self.norm(h)
        if self.film is not None:
            scale, shift = self.film(emb).chunk(2, dim=-1)
            y = y * (1 + scale) + shift
        return h + self.fc2(nn.functional.silu(self.fc1(y)))


class MLPDenoiserNet(nn.Module):
    r"""Residual MLP network :math:`F(x_\mathrm{in}, c_\mathrm{noise}, \mathrm{context})` for vector events of
    size ``d``, meant to be wrapped by :class:`~pyroseq.diffusion.EDMPrecond`.

    The input ``[x_in, context]`` is projected to ``hidden`` features and passed through ``num_layers``
    pre-LayerNorm residual blocks :math:`h \leftarrow h + W_2\,\mathrm{SiLU}(W_1\, m(\mathrm{LN}(h)))`. The
    noise level enters through the embedding :math:`e` of ``c_noise``
    (:class:`~pyroseq.nn.embeddings.NoiseLevelEmbedding`), either as FiLM, :math:`m(y) = y (1 + \gamma(e)) +
    \beta(e)` in every block (``conditioning="film"``), or concatenated to the input (``"concat"``). A final
    LayerNorm and a zero-initialised linear read-out give :math:`F = 0` at init.

    :param int event_dim_size: event size ``d``.
    :param int hidden: hidden width.
    :param int num_layers: number of residual blocks.
    :param int context_dim: number of context values per example (0: no context). The context may have any
        event shape whose size is ``context_dim``, e.g. the history ``(j, d)`` given by
        :class:`~pyroseq.distributions.DiffusionTransition`; it is flattened.
    :param int embedding_dim: width of the noise-level embedding.
    :param str conditioning: ``"film"`` or ``"concat"``.
    :param dict noise_embedding_kwargs: extra keyword arguments of the noise-level embedding.
    """

    def __init__(self, event_dim_size, hidden=128, num_layers=3, context_dim=0, embedding_dim=64,
                 conditioning="film", noise_embedding_kwargs=None):
        super().__init__()
        self.event_dim_size = _positive_int("event_dim_size", event_dim_size)
        self.hidden = _positive_int("hidden", hidden)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.context_dim = _nonnegative_int("context_dim", context_dim)
        if conditioning not in _CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {_CONDITIONINGS}, got {conditioning!r}")
        self.conditioning = conditioning
        self.noise_embedding = NoiseLevelEmbedding(embedding_dim, **(noise_embedding_kwargs or {}))
        film = conditioning == "film"
        E = self.noise_embedding.embedding_dim
        self.input_proj = nn.Linear(self.event_dim_size + self.context_dim + (0 if film else E), self.hidden)
        self.blocks = nn.ModuleList(_MLPBlock(self.hidden, E, film) for _ in range(self.num_layers))
        self.output_norm = nn.LayerNorm(self.hidden)
        self.output_proj = nn.Linear(self.hidden, self.event_dim_size)
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, x_in, c_noise, context=None):
        """
        :param torch.Tensor x_in: preconditioned noisy input of shape ``(N, d)``.
        :param torch.Tensor c_noise: noise conditioning of shape ``(N,)``.
        :param torch.Tensor context: None if ``context_dim == 0``, else a tensor of shape
            ``(N, *context_event_shape)`` with ``context_dim`` values per example.
        :returns: the network output ``F`` of shape ``(N, d)``.
        """
        if not torch.is_tensor(x_in) or x_in.dim() != 2 or x_in.shape[1] != self.event_dim_size:
            raise ValueError(f"x_in must have shape (N, event_dim_size={self.event_dim_size}), got {_shape(x_in)}")
        N = x_in.shape[0]
        if not torch.is_tensor(c_noise) or c_noise.shape != (N,):
            raise ValueError(f"c_noise must have shape (N,) = ({N},), got {_shape(c_noise)}")
        parts = [x_in]
        if self.context_dim:
            if not torch.is_tensor(context) or context.dim() < 1 or context.shape[0] != N \
                    or math.prod(context.shape[1:]) != self.context_dim:
                raise ValueError(
                    f"context must have shape (N, ...) with N = {N} and {self.context_dim} values per example, "
                    f"got {_shape(context)}"
                )
            parts.append(context.reshape(N, self.context_dim).to(x_in.dtype))
        elif context is not None:
            raise ValueError(f"context must be None for a network built with context_dim=0, got {_shape(context)}")
        emb = self.noise_embedding(c_noise.to(x_in.dtype))
        if self.conditioning == "concat":
            parts.append(emb)
        h = self.input_proj(torch.cat(parts, dim=-1))
        for block in self.blocks:
            h = block(h, emb)
        return self.output_proj(self.output_norm(h))
