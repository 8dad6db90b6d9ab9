"""pyroseq.models."""

from .backbones import BACKBONES, build_backbone
from .base import DeepStateSpaceModel, SequenceModel, check_sequences
from .conditional import ConditionalDiffusion
from .ddssm import DDSSM
from .dimts import DiMTS
from .dkf import DKF
from .emission import GaussianEmission
from .initial_prior import GaussianAutoregression, InitialPrior
from .latent_diffusion import LatentDiffusionSSM, WindowEmission
from .latent_sequence import AutoregressiveGaussianSequence, LatentMarkovSequence, history_windows
from .masking import MASK_STRATEGIES, conditioning_mask
from .stagediff import StageDiff
from .window_diffusion import DiffusionSettings, WindowDiffusion

__all__ = [
    # Deep state-space models (DKF, DDSSM): shared body, initial prior, emission, latent sequence distributions.
    "AutoregressiveGaussianSequence", "DDSSM", "DKF", "DeepStateSpaceModel", "GaussianAutoregression",
    "GaussianEmission", "InitialPrior", "LatentMarkovSequence", "SequenceModel", "check_sequences", "history_windows",
    # Window diffusion models on one core: DiM-TS (Mamba), Stage-Diff (staged long sequences), conditional
    # diffusion (imputation, forecasting) and the latent-diffusion SSM, with their denoiser backbones and masks.
    "BACKBONES", "ConditionalDiffusion", "DiMTS", "DiffusionSettings", "LatentDiffusionSSM", "MASK_STRATEGIES",
    "StageDiff", "WindowDiffusion", "WindowEmission", "build_backbone", "conditioning_mask",
]
