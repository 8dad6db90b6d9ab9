import math

import pyro
import pyro.distributions as dist
import pytest
from pyro import poutine

from pyroseq.inference import SiteScaleMessenger, kl_weight, scale_sites


@pytest.mark.parametrize("step,expected", [(0, 0.1), (50, 0.1 + 0.9 * 0.5), (100, 1.0), (1000, 1.0)])
def test_linear(step, expected):
    assert kl_weight(step, ("linear", 100, 1.0, 0.1)) == pytest.approx(expected)


@pytest.mark.parametrize("step,expected", [(0, 0.0), (25, 0.5 * (1 - math.cos(math.pi / 4))), (50, 0.5), (200, 1.0)])
def test_cosine(step, expected):
    assert kl_weight(step, ("cosine", 100, 1.0)) == pytest.approx(expected)


def test_constant_and_none():
    assert kl_weight(7, None) == 1.0
    assert kl_weight(0, (None, 0, 0.3)) == 0.3
    assert kl_weight(0, ("linear", 0, 0.5)) == 0.5


@pytest.mark.parametrize("bad", [("step", 10, 1.0), ("linear", -1, 1.0), ("linear", 10, -1.0), ("linear", 10),
                                 "linear"])
def test_bad_schedules(bad):
    with pytest.raises(ValueError, match="kl_schedule"):
        kl_weight(0, bad)


def test_site_scale_scales_only_named_sites():
    def model():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(0.0, 1.0))

    trace = poutine.trace(model).get_trace()
    ref = {name: trace.nodes[name]["fn"].log_prob(trace.nodes[name]["value"]) for name in ("a", "b")}
    with scale_sites(sites=["a"], scale=0.25):
        scaled = poutine.trace(poutine.replay(model, trace=trace)).get_trace()
    assert scaled.log_prob_sum() == pytest.approx((0.25 * ref["a"] + ref["b"]).item())
    with pytest.raises(ValueError, match="non-negative"):
        SiteScaleMessenger(["a"], -1.0)
