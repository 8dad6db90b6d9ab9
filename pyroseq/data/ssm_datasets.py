"""Registry entries for the synthetic state-space data sets (``"bimodal"``), so that the command line and
:func:`~pyroseq.data.get_dataset` can name them like the benchmark data sets."""

from .registry import WindowedDataset, register_dataset
from .ssm import bimodal

__all__ = ["bimodal_dataset"]


@register_dataset("bimodal")
def bimodal_dataset(length=32, num_samples=1024, seed=0):
    """The bimodal switching process of the DDSSM paper (:func:`~pyroseq.data.bimodal`) as a registry data
    set: ``num_samples`` independent series of length ``length``, one channel.

    Unlike the benchmark data sets the windows are **not** min-max scaled: they are in the units of the
    process (roughly ``[-50, 50]``), as the state-space models (DKF, DDSSM) standardise internally and the
    scores of the DDSSM benchmark (``benchmarks/ddssm_vs_dkf.py``) are defined in these units.

    :param int length: series length ``T``.
    :param int num_samples: number of series ``N``.
    :param int seed: seed of the generator.
    :returns: a :class:`~pyroseq.data.WindowedDataset` with windows of shape ``(N, T, 1)`` and no scaler.
    """
    x = bimodal(num_series=num_samples, length=length, seed=seed)
    return WindowedDataset(name="bimodal", windows=x, columns=("x",))
