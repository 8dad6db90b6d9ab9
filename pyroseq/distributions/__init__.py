"""Pyro distributions whose densities are diffusion models."""

from .diffusion_likelihood import DiffusionLikelihood
from .diffusion_transition import DiffusionTransition
from .ode_evaluation import ode_log_prob, ode_log_prob_settings

__all__ = ["DiffusionLikelihood", "DiffusionTransition", "ode_log_prob", "ode_log_prob_settings"]
