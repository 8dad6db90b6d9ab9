import multiprocessing
import os
import signal
import struct
import time
import warnings
import zipfile

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam

from pyroseq.inference import fit, load_checkpoint, save_checkpoint
from pyroseq.inference.checkpoint import CheckpointError
from pyroseq.inference.fit import MAX_SKIPPED_STEPS, NonFiniteError


def _train(checkpoint, num_steps, delay=0.0):
    """The run that gets killed, resumed, and compared with an uninterrupted one (``checkpoint=None``)."""
    from pyroseq.data import bimodal
    from pyroseq.models import DKF

    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    model = DKF(1, 1, rnn_dim=8, hidden_dim=8, transition_dim=8)
    fit(model, bimodal(16, 4, seed=0), num_steps=num_steps, batch_size=8, lr=3e-3, seed=3, checkpoint=checkpoint,
        checkpoint_every=5, progress=False, callback=lambda step, loss: time.sleep(delay))
    return model.state_dict()


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    num_steps, ckpt = 60, tmp_path / "ckpt.pt"
    # A forked child (no re-import, so fast) trains slowly and is killed with SIGKILL mid-run.
    proc = multiprocessing.get_context("fork").Process(target=_train, args=(ckpt, num_steps, 0.05), daemon=True)
    proc.start()
    seen, last, deadline = set(), None, time.time() + 120
    try:
        while proc.is_alive() and time.time() < deadline:
            stat = ckpt.stat() if ckpt.exists() else None
            if stat is not None and (stat.st_ino, stat.st_mtime_ns) != last:
                last = (stat.st_ino, stat.st_mtime_ns)
                step = load_checkpoint(ckpt)["step"]  # never half-written: every new version must load
                seen.add(step)
                if step >= 15:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.005)
    finally:
        proc.join(timeout=60)
    assert proc.exitcode == -signal.SIGKILL
    killed_at = load_checkpoint(ckpt)["step"]
    assert 15 <= killed_at < num_steps and seen

    (tmp_path / ".tmp-ckpt.ptabc123").write_bytes(b"half a checkpoint")  # as if killed while saving
    resumed = _train(ckpt, num_steps)  # a new run on the same checkpoint file continues to the end
    assert load_checkpoint(ckpt)["step"] == num_steps
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # the stale temporary file was removed
    reference = _train(None, num_steps)
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(value, resumed[name]), name


def _corrupt(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "garbage":
        data = bytearray(b"\x00garbage" * 100)
    elif how == "empty":
        data = bytearray()
    elif how == "bitflip":  # inside a tensor's bytes: torch.load alone would not notice
        with zipfile.ZipFile(path) as archive:
            record = max(archive.infolist(), key=lambda info: info.file_size)
        # The local file header is 30 bytes plus the name and extra field, whose lengths it stores.
        start = record.header_offset
        name_len, extra_len = struct.unpack("<HH", data[start + 26:start + 30])
        data[start + 30 + name_len + extra_len + record.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "bitflip"])
def test_corrupt_checkpoint_raises_naming_the_file(how, tmp_path, series, make_model):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.randn(2000)})
    _corrupt(path, how)
    with pytest.raises(CheckpointError, match="ckpt.pt"):
        load_checkpoint(path)

    fit(make_model("dkf"), series, num_steps=2, batch_size=4, checkpoint=path, resume=False, progress=False)
    _corrupt(path, how)
    with pytest.raises(ValueError, match=r"ckpt\.pt.*(corrupt|truncated)"):
        fit(make_model("dkf"), series, num_steps=4, batch_size=4, checkpoint=path, progress=False)


def test_checkpoint_of_another_kind_raises(tmp_path, series, make_model):
    path = tmp_path / "other.pt"
    save_checkpoint(path, {"step": 1})
    with pytest.raises(CheckpointError, match="lacks the entries"):
        fit(make_model("dkf"), series, num_steps=2, batch_size=4, checkpoint=path, progress=False)
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="not a dict"):
        load_checkpoint(path)
    fit(make_model("ddssm"), series, num_steps=1, batch_size=4, checkpoint=path, resume=False, progress=False)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        fit(make_model("dkf"), series, num_steps=2, batch_size=4, checkpoint=path, progress=False)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_nan_parameter_names_step_and_site(series, make_model):
    model = make_model("dkf")

    def poison(step, loss):
        if step == 2:
            with torch.no_grad():
                next(model.emission.parameters()).fill_(float("nan"))

    with pytest.raises(NonFiniteError, match="step 3") as info:
        fit(model, series, num_steps=10, batch_size=4, progress=False, callback=poison)
    assert info.value.step == 3 and "model:x (log_prob)" in info.value.sites
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)


class SqrtModel(PyroModule):
    """A toy model whose loss is finite but whose gradient is not (d sqrt(w) / dw at w = 0), or whose loss
    is NaN while ``poisoned`` is set."""

    def __init__(self):
        super().__init__()
        self.w = PyroParam(torch.zeros(()))
        self.loc = PyroParam(torch.zeros(()))
        self.poisoned = False
        self.sqrt = True

    def model(self, x, mask=None, covariates=None):
        loc = self.loc + (0.0 * self.w.sqrt() if self.sqrt else 0.0)
        if self.poisoned:
            loc = loc * float("nan")
        with pyro.plate("series", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0).expand(x.shape[1:]).to_event(2), obs=x)

    def guide(self, x, mask=None, covariates=None):
        pass


def test_nonfinite_gradient_names_the_parameter():
    x = torch.randn(8, 3, 1)
    with pytest.raises(NonFiniteError, match="gradient is not finite at step 0") as info:
        fit(SqrtModel(), x, num_steps=3, batch_size=4, progress=False)
    assert info.value.params == ["w_unconstrained"] and info.value.sites == []


def test_skip_nonfinite_steps():
    x = torch.randn(8, 3, 1)
    model = SqrtModel()
    model.sqrt = False
    snapshots = {}

    def toggle(step, loss):
        snapshots[step] = model.loc.detach().clone()
        model.poisoned = step in (2, 3)  # steps 3 and 4 see a NaN loss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = fit(model, x, num_steps=8, batch_size=4, progress=False, callback=toggle, nonfinite="skip", lr=0.1)
    skipped = [i for i, v in enumerate(losses) if v != v]
    assert skipped == [3, 4] and sum("skipping this update" in str(w.message) for w in caught) == 2
    assert torch.equal(snapshots[2], snapshots[4]) and not torch.equal(snapshots[4], snapshots[7])
    assert torch.isfinite(model.loc)

    model.poisoned, model.sqrt = False, False
    always = SqrtModel()
    always.sqrt, always.poisoned = False, True
    with pytest.raises(NonFiniteError, match=f"{MAX_SKIPPED_STEPS} consecutive"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(always, x, num_steps=MAX_SKIPPED_STEPS + 5, batch_size=4, progress=False, nonfinite="skip")


def test_bad_reliability_arguments(series, make_model):
    with pytest.raises(ValueError, match="nonfinite"):
        fit(make_model("dkf"), series, num_steps=1, progress=False, nonfinite="ignore")
    with pytest.raises(ValueError, match="distributed"):
        fit(make_model("dkf"), series, num_steps=1, progress=False, distributed="yes")
    with pytest.raises(ValueError, match="launcher"):
        fit(make_model("dkf"), series, num_steps=1, progress=False, distributed=True)


def test_keyboard_interrupt_saves_the_completed_steps(tmp_path, series, make_model):
    path = tmp_path / "ckpt.pt"

    def interrupt(step, loss):
        if step == 2:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(make_model("dkf"), series, num_steps=6, batch_size=4, checkpoint=path, progress=False, callback=interrupt)
    assert load_checkpoint(path)["step"] == 3
    torch.manual_seed(0)
    resumed_model = make_model("dkf")
    resumed = fit(resumed_model, series, num_steps=6, batch_size=4, checkpoint=path, progress=False)
    torch.manual_seed(0)
    reference_model = make_model("dkf")
    reference = fit(reference_model, series, num_steps=6, batch_size=4, progress=False)
    assert resumed == reference
    for p, q in zip(resumed_model.parameters(), reference_model.parameters()):
        assert torch.equal(p, q)
