"""Embeddings for denoiser networks: noise-level embeddings of ``c_noise`` and positional embeddings."""

import math

import torch
from torch import nn

from ..checks import nonnegative_int as _nonnegative_int
from ..checks import positive_int as _positive_int

__all__ = ["LearnedPositionalEmbedding", "NoiseLevelEmbedding", "sinusoidal_features"]

_KINDS = ("sinusoidal", "fourier")


def sinusoidal_features(values, dim, max_period=10000.0):
    r"""Transformer sinusoidal features :math:`[\cos(v\,\omega_i), \sin(v\,\omega_i)]_{i < \mathrm{dim}/2}`
    with frequencies :math:`\omega_i = \mathrm{max\_period}^{-i / (\mathrm{dim}/2)}` (from 1 down).

    :param torch.Tensor values: positions or noise levels, any shape ``batch_shape``.
    :param int dim: even number of features.
    :param float max_period: longest period.
    :returns: a tensor of shape ``batch_shape + (dim,)`` with ``values``' dtype.
    """
    dim = _positive_int("dim", dim)
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    exponent = torch.arange(half, dtype=values.dtype, device=values.device) / half
    angles = values.unsqueeze(-1) * torch.exp(-math.log(max_period) * exponent)
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class NoiseLevelEmbedding(nn.Module):
    r"""Embedding of the EDM noise conditioning :math:`c_\mathrm{noise} = \tfrac14 \ln\sigma`: fixed
    periodic features followed by a two-layer SiLU MLP,

    .. math:: e = \mathrm{SiLU}(W_2\, \mathrm{SiLU}(W_1\, \phi(s\, c_\mathrm{noise}) + b_1) + b_2).

    ``kind="sinusoidal"`` uses :func:`sinusoidal_features` (what EDM does with :math:`s = 1`);
    ``kind="fourier"`` uses random Gaussian Fourier features :math:`[\cos 2\pi f_i v, \sin 2\pi f_i v]`,
    :math:`f_i \sim \mathcal{N}(0, s^2)`, drawn once at construction and stored as a buffer (so they travel
    with the ``state_dict``).

    :param int embedding_dim: output dimension ``E``.
    :param int num_features: even number of periodic features (default ``embedding_dim``, rounded up to even).
    :param str kind: ``"sinusoidal"`` or ``"fourier"``.
    :param float scale: multiplier ``s`` of ``c_noise`` (sinusoidal; default 1) or standard deviation of the
        random frequencies (fourier; default 16, as NCSN++).
    :param float max_period: longest period of the sinusoidal features.
    """

    def __init__(self, embedding_dim=128, num_features=None, kind="sinusoidal", scale=None, max_period=10000.0):
        super().__init__()
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        if num_features is None:
            num_features = self.embedding_dim + self.embedding_dim % 2
        self.num_features = _positive_int("num_features", num_features)
        if self.num_features % 2:
            raise ValueError(f"num_features must be even, got {num_features}")
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind
        if scale is None:
            scale = 1.0 if kind == "sinusoidal" else 16.0
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite positive number, got {scale!r}")
        self.scale = float(scale)
        self.max_period = float(max_period)
        if kind == "fourier":
            self.register_buffer("frequencies", torch.randn(self.num_features // 2) * self.scale)
        self.mlp = nn.Sequential(
            nn.Linear(self.num_features, self.embedding_dim),
            nn.SiLU(),
            nn.Linear(self.embedding_dim, self.embedding_dim),
            nn.SiLU(),
        )

    def features(self, c_noise):
        """The fixed periodic features of ``c_noise`` (before the MLP).

        :param torch.Tensor c_noise: shape ``(N,)``.
        :returns: a tensor of shape ``(N, num_features)``.
        """
        if self.kind == "sinusoidal":
            return sinusoidal_features(c_noise * self.scale, self.num_features, self.max_period)
        angles = (2 * math.pi) * c_noise.unsqueeze(-1) * self.frequencies.to(c_noise.dtype)
        return torch.cat([angles.cos(), angles.sin()], dim=-1)

    def forward(self, c_noise):
        """
        :param torch.Tensor c_noise: noise conditioning of shape ``(N,)``.
        :returns: the embedding, shape ``(N, embedding_dim)``.
        """
        if not torch.is_tensor(c_noise) or c_noise.dim() != 1:
            shape = tuple(c_noise.shape) if torch.is_tensor(c_noise) else type(c_noise).__name__
            raise ValueError(f"c_noise must be a tensor of shape (N,), got {shape}")
        return self.mlp(self.features(c_noise))


class LearnedPositionalEmbedding(nn.Module):
    """A learned table of ``max_length`` position vectors (initialised ``N(0, init_std^2)``).

    :param int max_length: number of positions available.
    :param int dim: embedding dimension.
    :param float init_std: standard deviation of the initial values.
    """

    def __init__(self, max_length, dim, init_std=0.02):
        super().__init__()
        self.max_length = _positive_int("max_length", max_length)
        self.dim = _positive_int("dim", dim)
        self.weight = nn.Parameter(torch.randn(self.max_length, self.dim) * init_std)

    def forward(self, length, offset=0):
        """
        :param int length: number of consecutive positions wanted.
        :param int offset: first position.
        :returns: the embeddings of positions ``offset, ..., offset + length - 1``, shape ``(length, dim)``.
        """
        length = _nonnegative_int("length", length)
        offset = _nonnegative_int("offset", offset)
        if offset + length > self.max_length:
            raise ValueError(
                f"length + offset ({length} + {offset}) exceeds max_length ({self.max_length}) of the "
                "positional embedding"
            )
        return self.weight[offset:offset + length]
