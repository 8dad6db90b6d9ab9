"""Helpers for conditioning inputs that may be a tensor or a tuple/list/dict of tensors."""

import torch

__all__ = ["map_context", "context_leaves"]


def map_context(fn, context):
    """Apply ``fn`` to every tensor in a context tree (tensor, tuple, list, dict or None)."""
    if context is None:
        return None
    if torch.is_tensor(context):
        return fn(context)
    if isinstance(context, (tuple, list)):
        return type(context)(map_context(fn, c) for c in context)
    if isinstance(context, dict):
        return {k: map_context(fn, v) for k, v in context.items()}
    raise ValueError(
        f"context must be a tensor, a tuple/list/dict of tensors, or None; got {type(context).__name__}"
    )


def context_leaves(context):
    """List the tensors of a context tree."""
    leaves = []
    map_context(leaves.append, context)
    return leaves
