import math

import pytest
import torch
import torch.nn.functional as F

from pyroseq.metrics.score import seeded
from pyroseq.metrics.ts2vec import (
    TS2VecEncoder,
    _conv,
    encode_windows,
    hierarchical_contrastive_loss,
    instance_contrastive_loss,
    random_overlapping_crops,
    temporal_contrastive_loss,
    train_ts2vec,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # The networks are tiny: intra-op threads only add synchronisation cost, which becomes a
    # many-fold slowdown on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _naive_instance(z1, z2):
    # Explicit loops: for each step t and row i of the 2B stacked views, -log softmax of the
    # positive among the 2B - 1 other rows.
    batch, steps, _ = z1.shape
    z = torch.cat([z1, z2])
    total, count = 0.0, 0
    for t in range(steps):
        for i in range(2 * batch):
            others = [j for j in range(2 * batch) if j != i]
            logits = torch.stack([z[i, t] @ z[j, t] for j in others])
            pos = others.index((i + batch) % (2 * batch))
            total += -(logits[pos] - torch.logsumexp(logits, 0))
            count += 1
    return total / count


def _naive_temporal(z1, z2):
    return _naive_instance(z1.transpose(0, 1), z2.transpose(0, 1))


@pytest.mark.parametrize("batch,steps", [(2, 1), (3, 4), (4, 5)])
def test_contrastive_losses_match_naive(batch, steps):
    torch.manual_seed(0)
    z1, z2 = torch.randn(batch, steps, 6, dtype=torch.float64), torch.randn(batch, steps, 6,
                                                                           dtype=torch.float64)
    assert torch.allclose(instance_contrastive_loss(z1, z2), _naive_instance(z1, z2))
    if steps > 1:
        assert torch.allclose(temporal_contrastive_loss(z1, z2), _naive_temporal(z1, z2))
    else:
        assert temporal_contrastive_loss(z1, z2) == 0


def test_hierarchical_loss_scales():
    torch.manual_seed(0)
    z1, z2 = torch.randn(3, 5, 4, dtype=torch.float64), torch.randn(3, 5, 4, dtype=torch.float64)
    # Scales: length 5 -> 2 -> 1 (max-pool with kernel 2 drops the odd last step).
    expected = 0.5 * instance_contrastive_loss(z1, z2) + 0.5 * temporal_contrastive_loss(z1, z2)
    p1 = F.max_pool1d(z1.transpose(1, 2), 2).transpose(1, 2)
    p2 = F.max_pool1d(z2.transpose(1, 2), 2).transpose(1, 2)
    expected = expected + 0.5 * instance_contrastive_loss(p1, p2) + 0.5 * temporal_contrastive_loss(
        p1, p2)
    q1, q2 = p1.amax(1, keepdim=True), p2.amax(1, keepdim=True)
    expected = (expected + 0.5 * instance_contrastive_loss(q1, q2)) / 3
    assert torch.allclose(hierarchical_contrastive_loss(z1, z2), expected)
    # Single batch row and single step: no negatives at all.
    assert hierarchical_contrastive_loss(z1[:1, :1], z2[:1, :1]) == 0


@pytest.mark.parametrize("steps", [2, 3, 24])
def test_random_overlapping_crops(steps):
    batch = 16
    x = torch.arange(steps, dtype=torch.float32).expand(batch, steps).unsqueeze(-1) + 100 * \
        torch.arange(batch).view(-1, 1, 1)
    torch.manual_seed(steps)
    for _ in range(20):
        v1, v2, overlap = random_overlapping_crops(x)
        assert 2 <= overlap <= min(v1.shape[1], v2.shape[1])
        assert torch.equal(v1[:, -overlap:], v2[:, :overlap])
        for v in (v1, v2):  # contiguous segments of the row's own window
            diffs = v[:, 1:, 0] - v[:, :-1, 0]
            assert (diffs == 1).all()
            assert torch.equal(v[:, 0, 0] // 100, torch.arange(batch, dtype=torch.float32))


def test_encoder_shapes_and_masking():
    enc = TS2VecEncoder(3, hidden_dim=8, output_dim=12, depth=3)
    assert len(enc.blocks) == 4
    x = torch.rand(5, 7, 3)
    enc.eval()
    out = enc(x)
    assert out.shape == (5, 7, 12)
    assert torch.equal(out, enc(x))  # eval: no masking, no dropout
    enc.train()
    torch.manual_seed(0)
    assert not torch.equal(out, enc(x))
    reps = encode_windows(enc, x, chunk_size=2)
    assert reps.shape == (5, 12)
    assert enc.training  # mode restored
    torch.testing.assert_close(torch.as_tensor(reps, dtype=torch.float32), out.amax(1))


@pytest.mark.parametrize("dilation,steps", [(1, 5), (4, 5), (5, 5), (16, 5)])
def test_large_dilation_shortcut_is_exact(dilation, steps):
    conv = torch.nn.Conv1d(3, 4, 3, padding=dilation, dilation=dilation).double()
    x = torch.randn(2, 3, steps, dtype=torch.float64)
    assert torch.allclose(_conv(conv, x), conv(x), atol=1e-12)


def test_train_ts2vec_reproducible():
    x = torch.rand(20, 6, 2)
    reps = []
    for _ in range(2):
        with seeded(1):
            enc = train_ts2vec(x, iterations=3, batch_size=4, hidden_dim=8, output_dim=10, depth=2)
        reps.append(encode_windows(enc, x))
    assert reps[0].shape == (20, 10)
    assert (reps[0] == reps[1]).all()
    assert math.isfinite(reps[0].sum())
    with pytest.raises(ValueError, match="length >= 2"):
        train_ts2vec(torch.rand(4, 1, 2), iterations=1)
