"""pyroseq.inference."""

__all__ = []
