"""Nested containers ("trees") of arrays: the way params, grads and optimizer states are kept.

A tree is a leaf (an array, a Tensor, a number) or a dict, list, tuple or NamedTuple of trees.
``None`` is an empty subtree: it is kept as it is and never passed to a function.

>>> import numpy as np
>>> params = {"dense_0": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)}}
>>> tree_map(lambda p: p * 2, params)["dense_0"]["kernel"].sum()
np.float64(12.0)
>>> [path for path, _ in tree_flatten_with_path(params)]
['dense_0.kernel', 'dense_0.bias']
"""
from __future__ import annotations

__all__ = ["tree_map", "tree_map_with_path", "tree_leaves", "tree_flatten_with_path", "tree_structure_check", "is_namedtuple"]


def is_namedtuple(x) -> bool:
    """True for NamedTuple instances (tuples with ``_fields``)."""
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _is_node(x) -> bool:
    return isinstance(x, (dict, list, tuple))


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _children(x):
    """(key, child) pairs of a container node, in a stable order."""
    if isinstance(x, dict):
        return list(x.items())
    if is_namedtuple(x):
        return list(zip(x._fields, x))
    return list(enumerate(x))


def _rebuild(x, values):
    """A container like ``x`` holding ``values`` (in ``_children`` order)."""
    if isinstance(x, dict):
        return type(x)(zip(x.keys(), values))
    if is_namedtuple(x):
        return type(x)(*values)
    return type(x)(values)


def _check_same(path: str, x, y) -> None:
    """Raise ValueError naming ``path`` when ``y`` does not have the container structure of ``x``."""
    where = path or "<root>"
    if _is_node(x):
        if type(x) is not type(y) and not (isinstance(x, dict) and isinstance(y, dict)):
            raise ValueError(f"tree structures differ at '{where}': {type(x).__name__} vs {type(y).__name__}")
        if isinstance(x, dict):
            if set(x) != set(y):
                missing, extra = sorted(map(str, set(x) - set(y))), sorted(map(str, set(y) - set(x)))
                raise ValueError(f"tree structures differ at '{where}': keys missing {missing}, unexpected {extra}")
        elif len(x) != len(y):
            raise ValueError(f"tree structures differ at '{where}': length {len(x)} vs {len(y)}")
    elif x is None and y is not None:
        raise ValueError(f"tree structures differ at '{where}': None vs {type(y).__name__}")


def tree_map(fn, tree, *rest, path: str = ""):
    """Apply ``fn(leaf, *other_leaves)`` to every leaf; the trees in ``rest`` must match ``tree``.

    A mismatch (other keys, lengths or container types) raises ValueError naming the first bad path.
    """
    if tree is None:
        return None
    if not _is_node(tree):
        return fn(tree, *rest)
    for r in rest:
        _check_same(path, tree, r)
    kids = _children(tree)
    if isinstance(tree, dict):
        others = [[r[k] for k, _ in kids] for r in rest]
    else:
        others = [list(r) for r in rest]
    values = [tree_map(fn, child, *(o[i] for o in others), path=_join(path, k))
              for i, (k, child) in enumerate(kids)]
    return _rebuild(tree, values)


def tree_map_with_path(fn, tree, path: str = ""):
    """Apply ``fn(path, leaf)`` to every leaf, paths spelled ``"dense_0.kernel"``."""
    if tree is None:
        return None
    if not _is_node(tree):
        return fn(path, tree)
    return _rebuild(tree, [tree_map_with_path(fn, child, _join(path, k)) for k, child in _children(tree)])


def tree_flatten_with_path(tree, path: str = ""):
    """List of ``(path, leaf)`` pairs, paths spelled ``"dense_0.kernel"``."""
    if tree is None:
        return []
    if not _is_node(tree):
        return [(path, tree)]
    out = []
    for k, child in _children(tree):
        out.extend(tree_flatten_with_path(child, _join(path, k)))
    return out


def tree_leaves(tree) -> list:
    """The leaves of ``tree`` in a stable order."""
    return [leaf for _, leaf in tree_flatten_with_path(tree)]


def tree_structure_check(expected, actual, check_shapes: bool = True, names=("params", "grads")) -> None:
    """Raise ValueError at the first path where ``actual`` differs from ``expected`` in structure or shape."""
    def check(a, b, path=""):
        _check_same(path, a, b)
        if _is_node(a):
            kids = _children(a)
            bk = [b[k] for k, _ in kids] if isinstance(a, dict) else list(b)
            for (k, ca), cb in zip(kids, bk):
                check(ca, cb, _join(path, k))
        elif check_shapes and a is not None and getattr(a, "shape", None) != getattr(b, "shape", None):
            raise ValueError(f"{names[0]} and {names[1]} differ at '{path or '<root>'}': "
                             f"shape {getattr(a, 'shape', None)} vs {getattr(b, 'shape', None)}")
    check(expected, actual)
