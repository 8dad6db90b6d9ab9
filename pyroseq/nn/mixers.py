r"""Token mixers for the residual layers of :class:`~pyroseq.nn.csdi.CSDIDenoiserNet`, and their registries.

Every mixer maps a batch of token sequences ``h`` of shape ``(B, L, D)`` to the same shape, with a residual
connection inside (``"identity"`` is therefore a valid mixer). A *time mixer* sees one channel's ``L = T``
time steps (``B = N * C``); a *feature mixer* sees one time step's ``L = C`` channels (``B = N * T``).

Mixers are built by name through registries, so other modules can add their own, e.g. a Mamba module::

    register_time_mixer("mamba", lambda channels, layer_index=0, **kw: MyMambaMixer(channels, **kw))

A time-mixer factory is called as ``factory(channels, layer_index=i, **kwargs)``; a feature-mixer factory as
``factory(channels, num_features=C, layer_index=i, **kwargs)``, where ``i`` is the residual layer's index.
"""

import torch
from torch import nn
from torch.nn import functional as F

from .embeddings import _positive_int

__all__ = [
    "AttentionMixer",
    "ConvTimeMixer",
    "GRUTimeMixer",
    "LinearFeatureMixer",
    "feature_mixer_names",
    "make_feature_mixer",
    "make_time_mixer",
    "register_feature_mixer",
    "register_time_mixer",
    "time_mixer_names",
]

_PADDINGS = ("same", "causal")


def _default_num_heads(channels):
    # The most heads (up to 8) dividing the width with head size >= 16: on CPU many tiny heads cost more than
    # they give (4 heads at width 64 run ~1.6x faster than CSDI's 8).
    return next((h for h in (8, 4, 2) if channels % h == 0 and channels // h >= 16), 1)


class AttentionMixer(nn.Module):
    """One Transformer encoder layer (self-attention + feed-forward, both residual) over the ``L`` tokens.

    :param int channels: token width ``D``.
    :param int num_heads: attention heads, must divide ``channels`` (default: the most heads, up to 8, that divide
        ``channels`` with head size at least 16; 4 at width 64).
    :param int dim_feedforward: hidden width of the feed-forward block (default ``channels``, as CSDI).
    :param float dropout: dropout probability.
    :param bool norm_first: pre-LayerNorm instead of post-LayerNorm.
    :param bool causal: token ``l`` attends only to tokens ``<= l`` (for time mixing in causal models).
    """

    def __init__(self, channels, num_heads=None, dim_feedforward=None, dropout=0.0, norm_first=False, causal=False):
        super().__init__()
        channels = _positive_int("channels", channels)
        num_heads = _default_num_heads(channels) if num_heads is None else _positive_int("num_heads", num_heads)
        if channels % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide channels ({channels})")
        dim_feedforward = channels if dim_feedforward is None else _positive_int("dim_feedforward", dim_feedforward)
        self.causal = bool(causal)
        self.layer = nn.TransformerEncoderLayer(channels, num_heads, dim_feedforward, dropout, activation="gelu",
                                                batch_first=True, norm_first=norm_first)

    def forward(self, h):
        """
        :param torch.Tensor h: tokens of shape ``(B, L, D)``.
        :returns: mixed tokens of shape ``(B, L, D)``.
        """
        if not self.causal:
            return self.layer(h)
        L = h.shape[1]
        mask = torch.triu(torch.full((L, L), float("-inf"), dtype=h.dtype, device=h.device), diagonal=1)
        return self.layer(h, src_mask=mask, is_causal=True)


class ConvTimeMixer(nn.Module):
    r"""Depthwise dilated convolution over time followed by a pointwise (per-token) linear map, residual:
    :math:`h + W_p\, \mathrm{GELU}(\mathrm{DWConv}(\mathrm{LN}(h)))`.

    :param int channels: token width ``D``.
    :param int kernel_size: temporal kernel size.
    :param int dilation: dilation of the kernel.
    :param str padding: ``"same"`` (output ``l`` sees a window centred on ``l``; split left-heavy for even
        kernels) or ``"causal"`` (output ``l`` sees inputs ``<= l`` only).
    """

    def __init__(self, channels, kernel_size=3, dilation=1, padding="same"):
        super().__init__()
        channels = _positive_int("channels", channels)
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.dilation = _positive_int("dilation", dilation)
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
        self.padding = padding
        total = self.dilation * (self.kernel_size - 1)
        self._pad = (total, 0) if padding == "causal" else (total - total // 2, total // 2)
        self.norm = nn.LayerNorm(channels)
        self.depthwise = nn.Conv1d(channels, channels, self.kernel_size, dilation=self.dilation, groups=channels)
        self.pointwise = nn.Linear(channels, channels)

    def forward(self, h):
        """
        :param torch.Tensor h: tokens of shape ``(B, L, D)``.
        :returns: mixed tokens of shape ``(B, L, D)``.
        """
        y = F.pad(self.norm(h).transpose(1, 2), self._pad)  # (B, D, L + pad)
        y = self.depthwise(y).transpose(1, 2)
        return h + self.pointwise(F.gelu(y))


class GRUTimeMixer(nn.Module):
    r"""A (by default bidirectional) GRU over time, residual: :math:`h + W\, \mathrm{GRU}(\mathrm{LN}(h))`.
    Sequences are never packed (all have length ``L``).

    :param int channels: token width ``D`` (also the GRU hidden size per direction).
    :param int num_layers: stacked GRU layers.
    :param bool bidirectional: run forward and backward in time (False gives a causal mixer).
    """

    def __init__(self, channels, num_layers=1, bidirectional=True):
        super().__init__()
        channels = _positive_int("channels", channels)
        self.norm = nn.LayerNorm(channels)
        self.gru = nn.GRU(channels, channels, num_layers=_positive_int("num_layers", num_layers), batch_first=True,
                          bidirectional=bool(bidirectional))
        self.proj = nn.Linear(channels * (2 if bidirectional else 1), channels)

    def forward(self, h):
        """
        :param torch.Tensor h: tokens of shape ``(B, L, D)``.
        :returns: mixed tokens of shape ``(B, L, D)``.
        """
        y, _ = self.gru(self.norm(h))
        return h + self.proj(y)


class LinearFeatureMixer(nn.Module):
    r"""Learned linear mixing across a fixed number ``C`` of tokens (a 1x1 convolution over channels), then a
    pointwise map, residual: :math:`h + W_p\, \mathrm{GELU}(M\, \mathrm{LN}(h))` with ``M`` a ``C x C`` matrix.
    Unlike attention it is tied to the channel order (not permutation equivariant).

    :param int channels: token width ``D``.
    :param int num_features: number of tokens ``C`` mixed.
    """

    def __init__(self, channels, num_features):
        super().__init__()
        channels = _positive_int("channels", channels)
        self.num_features = _positive_int("num_features", num_features)
        self.norm = nn.LayerNorm(channels)
        self.mix = nn.Linear(self.num_features, self.num_features)
        self.pointwise = nn.Linear(channels, channels)

    def forward(self, h):
        """
        :param torch.Tensor h: tokens of shape ``(B, C, D)``.
        :returns: mixed tokens of shape ``(B, C, D)``.
        """
        if h.shape[1] != self.num_features:
            raise ValueError(f"h must have {self.num_features} tokens along dim 1, got shape {tuple(h.shape)}")
        y = self.mix(self.norm(h).transpose(1, 2)).transpose(1, 2)
        return h + self.pointwise(F.gelu(y))


# -- registries ----------------------------------------------------------------------------------------------

_TIME_MIXERS = {}
_FEATURE_MIXERS = {}


def _register(registry, kind, name, factory, overwrite):
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"factory must be callable, got {type(factory).__name__}")
    if name in registry and not overwrite:
        raise ValueError(f"a {kind} mixer named {name!r} is already registered (pass overwrite=True to replace it)")
    registry[name] = factory
    return factory


def register_time_mixer(name, factory, overwrite=False):
    """Register a time-mixer factory under ``name``.

    :param str name: the name used in ``CSDIDenoiserNet(time_mixer=name)``.
    :param callable factory: ``factory(channels, layer_index=0, **kwargs) -> nn.Module`` returning a module that
        maps ``(B, L, D)`` to ``(B, L, D)`` (residual included).
    :param bool overwrite: replace an existing registration instead of raising.
    :returns: ``factory``.
    """
    return _register(_TIME_MIXERS, "time", name, factory, overwrite)


def register_feature_mixer(name, factory, overwrite=False):
    """Register a feature-mixer factory under ``name``.

    :param str name: the name used in ``CSDIDenoiserNet(feature_mixer=name)``.
    :param callable factory: ``factory(channels, num_features, layer_index=0, **kwargs) -> nn.Module`` returning a
        module that maps ``(B, C, D)`` to ``(B, C, D)`` (residual included).
    :param bool overwrite: replace an existing registration instead of raising.
    :returns: ``factory``.
    """
    return _register(_FEATURE_MIXERS, "feature", name, factory, overwrite)


def time_mixer_names():
    """Sorted names of the registered time mixers."""
    return sorted(_TIME_MIXERS)


def feature_mixer_names():
    """Sorted names of the registered feature mixers."""
    return sorted(_FEATURE_MIXERS)


def _lookup(registry, kind, name):
    if callable(name):
        return name
    if name not in registry:
        raise ValueError(f"{kind}_mixer must be a callable or one of {sorted(registry)}, got {name!r}")
    return registry[name]


def make_time_mixer(name, channels, layer_index=0, **kwargs):
    """Build a registered time mixer.

    :param name: a registered name (see :func:`time_mixer_names`) or a factory callable.
    :param int channels: token width ``D``.
    :param int layer_index: index of the residual layer (e.g. to cycle convolution dilations).
    :returns: an ``nn.Module`` mapping ``(B, T, D)`` to ``(B, T, D)``.
    """
    return _lookup(_TIME_MIXERS, "time", name)(channels, layer_index=layer_index, **kwargs)


def make_feature_mixer(name, channels, num_features, layer_index=0, **kwargs):
    """Build a registered feature mixer.

    :param name: a registered name (see :func:`feature_mixer_names`) or a factory callable.
    :param int channels: token width ``D``.
    :param int num_features: number of channels ``C`` mixed.
    :param int layer_index: index of the residual layer.
    :returns: an ``nn.Module`` mapping ``(B, C, D)`` to ``(B, C, D)``.
    """
    return _lookup(_FEATURE_MIXERS, "feature", name)(channels, num_features=num_features, layer_index=layer_index,
                                                      **kwargs)


def _attention_factory(channels, layer_index=0, num_features=None, **kwargs):
    return AttentionMixer(channels, **kwargs)


def _conv_time_factory(channels, layer_index=0, kernel_size=3, dilation=None, dilation_cycle=4, padding="same"):
    # Dilations 1, 2, 4, ... cycling every ``dilation_cycle`` layers, as in WaveNet-style stacks.
    if dilation is None:
        dilation = 2 ** (layer_index % _positive_int("dilation_cycle", dilation_cycle))
    return ConvTimeMixer(channels, kernel_size=kernel_size, dilation=dilation, padding=padding)


def _gru_time_factory(channels, layer_index=0, **kwargs):
    return GRUTimeMixer(channels, **kwargs)


def _linear_feature_factory(channels, num_features, layer_index=0):
    return LinearFeatureMixer(channels, num_features)


def _identity_factory(channels, num_features=None, layer_index=0):
    return nn.Identity()


register_time_mixer("attention", _attention_factory)
register_time_mixer("conv", _conv_time_factory)
register_time_mixer("gru", _gru_time_factory)
register_time_mixer("identity", _identity_factory)
register_feature_mixer("attention", _attention_factory)
register_feature_mixer("conv", _linear_feature_factory)
register_feature_mixer("identity", _identity_factory)
