"""pyroseq.models."""

__all__ = []
