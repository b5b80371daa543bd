"""Function transforms: ``grad`` and ``value_and_grad`` over nested containers of arrays.

>>> import numpy as np
>>> f = lambda p: (p["w"] ** 2).sum() + p["b"].sum()
>>> grad(f)({"w": np.array([1.0, 2.0]), "b": np.array([0.0])})
{'w': array([2., 4.]), 'b': array([1.])}

Nesting works because an inner ``grad`` that receives Tensors already being differentiated records
its own backward pass (``create_graph=True``), so the outer one can go through it:

>>> d2 = grad(grad(lambda x: x ** 3))        # 6x
>>> float(d2(2.0))
12.0
"""
from __future__ import annotations

import numpy as np

from ..tree import tree_leaves, tree_map, tree_map_with_path
from ..backend import backend_of, is_host
from .engine import backprop, enable_grad, is_grad_enabled
from .ops import astype
from .tensor import Tensor

__all__ = ["grad", "value_and_grad"]


def _is_traced(x) -> bool:
    """A Tensor that an enclosing ``grad`` is differentiating: keep it, so the graph stays connected."""
    return isinstance(x, Tensor) and x.requires_grad and is_grad_enabled()


def _new_leaf(path, x) -> Tensor:
    """A fresh Tensor that requires a gradient, for an array (or number) argument."""
    if _is_traced(x):
        return x
    arr = x.data if isinstance(x, Tensor) else x
    arr = arr if not is_host(arr) else np.asarray(arr)         # a device array stays on its device
    if arr.dtype.kind != "f":
        if isinstance(x, (int, float)):
            arr = arr.astype(np.float32)
        else:
            raise TypeError(f"grad: argument '{path or '<root>'}' must be floating point, got dtype {arr.dtype}")
    t = Tensor._wrap(arr)
    t.requires_grad = True
    return t


def value_and_grad(f, argnums=0, has_aux=False):
    """Return ``g(*args) -> (value, grads)``: ``f``'s scalar value and its gradient w.r.t. ``args[argnums]``.

    ``argnums`` is an int or a tuple of ints; each such argument may be a nested dict/list/tuple of
    arrays, and its gradient comes back in the same structure (numpy arrays; Tensors when called
    inside another ``grad``). With ``has_aux``, ``f`` returns ``(value, aux)`` and ``g`` returns
    ``((value, aux), grads)``.

    >>> params = {"w": np.array([2.0]), "b": np.array([1.0])}
    >>> mse = lambda p, x, y: ((x * p["w"] + p["b"] - y) ** 2).mean()
    >>> loss, grads = value_and_grad(mse)(params, np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    >>> float(loss), grads  # the gradient has the structure of params
    (17.0, {'w': array([13.]), 'b': array([8.])})
    """
    return _value_and_grad(f, argnums, has_aux, "value_and_grad")


def _value_and_grad(f, argnums, has_aux, caller):
    nums = tuple(argnums) if isinstance(argnums, (tuple, list)) else (argnums,)

    def value_and_grad_f(*args, **kwargs):
        for n in nums:
            if not -len(args) <= n < len(args):
                raise ValueError(f"{caller}: argnums={argnums} but the function got {len(args)} arguments")
        args = list(args)
        nested = any(_is_traced(x) for n in nums for x in tree_leaves(args[n]))
        for n in nums:
            args[n] = tree_map_with_path(_new_leaf, args[n])
        with enable_grad():
            out = f(*args, **kwargs)
        value, aux = out if has_aux else (out, None)
        if not isinstance(value, Tensor) or value.size != 1:
            got = getattr(value, "shape", type(value).__name__)
            raise TypeError(f"{caller}: the function must return a single-element Tensor "
                            f"(a scalar loss), got {got}")
        targets = [t for n in nums for t in tree_leaves(args[n])]
        found = {}
        if value.requires_grad:
            dy = Tensor._wrap(backend_of(value.data).full(value.shape, 1, value.dtype))
            found = {id(t): g for t, g in backprop(value, dy, targets, create_graph=nested, retain_graph=nested)}

        def grad_of(t):
            g = found.get(id(t))
            if g is None:                                      # f does not depend on t
                g = Tensor._wrap(backend_of(t.data).full(t.shape, 0, t.dtype))
            elif g.dtype != t.dtype:                           # a gradient has its leaf's dtype
                g = astype(g, t.dtype)
            return g if nested else g.data

        grads = tuple(tree_map(grad_of, args[n]) for n in nums)
        value = value if nested else value.data
        grads = grads if isinstance(argnums, (tuple, list)) else grads[0]
        return ((value, aux) if has_aux else value), grads

    return value_and_grad_f


def grad(f, argnums=0, has_aux=False):
    """Return ``g(*args) -> grads``: the gradient of scalar ``f`` w.r.t. ``args[argnums]``.

    With ``has_aux``, ``g`` returns ``(grads, aux)``.

    >>> params = {"w": np.array([1.0, -2.0]), "b": np.array(0.5)}
    >>> loss = lambda p, x: ((x * p["w"]).sum() + p["b"]) ** 2
    >>> grad(loss)(params, np.array([3.0, 1.0]))             # 2 (w.x + b) x and 2 (w.x + b)
    {'w': array([9., 3.]), 'b': array(3.)}
    >>> grad(loss, argnums=1)(params, np.array([3.0, 1.0]))  # w.r.t. x instead
    array([ 3., -6.])
    """
    value_and_grad_f = _value_and_grad(f, argnums, has_aux, "grad")

    def grad_f(*args, **kwargs):
        value, grads = value_and_grad_f(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    return grad_f
