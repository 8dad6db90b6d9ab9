import copy

import pytest
import torch
import torch.nn.functional as F

from pyroseq.nn import LagFusion, LagFusionMamba, Mamba, lag_grid_size


@pytest.mark.parametrize("length,side", [(1, 1), (2, 2), (4, 2), (5, 3), (9, 3), (10, 4), (24, 5), (25, 5), (26, 6)])
def test_grid_size(length, side):
    assert lag_grid_size(length) == side


def conv_reference(states, weight):
    """The definition: zero-pad time to s*s, view as an s x s grid, depthwise 3x3 conv at dilations 1..k."""
    b, d, length, n = states.shape
    s = lag_grid_size(length)
    grid = F.pad(states.permute(0, 3, 1, 2).reshape(b * n, d, length), (0, s * s - length)).reshape(b * n, d, s, s)
    mixed = sum(F.conv2d(grid, weight[j - 1].unsqueeze(1), padding=j, dilation=j, groups=d)
                for j in range(1, weight.shape[0] + 1))
    mixed = mixed.reshape(b * n, d, s * s)[..., :length].reshape(b, n, d, length).permute(0, 2, 3, 1)
    return states + mixed


@pytest.mark.parametrize("length", [1, 3, 7, 24, 25, 30])
@pytest.mark.parametrize("num_lags", [1, 2, 3])
def test_fusion_equals_dilated_convolutions_on_grid(length, num_lags):
    torch.manual_seed(length + 10 * num_lags)
    fusion = LagFusion(4, num_lags).double()
    with torch.no_grad():
        fusion.weight.normal_()
    states = torch.randn(2, 4, length, 3, dtype=torch.float64)
    expected = conv_reference(states, fusion.weight)
    assert torch.allclose(fusion(states), expected, atol=1e-12)
    # the summed (2k+1) x (2k+1) kernel is the same operator
    b, d, _, n = states.shape
    s = lag_grid_size(length)
    grid = F.pad(states.permute(0, 3, 1, 2).reshape(b * n, d, length), (0, s * s - length)).reshape(b * n, d, s, s)
    mixed = F.conv2d(grid, fusion.kernel(), padding=num_lags, groups=d)
    mixed = mixed.reshape(b * n, d, s * s)[..., :length].reshape(b, n, d, length).permute(0, 2, 3, 1)
    assert torch.allclose(states + mixed, expected, atol=1e-12)


# (dilation j, tap row a, tap column c) -> lag; L = 24 gives a 5 x 5 grid (s = 5)
@pytest.mark.parametrize("j,a,c,lag", [(1, 1, 2, 1), (1, 1, 0, -1), (1, 2, 1, 5), (1, 0, 1, -5), (2, 1, 2, 2),
                                       (2, 2, 1, 10), (2, 0, 1, -10), (2, 2, 2, 12), (2, 0, 2, -8), (1, 2, 0, 4)])
def test_single_tap_mixes_exactly_the_lagged_state(j, a, c, lag):
    length, s, d, n = 24, 5, 3, 2
    fusion = LagFusion(d, num_lags=2).double()
    with torch.no_grad():
        fusion.weight[j - 1, 1, a, c] = 0.5  # inner channel 1 only
    states = torch.randn(2, d, length, n, dtype=torch.float64)
    out = fusion(states)
    expected = states.clone()
    for t in range(length):
        row, col = divmod(t, s)
        row2, col2 = row + (a - 1) * j, col + (c - 1) * j
        src = row2 * s + col2
        if 0 <= col2 < s and row2 >= 0 and src < length:  # on the grid and not in the zero padding
            assert src == t + lag
            expected[:, 1, t] += 0.5 * states[:, 1, src]
    assert torch.equal(out[:, [0, 2]], states[:, [0, 2]])  # other channels untouched
    assert torch.allclose(out, expected, atol=1e-14)


def test_single_tap_boundaries():
    # lag +1 does not wrap from the end of a grid row to the next row; lag +5 stops at the end of the series
    fusion = LagFusion(1, num_lags=1).double()
    states = torch.zeros(1, 1, 24, 1, dtype=torch.float64)
    states[0, 0, 5, 0] = 1.0  # start of row 1
    with torch.no_grad():
        fusion.weight[0, 0, 1, 2] = 1.0  # reads t + 1
    out = fusion(states)[0, 0, :, 0]
    assert out[4] == 0 and out[5] == 1  # step 4 ends row 0, so it does not read step 5
    with torch.no_grad():
        fusion.weight.zero_()
        fusion.weight[0, 0, 2, 1] = 1.0  # reads t + 5
    states[0, 0, 5, 0] = 0.0
    states[0, 0, 23, 0] = 1.0
    out = fusion(states)[0, 0, :, 0]
    assert out[18] == 1 and out.sum() == 2  # 18 reads 23; 19..23 read the padding


def test_zero_weights_equal_plain_mamba_readout():
    torch.manual_seed(0)
    block = LagFusionMamba(8, num_lags=2, d_state=4).double()
    plain = Mamba(8, d_state=4).double()
    plain.load_state_dict({k[len("mamba."):]: v for k, v in block.state_dict().items() if k.startswith("mamba.")})
    x = torch.randn(3, 11, 8, dtype=torch.float64)
    assert torch.allclose(block(x), plain(x), atol=1e-12)
    # the fusion weights start at zero but receive gradients
    block(x).pow(2).sum().backward()
    assert block.fusion.weight.grad.abs().sum() > 0


def test_nonzero_fusion_changes_output_and_keeps_shape():
    torch.manual_seed(1)
    block = LagFusionMamba(8, num_lags=1, d_state=4).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    before = block(x)
    with torch.no_grad():
        block.fusion.weight.normal_()
    after = block(x)
    assert after.shape == (2, 9, 8) and not torch.allclose(before, after)


def test_fusion_gradcheck():
    torch.manual_seed(2)
    fusion = LagFusion(2, num_lags=2).double()
    with torch.no_grad():
        fusion.weight.normal_()
    states = torch.randn(1, 2, 10, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, w: _with_weight(fusion, w)(h), (states, fusion.weight.detach().clone()
                                                                              .requires_grad_()))





@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("length,num_lags", [(1, 1), (7, 1), (24, 2), (30, 3), (65, 2)])
@pytest.mark.parametrize("grouped", [False, True])
def test_fused_readout_equals_generic_readout(dtype, atol, length, num_lags, grouped):
    # readout(h, C) (numba kernels, forward and backward) is C . fusion(h) without the fused states
    pytest.importorskip("numba")
    from pyroseq.nn.selective_scan import selective_scan_readout

    torch.manual_seed(length + num_lags)
    fusion = LagFusion(6, num_lags).to(dtype)
    with torch.no_grad():
        fusion.weight.normal_()
    H = torch.randn(3, 6, length, 4, dtype=dtype, requires_grad=True)
    C = torch.randn(3, 1, 4, length, dtype=dtype) if grouped else torch.randn(3, 4, length, dtype=dtype)
    C.requires_grad_()
    y = fusion.readout(H, C)
    expected = selective_scan_readout(fusion(H), C)
    assert y.shape == (3, 6, length) and torch.allclose(y, expected, atol=atol)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (H, C, fusion.weight), g)
    ref = torch.autograd.grad(expected, (H, C, fusion.weight), g)
    for got, want in zip(grads, ref):
        assert torch.allclose(got, want, atol=atol * 10)


def test_fused_readout_gradcheck_and_fallbacks():
    pytest.importorskip("numba")
    torch.manual_seed(3)
    fusion = LagFusion(2, num_lags=2).double()
    with torch.no_grad():
        fusion.weight.normal_()
    H = torch.randn(2, 2, 10, 3, dtype=torch.float64, requires_grad=True)
    C = torch.randn(2, 3, 10, dtype=torch.float64, requires_grad=True)
    w = fusion.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda h, c, w: _with_weight(fusion, w).readout(h, c), (H, C, w))
    # declined (None) where the kernels do not apply: selective_scan then uses forward()
    assert LagFusion(2, 2, fused_readout=False).readout(H, C) is None
    assert fusion.readout(H, torch.randn(2, 2, 3, 10, dtype=torch.float64)) is None  # two groups of C
    assert fusion.readout(H, C.float()) is not None  # C is cast to the states' dtype
    assert fusion.readout(H.half(), C) is None


@pytest.mark.parametrize("fused_readout", [True, False])
def test_lag_fusion_mamba_same_with_and_without_fused_readout(fused_readout):
    torch.manual_seed(4)
    block = LagFusionMamba(8, num_lags=2, d_state=4).double()
    with torch.no_grad():
        block.fusion.weight.normal_(0, 0.3)
    other = copy.deepcopy(block)
    other.fusion.fused_readout = not fused_readout
    block.fusion.fused_readout = fused_readout
    x = torch.randn(3, 26, 8, dtype=torch.float64)
    out, out2 = block(x), other(x)
    assert torch.allclose(out, out2, atol=1e-10)
    out.pow(2).sum().backward()
    out2.pow(2).sum().backward()
    for (name, p), q in zip(block.named_parameters(), other.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-9), name


def _with_weight(fusion, weight):
    clone = copy.deepcopy(fusion)
    del clone.weight
    clone.weight = weight
    return clone


def test_state_dict_keys():
    block = LagFusionMamba(16, num_lags=2)
    keys = set(block.state_dict())
    assert "fusion.weight" in keys and "mamba.A_log" in keys and "mamba.in_proj.weight" in keys
    assert block.fusion.weight.shape == (2, block.mamba.d_inner, 3, 3)


def test_bad_input():
    fusion = LagFusion(4, num_lags=2)
    with pytest.raises(ValueError, match="states"):
        fusion(torch.randn(2, 3, 5, 2))
    with pytest.raises(ValueError, match="states"):
        fusion(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="num_lags"):
        LagFusion(4, num_lags=0)
    with pytest.raises(ValueError, match="length"):
        lag_grid_size(0)
