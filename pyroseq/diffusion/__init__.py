"""pyroseq.diffusion."""

__all__ = []
