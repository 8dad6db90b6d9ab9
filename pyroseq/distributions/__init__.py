"""Pyro distributions whose densities are diffusion models."""

from .conditional_likelihood import ConditionalDiffusionLikelihood, check_observation_mask
from .diffusion_likelihood import DiffusionLikelihood
from .diffusion_transition import DiffusionTransition
from .ode_evaluation import ode_log_prob, ode_log_prob_settings
from .staged_sequence import StagedSequence

__all__ = [
    "ConditionalDiffusionLikelihood",
    "DiffusionLikelihood",
    "DiffusionTransition",
    "StagedSequence",
    "check_observation_mask",
    "ode_log_prob",
    "ode_log_prob_settings",
]
