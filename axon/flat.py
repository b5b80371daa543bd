"""Flat buffers: a tree's leaves as views of one 1-d array, so a whole update is one kernel call.

Params and optimizer moments stay plain nested dicts of arrays; after one update they are *views*
(``flat[lo:hi].reshape(shape)``) of one buffer per tree. Two primitives move between the two forms:

- ``flat.join(*leaves) -> flat`` (n,): the buffer the leaves are views of, when they tile it exactly
  in order (no copy: the common case from the second step on); else their concatenation (a copy);
- ``flat.split(flat, *, shapes) -> (views, ...)``: one view per shape, in order, no copy.

So ``split(kernel(join(p), join(g), ...))`` runs the kernel once over every parameter, and its
results are split back into a tree whose leaves are views of the new buffer: the next step's
``join`` finds that buffer again. A fresh tree (``model.init``'s separate arrays) is copied once.
Both are decided when the op runs, so a traced plan (``axon.jit``) is right for either kind of tree.
The values are exactly the per-leaf ones: an elementwise kernel does not care where a leaf begins.

The flat path is taken where it pays (``can_flatten``): on host arrays from ``FLAT_MIN_LEAVES`` leaves on;
on a device (``axon.cuda``: its join finds the buffer its split made, and copies separate leaves in one
launch) always, since there every kernel launch saved is worth more than the copy of the gradients.

>>> import numpy as np
>>> tree = {"w": np.ones((2, 2), np.float32), "b": np.zeros(2, np.float32)}
>>> out = map_flat(lambda f: f + 1, tree)                   # one add over all 6 elements
>>> out["w"].base is out["b"].base, out["b"]
(True, array([1., 1.], dtype=float32))
>>> join(tree_leaves(out)) is out["w"].base                 # the next join finds the buffer: no copy
True
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .autograd import Tensor, apply, primitive
from .tree import tree_leaves, tree_map

__all__ = ["join", "split", "map_flat", "can_flatten", "bounds", "FLAT_MIN_LEAVES", "FLAT_MIN_LEAVES_DEVICE"]



def _tiled_base(leaves):
    """The 1-d array that ``leaves`` tile exactly, in order, as C-contiguous views; else None."""
    base = leaves[0].base
    if base is None or base.ndim != 1 or base.dtype != leaves[0].dtype or not base.flags.c_contiguous:
        return None
    start = end = base.__array_interface__["data"][0]
    for a in leaves:
        if a.base is not base or not a.flags.c_contiguous or a.__array_interface__["data"][0] != end:
            return None
        end += a.nbytes
    return base if end - start == base.nbytes else None


def _join_forward(*leaves):
    # leaves: numpy arrays of one dtype -> (sum of sizes,): their buffer, or a new one
    if len(leaves) == 1 and leaves[0].flags.c_contiguous:
        return leaves[0].reshape(-1)                          # a view
    base = _tiled_base(leaves)
    return base if base is not None else np.concatenate([a.reshape(-1) for a in leaves])


@functools.lru_cache(maxsize=1024)                         # a plan cuts the same shapes at every replay
def bounds(shapes: tuple) -> tuple:
    """``(lo, size, shape)`` of each piece of a flat buffer cut into ``shapes`` (a tuple of tuples), in order.

    >>> bounds(((2, 3), (4,)))
    ((0, 6, (2, 3)), (6, 4, (4,)))
    """
    lo, out = 0, []
    for shape in shapes:
        size = math.prod(shape)
        out.append((lo, size, shape))
        lo += size
    return tuple(out)


def _split_forward(flat, shapes):
    # flat (n,) -> one view per shape, in order
    return tuple(flat[lo:lo + size].reshape(shape) for lo, size, shape in bounds(shapes))


_JOIN = primitive("flat.join", _join_forward)                 # never differentiated
_SPLIT = primitive("flat.split", _split_forward)


def join(leaves: list):
    """The leaves (arrays of one dtype, on one backend) as one 1-d array: their own buffer when they tile one.

    >>> join([np.ones(2), np.zeros((1, 2))])
    array([1., 1., 0., 0.])
    """
    return apply(_JOIN, *leaves).data


def split(flat, shapes) -> list:
    """Views of the 1-d array ``flat``, one per shape, in order (``join``'s inverse).

    >>> [v.shape for v in split(np.arange(5.0), [(2, 2), (1,)])]
    [(2, 2), (1,)]
    """
    return [t.data for t in apply(_SPLIT, flat, shapes=tuple(tuple(s) for s in shapes))]


# The flat path pays from this many leaves per tree on (numpy) host arrays. Measured, Adam + apply_updates,
# 2-core Xeon, one thread: 4 leaves (the MNIST MLP) 150 us flat / 120 us per leaf (the grads' copy and the
# joins' checks cost more than the calls they save); 32 leaves of 4k floats equal; 128 leaves 6% faster flat.
FLAT_MIN_LEAVES = 32
# On a device every tree takes it: a launch costs ~22 us from Python (numba.cuda, measured on an H200), so
# the per-leaf Adam's two launches a leaf cost more than copying the gradients into one buffer.
FLAT_MIN_LEAVES_DEVICE = 1


def can_flatten(*trees) -> bool:
    """Whether ``map_flat`` applies and pays: every leaf an array of one floating dtype on one backend, enough leaves.

    Host (numpy) arrays need ``FLAT_MIN_LEAVES`` leaves per tree (a test sets it to 0 to force the flat path);
    a device's arrays ``FLAT_MIN_LEAVES_DEVICE``, where that backend implements ``flat.join`` and ``flat.split``.

    >>> can_flatten({"w": np.ones(2, np.float32)}, {"w": np.ones(2, np.float64)})
    False
    """
    from .backend import backend_of
    from .tracing import TracedArray             # while tracing: decide on the arrays behind the placeholders,
    leaves = [a.data if isinstance(a, Tensor) else a for t in trees for a in tree_leaves(t)]   # as eagerly
    leaves = [a.value if type(a) is TracedArray else a for a in leaves]
    if not leaves:
        return False
    dtype = getattr(leaves[0], "dtype", None)
    if dtype is None or dtype.kind != "f":
        return False
    if type(leaves[0]) is np.ndarray:
        return (len(leaves) >= FLAT_MIN_LEAVES * len(trees)
                and all(type(a) is np.ndarray and a.dtype == dtype for a in leaves))
    b = backend_of(leaves[0])
    return (b.name in _JOIN.forwards and b.name in _SPLIT.forwards
            and len(leaves) >= FLAT_MIN_LEAVES_DEVICE * len(trees)
            and all(isinstance(a, b.array_types) and a.dtype == dtype and a.ndim > 0 for a in leaves))


def map_flat(fn, tree, *rest, n_out: int = 1):
    """``fn`` on the flat buffers of ``tree`` and ``rest`` (trees like it), its result(s) split back into trees.

    ``fn(*flats)`` returns one array (n,) or, with ``n_out`` > 1, a tuple of them; each comes back as a
    tree like ``tree``, its leaves views of that array.

    >>> u = map_flat(lambda p, g: p - 0.5 * g, {"w": np.ones(2)}, {"w": np.full(2, 2.0)})
    >>> u["w"]
    array([0., 0.])
    """
    leaves = [a.data if isinstance(a, Tensor) else a for a in tree_leaves(tree)]
    shapes = [a.shape for a in leaves]
    flats = [join(leaves)] + [join([a.data if isinstance(a, Tensor) else a for a in tree_leaves(t)]) for t in rest]
    out = fn(*flats)
    outs = out if n_out > 1 else (out,)
    trees = []
    for y in outs:
        views = iter(split(y.data if isinstance(y, Tensor) else y, shapes))
        trees.append(tree_map(lambda _: next(views), tree))
    return tuple(trees) if n_out > 1 else trees[0]
