"""The reverse-mode engine: record primitives as they run, then walk the graph backwards.

The engine knows nothing about particular operations. A ``Primitive`` bundles a forward function on
numpy arrays with its vector-Jacobian product (VJP); ``apply`` runs one and records a ``Node``;
``backprop`` sorts the recorded graph once and calls every VJP in reverse order.

>>> from axon.autograd import Tensor
>>> x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4., 6.], dtype=float32)
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, NamedTuple

__all__ = ["Primitive", "Node", "apply", "toposort", "backprop", "no_grad", "enable_grad",
           "is_grad_enabled", "set_grad_enabled"]


class Primitive(NamedTuple):
    """An operation the engine can differentiate.

    ``forward(*arrays, **params) -> array`` computes on numpy arrays. With ``saves=True`` it returns
    ``(array, saved)`` and the VJP receives ``saved=...`` among its params (an argmax, a mask...).
    ``vjp(dy, y, *xs, **params) -> tuple`` gives one gradient per input (``None`` for no gradient);
    ``dy``, ``y`` and ``xs`` are Tensors, so a VJP written with Tensor operations is itself
    differentiable (``higher_order=True``). A kernel whose VJP is a black box sets ``higher_order=False``.

    >>> square = Primitive("square", lambda x: x * x, lambda dy, y, x: (dy * 2 * x,))  # forward, then VJP
    >>> x = Tensor([1.0, -3.0], requires_grad=True)
    >>> apply(square, x).sum().backward(); x.grad
    array([ 2., -6.], dtype=float32)
    """
    name: str
    forward: Callable
    vjp: Callable
    saves: bool = False
    higher_order: bool = True


class Node:
    """How a Tensor was made: the primitive, its input Tensors and its non-differentiable params.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> y = x * 2.0
    >>> y._node.prim.name, y._node.parents[0] is x, x._node is None  # a leaf has no node
    ('mul', True, True)
    """
    __slots__ = ("prim", "parents", "params")

    def __init__(self, prim: Primitive, parents: tuple, params: dict):
        self.prim, self.parents, self.params = prim, parents, params

    def __repr__(self):                                        # as Tensor's repr shows it: grad_fn=<mul>
        return f"<{self.prim.name}>"


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """Whether operations are being recorded for differentiation.

    >>> is_grad_enabled()
    True
    >>> with no_grad():
    ...     print(is_grad_enabled())
    False
    """
    return _GradMode.enabled


@contextmanager
def set_grad_enabled(mode: bool):
    """Turn recording on or off inside a ``with`` block.

    >>> x = Tensor([1.0], requires_grad=True)
    >>> with set_grad_enabled(False):
    ...     y = x * 2.0
    >>> y.requires_grad, is_grad_enabled()  # nothing recorded; the old mode is back after the block
    (False, True)
    """
    prev, _GradMode.enabled = _GradMode.enabled, bool(mode)
    try:
        yield
    finally:
        _GradMode.enabled = prev


def no_grad():
    """Context manager: run operations without recording a graph (inference, updates).

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> with no_grad():
    ...     y = x * 2.0
    >>> y, y.requires_grad  # the value, but no graph to backpropagate through
    (Tensor([2., 4.], dtype=float32), False)
    """
    return set_grad_enabled(False)


def enable_grad():
    """Context manager: record operations even inside ``no_grad``.

    >>> x = Tensor([1.0], requires_grad=True)
    >>> with no_grad():
    ...     with enable_grad():
    ...         y = x * 2.0
    >>> y.requires_grad
    True
    """
    return set_grad_enabled(True)


def apply(prim: Primitive, *inputs, **params):
    """Run ``prim`` on Tensors (or arrays/numbers) and record it when any input needs a gradient.

    >>> scale = Primitive("scale", lambda x, c: x * c, lambda dy, y, x, c: (dy * c,))
    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> y = apply(scale, x, c=10.0); y  # Tensors positional, params by keyword
    Tensor([10., 20.], dtype=float32, grad_fn=<scale>)
    >>> y.sum().backward(); x.grad      # the VJP got c=10.0 back
    array([10., 10.], dtype=float32)
    """
    xs = tuple(x if isinstance(x, Tensor) else as_tensor(x, like=inputs) for x in inputs)
    out = prim.forward(*(x.data for x in xs), **params)
    if prim.saves:
        out, params["saved"] = out
    y = Tensor._wrap(out)
    if _GradMode.enabled and any(x.requires_grad for x in xs):
        y.requires_grad = True
        y._node = Node(prim, xs, params)
    return y


def toposort(root) -> list:
    """Tensors that ``root`` depends on (needing gradients), each after all of its inputs.

    Iterative depth-first search, so a chain of 10,000 operations does not hit the recursion limit.

    >>> x = Tensor(2.0, requires_grad=True)
    >>> y = (x * x).exp()
    >>> [t._node.prim.name if t._node else "leaf" for t in toposort(y)]  # each after its inputs
    ['leaf', 'mul', 'exp']
    """
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        t, children_done = stack.pop()
        if children_done:                                      # every input of t is already in order
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            if t._node.parents is None:
                raise RuntimeError("the graph was freed by an earlier backward(); "
                                   "pass retain_graph=True to backward through it twice")
            stack.extend((p, False) for p in t._node.parents if p.requires_grad and id(p) not in visited)
    return order


def backprop(root, dy, keep=None, create_graph: bool = False, retain_graph: bool = False) -> list:
    """Propagate ``dy`` (the gradient of ``root``) backwards; return ``[(t, grad)]`` for the kept Tensors.

    ``keep`` is an iterable of Tensors whose gradients are wanted (leaves or not); None keeps every
    leaf that requires a gradient. With ``create_graph`` the VJPs are recorded too, so the returned
    gradients can be differentiated again.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> [(t is x, g) for t, g in backprop(y, Tensor(1.0))]  # d(sum x^2)/dx = 2x
    [(True, Tensor([2., 4.], dtype=float32))]
    >>> x.grad is None  # backprop returns gradients; backward() stores them
    True
    """
    order = toposort(root)
    keep_ids = {id(t) for t in (keep if keep is not None else (t for t in order if t._node is None))}
    grads, result = {id(root): dy}, []
    with set_grad_enabled(create_graph):
        for t in reversed(order):
            g = grads.pop(id(t), None)
            if g is None:
                continue
            if id(t) in keep_ids:
                result.append((t, g))
            node = t._node
            if node is None:
                continue
            if create_graph and not node.prim.higher_order:
                raise NotImplementedError(f"primitive '{node.prim.name}' does not support higher-order "
                                          f"gradients (backward with create_graph=True)")
            dxs = node.prim.vjp(g, t, *node.parents, **node.params)
            for p, dx in zip(node.parents, dxs):
                if dx is None or not p.requires_grad:
                    continue
                grads[id(p)] = dx if id(p) not in grads else grads[id(p)] + dx
    if not retain_graph:
        for t in order:
            if t._node is not None:
                t._node.parents = t._node.params = None
    return result


from .tensor import Tensor, as_tensor  # noqa: E402  (the engine's one link to the Tensor class; tensor.py imports us)
