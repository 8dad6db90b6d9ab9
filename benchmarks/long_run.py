"""Numerical robustness over a long run: 10,000 SVI steps of a demo-size DDSSM on the bimodal switching
process (``pyroseq.data.bimodal``), checking that the loss, every gradient norm and every parameter stay finite.

Logs, every ``--log-every`` steps, the mean / min / max loss of the window, the largest gradient norm
(after clipping) and the largest absolute parameter, and whether all parameters are finite; then a
summary. :func:`~pyroseq.inference.fit` itself raises :class:`~pyroseq.inference.fit.NonFiniteError`
(naming step and site) if the loss or a gradient becomes non-finite, which is logged as a failure.
Checkpoints every 1000 steps, so a killed run resumes (``--no-resume`` starts afresh).

    python benchmarks/long_run.py                      # 10,000 steps, ~15-25 min on one busy core
    python benchmarks/long_run.py --steps 1000 --out /tmp/long_run.txt
"""

import argparse
import math
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import CACHE, RESULTS  # noqa: E402

from pyroseq.data import bimodal  # noqa: E402
from pyroseq.inference import fit  # noqa: E402
from pyroseq.inference.fit import NonFiniteError  # noqa: E402
from pyroseq.models import DDSSM  # noqa: E402

#: Model and optimiser settings of ``pyroseq demo`` (ComparisonConfig.demo), with a longer KL warm-up.
MODEL = dict(rnn_dim=32, hidden_dim=32, denoiser_dim=48, denoiser_blocks=2, sigma_data=1.0, baseline="persistence",
             num_noise_draws=1, num_steps=8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--num-train", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--precision", default=None, choices=[None, "fp32", "bf16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "long_run.txt"))
    parser.add_argument("--checkpoint", default=str(CACHE / "checkpoints" / "long_run.pt"))
    parser.add_argument("--no-resume", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    log_file = open(args.out, "a" if not args.no_resume and os.path.exists(args.checkpoint) else "w")

    def log(msg):
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    x = bimodal(args.num_train, 32, seed=0)
    torch.manual_seed(args.seed)
    model = DDSSM(1, 1, **MODEL)
    params = dict(model.named_parameters())
    log(f"# long_run: DDSSM {MODEL} on bimodal({args.num_train}, 32); steps={args.steps} batch={args.batch_size} "
        f"lr={args.lr} lr_decay=0.1 kl=('linear', 1000, 1.0, 0.0) clip_norm=10 precision={args.precision} "
        f"threads={args.threads}; torch {torch.__version__}, python {platform.python_version()}")
    log(f"{'step':>6} {'loss mean':>10} {'loss min':>10} {'loss max':>10} {'max |grad|':>10} {'max |param|':>11} "
        f"{'params finite':>13} {'steps/s':>8}")
    window, stats = [], {"nonfinite_losses": 0, "max_grad_norm": 0.0, "max_abs_param": 0.0, "all_finite": True}
    clock = [time.perf_counter()]

    def callback(step, loss):
        window.append(loss)
        stats["nonfinite_losses"] += not math.isfinite(loss)
        grads = [p.grad for p in params.values() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads).item() if grads else 0.0
        stats["max_grad_norm"] = max(stats["max_grad_norm"], grad_norm)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            finite = all(bool(torch.isfinite(p).all()) for p in params.values())
            largest = max(p.detach().abs().max().item() for p in params.values())
            stats["all_finite"] &= finite
            stats["max_abs_param"] = max(stats["max_abs_param"], largest)
            now = time.perf_counter()
            rate = len(window) / (now - clock[0])
            clock[0] = now
            log(f"{step + 1:>6} {sum(window) / len(window):>10.3f} {min(window):>10.3f} {max(window):>10.3f} "
                f"{stats['max_grad_norm']:>10.3g} {largest:>11.4g} {str(finite):>13} {rate:>8.2f}")
            window.clear()

    start = time.perf_counter()
    try:
        losses = fit(model, x, num_steps=args.steps, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                     lr_decay=0.1, kl_schedule=("linear", 1000, 1.0, 0.0), clip_norm=10.0,
                     checkpoint=args.checkpoint, checkpoint_every=1000, resume=not args.no_resume,
                     progress=False, callback=callback, precision=args.precision)
    except NonFiniteError as e:
        log(f"FAILED: {e}")
        return 1
    elapsed = time.perf_counter() - start
    nonfinite = sum(not math.isfinite(v) for v in losses)
    finite = all(bool(torch.isfinite(p).all()) for p in model.state_dict().values() if p.is_floating_point())
    ok = nonfinite == 0 and finite and stats["all_finite"] and len(losses) == args.steps
    log(f"# done: {len(losses)} steps ({elapsed:.0f} s in this process), non-finite losses: {nonfinite}, all params "
        f"and buffers finite: {finite}, largest |param| seen: {stats['max_abs_param']:.4g}, largest gradient norm "
        f"(after clipping at 10): {stats['max_grad_norm']:.4g}, mean loss of the last 500 steps: "
        f"{sum(losses[-500:]) / len(losses[-500:]):.3f}")
    log(f"# result: {'PASS' if ok else 'FAIL'} (no NaN/inf in loss or parameters over {len(losses)} steps)")
    log_file.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
