"""The engine's own primitives, each forward on numpy arrays next to its vector-Jacobian product.

Each ``primitive(name, forward, vjp)`` call here adds an entry to the one table, ``PRIMITIVES`` in
``engine.py``; the kernel modules add theirs the same way.

A VJP takes ``dy`` (the gradient of the output), the output ``y`` and the inputs, all Tensors, and
returns one gradient per input. The rules are written with Tensor operations, so differentiating a
VJP (``create_graph=True``) just records more primitives: that is all grad-of-grad needs.

``sum``, ``max``, ``min`` and ``abs`` here are the Tensor operations (``axon.autograd.ops.sum``): inside
this module they hide Python's builtins, so its own code calls those as ``builtins.max(...)`` and sums
Tensors with the method (``g.sum(axes)``).

>>> from axon.autograd import Tensor
>>> x = Tensor([0.5, -1.0], requires_grad=True)
>>> tanh(x).sum().backward()
>>> x.grad.round(4)
array([0.7864, 0.42  ], dtype=float32)

Gradients at ties, one rule for the library: ``dy`` goes to the elements that the forward *picked*,
in equal shares, so the shares add up to ``dy`` (PyTorch's behaviour, case by case).

- A forward that returns only a value picks every tied element. A reduction (``max``, ``min``;
  ``Tensor.max``; ``axon.layers.global_max_pool`` and ``axon.kernels.global_max_pool``, which are
  ``max`` over the spatial axes) splits ``dy`` evenly among them, as ``torch.amax``; the elementwise
  ``maximum`` and ``minimum`` pick both inputs, half each, as ``torch.maximum``.
- A forward that records *where* its maximum is picks one element, the first maximum, which gets all
  of ``dy``: max pooling over windows (``max_pool`` and ``adaptive_max_pool``, in ``axon.layers`` on
  every path and in ``axon.kernels``) keeps one index per window, as
  ``torch.nn.functional.max_pool2d``; ``axon.kernels.max_with_indices`` returns its indices, as
  ``torch.max(x, dim)``.

A mask of the elements equal to the maximum, not divided by their count, would give each tied element
the whole ``dy``: more gradient out than came in (chapter 2, section 2.8, shows it on a pooling window).

>>> from axon import layers
>>> x = Tensor([1.0, 3.0, 3.0, 3.0], requires_grad=True)
>>> max(x).backward(); x.grad.round(4)                 # a reduction: a third each
array([0.    , 0.3333, 0.3333, 0.3333], dtype=float32)
>>> x.grad = None; maximum(x, 3.0).sum().backward(); x.grad       # elementwise: half at each tie
array([0. , 0.5, 0.5, 0.5], dtype=float32)
>>> x.grad = None; layers.max_pool(x.reshape(1, 4, 1), 4).sum().backward(); x.grad   # a pool: the first
array([0., 1., 0., 0.], dtype=float32)
"""
from __future__ import annotations

import builtins

import numpy as np

from .engine import PRIMITIVES, TRACING, apply, primitive
from .tensor import Tensor, as_tensor

__all__ = [
    "unbroadcast", "add", "sub", "mul", "div", "neg", "power", "matmul", "exp", "log", "sqrt", "abs",
    "tanh", "sigmoid", "relu", "clip", "sum", "mean", "max", "min", "reshape", "transpose", "getitem",
    "scatter_add", "concatenate", "stack", "where", "maximum", "minimum", "pad", "broadcast_to", "astype",
    "sign", "less", "less_equal", "greater", "greater_equal", "equal", "not_equal", "logical_and", "logical_or",
    "logical_not", "PRIMITIVES",
]

def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum ``g`` over the axes that broadcasting added or stretched, so it gets ``shape`` back.

    The one helper every binary op's VJP uses: if ``x`` of shape (3, 1) met ``y`` of shape (4,), the
    output is (3, 4) and the gradient for ``x`` is ``dy.sum(axis=1, keepdims=True)``.

    >>> g = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (2, 3): the gradient of a broadcast result
    >>> unbroadcast(g, (3,))                            # axis 0 was added in front: summed away
    Tensor([5., 7., 9.], dtype=float32)
    >>> unbroadcast(g, (2, 1))                          # axis 1 was stretched from 1: summed, kept
    Tensor([[ 6.],
            [15.]], dtype=float32)
    """
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)                                 # axes broadcasting put in front
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    if axes:
        g = g.sum(axes, keepdims=True)                         # the Tensor method (ops.sum), not Python's
    return reshape(g, shape)


def _binary(np_fn, name):
    """Numpy's binary op with a clear error naming both shapes when they cannot broadcast."""
    def forward(a, b):
        try:
            return np_fn(a, b)
        except ValueError:
            raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None
    return forward


# ---- arithmetic ------------------------------------------------------------------------------------
# A binary rule skips the gradient of an input that needs none (the data batch of ``x @ w``, a
# constant): each "... if a.requires_grad else None" saves a whole product in the backward pass.
def _add_vjp(dy, y, a, b):
    return (unbroadcast(dy, a.shape) if a.requires_grad else None,
            unbroadcast(dy, b.shape) if b.requires_grad else None)


def _sub_vjp(dy, y, a, b):
    return (unbroadcast(dy, a.shape) if a.requires_grad else None,
            unbroadcast(-dy, b.shape) if b.requires_grad else None)


def _mul_vjp(dy, y, a, b):                                     # d(ab) = b da + a db
    return (unbroadcast(dy * b, a.shape) if a.requires_grad else None,
            unbroadcast(dy * a, b.shape) if b.requires_grad else None)


def _div_vjp(dy, y, a, b):                                     # d(a/b) = da / b - (a/b) db / b
    return (unbroadcast(dy / b, a.shape) if a.requires_grad else None,
            unbroadcast(-dy * y / b, b.shape) if b.requires_grad else None)


def _power_vjp(dy, y, x, p):                                   # d(x^p) = p x^(p-1) dx + x^p log(x) dp
    dx = None
    if x.requires_grad:                                        # x = p = 0: 0 (x^0 = 1 is flat), not 0 * 0^-1 = nan
        constant = not p.requires_grad and p.ndim == 0 and type(p.data) is np.ndarray
        if constant and p.data != 0:                           # x ** 2 and the like: nothing to guard
            x_safe = x
        else:
            x_safe = where(p == 0, where(x == 0, 1.0, x), x)   # 1 there only: elsewhere the rule stands
        dx = unbroadcast(dy * p * x_safe ** (p - 1), x.shape)
    dp = None
    if p.requires_grad:                                        # log only where x > 0; 0 elsewhere, finite
        dp = unbroadcast(dy * y * log(where(x > 0, x, 1.0)), p.shape)   # (PyTorch: NaN for x < 0)
    return dx, dp


_add = primitive("add", _binary(np.add, "add"), _add_vjp)
_sub = primitive("sub", _binary(np.subtract, "sub"), _sub_vjp)
_mul = primitive("mul", _binary(np.multiply, "mul"), _mul_vjp)
_div = primitive("div", _binary(np.divide, "div"), _div_vjp)
_neg = primitive("neg", np.negative, lambda dy, y, x: (-dy,))
_power = primitive("power", _binary(np.power, "power"), _power_vjp)


def add(a, b):
    """``a + b`` with numpy broadcasting.

    >>> a = Tensor([[1.0], [2.0]], requires_grad=True)      # (2, 1)
    >>> b = Tensor([10.0, 20.0, 30.0], requires_grad=True)  # (3,)
    >>> y = add(a, b); y.shape                              # broadcast to (2, 3)
    (2, 3)
    >>> y.sum().backward(); a.grad, b.grad                  # each gets dy summed to its own shape
    (array([[3.],
           [3.]], dtype=float32), array([2., 2., 2.], dtype=float32))
    """
    return apply(_add, a, b)


def sub(a, b):
    """``a - b`` with numpy broadcasting.

    >>> a = Tensor([5.0, 7.0], requires_grad=True); b = Tensor([1.0, 2.0], requires_grad=True)
    >>> sub(a, b)
    Tensor([4., 5.], dtype=float32, grad_fn=<sub>)
    >>> sub(a, b).sum().backward(); a.grad, b.grad  # d(a - b) = da - db
    (array([1., 1.], dtype=float32), array([-1., -1.], dtype=float32))
    """
    return apply(_sub, a, b)


def mul(a, b):
    """``a * b`` elementwise, with numpy broadcasting.

    >>> a = Tensor([1.0, 2.0], requires_grad=True); b = Tensor([3.0, 4.0], requires_grad=True)
    >>> mul(a, b)
    Tensor([3., 8.], dtype=float32, grad_fn=<mul>)
    >>> mul(a, b).sum().backward(); a.grad, b.grad  # d(ab) = b da + a db
    (array([3., 4.], dtype=float32), array([1., 2.], dtype=float32))
    """
    return apply(_mul, a, b)


def div(a, b):
    """``a / b`` elementwise, with numpy broadcasting.

    >>> a = Tensor([1.0, 6.0], requires_grad=True); b = Tensor([2.0, 3.0], requires_grad=True)
    >>> div(a, b)
    Tensor([0.5, 2. ], dtype=float32, grad_fn=<div>)
    >>> div(a, b).sum().backward(); a.grad.round(4), b.grad.round(4)  # 1/b and -a/b^2
    (array([0.5   , 0.3333], dtype=float32), array([-0.25  , -0.6667], dtype=float32))
    """
    return apply(_div, a, b)


def neg(x):
    """``-x``.

    >>> x = Tensor([1.0, -2.0], requires_grad=True)
    >>> neg(x)
    Tensor([-1.,  2.], dtype=float32, grad_fn=<neg>)
    >>> neg(x).sum().backward(); x.grad
    array([-1., -1.], dtype=float32)
    """
    return apply(_neg, x)


def power(x, p):
    """``x ** p``; ``p`` may be a number or a Tensor (then differentiated too, where x > 0).

    >>> x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> power(x, 2)
    Tensor([1., 4., 9.], dtype=float32, grad_fn=<power>)
    >>> power(x, 2).sum().backward(); x.grad  # p x^(p-1)
    array([2., 4., 6.], dtype=float32)
    >>> p = Tensor(3.0, requires_grad=True); power(2.0, p).backward(); round(float(p.grad), 4)  # x^p log(x)
    5.5452
    """
    return apply(_power, x, p)


# ---- matmul ----------------------------------------------------------------------------------------
# numpy's np.matmul; axon.kernels gives this primitive a faster CPU forward for stacks of matrices
# (kernels/matrix_product.py, stacked_matmul: the stack split over numba's threads).
def _matmul_forward(a, b):
    if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match "
                         f"(the last axis of the first must equal the {'second-to-last' if b.ndim > 1 else 'only'} "
                         f"axis of the second)")
    try:
        return np.matmul(a, b)
    except ValueError:
        raise ValueError(f"matmul: batch shapes of {a.shape} and {b.shape} cannot be broadcast") from None


def _matmul_vjp(dy, y, a, b):
    # Treat vectors as matrices: a (n,) is (1, n), b (n,) is (n, 1); dy gets the axes they lost back.
    a2 = a if a.ndim > 1 else reshape(a, (1, a.shape[0]))
    b2 = b if b.ndim > 1 else reshape(b, (b.shape[0], 1))
    if a.ndim == 1:
        dy = reshape(dy, dy.shape[:-1] + (1,) + dy.shape[-1:] if b.ndim > 1 else (1,) + dy.shape)
    if b.ndim == 1:
        dy = reshape(dy, dy.shape + (1,))
    da = reshape(unbroadcast(dy @ _swap(b2), a2.shape), a.shape) if a.requires_grad else None  # dy B^T
    db = reshape(unbroadcast(_swap(a2) @ dy, b2.shape), b.shape) if b.requires_grad else None  # A^T dy
    return da, db


def _swap(x):
    """Swap the last two axes."""
    axes = list(range(x.ndim))
    axes[-1], axes[-2] = axes[-2], axes[-1]
    return transpose(x, tuple(axes))


_matmul = primitive("matmul", _matmul_forward, _matmul_vjp)


def matmul(a, b):
    """Matrix product ``a @ b`` (numpy's rules: vectors, batches of matrices with broadcasting).

    >>> a = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)  # (2, 3)
    >>> w = Tensor([[1.0], [0.0], [-1.0]], requires_grad=True)              # (3, 1)
    >>> y = matmul(a, w); y.shape
    (2, 1)
    >>> y.sum().backward(); a.grad, w.grad                                  # dy w^T (2, 3) and a^T dy (3, 1)
    (array([[ 1.,  0., -1.],
           [ 1.,  0., -1.]], dtype=float32), array([[5.],
           [7.],
           [9.]], dtype=float32))
    """
    return apply(_matmul, a, b)


# ---- elementwise functions -------------------------------------------------------------------------
def _sigmoid_forward(x):
    return 0.5 * (np.tanh(0.5 * x) + 1)                        # stable for any x, no overflow


_exp = primitive("exp", np.exp, lambda dy, y, x: (dy * y,))
_log = primitive("log", np.log, lambda dy, y, x: (dy / x,))
_sqrt = primitive("sqrt", np.sqrt, lambda dy, y, x: (dy / (2 * y),))
_abs = primitive("abs", np.abs, lambda dy, y, x: (dy * sign(x),))
_tanh = primitive("tanh", np.tanh, lambda dy, y, x: (dy * (1 - y * y),))
_sigmoid = primitive("sigmoid", _sigmoid_forward, lambda dy, y, x: (dy * y * (1 - y),))
_relu = primitive("relu", lambda x: np.maximum(x, 0), lambda dy, y, x: (dy * (x > 0),))


def _clip_vjp(dy, y, x, lo, hi):                                # dy inside [lo, hi], 0 outside
    if lo is not None:
        dy = dy * (x >= lo)
    return (dy * (x <= hi) if hi is not None else dy,)


_clip = primitive("clip", lambda x, lo, hi: np.clip(x, lo, hi), _clip_vjp)
_astype = primitive("astype", lambda x, dtype: x.astype(dtype),
                    lambda dy, y, x, dtype: (astype(dy, x.dtype),))


def exp(x):
    """``e^x``; its VJP reuses the output: ``dy * y``.

    >>> x = Tensor([0.0, 1.0], requires_grad=True)
    >>> y = exp(x); y.numpy().round(4)
    array([1.    , 2.7183], dtype=float32)
    >>> y.sum().backward(); x.grad.round(4)  # the gradient is y itself
    array([1.    , 2.7183], dtype=float32)
    """
    return apply(_exp, x)


def log(x):
    """Natural logarithm; VJP ``dy / x``.

    >>> x = Tensor([1.0, 2.0, 4.0], requires_grad=True)
    >>> log(x).numpy().round(4)
    array([0.    , 0.6931, 1.3863], dtype=float32)
    >>> log(x).sum().backward(); x.grad  # 1 / x
    array([1.  , 0.5 , 0.25], dtype=float32)
    """
    return apply(_log, x)


def sqrt(x):
    """Square root; VJP ``dy / (2 y)``.

    >>> x = Tensor([1.0, 4.0, 9.0], requires_grad=True)
    >>> sqrt(x)
    Tensor([1., 2., 3.], dtype=float32, grad_fn=<sqrt>)
    >>> sqrt(x).sum().backward(); x.grad.round(4)  # 1 / (2 sqrt(x))
    array([0.5   , 0.25  , 0.1667], dtype=float32)
    """
    return apply(_sqrt, x)


def abs(x):
    """``|x|``; VJP ``dy * sign(x)`` (0 at 0).

    >>> x = Tensor([-2.0, 0.0, 3.0], requires_grad=True)
    >>> abs(x)
    Tensor([2., 0., 3.], dtype=float32, grad_fn=<abs>)
    >>> abs(x).sum().backward(); x.grad  # sign(x), and 0 at the kink
    array([-1.,  0.,  1.], dtype=float32)
    """
    return apply(_abs, x)


def tanh(x):
    """Hyperbolic tangent; VJP ``dy * (1 - y^2)``.

    >>> x = Tensor([0.0, 1.0], requires_grad=True)
    >>> y = tanh(x); y.numpy().round(4)
    array([0.    , 0.7616], dtype=float32)
    >>> y.sum().backward(); x.grad.round(4)  # 1 - y^2
    array([1.  , 0.42], dtype=float32)
    """
    return apply(_tanh, x)


def sigmoid(x):
    """``1 / (1 + e^-x)``, computed without overflow; VJP ``dy * y * (1 - y)``.

    >>> x = Tensor([0.0, 2.0], requires_grad=True)
    >>> y = sigmoid(x); y.numpy().round(4)
    array([0.5   , 0.8808], dtype=float32)
    >>> y.sum().backward(); x.grad.round(4)  # y (1 - y)
    array([0.25 , 0.105], dtype=float32)
    >>> sigmoid(Tensor([-1000.0, 1000.0]))   # no overflow warning at the extremes
    Tensor([0., 1.], dtype=float32)
    """
    return apply(_sigmoid, x)


def relu(x):
    """``max(x, 0)``; VJP ``dy`` where ``x > 0``, else 0.

    >>> x = Tensor([-1.0, 0.0, 2.0], requires_grad=True)
    >>> relu(x)
    Tensor([0., 0., 2.], dtype=float32, grad_fn=<relu>)
    >>> relu(x).sum().backward(); x.grad  # 1 where x > 0 (0 at x = 0)
    array([0., 0., 1.], dtype=float32)
    """
    return apply(_relu, x)


def astype(x, dtype):
    """Cast to ``dtype``; the gradient is cast back to the input's dtype.

    >>> x = Tensor([1.5, 2.5], requires_grad=True)  # float32
    >>> y = astype(x, np.float64); y.dtype
    dtype('float64')
    >>> (y * y).sum().backward(); x.grad            # 2x, cast back to float32
    array([3., 5.], dtype=float32)
    """
    return apply(_astype, x, dtype=np.dtype(dtype))


def clip(x, lo=None, hi=None):
    """Clamp to ``[lo, hi]``; the gradient is ``dy`` inside the interval and 0 outside.

    >>> x = Tensor([-2.0, 0.5, 3.0], requires_grad=True)
    >>> clip(x, -1.0, 1.0)
    Tensor([-1. ,  0.5,  1. ], dtype=float32, grad_fn=<clip>)
    >>> clip(x, -1.0, 1.0).sum().backward(); x.grad  # clamped elements get no gradient
    array([0., 1., 0.], dtype=float32)
    """
    return apply(_clip, x, lo=lo, hi=hi)


# ---- reductions ------------------------------------------------------------------------------------
def _axes_or_empty(axis, fn="reduce"):
    """The axes as written, as a sequence: an int becomes ``(axis,)``, None ``()``; anything else a TypeError."""
    axes = () if axis is None else ((axis,) if isinstance(axis, (int, np.integer)) else axis)
    if not isinstance(axes, (tuple, list)) or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                                                     for a in axes):
        raise TypeError(f"{fn}: axis must be None, an int or a tuple of ints, got {axis!r}")
    return axes


def _norm_axis(axis, ndim):
    """The reduced axes, sorted and non-negative: None means all ``ndim`` of them."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(int(a) % ndim for a in _axes_or_empty(axis))) if ndim else ()


def _expand(dy, x_shape, axis, keepdims):
    """Put the reduced axes back into ``dy`` (size 1) so it broadcasts against the input."""
    if keepdims or dy.ndim == len(x_shape):
        return dy
    axes = _norm_axis(axis, len(x_shape))
    shape = tuple(1 if i in axes else n for i, n in enumerate(x_shape))
    return reshape(dy, shape)


def _sum_vjp(dy, y, x, axis, keepdims):
    return (broadcast_to(_expand(dy, x.shape, axis, keepdims), x.shape),)


def _extreme_vjp(dy, y, x, axis, keepdims):
    """Max/min: the gradient goes to the elements that attain the extreme, split evenly among ties."""
    hit = astype(equal(x, _expand(y, x.shape, axis, keepdims)), x.dtype)  # (x.shape) 1 where x attains it
    share = hit / hit.sum(_norm_axis(axis, x.ndim), keepdims=True)
    return (_expand(dy, x.shape, axis, keepdims) * share,)


_sum = primitive("sum", lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims), _sum_vjp)
_max = primitive("max", lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims), _extreme_vjp)
_min = primitive("min", lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims), _extreme_vjp)


def _reduce(prim, x, axis, keepdims):
    x = as_tensor(x)
    if isinstance(axis, list):
        axis = tuple(axis)
    for a in _axes_or_empty(axis, prim.name):
        if not -x.ndim <= a < builtins.max(x.ndim, 1):
            raise ValueError(f"{prim.name}: axis {a} is out of range for a Tensor of shape {x.shape}")
    return apply(prim, x, axis=axis, keepdims=keepdims)


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (an int, a tuple, or None for all).

    >>> x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    >>> sum(x, axis=0), sum(x, axis=1, keepdims=True).shape
    (Tensor([5., 7., 9.], dtype=float32, grad_fn=<sum>), (2, 1))
    >>> sum(x).backward(); x.grad  # dy copied back to every element
    array([[1., 1., 1.],
           [1., 1., 1.]], dtype=float32)
    """
    return _reduce(_sum, x, axis, keepdims)


def max(x, axis=None, keepdims=False):
    """Largest element over ``axis``; tied maxima share the gradient evenly (see "Gradients at ties" above).

    >>> x = Tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    >>> y = max(x); float(y)
    3.0
    >>> y.backward(); x.grad  # the two tied maxima share it
    array([0. , 0.5, 0.5, 0. ], dtype=float32)
    """
    return _reduce(_max, x, axis, keepdims)


def min(x, axis=None, keepdims=False):
    """Smallest element over ``axis``; tied minima share the gradient evenly (see "Gradients at ties" above).

    >>> x = Tensor([[1.0, 5.0], [4.0, 2.0]], requires_grad=True)
    >>> min(x, axis=1)
    Tensor([1., 2.], dtype=float32, grad_fn=<min>)
    >>> min(x, axis=1).sum().backward(); x.grad  # 1 at each row's smallest element
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    """
    return _reduce(_min, x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    """Average over ``axis``: the sum times 1/n.

    >>> x = Tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    >>> y = mean(x); float(y)
    2.5
    >>> y.backward(); x.grad  # 1/n each
    array([0.25, 0.25, 0.25, 0.25], dtype=float32)
    """
    x = as_tensor(x)
    n = int(np.prod([x.shape[a] for a in _norm_axis(axis, x.ndim)]))
    return x.sum(axis, keepdims) * (1.0 / n if n else float("nan"))  # no elements: NaN, as numpy and torch


# ---- shapes ----------------------------------------------------------------------------------------
def _reshape_forward(x, shape):
    try:
        return x.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a Tensor of shape {x.shape} ({x.size} elements) "
                         f"into shape {shape}") from None


_reshape = primitive("reshape", _reshape_forward, lambda dy, y, x, shape: (reshape(dy, x.shape),))
_transpose = primitive("transpose", lambda x, axes: np.transpose(x, axes),
                       lambda dy, y, x, axes: (transpose(dy, None if axes is None else tuple(np.argsort(axes))),))
_broadcast_to = primitive("broadcast_to", lambda x, shape: np.broadcast_to(x, shape),
                          lambda dy, y, x, shape: (unbroadcast(dy, x.shape),))


def reshape(x, shape):
    """The same elements in a new shape (one axis may be -1).

    >>> x = Tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], requires_grad=True)
    >>> y = reshape(x, (2, -1)); y.shape
    (2, 3)
    >>> y[1].sum().backward(); x.grad  # the gradient comes back in x's shape
    array([0., 0., 0., 1., 1., 1.], dtype=float32)
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return apply(_reshape, x, shape=shape)


def transpose(x, axes=None):
    """Permute the axes; ``None`` reverses them.

    >>> x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    >>> y = transpose(x); y.shape
    (3, 2)
    >>> y[0].sum().backward(); x.grad  # row 0 of x^T is column 0 of x
    array([[1., 0., 0.],
           [1., 0., 0.]], dtype=float32)
    """
    return apply(_transpose, x, axes=None if axes is None else tuple(axes))


def broadcast_to(x, shape):
    """Repeat ``x`` along new or size-1 axes to ``shape``; the gradient sums them back.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> broadcast_to(x, (3, 2)).shape
    (3, 2)
    >>> broadcast_to(x, (3, 2)).sum().backward(); x.grad  # each element was used 3 times
    array([3., 3.], dtype=float32)
    """
    x = as_tensor(x)
    try:
        np.broadcast_shapes(x.shape, tuple(shape))
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {tuple(shape)}") from None
    return apply(_broadcast_to, x, shape=tuple(shape))


# ---- indexing --------------------------------------------------------------------------------------
def _plain_index(index):
    """Tensors inside an index become arrays; a list becomes an integer/boolean array."""
    if isinstance(index, tuple):
        return tuple(_plain_index(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _has_int_array(index) -> bool:
    """True when the index holds integer arrays, so an element may be picked more than once."""
    parts = index if isinstance(index, tuple) else (index,)
    return builtins.any(isinstance(i, np.ndarray) and i.dtype != bool for i in parts)


def _scatter_add_forward(dy, index, shape):
    g = np.zeros(shape, dtype=dy.dtype)
    if _has_int_array(index):
        np.add.at(g, index, dy)                                # repeated indices accumulate
    else:
        g[index] = dy                                          # slices and masks never repeat
    return g


_getitem = primitive("getitem", lambda x, index: x[index],
                     lambda dy, y, x, index: (scatter_add(dy, index, x.shape),))
_scatter_add = primitive("scatter_add", _scatter_add_forward,
                         lambda dy, y, g, index, shape: (getitem(dy, index),))


# While axon.jit traces, an index array that is a value of the plan (an argument: token ids, labels) cannot
# be a setting (a setting is frozen at the trace): getitem_at and scatter_add_at take such arrays as inputs,
# and their setting ``index`` says where each stands: per part of the index ("at", k) for the k-th array
# input, ("is", part) for a part kept as it is (a slice, an int, a host array).
def _lift_index(index):
    """``(places, arrays)``: ``index`` with its traced arrays taken out (see above), or ``(None, [])``."""
    parts = index if isinstance(index, tuple) else (index,)
    arrays = [i for i in parts if hasattr(i, "dtype") and not isinstance(i, (np.ndarray, np.generic))]
    if not arrays:
        return None, []
    places, k = [], 0
    for i in parts:
        if hasattr(i, "dtype") and not isinstance(i, (np.ndarray, np.generic)):
            places.append(("at", k))
            k += 1
        else:
            places.append(("is", i))
    return (isinstance(index, tuple), tuple(places)), arrays


def _fill_index(places, arrays):
    """The index ``_lift_index`` took apart, with ``arrays`` put back."""
    is_tuple, parts = places
    index = tuple(arrays[v] if how == "at" else v for how, v in parts)
    return index if is_tuple else index[0]


def _getitem_at_forward(x, *arrays, index):
    return x[_fill_index(index, arrays)]


def _scatter_add_at_forward(dy, *arrays, index, shape):
    return _scatter_add_forward(dy, _fill_index(index, arrays), shape)


_getitem_at = primitive("getitem_at", _getitem_at_forward, lambda dy, y, x, *arrays, index: (
    apply(_scatter_add_at, dy, *arrays, index=index, shape=x.shape),) + (None,) * len(arrays))
_scatter_add_at = primitive("scatter_add_at", _scatter_add_at_forward, lambda dy, y, g, *arrays, index, shape: (
    apply(_getitem_at, dy, *arrays, index=index),) + (None,) * len(arrays))


def getitem(x, index):
    """``x[index]`` for basic (slices, ints, None, ...) and integer/boolean-array indexing.

    >>> x = Tensor([10.0, 20.0, 30.0], requires_grad=True)
    >>> getitem(x, [0, 2, 2])
    Tensor([10., 30., 30.], dtype=float32, grad_fn=<getitem>)
    >>> getitem(x, [0, 2, 2]).sum().backward(); x.grad  # x[2] was picked twice
    array([1., 0., 2.], dtype=float32)

    Under ``axon.jit`` an index array that is traced (an embedding's token ids) is an input of the op
    ``getitem_at``, so each replay picks that call's rows.
    """
    index = _plain_index(index)
    if TRACING.tracer is not None:
        places, arrays = _lift_index(index)
        if arrays:
            return apply(_getitem_at, x, *arrays, index=places)
    try:
        return apply(_getitem, x, index=index)
    except IndexError as e:
        raise IndexError(f"index {index!r} is invalid for a Tensor of shape {as_tensor(x).shape}: {e}") from None


def scatter_add(dy, index, shape):
    """Zeros of ``shape`` with ``dy`` added at ``index`` (repeats accumulate): the VJP of indexing.

    >>> dy = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = scatter_add(dy, np.array([0, 2, 2]), (4,)); y                   # 2 + 3 land on index 2
    Tensor([1., 0., 5., 0.], dtype=float32, grad_fn=<scatter_add>)
    >>> (y * Tensor([1.0, 10.0, 100.0, 1000.0])).sum().backward(); dy.grad  # its VJP gathers
    array([  1., 100., 100.], dtype=float32)
    """
    return apply(_scatter_add, dy, index=index, shape=tuple(shape))


# ---- joining, selecting, padding -------------------------------------------------------------------
def _concat_vjp(dy, y, *xs, axis):
    bounds = np.cumsum([0] + [x.shape[axis] for x in xs])
    lead = (slice(None),) * (axis % y.ndim)
    return tuple(dy[lead + (slice(int(lo), int(hi)),)] for lo, hi in zip(bounds[:-1], bounds[1:]))


def _stack_vjp(dy, y, *xs, axis):
    lead = (slice(None),) * (axis % y.ndim)
    return tuple(dy[lead + (i,)] for i in range(len(xs)))


def _where_vjp(dy, y, cond, a, b):
    zero = np.zeros((), dtype=dy.dtype)
    return (None,
            unbroadcast(where(cond, dy, zero), a.shape) if a.requires_grad else None,
            unbroadcast(where(cond, zero, dy), b.shape) if b.requires_grad else None)


def _extreme2_vjp(dy, y, a, b):
    """maximum/minimum: the gradient goes to the chosen input; ties split it half and half."""
    half = np.asarray(0.5, dtype=dy.dtype)
    wins = where(equal(a, b), half, astype(equal(a, y), dy.dtype))        # 1: a won, 0: b won, 0.5: tie
    return (unbroadcast(dy * wins, a.shape) if a.requires_grad else None,
            unbroadcast(dy * (1 - wins), b.shape) if b.requires_grad else None)


def _check_joinable(name, xs, axis, same_shape):
    """Raise ValueError naming all shapes unless they agree (outside ``axis`` for concatenate)."""
    if not xs:
        raise ValueError(f"{name} needs at least one Tensor")
    def key(shape):
        if same_shape or len(shape) == 0:
            return shape
        return shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
    shapes = [x.shape for x in xs]
    if builtins.any(len(s) != len(shapes[0]) or key(s) != key(shapes[0]) for s in shapes):
        where_ = "" if same_shape else f" outside axis {axis}"
        raise ValueError(f"{name}: shapes {shapes} do not match{where_}")


_concatenate = primitive("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_vjp)
_stack = primitive("stack", lambda *xs, axis: np.stack(xs, axis=axis), _stack_vjp)
_where = primitive("where", np.where, _where_vjp)
_maximum = primitive("maximum", _binary(np.maximum, "maximum"), _extreme2_vjp)
_minimum = primitive("minimum", _binary(np.minimum, "minimum"), _extreme2_vjp)
_pad = primitive("pad", lambda x, pad_width, value: np.pad(x, pad_width, constant_values=value),
                 lambda dy, y, x, pad_width, value:
                 (dy[tuple(slice(lo, lo + n) for (lo, _), n in zip(pad_width, x.shape))],))


def concatenate(xs, axis=0):
    """Join Tensors along an existing axis.

    >>> a = Tensor([1.0, 2.0], requires_grad=True); b = Tensor([3.0, 4.0, 5.0], requires_grad=True)
    >>> y = concatenate([a, b]); y
    Tensor([1., 2., 3., 4., 5.], dtype=float32, grad_fn=<concatenate>)
    >>> (y * y).sum().backward(); a.grad, b.grad  # dy is split back into the pieces
    (array([2., 4.], dtype=float32), array([ 6.,  8., 10.], dtype=float32))
    """
    xs = [as_tensor(x, like=xs) for x in xs]
    _check_joinable("concatenate", xs, axis, same_shape=False)
    return apply(_concatenate, *xs, axis=axis)


def stack(xs, axis=0):
    """Join equally shaped Tensors along a new axis.

    >>> a = Tensor([1.0, 2.0], requires_grad=True); b = Tensor([3.0, 4.0], requires_grad=True)
    >>> y = stack([a, b], axis=1); y
    Tensor([[1., 3.],
            [2., 4.]], dtype=float32, grad_fn=<stack>)
    >>> (y * y).sum().backward(); a.grad, b.grad
    (array([2., 4.], dtype=float32), array([6., 8.], dtype=float32))
    """
    xs = [as_tensor(x, like=xs) for x in xs]
    _check_joinable("stack", xs, axis, same_shape=True)
    return apply(_stack, *xs, axis=axis)


def where(cond, a, b):
    """``a`` where ``cond`` holds, else ``b`` (broadcast); ``cond`` is never differentiated.

    >>> x = Tensor([-1.0, 2.0, -3.0], requires_grad=True)
    >>> y = where(x > 0, x, 0.5 * x); y  # a leaky ReLU
    Tensor([-0.5,  2. , -1.5], dtype=float32, grad_fn=<where>)
    >>> y.sum().backward(); x.grad       # dy goes to the branch that was taken
    array([0.5, 1. , 0.5], dtype=float32)
    """
    cond = cond if isinstance(cond, Tensor) else Tensor(np.asarray(cond, dtype=bool))
    return apply(_where, cond if cond.dtype == bool else astype(cond, bool), a, b)


def maximum(a, b):
    """Elementwise larger of ``a`` and ``b``; a tie splits the gradient half and half (see "Gradients at ties").

    >>> a = Tensor([1.0, 5.0, 3.0], requires_grad=True); b = Tensor([2.0, 4.0, 3.0], requires_grad=True)
    >>> maximum(a, b)
    Tensor([2., 5., 3.], dtype=float32, grad_fn=<maximum>)
    >>> maximum(a, b).sum().backward(); a.grad, b.grad  # the winner takes dy; a tie splits it
    (array([0. , 1. , 0.5], dtype=float32), array([1. , 0. , 0.5], dtype=float32))
    """
    return apply(_maximum, a, b)


def minimum(a, b):
    """Elementwise smaller of ``a`` and ``b``; a tie splits the gradient half and half (see "Gradients at ties").

    >>> x = Tensor([-1.0, 2.0, 5.0], requires_grad=True)
    >>> minimum(x, 2.0)                           # a number broadcasts
    Tensor([-1.,  2.,  2.], dtype=float32, grad_fn=<minimum>)
    >>> minimum(x, 2.0).sum().backward(); x.grad  # the tie at 2 gets half
    array([1. , 0.5, 0. ], dtype=float32)
    """
    return apply(_minimum, a, b)


def pad(x, pad_width, value=0.0):
    """Pad with a constant: ``pad_width`` is ``((before, after), ...)`` per axis, as in numpy.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> y = pad(x, ((1, 2),)); y                                          # 1 zero before, 2 after
    Tensor([0., 1., 2., 0., 0.], dtype=float32, grad_fn=<pad>)
    >>> (y * Tensor([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward(); x.grad  # dy with the padding cut off
    array([2., 3.], dtype=float32)
    """
    x = as_tensor(x)
    try:
        pw = np.broadcast_to(np.asarray(pad_width, dtype=int), (x.ndim, 2))
    except (TypeError, ValueError):
        raise ValueError(f"pad: pad_width must be (before, after) int pairs, one per axis ({x.ndim} for shape "
                         f"{x.shape}) or one for all, got {pad_width!r}") from None
    if (pw < 0).any():
        raise ValueError(f"pad: pad_width must be non-negative, got {pad_width!r}")
    return apply(_pad, x, pad_width=tuple(map(tuple, pw.tolist())), value=value)


# ---- comparisons and logic: never differentiated (their VJP is None) -------------------------------
_sign = primitive("sign", np.sign)
_less = primitive("less", _binary(np.less, "less"))
_less_equal = primitive("less_equal", _binary(np.less_equal, "less_equal"))
_greater = primitive("greater", _binary(np.greater, "greater"))
_greater_equal = primitive("greater_equal", _binary(np.greater_equal, "greater_equal"))
_equal = primitive("equal", _binary(np.equal, "equal"))
_not_equal = primitive("not_equal", _binary(np.not_equal, "not_equal"))
_logical_and = primitive("logical_and", _binary(np.logical_and, "logical_and"))
_logical_or = primitive("logical_or", _binary(np.logical_or, "logical_or"))
_logical_not = primitive("logical_not", np.logical_not)


def sign(x):
    """-1, 0 or 1 by the sign of each element (no gradient).

    >>> sign(Tensor([-2.0, 0.0, 3.0]))
    Tensor([-1.,  0.,  1.], dtype=float32)
    """
    return apply(_sign, x)


def less(a, b):
    """``a < b`` elementwise, a boolean Tensor (``Tensor.__lt__``).

    >>> less(Tensor([1.0, 3.0]), 2.0)
    Tensor([ True, False], dtype=bool)
    """
    return apply(_less, a, b)


def less_equal(a, b):
    """``a <= b`` elementwise (``Tensor.__le__``).

    >>> less_equal(Tensor([1.0, 2.0, 3.0]), 2.0)
    Tensor([ True,  True, False], dtype=bool)
    """
    return apply(_less_equal, a, b)


def greater(a, b):
    """``a > b`` elementwise (``Tensor.__gt__``).

    >>> greater(Tensor([1.0, 3.0]), 2.0)
    Tensor([False,  True], dtype=bool)
    """
    return apply(_greater, a, b)


def greater_equal(a, b):
    """``a >= b`` elementwise (``Tensor.__ge__``).

    >>> greater_equal(Tensor([1.0, 2.0]), 2.0)
    Tensor([False,  True], dtype=bool)
    """
    return apply(_greater_equal, a, b)


def equal(a, b):
    """``a == b`` elementwise (``Tensor.__eq__``).

    >>> equal(Tensor([1.0, 2.0]), 2.0)
    Tensor([False,  True], dtype=bool)
    """
    return apply(_equal, a, b)


def not_equal(a, b):
    """``a != b`` elementwise (``Tensor.__ne__``).

    >>> not_equal(Tensor([1.0, 2.0]), 2.0)
    Tensor([ True, False], dtype=bool)
    """
    return apply(_not_equal, a, b)


def logical_and(a, b):
    """Elementwise ``and`` of two boolean Tensors (``Tensor.__and__``).

    >>> logical_and(Tensor([True, True]), Tensor([True, False]))
    Tensor([ True, False], dtype=bool)
    """
    return apply(_logical_and, a, b)


def logical_or(a, b):
    """Elementwise ``or`` of two boolean Tensors (``Tensor.__or__``).

    >>> logical_or(Tensor([True, False]), Tensor([False, False]))
    Tensor([ True, False], dtype=bool)
    """
    return apply(_logical_or, a, b)


def logical_not(x):
    """Elementwise ``not`` of a boolean Tensor (``Tensor.__invert__``).

    >>> logical_not(Tensor([True, False]))
    Tensor([False,  True], dtype=bool)
    """
    return apply(_logical_not, x)
