"""Small helpers over parameter pytrees (nested dicts / lists / tuples of arrays)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as onp

__all__ = ["flatten_to_vector", "tree_leaves", "tree_map_n"]


def tree_map_n(fun: Callable[..., Any], tree: Any, *others: Any) -> Any:
    """Apply ``fun`` leafwise to several trees of one structure."""
    if isinstance(tree, dict):
        return {key: tree_map_n(fun, tree[key], *(o[key] for o in others)) for key in tree}
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map_n(fun, *items) for items in zip(tree, *others, strict=True))
    return fun(tree, *others)


def tree_leaves(tree: Any) -> list[Any]:
    """The array leaves of a tree in a fixed (depth-first, key-sorted) order."""
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in tree_leaves(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in tree_leaves(item)]
    return [tree]


def flatten_to_vector(tree: Any) -> onp.ndarray:
    """All leaves concatenated into one float64 vector (for norms and angles)."""
    leaves = [onp.ravel(onp.asarray(leaf, dtype=onp.float64)) for leaf in tree_leaves(tree)]
    return onp.concatenate(leaves) if leaves else onp.zeros(0)
