"""CPU time of one DiM-TS training step with Lag Fusion's fused read-out kernels against the generic path.

The generic path builds the fused hidden states with a banded ``(L x L)`` product per channel and reads them
out with an einsum; the kernels of :mod:`pyroseq.nn.lag_readout_numba` take the read-out straight from the
scan's states. Both paths compute the same loss and gradients (``tests/nn/test_lag_fusion.py``); this script
times an SVI step (loss, backward, Adam) of the benchmark's DiM-TS network on random windows, both paths in one
run, alternating, and prints the median CPU seconds per step and their ratio. Command::

    python benchmarks/dimts_step.py --lengths 24 64 256 --repeats 3
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from pyro.infer import Trace_ELBO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyroseq.models import DiMTS  # noqa: E402
from pyroseq.nn import LagFusion  # noqa: E402

__all__ = ["step_seconds"]

NET = dict(hidden_dim=64, d_state=16, num_encoder_layers=1, num_decoder_layers=2, num_lags=2)


def step_seconds(model, x, fused_readout, repeats):
    """Median process CPU seconds of ``repeats`` training steps (after one warm-up step)."""
    for m in model.modules():
        if isinstance(m, LagFusion):
            m.fused_readout = fused_readout
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = Trace_ELBO().differentiable_loss
    times = []
    for i in range(repeats + 1):
        start = time.process_time()
        opt.zero_grad()
        loss_fn(model.model, model.guide, x).backward()
        opt.step()
        if i:
            times.append(time.process_time() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[24, 64, 256])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=7)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"DiM-TS training step, batch {args.batch_size}, {args.channels} channels, {args.threads} thread(s)")
    print("| length | generic read-out (s) | fused read-out (s) | speed-up |")
    print("|---|---|---|---|")
    for length in args.lengths:
        torch.manual_seed(0)
        model = DiMTS(obs_dim=args.channels, length=length, **NET)
        x = torch.rand(args.batch_size, length, args.channels) * 2 - 1
        generic = step_seconds(model, x, False, args.repeats)
        fused = step_seconds(model, x, True, args.repeats)
        print(f"| {length} | {generic:.3f} | {fused:.3f} | {generic / fused:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
