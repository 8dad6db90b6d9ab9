import os
import random

import numpy as np
import torch

from pyroseq.inference import load_checkpoint, save_checkpoint
from pyroseq.inference.checkpoint import get_rng_states, set_rng_states


def test_atomic_save_and_load(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    state = {"step": 3, "weights": torch.randn(4), "nested": {"a": [1, 2]}}
    save_checkpoint(path, state)
    save_checkpoint(path, {**state, "step": 4})  # overwrite in place
    loaded = load_checkpoint(path)
    assert loaded["step"] == 4 and torch.equal(loaded["weights"], state["weights"])
    assert os.listdir(path.parent) == ["ckpt.pt"]  # no temporary files left behind


def test_failed_save_keeps_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    try:
        save_checkpoint(path, {"step": 2, "bad": Unpicklable()})
    except RuntimeError:
        pass
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_rng_round_trip():
    gen = torch.Generator().manual_seed(5)
    states = get_rng_states({"g": gen})
    first = (torch.rand(3), np.random.rand(), random.random(), torch.rand(2, generator=gen))
    set_rng_states(states, {"g": gen})
    second = (torch.rand(3), np.random.rand(), random.random(), torch.rand(2, generator=gen))
    assert torch.equal(first[0], second[0]) and first[1] == second[1] and first[2] == second[2]
    assert torch.equal(first[3], second[3])
