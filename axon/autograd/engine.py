"""The reverse-mode engine: record primitives as they run, then walk the graph backwards.

The engine knows nothing about particular operations. A ``Primitive`` bundles a forward function per
backend (numpy arrays on ``"cpu"``) with one vector-Jacobian product (VJP); ``primitive`` adds one to the
table and ``implement`` gives it a forward on another backend; ``apply`` runs the forward of the inputs'
backend and records a ``Node``; ``backprop`` sorts the recorded graph once and calls every VJP in
reverse order.

>>> from axon.autograd import Tensor
>>> x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4., 6.], dtype=float32)
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable

import numpy as np

__all__ = ["Primitive", "PRIMITIVES", "primitive", "implement", "Node", "apply", "forward_for", "TRACING", "toposort",
           "backprop", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled"]


class Primitive:
    """An operation the engine can differentiate: one name, one VJP rule, one forward per backend.

    One way to make one: ``primitive(name, forward, vjp)``, which builds it and puts it in the table
    (``PRIMITIVES``); the class is public to be read (``t.grad_fn.prim``) and type-checked, not called.

    ``forwards[backend](*arrays, **params) -> array`` computes on that backend's arrays (``"cpu"``:
    numpy). With ``saves=True`` a forward returns ``(array, saved)`` and the VJP receives
    ``saved=...`` (an argmax, a mask...). ``vjp(dy, y, *xs, **params) -> tuple`` gives one gradient
    per input (``None`` for no gradient); ``dy``, ``y`` and ``xs`` are Tensors, so a VJP written with
    Tensor operations runs on every backend and is itself differentiable (``higher_order=True``).
    ``vjp=None`` makes a primitive that is never differentiated (comparisons, the backward kernels
    themselves); its forward may return a tuple of arrays, and ``apply`` then returns a tuple of Tensors.

    >>> square = primitive("doc.square", lambda x: x * x, lambda dy, y, x: (dy * 2 * x,))  # forward, then VJP
    >>> x = Tensor([1.0, -3.0], requires_grad=True)
    >>> apply(square, x).sum().backward(); x.grad
    array([ 2., -6.], dtype=float32)
    >>> sorted(square.forwards), square.name
    (['cpu'], 'doc.square')
    >>> del PRIMITIVES["doc.square"]                                # free the name (only an example)
    """
    __slots__ = ("name", "forwards", "vjp", "saves", "higher_order")

    def __init__(self, name: str, vjp, saves: bool = False, higher_order: bool = True):
        self.name, self.forwards, self.vjp = name, {}, vjp
        self.saves, self.higher_order = saves, higher_order

    def __repr__(self):
        return f"<primitive {self.name} on {', '.join(sorted(self.forwards))}>"


# The one table of primitives, by name. Kernel modules add theirs as "kernels.<name>".
PRIMITIVES: dict[str, Primitive] = {}


def primitive(name: str, forward: Callable, vjp: Callable | None = None, **flags) -> Primitive:
    """Add a primitive to the table with its CPU forward (numpy arrays in and out) and return it.

    Names are unique: one table, one entry per operation (``"kernels.conv"``, not a second ``"conv"``).
    Only a primitive defined in an interactive session (``__main__``) may be defined again, from
    ``__main__`` too: the new one replaces it, so re-running a notebook cell works.

    >>> cube = primitive("doc.cube", lambda x: x ** 3, lambda dy, y, x: (dy * 3 * x * x,))  # dy 3x^2
    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> apply(cube, x).sum().backward(); x.grad
    array([ 3., 12.], dtype=float32)
    >>> del PRIMITIVES["doc.cube"]  # free the name again (this is only an example)
    """
    old = PRIMITIVES.get(name)
    old_cpu = old.forwards.get("cpu") if old is not None else None
    if old is not None and not (_from_main(forward) and _from_main(old_cpu)):   # a library's entry stays
        origin = getattr(old_cpu, "__module__", "?")
        raise ValueError(f"primitive {name!r} is already in the table (from {origin}); give the new one another name")
    PRIMITIVES[name] = prim = Primitive(name, vjp, **flags)
    prim.forwards["cpu"] = forward
    return prim


def _from_main(fn) -> bool:
    return getattr(fn, "__module__", None) == "__main__"


def implement(name: str, backend: str, forward: Callable) -> Primitive:
    """Give the primitive ``name`` its forward on ``backend`` (the VJP is shared by all backends).

    >>> neg = implement("neg", "doc.cpu-copy", lambda x: -x)      # a second forward for "neg"
    >>> sorted(neg.forwards)
    ['cpu', 'doc.cpu-copy']
    >>> del neg.forwards["doc.cpu-copy"]
    """
    prim = PRIMITIVES.get(name)
    if prim is None:
        raise KeyError(f"implement: no primitive named {name!r} in the table")
    if not callable(forward):
        raise TypeError(f"implement: the forward of {name!r} on {backend!r} must be callable, got {forward!r}")
    prim.forwards[backend] = forward
    return prim


class Node:
    """How a Tensor was made: the primitive, its input Tensors, its settings and what its forward saved.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> y = x * 2.0
    >>> y.grad_fn.prim.name, y.grad_fn.parents[0] is x, x.grad_fn is None  # a leaf has no node
    ('mul', True, True)
    """
    __slots__ = ("prim", "parents", "params", "saved")

    def __init__(self, prim: Primitive, parents: tuple, params: dict, saved=None):
        self.prim, self.parents, self.params, self.saved = prim, parents, params, saved

    def __repr__(self):                                        # as Tensor's repr shows it: grad_fn=<mul>
        return f"<{self.prim.name}>"


class _GradMode:
    enabled = True


class _Tracing(threading.local):
    """The recorder of ``axon.jit`` while it traces a function (``None`` otherwise): ``apply`` hands it every op.

    One per thread, so a trace records only its own thread's ops.

    >>> TRACING.tracer is None                          # nothing is being traced
    True
    """
    tracer = None


TRACING = _Tracing()


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

    The forward is the one of the inputs' backend (``axon.backend``); numbers and 0-d host arrays join
    any backend, other inputs on two different backends are an error naming both.

    >>> scale = primitive("doc.scale", lambda x, c: x * c, lambda dy, y, x, c: (dy * c,))
    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> y = apply(scale, x, c=10.0); y  # Tensors positional, params by keyword
    Tensor([10., 20.], dtype=float32, grad_fn=<doc.scale>)
    >>> y.sum().backward(); x.grad      # the VJP got c=10.0 back
    array([10., 10.], dtype=float32)
    >>> del PRIMITIVES["doc.scale"]
    """
    xs = tuple(x if isinstance(x, Tensor) else as_tensor(x, like=inputs) for x in inputs)
    arrays = [x.data for x in xs]
    if TRACING.tracer is not None:                         # axon.jit is recording: it runs the forward, notes it
        out = TRACING.tracer.run(prim, arrays, params)
    elif all(type(a) is np.ndarray for a in arrays):       # the common case: every input on the CPU
        out = prim.forwards["cpu"](*arrays, **params)
    else:
        out = forward_for(prim, arrays)(*arrays, **params)
    saved = None
    if prim.saves:
        out, saved = out
    if prim.vjp is None:                                   # never differentiated: plain results
        if isinstance(out, tuple):                         # (a backward kernel's dx, dw; None: not asked for)
            return tuple(None if o is None else Tensor._wrap(o) for o in out)
        return Tensor._wrap(out)
    y = Tensor._wrap(out)
    if _GradMode.enabled and any(x.requires_grad for x in xs):
        y.requires_grad = True
        y._node = Node(prim, xs, params, saved)
    return y


def forward_for(prim: Primitive, arrays: list):
    """The forward of the one backend the inputs live on; 0-d host arrays are moved there (in ``arrays``).

    >>> forward_for(PRIMITIVES["neg"], [np.ones(2)]) is PRIMITIVES["neg"].forwards["cpu"]
    True
    """
    found = {}
    for a in arrays:
        b = backend_of(a)
        if b.name != "cpu" or a.ndim > 0:
            found.setdefault(b.name, b)
    if len(found) > 1:
        raise ValueError(f"{prim.name}: inputs live on different devices ({' and '.join(sorted(found))}); "
                         f"move them to one with axon.to_device")
    b = next(iter(found.values())) if found else backend_of(arrays[0])
    if b.name != "cpu":
        for i, a in enumerate(arrays):
            if type(a) is np.ndarray or isinstance(a, np.generic):
                arrays[i] = b.from_host(np.asarray(a))
    forward = prim.forwards.get(b.name)
    if forward is None:
        raise NotImplementedError(f"primitive {prim.name!r} has no forward on the {b.name!r} backend "
                                  f"(it has: {', '.join(sorted(prim.forwards))})")
    return forward


def toposort(root) -> list:
    """Tensors that ``root`` depends on (needing gradients), each after all of its inputs.

    Iterative depth-first search, so a chain of 10,000 operations does not hit the recursion limit.

    >>> x = Tensor(2.0, requires_grad=True)
    >>> y = (x * x).exp()
    >>> [t.grad_fn.prim.name if t.grad_fn else "leaf" for t in toposort(y)]  # each after its inputs
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
            saved = {"saved": node.saved} if node.prim.saves else {}    # what the forward kept, if anything
            dxs = node.prim.vjp(g, t, *node.parents, **node.params, **saved)
            for p, dx in zip(node.parents, dxs):
                if dx is None or not p.requires_grad:
                    continue
                grads[id(p)] = dx if id(p) not in grads else grads[id(p)] + dx
    if not retain_graph:
        for t in order:
            if t._node is not None:
                t._node.parents = t._node.params = t._node.saved = None
    return result


# Imported last because tensor.py imports this module for its operators: the engine wraps results in Tensors.
from ..backend import backend_of  # noqa: E402
from .tensor import Tensor, as_tensor  # noqa: E402
