import torch

from pyroseq.data import bimodal, get_dataset, list_datasets


def test_bimodal_is_registered_with_its_generator_output():
    assert "bimodal" in list_datasets()
    ds = get_dataset("bimodal", length=12, num_samples=20, seed=3)
    assert ds.windows.shape == (20, 12, 1) and ds.series is None and ds.scaler is None
    assert torch.equal(ds.windows, bimodal(20, 12, seed=3))
    assert not torch.equal(ds.windows, get_dataset("bimodal", length=12, num_samples=20, seed=4).windows)
