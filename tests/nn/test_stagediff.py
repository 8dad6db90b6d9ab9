import json
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from pyroseq.diffusion import EDMPrecond
from pyroseq.distributions import DiffusionLikelihood
from pyroseq.nn import CSDIDenoiserNet, ProgressiveDecomposition, StageDiffNet, StageFusion
from pyroseq.nn.stagediff import sinusoidal_embedding


def small_net(**kwargs):
    defaults = dict(channels=3, stage_length=16, patch_size=4, d_model=16, num_heads=2, num_encoder_layers=1,
                    kernel_sizes=(3, 1), fusion_dim=4, fusion_kernel_size=3)
    defaults.update(kwargs)
    return StageDiffNet(**defaults).double()


# -- fusion ---------------------------------------------------------------------------------------------

def reference_fusion(fusion, trends):
    """Explicit C x L_conv kernel sums with clamped (replicate) time indices."""
    N, S, L, C = trends.shape
    k = fusion.kernel_size
    left = (k - 1) // 2
    out = torch.zeros(N, C, S, L, fusion.out_dim, dtype=trends.dtype)
    for s, conv in enumerate(fusion.convs):
        W = conv.weight  # (C * f, C or 1, k)
        for c in range(C):
            for f in range(fusion.out_dim):
                o = c * fusion.out_dim + f
                for t in range(L):
                    acc = conv.bias[o].clone()
                    for j in range(k):
                        tt = min(max(t + j - left, 0), L - 1)
                        if fusion.mix_channels:
                            acc = acc + (W[o, :, j] * trends[:, s, tt, :]).sum(-1)
                        else:
                            acc = acc + W[o, 0, j] * trends[:, s, tt, c]
                    out[:, c, s, t, f] = acc
    return out


@pytest.mark.parametrize("mix_channels", [True, False])
@pytest.mark.parametrize("kernel_size", [1, 3, 4])
def test_fusion_matches_explicit_kernel_sums(mix_channels, kernel_size):
    torch.manual_seed(0)
    fusion = StageFusion(channels=3, num_scales=2, out_dim=2, kernel_size=kernel_size,
                         mix_channels=mix_channels).double()
    trends = torch.randn(2, 2, 7, 3, dtype=torch.float64)
    out = fusion(trends)
    assert out.shape == (2, 3, 2, 7, 2)
    assert torch.allclose(out, reference_fusion(fusion, trends), atol=1e-12)


@pytest.mark.parametrize("mix_channels", [True, False])
def test_fusion_mixes_over_channels(mix_channels):
    torch.manual_seed(0)
    C = 4
    fusion = StageFusion(channels=C, num_scales=3, out_dim=5, kernel_size=3, mix_channels=mix_channels).double()
    trends = torch.randn(2, 3, 10, C, dtype=torch.float64)
    base = fusion(trends)
    bumped = trends.clone()
    bumped[:, 1, :, 2] += 1.0  # change channel 2 at scale 1 only
    diff = (fusion(bumped) - base).abs().amax(dim=(0, 3, 4))  # (C, S)
    assert diff[:, 0].max() == 0 and diff[:, 2].max() == 0  # other scales untouched
    changed = diff[:, 1] > 0
    expected = torch.ones(C, dtype=torch.bool) if mix_channels else torch.arange(C) == 2
    assert torch.equal(changed, expected)


def test_fusion_bad_input():
    fusion = StageFusion(channels=3, num_scales=2)
    with pytest.raises(ValueError, match="trends"):
        fusion(torch.randn(2, 2, 8, 4))
    with pytest.raises(ValueError, match="trends"):
        fusion(torch.randn(2, 8, 3))
    with pytest.raises(ValueError, match="channels"):
        StageFusion(channels=0, num_scales=1)


# -- network --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fusion", ["channels", "independent", "none"])
@pytest.mark.parametrize("decomposition", [True, False])
@pytest.mark.parametrize("N", [1, 5])
def test_shapes(N, decomposition, fusion):
    torch.manual_seed(0)
    net = small_net(decomposition=decomposition, fusion=fusion)
    S_h = 2 if decomposition else 1
    assert net.history_shape == (3, S_h, 4, 16)
    prev = torch.randn(N, 16, 3, dtype=torch.float64)
    history = net.encode_history(prev)
    assert history.shape == (N, 3, S_h, 4, 16)
    assert net.null_history(N).shape == history.shape
    x = torch.randn(N, 16, 3, dtype=torch.float64)
    c_noise = torch.randn(N, dtype=torch.float64)
    out = net(x, c_noise, history)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(net(x, c_noise, None), net(x, c_noise, net.null_history(N)))
    denoiser = EDMPrecond(net, sigma_data=0.5)
    assert denoiser(x, torch.full((N,), 0.3, dtype=torch.float64), history).shape == x.shape


@pytest.mark.parametrize("channel_attention", [False, True])
def test_channel_coupling_within_a_stage(channel_attention):
    # Strictly channel independent without channel attention; coupled (every channel) with it.
    torch.manual_seed(0)
    net = small_net(channel_attention=channel_attention)
    x = torch.randn(2, 16, 3, dtype=torch.float64)
    c_noise = torch.zeros(2, dtype=torch.float64)
    history = net.encode_history(torch.randn(2, 16, 3, dtype=torch.float64))
    base = net(x, c_noise, history)
    bumped = x.clone()
    bumped[:, 5, 1] += 1.0
    diff = (net(bumped, c_noise, history) - base).abs().amax(dim=(0, 1))
    assert diff[1] > 0
    assert ((diff[0] > 0) and (diff[2] > 0)) if channel_attention else (diff[0] == 0 and diff[2] == 0)


@pytest.mark.parametrize("fusion,affected", [("channels", [True, True, True]),
                                             ("independent", [False, True, False]),
                                             ("none", [False, False, False])])
def test_history_reaches_channels_through_fusion(fusion, affected):
    torch.manual_seed(0)
    net = small_net(fusion=fusion)
    prev = torch.randn(2, 16, 3, dtype=torch.float64)
    bumped = prev.clone()
    bumped[:, :, 1] += torch.linspace(0, 1, 16, dtype=torch.float64)
    diff = (net.encode_history(bumped) - net.encode_history(prev)).abs().amax(dim=(0, 2, 3, 4))
    assert torch.equal(diff > 0, torch.tensor(affected))
    # ... and the denoiser output of every affected channel changes with it.
    x = torch.randn(2, 16, 3, dtype=torch.float64)
    c_noise = torch.zeros(2, dtype=torch.float64)
    out_diff = (net(x, c_noise, net.encode_history(bumped)) - net(x, c_noise, net.encode_history(prev)))
    assert torch.equal(out_diff.abs().amax(dim=(0, 1)) > 0, torch.tensor(affected))


def test_history_sees_exact_decomposition_of_previous_stage():
    # The history trends are a progressive moving-average decomposition that sums to the stage.
    torch.manual_seed(0)
    net = small_net(kernel_sizes=(5, 3, 1))
    assert net.history_kernel_sizes == (21, 13, 1)
    prev = torch.randn(3, 16, 3, dtype=torch.float64)
    trends, residual = net.history_decomposition(prev)
    assert isinstance(net.history_decomposition, ProgressiveDecomposition)
    assert torch.allclose(sum(trends), prev, atol=1e-12) and residual.abs().max() < 1e-12
    # encode_history = patching of the fused trends, linear embedding, positions, scales, channels.
    fused = net.stage_fusion(torch.stack(trends, 1)).reshape(3, 3, 3, 4, -1)
    expected = (net.history_embed(fused) + net.history_positions + net.history_scale_embed[:, None, :]
                + net.channel_embed.weight[:, None, None, :])
    assert torch.allclose(net.encode_history(prev), expected, atol=1e-12)


def test_output_is_mean_of_trend_heads():
    # With one decoder layer of window 1, the only trend is the whole decoder output.
    torch.manual_seed(0)
    net = small_net(kernel_sizes=(1,))
    captured = {}
    net.decoder[0].register_forward_hook(lambda m, i, o: captured.setdefault("h", o))
    x = torch.randn(2, 16, 3, dtype=torch.float64)
    out = net(x, torch.zeros(2, dtype=torch.float64))
    expected = net.heads[0](captured["h"]).reshape(2, 3, 16).transpose(1, 2)
    assert torch.allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(stage_length=18), "multiple of patch_size"),
    (dict(stage_length=0), "stage_length"),
    (dict(patch_size=0), "patch_size"),
    (dict(d_model=15), "d_model"),
    (dict(num_heads=3), "num_heads"),
    (dict(fusion="cross"), "fusion"),
    (dict(kernel_sizes=()), "kernel_sizes"),
    (dict(kernel_sizes=(3, 0)), "kernel_sizes"),
    (dict(history_kernel_sizes=(5,)), "history_kernel_sizes"),
    (dict(carry="trend"), "carry"),
    (dict(history_attention="first"), "history_attention"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_net(**kwargs)


def test_bad_inputs_raise():
    net = small_net()
    c_noise = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="x_in"):
        net(torch.randn(2, 12, 3, dtype=torch.float64), c_noise)
    with pytest.raises(ValueError, match="x_in"):
        net(torch.randn(2, 16, 2, dtype=torch.float64), c_noise)
    with pytest.raises(ValueError, match="c_noise"):
        net(torch.randn(2, 16, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="context"):
        net(torch.randn(2, 16, 3, dtype=torch.float64), c_noise, net.null_history(3))
    with pytest.raises(ValueError, match="previous"):
        net.encode_history(torch.randn(2, 32, 3, dtype=torch.float64))


@pytest.mark.parametrize("history_attention", ["scale", "all"])
@pytest.mark.parametrize("carry", ["residual", "residual_and_mean"])
def test_gradients_reach_every_parameter(carry, history_attention):
    torch.manual_seed(0)
    net = small_net(carry=carry, history_attention=history_attention)
    prev = torch.randn(4, 16, 3, dtype=torch.float64)
    history = torch.cat([net.null_history(2), net.encode_history(prev[2:])])
    x = torch.randn(4, 16, 3, dtype=torch.float64)
    out = net(x, torch.randn(4, dtype=torch.float64), history)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing


@pytest.mark.parametrize("carry", ["residual", "residual_and_mean"])
def test_decoder_carry(carry):
    # The second decoder layer receives h - trend ("residual") or h - (trend - its token mean).
    torch.manual_seed(0)
    net = small_net(kernel_sizes=(3, 1), carry=carry)
    captured = {}
    net.decoder[0].register_forward_hook(lambda m, i, o: captured.setdefault("h", o))
    net.decoder[1].register_forward_pre_hook(lambda m, i: captured.__setitem__("carried", i[0]))
    x = torch.randn(2, 16, 3, dtype=torch.float64)
    c_noise = torch.zeros(2, dtype=torch.float64)
    net(x, c_noise)
    h = captured["h"]
    trend = net.trend_layers[0](h)
    if carry == "residual_and_mean":
        trend = trend - trend.mean(dim=1, keepdim=True)
    temb = net.noise_embed(sinusoidal_embedding(c_noise, 16)).repeat_interleave(3, dim=0)[:, None, :]
    assert torch.allclose(captured["carried"], h - trend + net.decoder_noise[1](temb), atol=1e-12)
    # The kept part is the token mean: the carried states differ by exactly that, constant over tokens.
    if carry == "residual_and_mean":
        difference = captured["carried"] - (h - net.trend_layers[0](h) + net.decoder_noise[1](temb))
        assert torch.allclose(difference, difference[:, :1].expand_as(difference), atol=1e-12)
        assert difference.abs().max() > 1e-6


@pytest.mark.parametrize("history_attention", ["scale", "all"])
def test_history_attention_reaches_layers(history_attention):
    # With "scale" the first decoder layer reads only the history of scale 0; with "all", every scale.
    torch.manual_seed(0)
    net = small_net(history_attention=history_attention)
    captured = []
    net.decoder[0].register_forward_pre_hook(lambda m, i: captured.append(i[1]))
    x = torch.randn(2, 16, 3, dtype=torch.float64)
    history = net.encode_history(torch.randn(2, 16, 3, dtype=torch.float64))
    net(x, torch.zeros(2, dtype=torch.float64), history)
    memory = history.reshape(6, net.num_history_scales, 4, 16)
    expected = memory.reshape(6, -1, 16) if history_attention == "all" else memory[:, 0]
    assert torch.equal(captured[0], expected)


def test_moving_average_uses_replicate_padding_in_tokens():
    torch.manual_seed(0)
    net = small_net(kernel_sizes=(3, 1))
    h = torch.randn(2, 4, 16, dtype=torch.float64)
    padded = F.pad(h.transpose(1, 2), (1, 1), mode="replicate")
    expected = F.avg_pool1d(padded, 3, stride=1).transpose(1, 2)
    assert torch.allclose(net.trend_layers[0](h), expected, atol=1e-12)


# -- conditioning planes (cond_dim) ------------------------------------------------------------------------

# The long-generation benchmark's trained models: metadata committed under results/, weights in the ignored cache.
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TRAINED_META = BENCHMARKS / "results" / "long_generation" / "models"
TRAINED_WEIGHTS = BENCHMARKS / ".cache" / "long_generation" / "models"


def cond_inputs(net, N=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    L, C, K = net.stage_length, net.channels, net.cond_dim
    x = torch.randn(N, L, C, generator=g, dtype=torch.float64)
    cond = torch.randn(N, L, C, K, generator=g, dtype=torch.float64) if K else None
    return x, torch.randn(N, generator=g, dtype=torch.float64), cond


@pytest.mark.parametrize("with_history", [False, True])
@pytest.mark.parametrize("stage_length,channels", [(8, 1), (16, 3)])
@pytest.mark.parametrize("cond_dim", [0, 1, 2])
def test_cond_shapes(cond_dim, stage_length, channels, with_history):
    torch.manual_seed(0)
    net = small_net(channels=channels, stage_length=stage_length, cond_dim=cond_dim)
    assert net.cond_dim == cond_dim
    assert net.cond_shape == ((stage_length, cond_dim * channels) if cond_dim else None)
    assert net.patch_embed.in_features == 4 * (1 + cond_dim)
    x, c_noise, cond = cond_inputs(net, N=3)
    history = net.encode_history(torch.randn(3, stage_length, channels, dtype=torch.float64)) if with_history \
        else None
    context = net.pack_context(history, cond)
    if cond_dim:
        assert isinstance(context, dict) and list(context) == (["cond", "history"] if with_history else ["cond"])
        assert context["cond"].shape == (3,) + net.cond_shape
    else:
        assert context is history
    out = net(x, c_noise, context)
    assert out.shape == x.shape and torch.isfinite(out).all()
    if not with_history:  # no history = the learned "no history" tokens
        full = net.pack_context(net.null_history(3), cond)
        assert torch.equal(out, net(x, c_noise, full))
    assert EDMPrecond(net, sigma_data=0.5)(x, torch.full((3,), 0.3, dtype=torch.float64), context).shape == x.shape


@pytest.mark.parametrize("stage_length,channels", [(8, 1), (16, 3)])
@pytest.mark.parametrize("cond_dim", [1, 2])
def test_output_depends_on_every_plane_and_on_x(cond_dim, stage_length, channels):
    torch.manual_seed(0)
    net = small_net(channels=channels, stage_length=stage_length, cond_dim=cond_dim)
    # The heads are not zero-initialised here, but re-draw them anyway so the check does not rely on defaults.
    with torch.no_grad():
        for head in net.heads:
            head[1].weight.normal_(0.0, 0.5)
    x, c_noise, cond = cond_inputs(net)
    base = net(x, c_noise, net.pack_context(cond=cond))
    for k in range(cond_dim):
        bumped = cond.clone()
        bumped[:, stage_length // 2, channels - 1, k] += 1.0
        out = net(x, c_noise, net.pack_context(cond=bumped))
        assert not torch.allclose(out, base)
        if channels > 1:  # without channel attention only the bumped channel would move; with it, all do
            assert (out - base).abs().amax(dim=(0, 1))[channels - 1] > 0
    assert not torch.allclose(net(x + 0.5, c_noise, net.pack_context(cond=cond)), base)


@pytest.mark.parametrize("cond_dim", [1, 2])
def test_cond_is_channel_independent_without_channel_attention(cond_dim):
    torch.manual_seed(0)
    net = small_net(cond_dim=cond_dim, channel_attention=False)
    x, c_noise, cond = cond_inputs(net)
    base = net(x, c_noise, net.pack_context(cond=cond))
    bumped = cond.clone()
    bumped[:, 5, 1, cond_dim - 1] += 1.0
    diff = (net(x, c_noise, net.pack_context(cond=bumped)) - base).abs().amax(dim=(0, 1))
    assert diff[1] > 0 and diff[0] == 0 and diff[2] == 0


@pytest.mark.parametrize("stage_length,channels", [(8, 1), (16, 3)])
@pytest.mark.parametrize("cond_dim", [0, 1, 2])
def test_patch_tokens_layout(cond_dim, stage_length, channels):
    # Token (c, j) = (x[jP:(j+1)P, c], plane 0 [jP:(j+1)P, c], plane 1 [jP:(j+1)P, c], ...).
    net = small_net(channels=channels, stage_length=stage_length, cond_dim=cond_dim)
    seen = {}
    net.patch_embed.register_forward_pre_hook(lambda m, args: seen.__setitem__("patches", args[0]))
    x, c_noise, cond = cond_inputs(net)
    net(x, c_noise, net.pack_context(cond=cond))
    P = net.patch_size
    assert seen["patches"].shape == (2, channels, stage_length // P, P * (1 + cond_dim))
    for n in range(2):
        for c in range(channels):
            for j in range(stage_length // P):
                window = slice(j * P, (j + 1) * P)
                expected = torch.cat([x[n, window, c]] + [cond[n, window, c, k] for k in range(cond_dim)])
                assert torch.equal(seen["patches"][n, c, j], expected)


@pytest.mark.parametrize("stage_length,channels", [(8, 1), (16, 3)])
@pytest.mark.parametrize("cond_dim", [1, 2])
def test_pack_context_layout(cond_dim, stage_length, channels):
    net = small_net(channels=channels, stage_length=stage_length, cond_dim=cond_dim)
    cond = torch.randn(3, stage_length, channels, cond_dim, dtype=torch.float64)
    packed = net.pack_context(cond=cond)["cond"]
    for k in range(cond_dim):
        assert torch.equal(packed[..., k * channels:(k + 1) * channels], cond[..., k])
    csdi = CSDIDenoiserNet(channels, channels=4, num_layers=1, cond_dim=cond_dim)
    assert torch.equal(packed, csdi.pack_context(cond=cond))  # the same convention as the CSDI-style network
    history = net.null_history(3, torch.float64)
    assert net.pack_context(history, cond)["history"] is history


def test_dict_context_without_cond_equals_tensor_context():
    torch.manual_seed(0)
    net = small_net()
    x, c_noise, _ = cond_inputs(net)
    history = net.encode_history(torch.randn(2, 16, 3, dtype=torch.float64))
    base = net(x, c_noise, history)
    assert torch.equal(net(x, c_noise, {"history": history}), base)
    assert torch.equal(net(x, c_noise, {"history": history, "cond": None}), base)
    assert torch.equal(net(x, c_noise, {}), net(x, c_noise, None))


@pytest.mark.parametrize("cond_dim", [1, 2])
def test_gradient_reaches_cond_weights(cond_dim):
    torch.manual_seed(0)
    net = small_net(cond_dim=cond_dim)
    x, c_noise, cond = cond_inputs(net)
    history = torch.cat([net.null_history(1, torch.float64),
                         net.encode_history(torch.randn(1, 16, 3, dtype=torch.float64))])
    net(x, c_noise, net.pack_context(history, cond)).pow(2).sum().backward()
    assert net.patch_embed.weight.grad[:, net.patch_size:].abs().sum() > 0  # columns reading the planes
    missing = [name for name, p in net.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert missing == []


def test_cond_bad_inputs():
    net0, net2 = small_net(), small_net(cond_dim=2)
    x, c_noise, cond = cond_inputs(net2)
    packed = net2.pack_context(cond=cond)["cond"]
    history = net2.null_history(2, torch.float64)
    with pytest.raises(ValueError, match="context\\['cond'\\] must be None"):
        net0(x, c_noise, {"cond": packed[..., :3]})
    with pytest.raises(ValueError, match="context must be a dict"):
        net2(x, c_noise, history)
    with pytest.raises(ValueError, match="context must be a dict"):
        net2(x, c_noise, None)
    with pytest.raises(ValueError, match="context\\['cond'\\] is required"):
        net2(x, c_noise, {"history": history})
    with pytest.raises(ValueError, match="keys"):
        net2(x, c_noise, {"cond": packed, "mask": packed})
    for bad in (packed[..., :3], packed[:1], packed[:, :8], cond, packed.tolist()):
        with pytest.raises(ValueError, match="context\\['cond'\\] must have shape"):
            net2(x, c_noise, {"cond": bad})
    with pytest.raises(ValueError, match="context\\['history'\\] must have shape"):
        net2(x, c_noise, {"cond": packed, "history": history[:1]})
    with pytest.raises(ValueError, match="context must have shape"):
        net0(x, c_noise, history[..., :8])
    with pytest.raises(ValueError, match="cond must be None"):
        net0.pack_context(cond=cond[..., :1])
    with pytest.raises(ValueError, match="cond is required"):
        net2.pack_context(history)
    for bad in (packed, cond[..., :1], cond[:, :8], cond[:, :, :2], cond[0]):
        with pytest.raises(ValueError, match="cond must have shape"):
            net2.pack_context(cond=bad)
    for bad in (history[..., :8], history[0], packed):
        with pytest.raises(ValueError, match="history must have shape"):
            net2.pack_context(bad, cond)
    with pytest.raises(ValueError, match="history and cond must have the same N"):
        net2.pack_context(history[:1], cond)
    for bad in (-1, 0.5, True):
        with pytest.raises(ValueError, match="cond_dim"):
            small_net(cond_dim=bad)


def test_cond_dim_only_widens_the_patch_embedding():
    # Hard-coded table of the unconditional small_net() before cond_dim existed.
    shapes = {k: tuple(v.shape) for k, v in small_net().state_dict().items()}
    assert len(shapes) == 81 and sum(math.prod(s) for s in shapes.values()) == 12120
    assert shapes["patch_embed.weight"] == (16, 4)
    for K in (1, 2):
        cond_shapes = {k: tuple(v.shape) for k, v in small_net(cond_dim=K).state_dict().items()}
        assert cond_shapes.keys() == shapes.keys()
        assert {k for k in shapes if cond_shapes[k] != shapes[k]} == {"patch_embed.weight"}
        assert cond_shapes["patch_embed.weight"] == (16, 4 * (1 + K))


def test_trained_weights_load_strictly():
    path = TRAINED_WEIGHTS / "etth_stagediff.pt"
    if not path.exists():
        pytest.skip("trained Stage-Diff weights not in the benchmark cache")
    meta = json.loads((TRAINED_META / "etth_stagediff.json").read_text())
    kwargs = dict(meta["net"], kernel_sizes=tuple(meta["net"]["kernel_sizes"]))
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    channels, stage_length = meta["window"][1], meta["stage_length"]
    StageDiffNet(channels, stage_length, cond_dim=0, **kwargs).load_state_dict(state, strict=True)
    with pytest.raises(RuntimeError):  # a conditional network has a wider patch embedding
        StageDiffNet(channels, stage_length, cond_dim=1, **kwargs).load_state_dict(state, strict=True)


def test_conditional_likelihood_with_planes():
    torch.manual_seed(0)
    net = small_net(cond_dim=2)
    x, _, cond = cond_inputs(net, N=3)
    history = net.encode_history(torch.randn(3, 16, 3, dtype=torch.float64))
    likelihood = DiffusionLikelihood(EDMPrecond(net, sigma_data=0.5), event_shape=(16, 3),
                                     context=net.pack_context(history, cond), sigma_data=0.5, num_noise_draws=2)
    assert likelihood.batch_shape == (3,)  # inferred from context["cond"], the first leaf
    lp = likelihood.log_prob(x)
    assert lp.shape == (3,) and torch.isfinite(lp).all()
