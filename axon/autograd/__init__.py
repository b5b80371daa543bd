"""Reverse-mode automatic differentiation on numpy arrays.

Four small modules, each with one job:

- ``tensor``: the ``Tensor`` class (data, ``requires_grad``, ``.grad``, operators).
- ``engine``: ``Primitive``, ``apply`` (run and record), ``toposort`` and ``backprop`` (the graph walk).
- ``ops``: the table of primitives, each forward next to its vector-Jacobian product.
- ``transforms`` and ``check``: ``grad``/``value_and_grad`` over nested params, ``check_grads``.

>>> import numpy as np, axon.autograd as ag
>>> ag.grad(lambda w: ((w * 3.0) ** 2).sum())(np.array([1.0, 2.0]))
array([18., 36.])
"""
from .engine import (Primitive, apply, backprop, enable_grad, is_grad_enabled, no_grad,
                     set_grad_enabled, toposort)
from .tensor import Tensor, as_tensor
from .ops import (PRIMITIVES, abs, add, astype, broadcast_to, clip, concatenate, div, exp, getitem, log,
                  matmul, max, maximum, mean, min, minimum, mul, neg, pad, power, primitive, relu, reshape,
                  scatter_add, sigmoid, sqrt, stack, sub, sum, tanh, transpose, unbroadcast, where)
from .transforms import grad, value_and_grad
from .check import check_grads, numerical_grad

__all__ = [
    "Tensor", "as_tensor", "Primitive", "primitive", "apply", "backprop", "toposort", "PRIMITIVES",
    "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled",
    "grad", "value_and_grad", "check_grads", "numerical_grad", "unbroadcast",
    "add", "sub", "mul", "div", "neg", "power", "matmul", "exp", "log", "sqrt", "abs", "tanh", "sigmoid",
    "relu", "clip", "astype", "sum", "mean", "max", "min", "reshape", "transpose", "getitem", "scatter_add",
    "concatenate", "stack", "where", "maximum", "minimum", "pad", "broadcast_to",
]
