"""pyroseq.data."""

__all__ = []
