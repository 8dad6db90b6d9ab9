import pyro
import pytest
import torch

from pyroseq.inference import fit
from pyroseq.inference.fit import _build_optimizer


@pytest.mark.parametrize("name", ["dkf", "ddssm"])
def test_short_fit_lowers_the_loss(name, series, make_model):
    model = make_model(name)
    losses = fit(model, series, num_steps=150, batch_size=16, lr=1e-2, progress=False)
    assert len(losses) == 150 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20 - 5.0


@pytest.mark.parametrize("name", ["dkf", "ddssm"])
def test_missing_data_trains_without_nan(name, series, make_model):
    x = series.clone()
    generator = torch.Generator().manual_seed(0)
    x[torch.rand(x.shape, generator=generator) < 0.3] = float("nan")
    model = make_model(name)
    seen = []

    def callback(step, loss):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        seen.append(all(torch.isfinite(g).all() for g in grads) and len(grads) > 0)

    losses = fit(model, x, num_steps=30, batch_size=8, lr=1e-2, progress=False, callback=callback)
    assert all(torch.isfinite(torch.tensor(losses))) and all(seen)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name,steps", [("dkf", 200), ("ddssm", 30)])
def test_resume_is_exact(name, steps, series, tmp_path, make_model):
    kwargs = dict(batch_size=8, lr=3e-3, progress=False, kl_schedule=("linear", steps, 1.0, 0.1), seed=3)
    series = series[:16, :4]  # short series keep the 800 steps fast
    reference = make_model(name)
    full = fit(reference, series, num_steps=2 * steps, **kwargs)
    path = tmp_path / "ckpt.pt"
    first = make_model(name)
    fit(first, series, num_steps=steps, checkpoint=path, **kwargs)
    resumed = make_model(name, seed=123)  # a fresh object; its own initial weights get overwritten
    losses = fit(resumed, series, num_steps=2 * steps, checkpoint=path, **kwargs)
    assert losses == full
    for (n1, p1), (n2, p2) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1


def test_checkpoint_every_and_no_resume(series, tmp_path, make_model):
    path = tmp_path / "ckpt.pt"
    model = make_model("dkf")
    fit(model, series, num_steps=6, batch_size=4, checkpoint=path, checkpoint_every=2, progress=False)
    assert torch.load(path, weights_only=False)["step"] == 6
    fresh = fit(make_model("dkf"), series, num_steps=3, batch_size=4, checkpoint=path, resume=False,
                progress=False)
    assert len(fresh) == 3


def test_param_groups_and_ema(series, make_model):
    model = make_model("ddssm")
    opt = _build_optimizer(model, 1e-3, {"denoiser": 5e-4, "decoder": 2e-3}, (0.9, 0.999))
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"encoder": 1e-3, "decoder": 2e-3, "initial": 1e-3, "denoiser": 5e-4}
    model.ema_decay = 0.5  # the model's setting; fit may restate it
    fit(model, series, num_steps=3, batch_size=4, ema_decay=0.5, progress=False)
    assert model.ema_decay == 0.5 and int(model.ema_updates) == 3
    with pytest.raises(ValueError, match="owns this setting"):
        fit(model, series, num_steps=3, batch_size=4, ema_decay=0.9, progress=False)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_steps=-1), "num_steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(lrs={"decoderr": 1e-3}), "unknown parameter groups"),
    (dict(kl_schedule=("sigmoid", 10, 1.0)), "kl_schedule"),
    (dict(clip_norm=0.0), "clip_norm"),
    (dict(ema_decay=1.0), "ema_decay"),
])
def test_bad_arguments(kwargs, match, series, make_model):
    with pytest.raises(ValueError, match=match):
        fit(make_model("dkf"), series, progress=False, **{"num_steps": 1, **kwargs})


@pytest.mark.parametrize("bad,match", [(torch.randn(4, 5), "rank 3"), ("data", "torch.Tensor")])
def test_bad_data(bad, match, make_model):
    with pytest.raises(ValueError, match=match):
        fit(make_model("dkf"), bad, num_steps=1, progress=False)


class _RegimeModel(pyro.nn.PyroModule):
    """A per-series discrete regime (enumerated) choosing the mean of Gaussian series."""

    def __init__(self):
        super().__init__()
        self.means = torch.nn.Parameter(torch.tensor([-1.0, 1.0]))
        self.logits = torch.nn.Parameter(torch.zeros(2))

    def model(self, x, mask=None, covariates=None):
        pyro.module("regime_model", self)
        with pyro.plate("series", x.shape[0]):
            k = pyro.sample("k", pyro.distributions.Categorical(logits=self.logits),
                            infer={"enumerate": "parallel"})
            loc = self.means[k].unsqueeze(-1).unsqueeze(-1)
            pyro.sample("x", pyro.distributions.Normal(loc, 1.0).expand(loc.shape[:-2] + x.shape[1:]).to_event(2),
                        obs=x)

    def guide(self, x, mask=None, covariates=None):
        pass


def test_fit_with_another_pyro_elbo():
    from pyro.infer import Trace_ELBO, TraceEnum_ELBO

    torch.manual_seed(0)
    x = torch.cat([torch.randn(20, 5, 1) - 3.0, torch.randn(20, 5, 1) + 3.0])
    model = _RegimeModel()
    losses = fit(model, x, num_steps=150, batch_size=40, lr=0.05, progress=False,
                 elbo=TraceEnum_ELBO(max_plate_nesting=1))
    assert losses[-1] < losses[0]
    assert torch.allclose(model.means.detach().sort().values, torch.tensor([-3.0, 3.0]), atol=0.3)
    # The exact marginal likelihood: enumeration sums the regime out.
    exact = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, model.guide, x) / len(x)
    assert abs(losses[-1] - exact) < 1e-3
    with pytest.raises(ValueError, match="differentiable_loss"):
        fit(model, x, num_steps=1, progress=False, elbo="trace")
    with pytest.raises(ValueError, match="num_particles"):
        fit(model, x, num_steps=1, progress=False, elbo=Trace_ELBO(), num_particles=4)
