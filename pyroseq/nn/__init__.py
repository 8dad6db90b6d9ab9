"""pyroseq.nn."""

from .csdi import CSDIDenoiserNet
from .decomposition import MovingAverage, ProgressiveDecomposition, SeriesDecomposition
from .dimts import AdaLNBlock, DiMTSNet
from .embeddings import LearnedPositionalEmbedding, NoiseLevelEmbedding, sinusoidal_features
from .encoders import Combiner, FutureSummary
from .lag_fusion import LagFusion, LagFusionMamba, lag_grid_size
from .mamba import Mamba
from .mamba_mixer import BidirectionalMamba, MambaTimeMixer
from .mixers import (
    AttentionMixer,
    ConvTimeMixer,
    GRUTimeMixer,
    LinearFeatureMixer,
    feature_mixer_names,
    make_feature_mixer,
    make_time_mixer,
    register_feature_mixer,
    register_time_mixer,
    time_mixer_names,
)
from .mlp import MLPDenoiserNet
from .permutation_scan import ChannelPermutation, spectral_channel_order
from .selective_scan import (
    numba_available,
    selective_scan,
    selective_scan_readout,
    selective_scan_ref,
    selective_scan_states,
)
from .stage_fusion import StageFusion
from .stagediff import StageDiffNet
from .transition import GatedTransition, NoiseEmbedding, TransitionDenoiserNet

__all__ = []
# Stage-Diff: moving-average decomposition, multi-channel stage fusion, the staged denoiser network.
__all__ += ["MovingAverage", "ProgressiveDecomposition", "SeriesDecomposition", "StageDiffNet", "StageFusion"]
# CSDI-style denoiser, time/feature mixers and their registries, noise-level embeddings, small MLP denoiser.
__all__ += ["AttentionMixer", "CSDIDenoiserNet", "ConvTimeMixer", "GRUTimeMixer", "LearnedPositionalEmbedding",
            "LinearFeatureMixer", "MLPDenoiserNet", "NoiseLevelEmbedding", "feature_mixer_names", "make_feature_mixer",
            "make_time_mixer", "register_feature_mixer", "register_time_mixer", "sinusoidal_features",
            "time_mixer_names"]
# Deep state-space models: guide networks (future summary, combiner) and latent transition networks.
__all__ += ["Combiner", "FutureSummary", "GatedTransition", "NoiseEmbedding", "TransitionDenoiserNet"]
# Mamba on CPU: the selective scan (numba / torch kernels, hand-written backward), its hidden states, the block.
__all__ += ["Mamba", "numba_available", "selective_scan", "selective_scan_readout", "selective_scan_ref",
            "selective_scan_states"]
# DiM-TS: the two-branch denoiser, Lag Fusion Mamba, Permutation Scanning (channel order), bidirectional Mamba
# and the "mamba" time mixer registered for CSDIDenoiserNet.
__all__ += ["AdaLNBlock", "BidirectionalMamba", "ChannelPermutation", "DiMTSNet", "LagFusion", "LagFusionMamba",
            "MambaTimeMixer", "lag_grid_size", "spectral_channel_order"]
