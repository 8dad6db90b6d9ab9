"""Pyro distributions whose densities are diffusion models."""

from .conditional_likelihood import ConditionalDiffusionLikelihood, check_observation_mask
from .density import DENSITIES, EvaluationDensity, with_density
from .diffusion_likelihood import DiffusionLikelihood
from .diffusion_transition import DiffusionTransition
from .staged_sequence import StagedSequence

__all__ = [
    "ConditionalDiffusionLikelihood",
    "DiffusionLikelihood",
    "DiffusionTransition",
    "StagedSequence",
    "check_observation_mask",
    "DENSITIES",
    "EvaluationDensity",
    "with_density",
]
