"""Pyro distributions whose densities are diffusion models."""

from .diffusion_likelihood import DiffusionLikelihood
from .diffusion_transition import DiffusionTransition

__all__ = ["DiffusionLikelihood", "DiffusionTransition"]
