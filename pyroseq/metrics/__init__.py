"""pyroseq.metrics."""

__all__ = []
