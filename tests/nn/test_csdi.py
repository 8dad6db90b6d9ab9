import pytest
import torch

from pyroseq.diffusion import EDMPrecond
from pyroseq.nn import CSDIDenoiserNet

TIME_MIXERS = ["attention", "conv", "gru"]
FEATURE_MIXERS = ["attention", "conv", "identity"]


def small_net(obs_dim, **kwargs):
    defaults = dict(channels=16, num_layers=2, embedding_dim=16, time_embedding_dim=8, channel_embedding_dim=4)
    defaults.update(kwargs)
    return CSDIDenoiserNet(obs_dim, **defaults).double()


def perturb_output_layer(net, seed=0):
    # Break the zero initialisation so that gradients reach every parameter.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.output_proj.weight.copy_(torch.randn(net.output_proj.weight.shape, generator=g, dtype=torch.float64))
        net.output_proj.bias.fill_(0.1)
    return net


def make_context(net, N, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    history = torch.randn(N, net.context_length, net.obs_dim, generator=g, dtype=torch.float64)
    cond = torch.randn(N, T, net.obs_dim, net.cond_dim, generator=g, dtype=torch.float64)
    history_cond = torch.randn(N, net.context_length, net.obs_dim, net.cond_dim, generator=g, dtype=torch.float64)
    return net.pack_context(
        history if net.context_length else None,
        cond if net.cond_dim else None,
        history_cond if net.context_length and net.cond_dim else None,
    )


@pytest.mark.parametrize("time_mixer", TIME_MIXERS)
@pytest.mark.parametrize("feature_mixer", FEATURE_MIXERS)
@pytest.mark.parametrize("N, T, C", [(2, 1, 1), (3, 5, 1), (2, 1, 4), (2, 6, 3)])
def test_shapes_and_zero_output_at_init(time_mixer, feature_mixer, N, T, C):
    torch.manual_seed(0)
    net = small_net(C, time_mixer=time_mixer, feature_mixer=feature_mixer)
    x = torch.randn(N, T, C, dtype=torch.float64)
    out = net(x, torch.randn(N, dtype=torch.float64))
    assert out.shape == (N, T, C)
    assert torch.equal(out, torch.zeros_like(out))
    out = perturb_output_layer(net)(x, torch.randn(N, dtype=torch.float64))
    assert out.shape == (N, T, C) and out.abs().min() > 0


@pytest.mark.parametrize("context_length, cond_dim", [(0, 0), (3, 0), (0, 2), (4, 1)])
@pytest.mark.parametrize("N, T, C", [(2, 1, 1), (2, 5, 3)])
def test_shapes_with_context(context_length, cond_dim, N, T, C):
    net = small_net(C, context_length=context_length, cond_dim=cond_dim)
    context = make_context(net, N, T)
    expected = net.context_shape(T)
    assert (context is None) == (expected is None)
    if context is not None:
        assert context.shape == (N,) + expected
    out = net(torch.randn(N, T, C, dtype=torch.float64), torch.randn(N, dtype=torch.float64), context)
    assert out.shape == (N, T, C)
    assert torch.equal(out, torch.zeros_like(out))


def test_scalar_event_with_edm_precond_returns_c_skip_x():
    net = small_net(1)
    denoiser = EDMPrecond(net, sigma_data=0.5)
    x = torch.randn(7, 1, 1, dtype=torch.float64)
    sigma = torch.rand(7, dtype=torch.float64) * 3 + 0.01
    c_skip = 0.25 / (sigma ** 2 + 0.25)
    assert torch.allclose(denoiser(x, sigma), c_skip[:, None, None] * x)


@pytest.mark.parametrize("time_mixer", TIME_MIXERS)
@pytest.mark.parametrize("feature_mixer", FEATURE_MIXERS)
@pytest.mark.parametrize("context_length, cond_dim, time_embedding", [
    (0, 0, "sinusoidal"), (3, 2, "sinusoidal"), (2, 0, "learned"),
])
def test_gradients_reach_all_parameters(time_mixer, feature_mixer, context_length, cond_dim, time_embedding):
    torch.manual_seed(0)
    N, T, C = 3, 5, 3
    net = small_net(C, time_mixer=time_mixer, feature_mixer=feature_mixer, context_length=context_length,
                    cond_dim=cond_dim, time_embedding=time_embedding, max_length=16)
    perturb_output_layer(net)
    x = torch.randn(N, T, C, dtype=torch.float64)
    out = net(x, torch.randn(N, dtype=torch.float64), make_context(net, N, T))
    (out ** 2).sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_one_training_step_makes_output_nonzero():
    # From the zero init, one optimiser step moves the zero last layer, after which F != 0.
    torch.manual_seed(0)
    net = small_net(2)
    x = torch.randn(4, 6, 2, dtype=torch.float64)
    c = torch.randn(4, dtype=torch.float64)
    target = torch.randn(4, 6, 2, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ((net(x, c) - target) ** 2).sum().backward()
    assert net.output_proj.weight.grad.abs().sum() > 0
    opt.step()
    assert net(x, c).abs().min() > 0


@pytest.mark.parametrize("time_mixer", TIME_MIXERS)
@pytest.mark.parametrize("feature_mixer", ["attention", "identity"])
@pytest.mark.parametrize("context_length, cond_dim", [(0, 0), (3, 2)])
def test_channel_permutation_equivariance_without_channel_embedding(time_mixer, feature_mixer, context_length,
                                                                    cond_dim):
    torch.manual_seed(0)
    N, T, C = 2, 5, 4
    net = perturb_output_layer(small_net(C, time_mixer=time_mixer, feature_mixer=feature_mixer,
                                         channel_embedding_dim=0, context_length=context_length,
                                         cond_dim=cond_dim)).eval()
    x = torch.randn(N, T, C, dtype=torch.float64)
    c_noise = torch.randn(N, dtype=torch.float64)
    history = torch.randn(N, context_length, C, dtype=torch.float64)
    cond = torch.randn(N, T, C, cond_dim, dtype=torch.float64)
    history_cond = torch.randn(N, context_length, C, cond_dim, dtype=torch.float64)
    context = net.pack_context(history, cond, history_cond) if context_length else None
    perm = torch.tensor([2, 0, 3, 1])
    context_perm = net.pack_context(history[..., perm], cond[:, :, perm], history_cond[:, :, perm]) \
        if context_length else None
    out = net(x, c_noise, context)
    out_perm = net(x[..., perm], c_noise, context_perm)
    assert torch.allclose(out_perm, out[..., perm], atol=1e-10)


def test_channel_embedding_permutation_covariance():
    # With channel embeddings the network is not equivariant, but permuting the embedding table along with the
    # channels is: the embedding is the only thing that tells channels apart.
    torch.manual_seed(0)
    N, T, C = 2, 5, 4
    net = perturb_output_layer(small_net(C, channel_embedding_dim=4)).eval()
    x = torch.randn(N, T, C, dtype=torch.float64)
    c_noise = torch.randn(N, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    out = net(x, c_noise)
    assert not torch.allclose(net(x[..., perm], c_noise), out[..., perm], atol=1e-6)
    with torch.no_grad():
        net.channel_embedding.weight.copy_(net.channel_embedding.weight[perm])
    assert torch.allclose(net(x[..., perm], c_noise), out[..., perm], atol=1e-10)


def test_linear_feature_mixer_breaks_equivariance():
    torch.manual_seed(0)
    net = perturb_output_layer(small_net(4, feature_mixer="conv", channel_embedding_dim=0)).eval()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    c_noise = torch.randn(2, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    assert not torch.allclose(net(x[..., perm], c_noise), net(x, c_noise)[..., perm], atol=1e-6)


@pytest.mark.parametrize("time_mixer, kwargs", [
    ("conv", dict(padding="causal")),
    ("attention", dict(causal=True)),
    ("gru", dict(bidirectional=False)),
])
@pytest.mark.parametrize("context_length", [0, 3])
def test_causal_time_mixers_give_a_causal_network(time_mixer, kwargs, context_length):
    torch.manual_seed(0)
    N, T, C, t = 2, 8, 3, 4
    net = perturb_output_layer(small_net(C, time_mixer=time_mixer, time_mixer_kwargs=kwargs,
                                         context_length=context_length))
    x = torch.randn(N, T, C, dtype=torch.float64)
    x2 = x.clone()
    x2[:, t + 1:] += 1.0
    c = torch.randn(N, dtype=torch.float64)
    ctx = torch.randn(N, context_length, C, dtype=torch.float64) if context_length else None
    out, out2 = net(x, c, ctx), net(x2, c, ctx)
    assert torch.allclose(out[:, :t + 1], out2[:, :t + 1], atol=1e-12)
    assert not torch.allclose(out[:, t + 1:], out2[:, t + 1:], atol=1e-6)


def test_context_parts_are_used_and_ignored_columns_are_ignored():
    torch.manual_seed(0)
    N, T, C, Th, K = 2, 4, 3, 3, 2
    net = perturb_output_layer(small_net(C, context_length=Th, cond_dim=K))
    x = torch.randn(N, T, C, dtype=torch.float64)
    c = torch.randn(N, dtype=torch.float64)
    context = make_context(net, N, T)
    assert context.shape == (N, Th + T, (1 + K) * C)
    out = net(x, c, context)
    changed = context.clone()
    changed[:, Th:, :C] = 5.0  # history columns of the window rows: documented as ignored
    assert torch.equal(net(x, c, changed), out)
    for rows, cols in [(slice(0, Th), slice(0, C)),  # history values
                       (slice(0, Th), slice(C, None)),  # conditioning of the history rows
                       (slice(Th, None), slice(C, None))]:  # conditioning of the window rows
        changed = context.clone()
        changed[:, rows, cols] += 1.0
        assert not torch.allclose(net(x, c, changed), out, atol=1e-6)


def test_pack_context_layout():
    N, T, C, Th, K = 2, 4, 3, 2, 2
    history = torch.randn(N, Th, C)
    cond = torch.randn(N, T, C, K)
    history_cond = torch.randn(N, Th, C, K)
    both = CSDIDenoiserNet(C, channels=8, context_length=Th, cond_dim=K)
    ctx = both.pack_context(history, cond, history_cond)
    assert torch.equal(ctx[:, :Th, :C], history)
    assert torch.equal(ctx[:, Th:, :C], torch.zeros(N, T, C))
    for k in range(K):
        plane = ctx[:, :, C + k * C:C + (k + 1) * C]
        assert torch.equal(plane[:, :Th], history_cond[..., k])
        assert torch.equal(plane[:, Th:], cond[..., k])
    assert torch.equal(both.pack_context(history, cond)[:, :Th, C:], torch.zeros(N, Th, K * C))
    cond_only = CSDIDenoiserNet(C, channels=8, cond_dim=K).pack_context(cond=cond)
    assert torch.equal(cond_only, torch.cat([cond[..., k] for k in range(K)], dim=-1))
    assert torch.equal(CSDIDenoiserNet(C, channels=8, context_length=Th).pack_context(history), history)
    assert CSDIDenoiserNet(C, channels=8).pack_context() is None


def test_history_length_generalises_over_window_length():
    # Sinusoidal positions: the same network accepts any window length.
    net = small_net(2, context_length=3)
    for T in [1, 4, 9]:
        assert net(torch.randn(2, T, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                   torch.randn(2, 3, 2, dtype=torch.float64)).shape == (2, T, 2)


def _bad_forward_cases():
    C, T = 3, 4
    x = torch.randn(2, T, C, dtype=torch.float64)
    c = torch.zeros(2, dtype=torch.float64)
    plain = small_net(C)
    hist = small_net(C, context_length=2)
    both = small_net(C, context_length=2, cond_dim=1)
    learned = small_net(C, time_embedding="learned", max_length=5, context_length=2)
    return [
        (plain, (torch.randn(2, T), c, None), "x_in"),
        (plain, (torch.randn(2, T, C, 1), c, None), "x_in"),
        (plain, (torch.randn(2, T, C + 1), c, None), "x_in"),
        (plain, (torch.randn(2, 0, C), c, None), "x_in"),
        (plain, (x, torch.zeros(3), None), "c_noise"),
        (plain, (x, torch.zeros(2, 1), None), "c_noise"),
        (plain, (x, 0.0, None), "c_noise"),
        (plain, (x, c, torch.zeros(2, T, C)), "context"),
        (hist, (x, c, None), "context"),
        (hist, (x, c, torch.zeros(2, 3, C)), "context"),
        (hist, (x, c, torch.zeros(3, 2, C)), "context"),
        (hist, (x, c, torch.zeros(2, 2, C + 1)), "context"),
        (both, (x, c, torch.zeros(2, 2, 2 * C)), "context"),
        (both, (x, c, torch.zeros(2, 2 + T, C)), "context"),
        (learned, (x, c, torch.zeros(2, 2, C)), "x_in"),
    ]


@pytest.mark.parametrize("case", range(15))
def test_bad_inputs_raise(case):
    net, args, name = _bad_forward_cases()[case]
    with pytest.raises(ValueError, match=name):
        net(*args)


@pytest.mark.parametrize("kwargs, name", [
    (dict(obs_dim=0), "obs_dim"),
    (dict(channels=0), "channels"),
    (dict(num_layers=0), "num_layers"),
    (dict(context_length=-1), "context_length"),
    (dict(cond_dim=1.5), "cond_dim"),
    (dict(time_embedding_dim=7), "time_embedding_dim"),
    (dict(time_embedding="rope"), "time_embedding"),
    (dict(time_embedding="learned"), "max_length"),
    (dict(time_mixer="lstm"), "time_mixer"),
    (dict(feature_mixer="gru"), "feature_mixer"),
    (dict(channels=12, time_mixer_kwargs=dict(num_heads=5)), "num_heads"),
])
def test_bad_constructor_arguments(kwargs, name):
    kwargs = {"obs_dim": 3, "channels": 16, **kwargs}
    with pytest.raises(ValueError, match=name):
        CSDIDenoiserNet(**kwargs)


@pytest.mark.parametrize("kwargs, name", [
    (dict(history=None, cond=torch.zeros(2, 4, 3, 1)), "history"),
    (dict(history=torch.zeros(2, 2, 3), cond=None), "cond"),
    (dict(history=torch.zeros(2, 3, 3), cond=torch.zeros(2, 4, 3, 1)), "history"),
    (dict(history=torch.zeros(2, 2, 3), cond=torch.zeros(2, 4, 3, 2)), "cond"),
    (dict(history=torch.zeros(3, 2, 3), cond=torch.zeros(2, 4, 3, 1)), "same N"),
    (dict(history=torch.zeros(2, 2, 3), cond=torch.zeros(2, 4, 3, 1), history_cond=torch.zeros(2, 3, 3, 1)),
     "history_cond"),
])
def test_bad_pack_context_arguments(kwargs, name):
    net = CSDIDenoiserNet(3, channels=8, context_length=2, cond_dim=1)
    with pytest.raises(ValueError, match=name):
        net.pack_context(**kwargs)
