import inspect
import os
import subprocess
import sys
import textwrap

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam

from pyroseq.data import bimodal
from pyroseq.inference import fit, load_checkpoint
from pyroseq.inference.distributed import DistributedContext, average_gradients, setup_distributed, shard_indices
from pyroseq.models import DKF

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS, BATCH = 20, 8


class Toy(PyroModule):
    """Per-time-step Gaussian with learned mean and scale: no latent sites, so the ELBO (hence a
    data-parallel run) is deterministic."""

    def __init__(self, T, C):
        super().__init__()
        self.loc = PyroParam(torch.zeros(T, C))
        self.log_scale = PyroParam(torch.zeros(T, C))

    def model(self, x, mask=None, covariates=None):
        with pyro.plate("series", x.shape[0]):
            pyro.sample("x", dist.Normal(self.loc, self.log_scale.exp()).to_event(2), obs=x)

    def guide(self, x, mask=None, covariates=None):
        pass


# Run by torchrun on every rank. Each rank builds its models under its own seed: fit must broadcast rank 0's.
WORKER = textwrap.dedent("""
    import os, sys
    import pyro, pyro.distributions as dist, torch
    import torch.distributed as torch_dist
    from pyro.nn import PyroModule, PyroParam
    torch.set_num_threads(1)
    from pyroseq.data import bimodal
    from pyroseq.inference import fit
    from pyroseq.models import DKF
    """) + inspect.getsource(Toy) + textwrap.dedent(f"""
    out, rank = sys.argv[1], int(os.environ["RANK"])
    x = bimodal(32, 6, seed=0)
    kwargs = dict(batch_size={BATCH}, seed=0, lr=1e-2, progress=False, distributed=True)

    def dkf():
        pyro.set_rng_seed(100 + rank)
        return DKF(1, 1, rnn_dim=8, hidden_dim=8, transition_dim=8)

    results = {{}}
    pyro.set_rng_seed(100 + rank)
    toy = Toy(6, 1)
    results["toy"] = (fit(toy, x, num_steps={STEPS}, **kwargs), toy.state_dict())
    model = dkf()
    results["dkf"] = (fit(model, x, num_steps={STEPS}, **kwargs), model.state_dict())
    ckpt = os.path.join(os.path.dirname(out), "ddp.pt")
    fit(dkf(), x, num_steps={STEPS} // 2, checkpoint=ckpt, **kwargs)
    model = dkf()
    results["resumed"] = (fit(model, x, num_steps={STEPS}, checkpoint=ckpt, **kwargs), model.state_dict())
    results["world_size"] = torch_dist.get_world_size()
    torch.save(results, f"{{out}}.{{rank}}")  # fit created the process group; it is destroyed at exit
""")


def _single(model, x):
    return fit(model, x, num_steps=STEPS, batch_size=BATCH, seed=0, lr=1e-2, progress=False, distributed=False)


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp / "result")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(tmp / f"result.{rank}", weights_only=False) for rank in (0, 1)], tmp


def test_ranks_stay_bit_identical(ddp_results):
    (r0, r1), _ = ddp_results
    assert r0["world_size"] == r1["world_size"] == 2
    for key in ("toy", "dkf", "resumed"):
        assert r0[key][0] == r1[key][0], key  # averaged losses
        for name, value in r0[key][1].items():
            assert torch.equal(value, r1[key][1][name]), (key, name)


def test_matches_single_process_with_the_same_global_batch(ddp_results):
    (r0, _), _ = ddp_results
    x = bimodal(32, 6, seed=0)
    # Deterministic ELBO: the data-parallel update equals the single-process one up to round-off.
    pyro.set_rng_seed(100)
    toy = Toy(6, 1)
    losses = _single(toy, x)
    torch.testing.assert_close(torch.tensor(r0["toy"][0]), torch.tensor(losses), rtol=1e-5, atol=1e-5)
    for name, value in toy.state_dict().items():
        torch.testing.assert_close(r0["toy"][1][name], value, rtol=1e-5, atol=1e-5)
    # DKF: same global minibatches and initial weights, different guide noise per rank; close, not equal.
    pyro.set_rng_seed(100)
    model = DKF(1, 1, rnn_dim=8, hidden_dim=8, transition_dim=8)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    losses = _single(model, x)
    assert r0["dkf"][0][0] == pytest.approx(losses[0], rel=0.05)
    moved = sum((v - initial[k]).abs().sum() for k, v in model.state_dict().items() if v.is_floating_point())
    apart = sum((v - r0["dkf"][1][k]).abs().sum() for k, v in model.state_dict().items() if v.is_floating_point())
    assert apart < 0.5 * moved


def test_resume_of_a_distributed_run_is_exact(ddp_results):
    (r0, _), tmp = ddp_results
    assert r0["resumed"][0] == r0["dkf"][0]
    for name, value in r0["dkf"][1].items():
        assert torch.equal(value, r0["resumed"][1][name]), name
    state = load_checkpoint(tmp / "ddp.pt")  # written by rank 0 only, with both ranks' generators
    assert state["step"] == STEPS and len(state["rng"]) == 2 and state["config"]["world_size"] == 2


def test_single_process_helpers_are_no_ops():
    ctx = setup_distributed("auto")
    assert ctx == DistributedContext() and not ctx.enabled and ctx.is_main
    idx = torch.arange(8)
    assert torch.equal(shard_indices(idx, ctx), idx)
    assert torch.equal(shard_indices(idx, DistributedContext(rank=1, world_size=2)), idx[4:])
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    (loss,) = average_gradients([p], ctx, torch.tensor(5.0))
    assert loss == 5.0 and torch.equal(p.grad, torch.full((3,), 2.0))
    assert setup_distributed(False) == DistributedContext()


def test_batch_must_split_evenly_over_ranks(monkeypatch, series, make_model):
    fit_module = sys.modules["pyroseq.inference.fit"]  # the package attribute ``fit`` is the function
    monkeypatch.setattr(fit_module, "setup_distributed", lambda mode: DistributedContext(rank=0, world_size=3))
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        fit(make_model("dkf"), series, num_steps=1, batch_size=8, progress=False)
