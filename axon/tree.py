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

import numpy as np

__all__ = ["tree_map", "tensor_map", "tree_map_multi", "tree_map_with_path", "tree_leaves", "tree_flatten_with_path", "tree_structure_check", "is_namedtuple"]


def is_namedtuple(x) -> bool:
    """True for NamedTuple instances (tuples with ``_fields``).

    >>> from collections import namedtuple
    >>> State = namedtuple("State", ["count", "mu"])
    >>> is_namedtuple(State(0, 1.0)), is_namedtuple((0, 1.0))
    (True, False)
    """
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


class _Mismatch(Exception):
    """Raised inside the fast walk; ``tree_map`` then finds the path for the error message."""


def tree_map(fn, tree, *rest):
    """Apply ``fn(leaf, *other_leaves)`` to every leaf; the trees in ``rest`` must match ``tree``.

    A mismatch (other keys, lengths or container types) raises ValueError naming the first bad path.
    The walk itself builds no paths (it runs on every training step); only a mismatch pays for one.

    >>> import numpy as np
    >>> params, grads = {"w": np.array([1.0, 2.0]), "b": 0.0}, {"w": np.array([1.0, 1.0]), "b": 2.0}
    >>> tree_map(lambda p, g: p - 0.1 * g, params, grads)  # one SGD step
    {'w': array([0.9, 1.9]), 'b': -0.2}
    >>> tree_map(lambda p, g: p - g, params, {"w": 1.0})
    Traceback (most recent call last):
    ValueError: tree structures differ at '<root>': keys missing ['b'], unexpected []
    """
    try:
        return _map(fn, tree, rest)
    except _Mismatch:
        for r in rest:
            tree_structure_check(tree, r, check_shapes=False)  # raises, naming the first bad path
        raise ValueError("tree structures differ") from None


def _map(fn, x, rest):
    if x is None:
        return None
    if type(x) is dict:                                        # the common case, params and grads
        for r in rest:
            if not isinstance(r, dict) or r.keys() != x.keys():
                raise _Mismatch
        return {k: _map(fn, v, [r[k] for r in rest]) for k, v in x.items()}
    if not _is_node(x):
        return fn(x, *rest)
    for r in rest:
        if type(r) is not type(x) and not (isinstance(x, dict) and isinstance(r, dict)) or len(r) != len(x):
            raise _Mismatch
        if isinstance(x, dict) and r.keys() != x.keys():
            raise _Mismatch
    kids = _children(x)
    others = [[r[k] for k, _ in kids] if isinstance(x, dict) else list(r) for r in rest]
    return _rebuild(x, [_map(fn, child, [o[i] for o in others]) for i, (_, child) in enumerate(kids)])


def tensor_map(fn, tree, *rest):
    """``tree_map`` with every leaf given to ``fn`` as a Tensor; the results come back as arrays.

    So ``fn`` is written with Tensor operations, and runs on the backend the leaves live on (numpy on
    the CPU, a device's kernels on a GPU): how optimizers and the training loop touch params.

    >>> import numpy as np
    >>> tensor_map(lambda g, m: 0.5 * m + g, {"w": np.ones(2)}, {"w": np.ones(2)})["w"]
    array([1.5, 1.5])
    """
    from .autograd import Tensor                               # (the engine uses this module)

    def leaf(*xs):
        y = fn(*(x if x is None or isinstance(x, Tensor) else Tensor._wrap(x) for x in xs))
        return y.data if isinstance(y, Tensor) else y
    return tree_map(leaf, tree, *rest)


def tree_map_multi(fn, n: int, tree, *rest) -> tuple:
    """Like ``tree_map`` for an ``fn`` that returns ``n`` values per leaf: ``n`` trees shaped like ``tree``.

    >>> ups, downs = tree_map_multi(lambda x: (x + 1, x - 1), 2, {"a": 1, "b": [2]})
    >>> ups, downs
    ({'a': 2, 'b': [3]}, {'a': 0, 'b': [1]})
    """
    results = []
    tree_map(lambda *leaves: results.append(fn(*leaves)), tree, *rest)   # leaves in tree_map's order
    outs = []
    for i in range(n):
        column = iter([r[i] for r in results])
        outs.append(tree_map(lambda _: next(column), tree))
    return tuple(outs)


def tree_map_with_path(fn, tree, path: str = ""):
    """Apply ``fn(path, leaf)`` to every leaf, paths spelled ``"dense_0.kernel"``.

    >>> params = {"dense_0": {"kernel": 1.0, "bias": 1.0}}
    >>> decay_kernels = lambda path, p: p * 0.9 if path.endswith("kernel") else p
    >>> tree_map_with_path(decay_kernels, params)
    {'dense_0': {'kernel': 0.9, 'bias': 1.0}}
    """
    if tree is None:
        return None
    if not _is_node(tree):
        return fn(path, tree)
    return _rebuild(tree, [tree_map_with_path(fn, child, _join(path, k)) for k, child in _children(tree)])


def tree_flatten_with_path(tree, path: str = ""):
    """List of ``(path, leaf)`` pairs, paths spelled ``"dense_0.kernel"``.

    >>> tree_flatten_with_path({"dense_0": {"kernel": 1, "bias": 2}, "out": [3, None]})
    [('dense_0.kernel', 1), ('dense_0.bias', 2), ('out.0', 3)]
    """
    if tree is None:
        return []
    if not _is_node(tree):
        return [(path, tree)]
    out = []
    for k, child in _children(tree):
        out.extend(tree_flatten_with_path(child, _join(path, k)))
    return out


def tree_leaves(tree) -> list:
    """The leaves of ``tree`` in a stable order.

    >>> tree_leaves({"a": [1, 2], "b": (3, None), "c": {"d": 4}})  # None is an empty subtree
    [1, 2, 3, 4]
    """
    return [leaf for _, leaf in tree_flatten_with_path(tree)]


def _surely_same(a, b, check_shapes: bool) -> bool:
    """True when dicts of arrays ``a`` and ``b`` match (keys and shapes), building no paths.

    False means "not sure": anything else (lists, NamedTuples, numbers, a mismatch) goes to the full
    check, which finds the path for the error message.
    """
    if type(a) is dict:
        return type(b) is dict and a.keys() == b.keys() and all(_surely_same(v, b[k], check_shapes)
                                                                 for k, v in a.items())
    return type(a) is np.ndarray and type(b) is np.ndarray and (not check_shapes or a.shape == b.shape)


def tree_structure_check(expected, actual, check_shapes: bool = True, names=("params", "grads")) -> None:
    """Raise ValueError at the first path where ``actual`` differs from ``expected`` in structure or shape.

    >>> import numpy as np
    >>> params = {"w": np.zeros((2, 3))}
    >>> tree_structure_check(params, {"w": np.ones((2, 3))})  # same structure and shapes: silent
    >>> tree_structure_check(params, {"w": np.ones(3)})
    Traceback (most recent call last):
    ValueError: params and grads differ at 'w': shape (2, 3) vs (3,)
    """
    if _surely_same(expected, actual, check_shapes):          # the common case, on every optimizer step
        return

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
