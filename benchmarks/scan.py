"""Selective-scan speed: forward + backward time of pyroseq's scan against mambapy's pscan.

Methods, all computing ``y = C h + D u`` with ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t`` and
gradients for ``u, dt, A, B, C, D`` (float32, batch 64, d 64, d_state 16):

- ``numba``: :func:`pyroseq.nn.selective_scan` with the numba kernels (``pyroseq[fast]``);
- ``torch``: the same function with the pure-torch fallback kernels;
- ``pscan``: mambapy's Blelloch parallel scan (``pip install mambapy``), used as in mambapy's
  ``MambaBlock.selective_scan`` (inputs in its ``(B, L, D)`` layout, which is what it takes);
- ``reference``: :func:`pyroseq.nn.selective_scan_ref`, a plain sequential loop under autograd.

Times are medians over repeats that visit the methods round-robin (so that a change of machine
load hits all of them alike), ``speed-up`` is pscan's time over the method's, and ``saved MB``
is the memory kept for the backward pass (tensors saved by autograd, counted once each).
The script prints the machine's load average: the numbers mean something only when it is low.

Command::

    python benchmarks/scan.py [--repeats 7] [--reference-repeats 3] [--threads 2]
                              [--lengths 24 256 1024]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyroseq.nn import numba_available, selective_scan, selective_scan_ref  # noqa: E402

try:
    from mambapy.pscan import pscan
except ImportError:  # benchmark-only dependency
    pscan = None


def make_inputs(b, d, n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(b, d, length, generator=g),
        delta=torch.rand(b, d, length, generator=g) * 0.1 + 1e-3,
        A=-torch.rand(d, n, generator=g) * 2,
        B=torch.randn(b, n, length, generator=g),
        C=torch.randn(b, n, length, generator=g),
        D=torch.randn(d, generator=g),
    )


def run_pyroseq(x, backend):
    return selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], backend=backend)


def run_reference(x):
    return selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"])


def run_pscan(x):
    # mambapy's MambaBlock.selective_scan: (B, L, ED) inputs, (B, L, ED, N) scan operands
    u, delta, B, C = (x[k].transpose(1, 2) for k in ("u", "delta", "B", "C"))
    deltaA = torch.exp(delta.unsqueeze(-1) * x["A"])
    BX = delta.unsqueeze(-1) * B.unsqueeze(2) * u.unsqueeze(-1)
    hs = pscan(deltaA, BX)
    y = (hs @ C.unsqueeze(-1)).squeeze(3) + x["D"] * u
    return y.transpose(1, 2)


METHODS = {
    "numba": lambda x: run_pyroseq(x, "numba"),
    "torch": lambda x: run_pyroseq(x, "torch"),
    "pscan": run_pscan,
    "reference": run_reference,
}


def time_once(fn, x, grad_out, clock=time.perf_counter):
    leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
    t0 = clock()
    y = fn(leaves)
    t1 = clock()
    y.backward(grad_out)
    t2 = clock()
    return t1 - t0, t2 - t0


def saved_megabytes(fn, x):
    """Bytes of the tensors autograd keeps for the backward pass of ``fn`` (each counted once)."""
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))] = \
            t.numel() * t.element_size()
        return t

    leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(leaves)
    del y
    return sum(seen.values()) / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--reference-repeats", type=int, default=3,
                        help="repeats of the (slow) sequential reference")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall-clock time, or CPU time of the process (all threads): "
                             "with --threads 1 the latter barely depends on other load")
    parser.add_argument("--lengths", type=int, nargs="+", default=[24, 256, 1024])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--d-state", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    methods = dict(METHODS)
    if not numba_available():
        print("numba not installed (pip install pyroseq[fast]): skipping the numba kernels")
        del methods["numba"]
    if pscan is None:
        print("mambapy not installed (pip install mambapy): no pscan baseline, no speed-ups")
        del methods["pscan"]
    b, d, n = args.batch, args.d, args.d_state
    print(f"selective scan, forward + backward: batch {b}, d {d}, d_state {n}, float32, "
          f"{args.threads} threads, {args.clock} clock, median of {args.repeats} round-robin repeats "
          f"({args.reference_repeats} for the reference)")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs; torch {torch.__version__}")
    header = f"{'L':>5}  {'method':<10} {'fwd ms':>9} {'fwd+bwd ms':>11} {'speed-up':>9} " \
             f"{'saved MB':>9}"
    print(header)
    print("-" * len(header))
    for length in args.lengths:
        x = make_inputs(b, d, n, length)
        grad_out = torch.randn(b, d, length, generator=torch.Generator().manual_seed(1))
        for name, fn in methods.items():  # warm-up: numba loading, allocator
            if name != "reference":
                time_once(fn, x, grad_out, clock)
        times = {name: [] for name in methods}
        for repeat in range(args.repeats):
            for name, fn in methods.items():
                if name != "reference" or repeat < args.reference_repeats:
                    times[name].append(time_once(fn, x, grad_out, clock))
        base = statistics.median(t[1] for t in times["pscan"]) if "pscan" in times else None
        for name, fn in methods.items():
            fwd = statistics.median(t[0] for t in times[name]) * 1e3
            total = statistics.median(t[1] for t in times[name]) * 1e3
            ratio = f"{base * 1e3 / total:8.2f}x" if base else f"{'-':>9}"
            print(f"{length:>5}  {name:<10} {fwd:9.1f} {total:11.1f} {ratio} "
                  f"{saved_megabytes(fn, x):9.1f}", flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
