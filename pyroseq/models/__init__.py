"""pyroseq.models."""

from .base import DeepStateSpaceModel, SequenceModel, check_sequences
from .ddssm import DDSSM
from .dimts import DiMTS
from .dkf import DKF
from .emission import GaussianEmission
from .initial_prior import GaussianAutoregression, InitialPrior
from .latent_sequence import AutoregressiveGaussianSequence, LatentMarkovSequence, history_windows
from .stagediff import StageDiff

__all__ = []
# Stage-Diff: staged long-sequence generation.
__all__ += ["StageDiff"]
# Deep state-space models (DKF, DDSSM): shared body, initial prior, emission, latent sequence distributions.
__all__ += ["AutoregressiveGaussianSequence", "DDSSM", "DKF", "DeepStateSpaceModel", "GaussianAutoregression",
            "GaussianEmission", "InitialPrior", "LatentMarkovSequence", "SequenceModel", "check_sequences",
            "history_windows"]
# DiM-TS: Mamba diffusion generator of fixed-length windows.
__all__ += ["DiMTS"]
# Conditional diffusion (imputation, forecasting) and the latent-diffusion SSM (CSDI, DiM-TS or Stage-Diff denoiser).
from .backbones import BACKBONES, build_backbone  # noqa: E402
from .conditional import ConditionalDiffusion  # noqa: E402
from .latent_diffusion import LatentDiffusionSSM, WindowEmission  # noqa: E402
from .masking import MASK_STRATEGIES, conditioning_mask  # noqa: E402
from .window_diffusion import DiffusionSettings, WindowDiffusion  # noqa: E402

__all__ += ["BACKBONES", "ConditionalDiffusion", "LatentDiffusionSSM", "MASK_STRATEGIES", "WindowEmission",
            "build_backbone", "conditioning_mask"]
# The one core of the window diffusion models (DiM-TS, Stage-Diff, conditional, latent-diffusion emission).
__all__ += ["DiffusionSettings", "WindowDiffusion"]
