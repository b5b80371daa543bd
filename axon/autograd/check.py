"""Gradient checking by central finite differences, in float64.

>>> import numpy as np
>>> from axon.autograd import ops
>>> check_grads(lambda x, y: ops.tanh(x) * y, (np.random.randn(3), np.random.randn(3)), order=2)

It checks every element: for ``f`` with output of any shape, it checks ``s(x) = sum(f(x) * u)`` for a
fixed random ``u``; at order 2 it also checks the gradient of ``sum(grad(s)(x) * v)`` (a
Hessian-vector product), which needs every VJP on the way to be differentiable.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor
from .transforms import grad
from .ops import mul, sum as tsum

__all__ = ["check_grads", "numerical_grad"]


def numerical_grad(f, args, eps=1e-6):
    """Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / 2eps`` of scalar ``f`` for every element.

    >>> g, = numerical_grad(lambda x: (x ** 3).sum(), (np.array([1.0, 2.0]),))  # exact: 3x^2
    >>> g.round(6)
    array([ 3., 12.])
    """
    args = [np.array(a, dtype=np.float64) for a in args]
    grads = []
    for a in args:
        g = np.zeros_like(a)
        for i in np.ndindex(*a.shape):
            orig = a[i]
            a[i] = orig + eps
            hi = float(np.asarray(f(*args)))                   # a Tensor, an array or a number
            a[i] = orig - eps
            lo = float(np.asarray(f(*args)))
            a[i] = orig
            g[i] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads


def _projected(f, us):
    """``s(*args) = sum(f(*args) * u)``: a scalar whose gradient is the VJP of ``f`` with ``u``."""
    def s(*args):
        y = f(*args)
        if not isinstance(y, Tensor):
            y = Tensor(np.asarray(y, dtype=np.float64))
        if y.shape not in us:
            us[y.shape] = np.random.default_rng(1).standard_normal(y.shape)
        return tsum(mul(y, us[y.shape]))
    return s


def check_grads(f, args, order=1, eps=1e-6, rtol=1e-5, atol=1e-6):
    """Assert that ``f``'s gradients w.r.t. every argument in ``args`` match finite differences.

    ``args`` is a tuple of arrays (converted to float64); ``order=2`` checks second derivatives too.
    Raises AssertionError naming the argument and the largest error.

    >>> from axon.autograd import PRIMITIVES, apply, ops, primitive
    >>> check_grads(lambda x: ops.tanh(x) * x, (np.array([0.5, -1.0, 2.0]),), order=2)  # passes: no output
    >>> bad_sin = primitive("doc.bad_sin", np.sin, lambda dy, y, x: (dy * y,))  # wrong: should be dy cos(x)
    >>> check_grads(lambda x: apply(bad_sin, x), (np.array([0.5, 1.0]),))
    Traceback (most recent call last):
    AssertionError: first-order gradient of argument 0 does not match finite differences ...
    >>> del PRIMITIVES["doc.bad_sin"]
    """
    if order not in (1, 2):
        raise ValueError(f"check_grads: order must be 1 or 2, got {order}")
    args = tuple(np.array(a, dtype=np.float64) for a in args)
    s = _projected(f, {})
    nums = tuple(range(len(args)))
    g = grad(s, argnums=nums)
    _compare(g(*args), numerical_grad(s, args, eps), rtol, atol, "first")
    if order == 2:
        vs = [np.random.default_rng(2).standard_normal(a.shape) for a in args]

        def hvp(*xs):                                          # sum_i <grad_i s(x), v_i>
            return sum(tsum(mul(gi, v)) for gi, v in zip(g(*xs), vs))
        _compare(grad(hvp, argnums=nums)(*args), numerical_grad(hvp, args, eps), rtol, atol, "second")


def _compare(analytic, numeric, rtol, atol, what):
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != n.shape or not np.allclose(a, n, rtol=rtol, atol=atol):
            err = np.max(np.abs(a - n)) if a.shape == n.shape else f"shape {a.shape} vs {n.shape}"
            raise AssertionError(f"{what}-order gradient of argument {i} does not match finite differences "
                                 f"(max abs error {err}):\nanalytic:\n{a}\nnumeric:\n{n}")
