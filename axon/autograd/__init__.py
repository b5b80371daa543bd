"""Reverse-mode automatic differentiation on numpy arrays.

Small modules, each with one job:

- ``tensor``: the ``Tensor`` class (data, ``requires_grad``, ``.grad``, operators).
- ``engine``: the table of primitives (``primitive``, ``implement`` a forward per backend), ``apply``
  (run the inputs' backend's forward and record), ``toposort`` and ``backprop`` (the graph walk).
- ``ops``: the engine's own primitives, each forward next to its vector-Jacobian product.
- ``transforms`` and ``check``: ``grad``/``value_and_grad`` over nested params, ``check_grads``.
- ``draw``: ``draw_graph``, the recorded graph as text or SVG, in the order of ``toposort``.

>>> import numpy as np, axon.autograd as ag
>>> ag.grad(lambda w: ((w * 3.0) ** 2).sum())(np.array([1.0, 2.0]))
array([18., 36.])
"""
from .engine import (PRIMITIVES, Primitive, apply, backprop, enable_grad, implement, is_grad_enabled, no_grad,
                     primitive, set_grad_enabled, toposort)
from .tensor import Tensor, as_tensor
from .ops import (abs, add, astype, broadcast_to, clip, concatenate, div, equal, exp, getitem, greater,
                  greater_equal, less, less_equal, log, logical_and, logical_not, logical_or, matmul, max, maximum,
                  mean, min, minimum, mul, neg, not_equal, pad, power, relu, reshape, scatter_add, sigmoid, sign,
                  sqrt, stack, sub, sum, tanh, transpose, unbroadcast, where)
from .transforms import grad, value_and_grad
from .check import check_grads, numerical_grad
from .draw import draw_graph

__all__ = [
    "Tensor", "as_tensor", "Primitive", "primitive", "implement", "apply", "backprop", "toposort", "PRIMITIVES",
    "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled",
    "grad", "value_and_grad", "check_grads", "numerical_grad", "draw_graph", "unbroadcast",
    "add", "sub", "mul", "div", "neg", "power", "matmul", "exp", "log", "sqrt", "abs", "tanh", "sigmoid",
    "relu", "clip", "astype", "sum", "mean", "max", "min", "reshape", "transpose", "getitem", "scatter_add",
    "concatenate", "stack", "where", "maximum", "minimum", "pad", "broadcast_to", "sign", "less", "less_equal",
    "greater", "greater_equal", "equal", "not_equal", "logical_and", "logical_or", "logical_not",
]
