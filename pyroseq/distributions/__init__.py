"""pyroseq.distributions."""

__all__ = []
