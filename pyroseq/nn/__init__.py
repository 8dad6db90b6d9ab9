"""pyroseq.nn."""

from .csdi import CSDIDenoiserNet
from .decomposition import MovingAverage, ProgressiveDecomposition, SeriesDecomposition
from .embeddings import LearnedPositionalEmbedding, NoiseLevelEmbedding, sinusoidal_features
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
from .stage_fusion import StageFusion
from .stagediff import StageDiffNet

__all__ = []
# Stage-Diff: moving-average decomposition, multi-channel stage fusion, the staged denoiser network.
__all__ += ["MovingAverage", "ProgressiveDecomposition", "SeriesDecomposition", "StageDiffNet", "StageFusion"]
# CSDI-style denoiser, time/feature mixers and their registries, noise-level embeddings, small MLP denoiser.
__all__ += ["AttentionMixer", "CSDIDenoiserNet", "ConvTimeMixer", "GRUTimeMixer", "LearnedPositionalEmbedding",
            "LinearFeatureMixer", "MLPDenoiserNet", "NoiseLevelEmbedding", "feature_mixer_names", "make_feature_mixer",
            "make_time_mixer", "register_feature_mixer", "register_time_mixer", "sinusoidal_features",
            "time_mixer_names"]
