"""pyroseq.models."""

from .stagediff import StageDiff

__all__ = []
# Stage-Diff: staged long-sequence generation.
__all__ += ["StageDiff"]
