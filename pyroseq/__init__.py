"""pyroseq: diffusion models as Pyro distributions for sequences."""

__version__ = "0.1.0"

__all__ = ["__version__"]
