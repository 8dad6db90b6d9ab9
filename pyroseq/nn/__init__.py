"""pyroseq.nn."""

__all__ = []
