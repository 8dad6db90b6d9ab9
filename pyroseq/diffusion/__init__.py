"""Model-agnostic diffusion maths: EDM preconditioning, noise proposals, the continuous-time bound,
samplers and the probability-flow ODE likelihood."""

from .bound import diffusion_nll_bound, edm_loss, prior_kl
from .inpainting import INPAINTING_METHODS, MaskedDenoiser, observation_planes
from .noise_proposal import DefensiveNoiseProposal
from .ode_likelihood import probability_flow_log_prob
from .preconditioning import EDMPrecond, edm_scalings
from .samplers import (
    SAMPLERS,
    ddpm_sample,
    ddpm_schedule,
    dpm_solver_sample,
    edm_sigma_steps,
    euler_sample,
    function_evaluations,
    heun_sample,
    sample,
    sampler_steps,
)

__all__ = [
    "DefensiveNoiseProposal",
    "EDMPrecond",
    "INPAINTING_METHODS",
    "MaskedDenoiser",
    "SAMPLERS",
    "ddpm_sample",
    "ddpm_schedule",
    "dpm_solver_sample",
    "diffusion_nll_bound",
    "edm_loss",
    "edm_scalings",
    "edm_sigma_steps",
    "euler_sample",
    "function_evaluations",
    "heun_sample",
    "observation_planes",
    "prior_kl",
    "probability_flow_log_prob",
    "sample",
    "sampler_steps",
]
