"""pyroseq.metrics."""

from .context_fid import context_fid, frechet_distance
from .correlational import correlational_score, cross_correlations
from .discriminative import discriminative_score
from .predictive import predictive_score
from .probabilistic import crps, energy_score, jsd_histogram, mmd
from .score import MetricResult, check_real_fake
from .ts2vec import TS2VecEncoder, encode_windows, train_ts2vec

__all__ = []
# Sample-quality scores of the Diffusion-TS / TimeGAN protocol.
__all__ += [
    "MetricResult",
    "check_real_fake",
    "context_fid",
    "correlational_score",
    "cross_correlations",
    "discriminative_score",
    "encode_windows",
    "frechet_distance",
    "predictive_score",
    "train_ts2vec",
    "TS2VecEncoder",
]
# Probabilistic forecast scores: CRPS and energy score (pyro.ops.stats), histogram JSD, kernel MMD.
__all__ += ["crps", "energy_score", "jsd_histogram", "mmd"]
