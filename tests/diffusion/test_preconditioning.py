import pytest
import torch

from pyroseq.diffusion import EDMPrecond, edm_scalings


class ZeroNet(torch.nn.Module):
    def forward(self, x, c_noise, context=None):
        return torch.zeros_like(x)


def test_scalings_satisfy_unit_variance_identities():
    sigma = torch.logspace(-3, 2, 50, dtype=torch.float64)
    sd = 0.5
    c_skip, c_out, c_in, c_noise = edm_scalings(sigma, sd)
    # Input to F has unit variance; the training target (x0 - c_skip x)/c_out has unit variance.
    assert torch.allclose(c_in**2 * (sigma**2 + sd**2), torch.ones_like(sigma))
    target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2) / c_out**2
    assert torch.allclose(target_var, torch.ones_like(sigma))
    assert torch.allclose(c_noise, sigma.log() / 4)


@pytest.mark.parametrize("event_shape", [(3,), (5, 2)])
def test_zero_network_gives_gaussian_optimal_denoiser(event_shape):
    # With F = 0, D = c_skip x: the exact denoiser of N(0, sd^2) data.
    den = EDMPrecond(ZeroNet(), sigma_data=1.0)
    x = torch.randn((4,) + event_shape)
    sigma = torch.rand(4) + 0.1
    out = den(x, sigma)
    expected = x / (1 + sigma.reshape((-1,) + (1,) * len(event_shape)) ** 2)
    assert torch.allclose(out, expected)


def test_bad_sigma_shape_and_data_scale():
    den = EDMPrecond(ZeroNet(), sigma_data=1.0)
    with pytest.raises(ValueError, match="sigma"):
        den(torch.randn(4, 2), torch.ones(3))
    with pytest.raises(ValueError, match="sigma_data"):
        EDMPrecond(ZeroNet(), sigma_data=-1.0)
