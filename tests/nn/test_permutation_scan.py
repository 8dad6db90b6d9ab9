import io

import pytest
import torch

from pyroseq.nn import ChannelPermutation, DiMTSNet, spectral_channel_order


def block_series(assignment, length=2000, noise=0.3, seed=0):
    """Channels driven by shared factors: channel i = factor[assignment[i]] + noise."""
    g = torch.Generator().manual_seed(seed)
    assignment = torch.as_tensor(assignment)
    factors = torch.randn(length, int(assignment.max()) + 1, generator=g)
    return factors[:, assignment] + noise * torch.randn(length, len(assignment), generator=g)


@pytest.mark.parametrize("assignment", [[0, 1, 0, 1, 0, 1], [1, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0, 1]])
@pytest.mark.parametrize("seed", [0, 1])
def test_block_correlated_channels_are_adjacent(assignment, seed):
    order = spectral_channel_order(block_series(assignment, seed=seed))
    assert sorted(order.tolist()) == list(range(len(assignment)))
    blocks = [assignment[i] for i in order.tolist()]
    # one switch between the two blocks: each block is a contiguous run in the scan order
    assert sum(a != b for a, b in zip(blocks, blocks[1:])) == 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_chain_is_recovered_up_to_reversal(seed):
    # corr(i, j) = 0.9^|i - j| along a hidden chain; columns shuffled
    g = torch.Generator().manual_seed(seed)
    T, C, rho = 4000, 8, 0.9
    x = torch.zeros(T, C)
    x[:, 0] = torch.randn(T, generator=g)
    for i in range(1, C):
        x[:, i] = rho * x[:, i - 1] + (1 - rho**2) ** 0.5 * torch.randn(T, generator=g)
    perm = torch.randperm(C, generator=g)
    chain = perm[spectral_channel_order(x[:, perm])].tolist()
    assert chain in (list(range(C)), list(range(C))[::-1])


def test_only_the_first_70_percent_is_used():
    head = block_series([0, 1, 0, 1], length=700, seed=0)
    tail = block_series([0, 0, 1, 1], length=300, noise=0.01, seed=1) * 10
    order = spectral_channel_order(torch.cat([head, tail]), train_fraction=0.7)
    assert order.tolist() == spectral_channel_order(head, train_fraction=1.0).tolist()
    assert {frozenset(order[:2].tolist()), frozenset(order[2:].tolist())} == {frozenset({0, 2}), frozenset({1, 3})}


def test_windows_input_pools_leading_windows():
    series = block_series([0, 1, 0, 1], length=1000)
    windows = series.unfold(0, 10, 10).transpose(1, 2)  # (100, 10, 4), non-overlapping
    assert torch.equal(spectral_channel_order(windows), spectral_channel_order(series))


def test_single_channel():
    assert spectral_channel_order(torch.randn(10, 1)).tolist() == [0]


def test_permute_unpermute():
    perm = ChannelPermutation(5).set_order([3, 0, 4, 1, 2])
    h = torch.randn(2, 5, 7)
    p = perm.permute(h, dim=1)
    assert torch.equal(p[:, 0], h[:, 3]) and torch.equal(p[:, 2], h[:, 4])
    assert torch.equal(perm.unpermute(p, dim=1), h)


def test_order_is_saved_and_loaded_with_the_state_dict():
    series = block_series([0, 1, 0, 1, 0, 1])
    net = DiMTSNet(6, 8, hidden_dim=8, d_state=2, num_decoder_layers=1)
    net.fit_channel_order(series)
    order = net.channel_order.clone()
    assert not torch.equal(order, torch.arange(6))
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = DiMTSNet(6, 8, hidden_dim=8, d_state=2, num_decoder_layers=1)
    assert torch.equal(fresh.channel_order, torch.arange(6))
    fresh.load_state_dict(torch.load(buffer))
    assert torch.equal(fresh.channel_order, order)
    x, c = torch.randn(3, 8, 6), torch.randn(3)
    for name, p in net.named_parameters():  # make the network non-trivial (its read-outs start at zero)
        p.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(len(name)))
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh(x, c), net(x, c))


def test_scan_order_matters():
    torch.manual_seed(0)
    net = DiMTSNet(4, 6, hidden_dim=8, d_state=2, num_decoder_layers=1)
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    x, c = torch.randn(2, 6, 4), torch.randn(2)
    before = net(x, c)
    net.set_channel_order([2, 0, 3, 1])
    assert not torch.allclose(before, net(x, c))


def test_bad_input():
    with pytest.raises(ValueError, match="series"):
        spectral_channel_order(torch.randn(5))
    with pytest.raises(ValueError, match="NaN"):
        spectral_channel_order(torch.tensor([[0.0, 1.0], [float("nan"), 2.0], [1.0, 3.0]]))
    with pytest.raises(ValueError, match="constant"):
        spectral_channel_order(torch.stack([torch.randn(50), torch.ones(50)], -1))
    with pytest.raises(ValueError, match="too short"):
        spectral_channel_order(torch.randn(2, 3))
    with pytest.raises(ValueError, match="floating"):
        spectral_channel_order(torch.ones(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="train_fraction"):
        spectral_channel_order(torch.randn(10, 2), train_fraction=0.0)
    perm = ChannelPermutation(3)
    for bad in ([0, 1, 1], [0, 1], [0.0, 1.0, 2.0], [1, 2, 3]):
        with pytest.raises(ValueError, match="permutation"):
            perm.set_order(bad)
    with pytest.raises(ValueError, match="channels"):
        perm.fit(torch.randn(20, 4))
