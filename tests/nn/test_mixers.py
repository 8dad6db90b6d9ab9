import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pyroseq.nn import (
    AttentionMixer,
    ConvTimeMixer,
    GRUTimeMixer,
    LinearFeatureMixer,
    feature_mixer_names,
    make_feature_mixer,
    make_time_mixer,
    register_feature_mixer,
    register_time_mixer,
    time_mixer_names,
)
from pyroseq.nn import mixers as mixers_module

D = 16


def test_builtin_names():
    assert {"attention", "conv", "gru", "identity"} <= set(time_mixer_names())
    assert {"attention", "conv", "identity"} <= set(feature_mixer_names())


@pytest.mark.parametrize("name", ["attention", "conv", "gru", "identity"])
@pytest.mark.parametrize("B, L", [(1, 1), (3, 1), (2, 7), (5, 24)])
def test_time_mixer_shapes(name, B, L):
    torch.manual_seed(0)
    mixer = make_time_mixer(name, D, layer_index=2).double()
    h = torch.randn(B, L, D, dtype=torch.float64)
    out = mixer(h)
    assert out.shape == (B, L, D)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["attention", "conv", "identity"])
@pytest.mark.parametrize("B, C", [(1, 1), (4, 3), (2, 9)])
def test_feature_mixer_shapes(name, B, C):
    mixer = make_feature_mixer(name, D, num_features=C).double()
    out = mixer(torch.randn(B, C, D, dtype=torch.float64))
    assert out.shape == (B, C, D)


def reference_conv_mixer(mixer, h):
    """Explicit sums over the depthwise kernel with zero padding."""
    y = mixer.norm(h)
    B, L, Dh = h.shape
    k, dil = mixer.kernel_size, mixer.dilation
    left = mixer._pad[0]
    w, b = mixer.depthwise.weight[:, 0, :], mixer.depthwise.bias
    conv = torch.zeros_like(y) + b
    for t in range(L):
        for j in range(k):
            s = t + j * dil - left
            if 0 <= s < L:
                conv[:, t] = conv[:, t] + w[:, j] * y[:, s]
    return h + mixer.pointwise(F.gelu(conv))


@pytest.mark.parametrize("padding", ["same", "causal"])
@pytest.mark.parametrize("kernel_size, dilation", [(1, 1), (3, 1), (3, 2), (4, 3), (5, 4)])
def test_conv_time_mixer_matches_explicit_sums(padding, kernel_size, dilation):
    torch.manual_seed(0)
    mixer = ConvTimeMixer(D, kernel_size, dilation, padding).double()
    h = torch.randn(3, 9, D, dtype=torch.float64)
    assert torch.allclose(mixer(h), reference_conv_mixer(mixer, h), atol=1e-12)
    if padding == "same":
        total = dilation * (kernel_size - 1)
        assert mixer._pad == (total - total // 2, total // 2)


def test_conv_time_factory_cycles_dilations():
    dilations = [make_time_mixer("conv", D, layer_index=i, dilation_cycle=3).dilation for i in range(7)]
    assert dilations == [1, 2, 4, 1, 2, 4, 1]
    assert make_time_mixer("conv", D, layer_index=5, dilation=3).dilation == 3


def _future_sensitivity(mixer, L=8, t=4):
    # Max change of outputs at steps <= t when inputs after t change, and of outputs after t.
    torch.manual_seed(0)
    h = torch.randn(2, L, D, dtype=torch.float64)
    h2 = h.clone()
    h2[:, t + 1:] += torch.randn(2, L - t - 1, D, dtype=torch.float64)
    y, y2 = mixer(h), mixer(h2)
    return (y[:, :t + 1] - y2[:, :t + 1]).abs().max().item(), (y[:, t + 1:] - y2[:, t + 1:]).abs().max().item()


@pytest.mark.parametrize("make, causal", [
    (lambda: ConvTimeMixer(D, 3, 2, "causal"), True),
    (lambda: ConvTimeMixer(D, 3, 2, "same"), False),
    (lambda: AttentionMixer(D, causal=True), True),
    (lambda: AttentionMixer(D), False),
    (lambda: GRUTimeMixer(D, bidirectional=False), True),
    (lambda: GRUTimeMixer(D), False),
])
def test_causal_time_mixers_ignore_the_future(make, causal):
    mixer = make().double()
    past_change, future_change = _future_sensitivity(mixer)
    assert future_change > 1e-3
    if causal:
        assert past_change < 1e-12
    else:
        assert past_change > 1e-3


@pytest.mark.parametrize("mixer", [AttentionMixer(D), nn.Identity()])
def test_attention_mixer_permutation_equivariant(mixer):
    torch.manual_seed(0)
    mixer = mixer.double().eval()
    h = torch.randn(3, 6, D, dtype=torch.float64)
    perm = torch.randperm(6)
    assert torch.allclose(mixer(h[:, perm]), mixer(h)[:, perm], atol=1e-10)


def test_linear_feature_mixer_matches_matrix_and_is_order_dependent():
    torch.manual_seed(0)
    C = 4
    mixer = LinearFeatureMixer(D, C).double()
    h = torch.randn(5, C, D, dtype=torch.float64)
    y = mixer.norm(h)
    mixed = torch.einsum("ec,bcd->bed", mixer.mix.weight, y) + mixer.mix.bias[:, None]
    assert torch.allclose(mixer(h), h + mixer.pointwise(F.gelu(mixed)), atol=1e-12)
    perm = torch.tensor([1, 0, 3, 2])
    assert not torch.allclose(mixer(h[:, perm]), mixer(h)[:, perm], atol=1e-6)
    with pytest.raises(ValueError, match="tokens"):
        mixer(torch.randn(5, C + 1, D, dtype=torch.float64))


def test_attention_default_heads():
    assert AttentionMixer(64).layer.self_attn.num_heads == 4
    assert AttentionMixer(128).layer.self_attn.num_heads == 8
    assert AttentionMixer(16).layer.self_attn.num_heads == 1
    assert AttentionMixer(48).layer.self_attn.num_heads == 2
    assert AttentionMixer(64, num_heads=8).layer.self_attn.num_heads == 8


@pytest.mark.parametrize("make, name", [
    (lambda: AttentionMixer(16, num_heads=3), "num_heads"),
    (lambda: AttentionMixer(0), "channels"),
    (lambda: ConvTimeMixer(16, padding="valid"), "padding"),
    (lambda: ConvTimeMixer(16, kernel_size=0), "kernel_size"),
    (lambda: GRUTimeMixer(16, num_layers=0), "num_layers"),
    (lambda: make_time_mixer("nope", 16), "time_mixer"),
    (lambda: make_feature_mixer("gru", 16, 3), "feature_mixer"),
])
def test_bad_arguments(make, name):
    with pytest.raises(ValueError, match=name):
        make()


class _Scale(nn.Module):
    def __init__(self, channels, factor):
        super().__init__()
        self.factor = factor
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, h):
        return h * self.weight * self.factor


def test_register_time_and_feature_mixers():
    calls = []

    def factory(channels, layer_index=0, factor=2.0):
        calls.append(layer_index)
        return _Scale(channels, factor)

    try:
        assert register_time_mixer("test-scale", factory) is factory
        assert "test-scale" in time_mixer_names()
        mixer = make_time_mixer("test-scale", D, layer_index=3, factor=3.0)
        assert calls == [3]
        h = torch.randn(2, 5, D)
        assert torch.allclose(mixer(h), 3 * h)
        with pytest.raises(ValueError, match="already registered"):
            register_time_mixer("test-scale", factory)
        register_time_mixer("test-scale", lambda channels, layer_index=0: nn.Identity(), overwrite=True)
        assert isinstance(make_time_mixer("test-scale", D), nn.Identity)

        register_feature_mixer("test-scale", lambda channels, num_features, layer_index=0: _Scale(channels, 5.0))
        assert torch.allclose(make_feature_mixer("test-scale", D, 4)(h), 5 * h)
    finally:
        mixers_module._TIME_MIXERS.pop("test-scale", None)
        mixers_module._FEATURE_MIXERS.pop("test-scale", None)
    assert "test-scale" not in time_mixer_names()


def test_callable_factories_and_bad_registrations():
    mixer = make_time_mixer(lambda channels, layer_index=0: _Scale(channels, 4.0), D)
    assert isinstance(mixer, _Scale) and mixer.factor == 4.0
    with pytest.raises(ValueError, match="factory"):
        register_time_mixer("not-callable", 3)
    with pytest.raises(ValueError, match="name"):
        register_feature_mixer("", lambda channels, num_features, layer_index=0: nn.Identity())
