"""DDSSM versus DKF on the bimodal switching process of the DDSSM paper: the experiment behind
``pyroseq demo`` (shortened) and ``benchmarks/ddssm_vs_dkf.py`` (full size)."""

import copy
import dataclasses
import os
import time
from dataclasses import dataclass, field

import torch

from .data import (
    bimodal,
    bimodal_centred_density,
    bimodal_log_likelihood,
    bimodal_oracle_forecast,
)
from .inference import fit, forecast, iwae_bound, to_inference_data
from .metrics import crps, energy_score, jsd_histogram
from .models import DDSSM, DKF

__all__ = ["ComparisonConfig", "run_comparison", "format_table", "acceptance", "write_plots"]

PHI = 0.9  # AR coefficient of the bimodal process (centring of the one-step JSD)


@dataclass
class ComparisonConfig:
    """Settings of the DDSSM-versus-DKF comparison; :meth:`benchmark` and :meth:`demo` give the two
    standard sizes. Both models share data, encoder sizes, optimiser, KL schedule and step count."""

    num_train: int = 1024
    train_length: int = 32
    num_test: int = 512
    test_length: int = 48
    history: int = 32
    horizon: int = 10
    num_steps: int = 6000
    batch_size: int = 64
    lr: float = 3e-3
    lrs: dict = None
    lr_decay: float = 0.1
    kl_schedule: tuple = ("linear", 1000, 1.0, 0.0)
    num_samples: int = 50
    iwae_series: int = 256
    iwae_particles: int = 16
    iwae_ode_steps: int = 32
    timing_rounds: int = 3
    timing_steps: int = 10
    seed: int = 0
    train_seed: int = 0
    test_seed: int = 1
    latent_dim: int = 1
    model_kwargs: dict = field(default_factory=lambda: dict(rnn_dim=64, hidden_dim=64))
    dkf_kwargs: dict = field(default_factory=lambda: dict(transition_dim=64))
    ddssm_kwargs: dict = field(default_factory=lambda: dict(denoiser_dim=64, denoiser_blocks=2, sigma_data=1.0,
                                                             baseline="persistence", num_noise_draws=1,
                                                             num_steps=10))

    @classmethod
    def benchmark(cls, **overrides):
        """The full benchmark (T = 32, 1024 training sequences)."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def demo(cls, **overrides):
        """A shortened run for ``pyroseq demo`` (about two minutes of compute on two cores)."""
        settings = dict(num_train=512, num_test=128, num_steps=1000, kl_schedule=("linear", 400, 1.0, 0.0),
                        num_samples=32, iwae_series=64, iwae_particles=8, iwae_ode_steps=16, timing_rounds=1,
                        model_kwargs=dict(rnn_dim=32, hidden_dim=32), dkf_kwargs=dict(transition_dim=32),
                        ddssm_kwargs=dict(denoiser_dim=48, denoiser_blocks=2, sigma_data=1.0,
                                          baseline="persistence", num_noise_draws=1, num_steps=8))
        settings.update(overrides)
        return dataclasses.replace(cls(), **settings)


def build_models(config):
    """The two models of the comparison, constructed under ``config.seed``."""
    torch.manual_seed(config.seed)
    dkf = DKF(1, config.latent_dim, **config.model_kwargs, **config.dkf_kwargs)
    torch.manual_seed(config.seed)
    ddssm = DDSSM(1, config.latent_dim, **config.model_kwargs, **config.ddssm_kwargs)
    return {"DKF": dkf, "DDSSM": ddssm}


def _time_steps(models, x, config):
    """Seconds per training step of each model, measured on copies in alternating rounds (so that
    changes of the machine load affect all models alike); the median over rounds."""
    times = {name: [] for name in models}
    for _ in range(config.timing_rounds):
        for name, model in models.items():
            clone = copy.deepcopy(model)
            fit(clone, x, num_steps=2, batch_size=config.batch_size, progress=False)  # warm-up
            start = time.perf_counter()
            fit(clone, x, num_steps=config.timing_steps, batch_size=config.batch_size, lr=config.lr,
                progress=False)
            times[name].append((time.perf_counter() - start) / config.timing_steps)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def _scores(samples, x_hist, future):
    """One-step centred JSD, CRPS and energy score of 1- and H-step forecasts (S, N, H, 1)."""
    centred = samples[:, :, 0, 0] - PHI * x_hist[:, -1, 0]
    return {
        "jsd1": jsd_histogram(centred, bimodal_centred_density()),
        "crps1": crps(samples[:, :, :1], future[:, :1]).item(),
        "crpsH": crps(samples, future).item(),
        "es1": energy_score(samples[:, :, :1], future[:, :1]).item(),
        "esH": energy_score(samples, future).item(),
    }


def run_comparison(config, checkpoint_dir=None, progress=True, log=print):
    """Train DKF and DDSSM on the bimodal process and score their forecasts on held-out series.

    :param ComparisonConfig config: settings.
    :param str checkpoint_dir: where to keep training checkpoints (resumed if present), or None.
    :param bool progress: show progress bars.
    :param callable log: printer of progress messages.
    :returns: a dict with ``rows`` (model name -> scores), ``config``, the test data and the forecast
        samples (for :func:`write_plots`) and the trained ``models``.
    """
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    x_train = bimodal(config.num_train, config.train_length, seed=config.train_seed)
    x_test, z_test = bimodal(config.num_test, config.test_length, seed=config.test_seed, return_latents=True)
    H, T = config.horizon, config.history
    x_hist, future = x_test[:, :T], x_test[:, T : T + H]
    models = build_models(config)
    rows, samples, losses = {}, {}, {}
    for name, model in models.items():
        log(f"training {name} for {config.num_steps} steps ...")
        ckpt = None if checkpoint_dir is None else os.path.join(checkpoint_dir, f"{name.lower()}.pt")
        start = time.perf_counter()
        losses[name] = fit(model, x_train, num_steps=config.num_steps, batch_size=config.batch_size,
                           seed=config.seed, lr=config.lr, lrs=config.lrs, lr_decay=config.lr_decay,
                           kl_schedule=config.kl_schedule, checkpoint=ckpt,
                           checkpoint_every=None if ckpt is None else 500, progress=progress)
        train_time = time.perf_counter() - start
        log(f"  {train_time:.0f} s, final loss {sum(losses[name][-100:]) / min(100, len(losses[name])):.2f}; "
            f"forecasting ...")
        samples[name] = forecast(model, x_hist, H, num_samples=config.num_samples, seed=config.seed)
        rows[name] = _scores(samples[name], x_hist, future)
        # Diffusion transitions are scored by the deterministic PF-ODE density: a log-mean-exp of noisy
        # bound estimates would be biased upwards (see iwae_bound).
        rows[name]["iwae"] = iwae_bound(model, x_hist[: config.iwae_series], config.iwae_particles,
                                        seed=config.seed, diffusion_log_prob="ode",
                                        ode_steps=config.iwae_ode_steps).mean().item()
    log("timing training steps ...")
    step_times = _time_steps(models, x_train, config)
    for name in models:
        rows[name]["sec_per_step"] = step_times[name]
        rows[name]["ratio"] = step_times[name] / step_times["DKF"]
    samples["oracle"] = bimodal_oracle_forecast(z_test[:, T - 1], H, config.num_samples, seed=config.seed)
    rows["oracle"] = _scores(samples["oracle"], x_hist, future)
    rows["oracle"]["iwae"] = bimodal_log_likelihood(x_hist[: config.iwae_series]).mean().item()
    return {"rows": rows, "config": config, "x_hist": x_hist, "future": future, "z_hist": z_test[:, :T],
            "samples": samples, "models": models, "losses": losses}


def format_table(rows, horizon=10):
    """The comparison table as text (one line per model plus the oracle)."""
    header = (f"{'model':<8} {'JSD 1-step':>10} {'CRPS 1':>8} {f'CRPS {horizon}':>8} {'ES 1':>8} "
              f"{f'ES {horizon}':>8} {'IWAE (nats/seq)':>16} {'s/step':>8} {'vs DKF':>7}")
    lines = [header, "-" * len(header)]
    for name, r in rows.items():
        timing = (f"{r['sec_per_step']:>8.4f} {r['ratio']:>6.2f}x" if "sec_per_step" in r
                  else f"{'-':>8} {'-':>7}")
        lines.append(f"{name:<8} {r['jsd1']:>10.4f} {r['crps1']:>8.4f} {r['crpsH']:>8.4f} {r['es1']:>8.4f} "
                     f"{r['esH']:>8.4f} {r['iwae']:>16.2f} {timing}")
    lines.append("JSD: one-step centred x_{t+1} - 0.9 x_t against 0.5 N(-4, v) + 0.5 N(4, v), v = 0.2^2 + 0.18^2 "
                 "(nats, histogram on [-10, 10]); CRPS/ES lower is better; IWAE: higher is better (oracle: exact "
                 "log p).")
    return "\n".join(lines)


def acceptance(rows):
    """The acceptance criteria of the headline claim, as ``(description, passed)`` pairs."""
    d, k, o = rows["DDSSM"], rows["DKF"], rows["oracle"]
    return [
        (f"DDSSM JSD {d['jsd1']:.4f} <= 0.10", d["jsd1"] <= 0.10),
        (f"DDSSM JSD {d['jsd1']:.4f} <= DKF JSD / 3 = {k['jsd1'] / 3:.4f}", d["jsd1"] <= k["jsd1"] / 3),
        (f"DDSSM CRPS1 {d['crps1']:.4f} <= 0.92 x DKF = {0.92 * k['crps1']:.4f}", d["crps1"] <= 0.92 * k["crps1"]),
        (f"DDSSM CRPS1 {d['crps1']:.4f} within 5% of oracle {o['crps1']:.4f}", d["crps1"] <= 1.05 * o["crps1"]),
        (f"DDSSM ES1 {d['es1']:.4f} <= DKF {k['es1']:.4f}", d["es1"] <= k["es1"]),
        (f"DDSSM ES10 {d['esH']:.4f} <= DKF {k['esH']:.4f}", d["esH"] <= k["esH"]),
        (f"DDSSM s/step {d['ratio']:.2f}x DKF <= 3x", d["ratio"] <= 3.0),
    ]


def write_plots(result, out_dir, num_samples=100):
    """Write the demo figures as PNG files: a forecast fan chart per model, the one-step predictive
    histogram against the true density, and an ArviZ posterior predictive check of DDSSM.

    :returns: the list of written paths.
    """
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .inference import plot_forecast, plot_predictive_histogram

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    x_hist, future, samples = result["x_hist"], result["future"], result["samples"]

    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for ax, name in zip(axes, ("DDSSM", "DKF")):
        plot_forecast(x_hist, samples[name], truth=future, series=0, ax=ax, num_paths=3)
        ax.set_title(f"{name}: forecast fan chart (series 0)")
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "forecast_fan_chart.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    centred = {name: samples[name][:, :, 0, 0] - PHI * x_hist[:, -1, 0] for name in ("DDSSM", "DKF")}
    plot_predictive_histogram(centred["DDSSM"], bimodal_centred_density(), bins=100, ax=ax, label="DDSSM",
                              others={"DKF": centred["DKF"]})
    ax.set_title("one-step predictive of x[t+1] - 0.9 x[t] vs the true density")
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "one_step_histogram.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    model = result["models"]["DDSSM"]
    idata = to_inference_data(model, x_hist[:64], num_samples=num_samples, seed=0)
    # Also check the centred increments x[t+1] - 0.9 x[t], whose bimodality is the point of the model.
    dims = ("series", "step", "channel")
    for group in ("posterior_predictive", "observed_data"):
        x = idata[group]["x"].values
        idata[group]["x_increment"] = (idata[group]["x"].dims[:-3] + dims, x[..., 1:, :] - PHI * x[..., :-1, :])
    axes = az.plot_ppc(idata, var_names=["x", "x_increment"], num_pp_samples=min(50, num_samples), figsize=(10, 4))
    axes = list(getattr(axes, "ravel", lambda: [axes])())
    axes[0].figure.suptitle("DDSSM posterior predictive check (ArviZ)")
    axes[0].figure.tight_layout()
    paths.append(os.path.join(out_dir, "ppc_ddssm.png"))
    axes[0].figure.savefig(paths[-1], dpi=110)
    plt.close("all")
    return paths

