"""Reductions along one axis: sum, mean, and max with the index of the maximum.

An array reduced along ``axis`` is viewed, without a copy, as (A, L, B): A = the axes before, L = the
reduced axis, B = the axes after. The kernels loop over ``a`` (split across threads when large),
then ``l``, then ``b`` innermost, so every read is contiguous whatever the axis:

    sum:  y[a, b] = sum_l x[a, l, b]                        dx = dy broadcast along l
    mean: y[a, b] = sum_l x[a, l, b] / L                    dx = dy / L broadcast along l
    max:  y[a, b] = x[a, i[a, b], b], i = argmax_l          dx[a, i[a, b], b] = dy[a, b], 0 elsewhere

``max_with_indices`` returns the indices too (the first maximum on ties; NaN wins, as in PyTorch),
and sends the gradient to that one element (the engine's ``max`` splits it among ties instead: both
follow the one rule under "Gradients at ties" in ``axon.autograd.ops``).

Primitives (a backend implements the four forwards with these signatures; ``axis`` is one
non-negative int, ``index`` int64 of shape (A, B)):

- ``kernels.reduce_sum(x, *, axis, keepdims) -> y``;
- ``kernels.argmax(x, *, axis) -> index``;
- ``kernels.take_along_axis(x, index, *, axis, keepdims) -> y``: ``x[a, index[a, b], b]``;
- ``kernels.take_along_axis_backward(dy, index, *, x_shape, axis) -> (dx,)``.

>>> import numpy as np
>>> x = np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
>>> reduce_sum(x, axis=1).numpy(), reduce_mean(x, axis=0).numpy()
(array([ 8., 14.]), array([4. , 2.5, 4.5]))
>>> values, indices = max_with_indices(x, axis=1)
>>> values.numpy(), indices.numpy()
(array([5., 7.]), array([1, 0]))
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..autograd import Tensor, apply, as_tensor, broadcast_to, equal, is_grad_enabled, primitive, reshape, where
from ._common import (KERNEL, PARALLEL_MIN, contiguous, float_tensor, in_range, num_chunks, on_backend_of, run_chunks,
                      same_dtype)

__all__ = ["reduce_sum", "reduce_mean", "max_with_indices", "take_along_axis"]


@njit(**KERNEL)
def _sum_rows(x, y, a0, a1):
    # x (A, L, B); y (A, B): y[a, b] = sum_l x[a, l, b] for a in [a0, a1)
    A, L, B = x.shape
    for a in range(a0, a1):
        if B == 1:                                               # one contiguous row: a scalar accumulator
            s = x.dtype.type(0)
            for l in range(L):
                s += x[a, l, 0]
            y[a, 0] = s
        else:
            y[a, :] = 0
            for l in range(L):
                for b in range(B):
                    y[a, b] += x[a, l, b]


@njit(**KERNEL)
def _argmax_rows(x, y, index, a0, a1):
    # x (A, L, B); y, index (A, B): the first largest x[a, :, b] (NaN wins) and its position l, a in [a0, a1)
    A, L, B = x.shape
    for a in range(a0, a1):
        for b in range(B):
            y[a, b] = x[a, 0, b]
            index[a, b] = 0
        for l in range(1, L):
            for b in range(B):
                v = x[a, l, b]
                if (v > y[a, b] or v != v) and y[a, b] == y[a, b]:   # keep the first NaN
                    y[a, b] = v
                    index[a, b] = l


@njit(parallel=True, **KERNEL)
def _sum_parallel(x, y, n_chunks):
    A = x.shape[0]
    for t in prange(n_chunks):
        _sum_rows(x, y, t * A // n_chunks, (t + 1) * A // n_chunks)


@njit(parallel=True, **KERNEL)
def _argmax_parallel(x, y, index, n_chunks):
    A = x.shape[0]
    for t in prange(n_chunks):
        _argmax_rows(x, y, index, t * A // n_chunks, (t + 1) * A // n_chunks)


@njit(**KERNEL)
def _scatter_kernel(dy, index, dx):
    # dy, index (A, B); dx (A, L, B) zeroed: dx[a, index[a, b], b] = dy[a, b]
    A, B = dy.shape
    for a in range(A):
        for b in range(B):
            dx[a, index[a, b], b] = dy[a, b]


def _alb(shape, axis):
    """(A, L, B) for reducing ``shape`` along ``axis``."""
    return int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))


def _out_shape(shape, axis, keepdims):
    return shape[:axis] + ((1,) if keepdims else ()) + shape[axis + 1:]


def _sum_forward(x, axis, keepdims):
    x3 = contiguous(x).reshape(_alb(x.shape, axis))                            # (A, L, B)
    y = np.empty((x3.shape[0], x3.shape[2]), dtype=x.dtype)                    # (A, B)
    if y.size:
        run_chunks(_sum_rows, _sum_parallel, num_chunks(x3.size, x3.shape[0], PARALLEL_MIN), x3.shape[0], x3, y)
    return y.reshape(_out_shape(x.shape, axis, keepdims))


def _sum_vjp(dy, y, x, axis, keepdims):
    return (broadcast_to(reshape(dy, _out_shape(x.shape, axis, True)), x.shape),)


def _argmax(x, axis):
    """The position of the maximum along ``axis``: int64 (A, B)."""
    x3 = contiguous(x).reshape(_alb(x.shape, axis))                            # (A, L, B)
    y = np.empty((x3.shape[0], x3.shape[2]), dtype=x.dtype)                    # (A, B)
    index = np.empty(y.shape, dtype=np.int64)
    if y.size:
        n = num_chunks(x3.size, x3.shape[0], PARALLEL_MIN)
        run_chunks(_argmax_rows, _argmax_parallel, n, x3.shape[0], x3, y, index)
    return index


def _take_forward(x, index, axis, keepdims):
    x3 = x.reshape(_alb(x.shape, axis))                                        # (A, L, B)
    y = np.take_along_axis(x3, index[:, None, :], axis=1)                      # (A, 1, B)
    return y.reshape(_out_shape(x.shape, axis, keepdims))


def _take_backward(dy, index, x_shape, axis):
    dx = np.zeros(_alb(x_shape, axis), dtype=dy.dtype)                         # (A, L, B)
    _scatter_kernel(contiguous(dy).reshape(index.shape), contiguous(index), dx)
    return (dx.reshape(x_shape),)


def _take_vjp(dy, y, x, index, axis, keepdims):
    if is_grad_enabled():                                      # backward(create_graph=True): Tensor ops
        A, L, B = _alb(x.shape, axis)
        positions = on_backend_of(index, np.arange(L).reshape(1, L, 1))             # (1, L, 1)
        picked = equal(reshape(index, (A, 1, B)), positions)                         # (A, L, B)
        return reshape(where(picked, reshape(dy, (A, 1, B)), 0.0), x.shape), None
    return apply(_take_backward_prim, same_dtype(dy, x), index, x_shape=x.shape, axis=axis) + (None,)


_sum = primitive("kernels.reduce_sum", _sum_forward, _sum_vjp)
_argmax_prim = primitive("kernels.argmax", _argmax)
_take = primitive("kernels.take_along_axis", _take_forward, _take_vjp)
_take_backward_prim = primitive("kernels.take_along_axis_backward", _take_backward)


def _check(fn, x, axis):
    x = float_tensor(fn, "x", x)
    if x.ndim == 0 or not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{fn}: axis must be an int in [{-x.ndim}, {x.ndim}) for shape {x.shape}, got {axis!r}")
    return x, int(axis) % x.ndim


def reduce_sum(x, axis, keepdims=False):
    """Sum along one ``axis`` (an int): ``y = sum_l x[..., l, ...]``. Differentiable (to any order).

    >>> import numpy as np
    >>> reduce_sum(np.ones((2, 3), np.float32), axis=0).numpy()
    array([2., 2., 2.], dtype=float32)
    """
    x, axis = _check("reduce_sum", x, axis)
    return apply(_sum, x, axis=axis, keepdims=bool(keepdims))


def reduce_mean(x, axis, keepdims=False):
    """Mean along one ``axis``: the sum times ``1 / L``.

    >>> import numpy as np
    >>> reduce_mean(np.array([[1.0, 2.0], [3.0, 6.0]]), axis=-1).numpy()
    array([1.5, 4.5])
    """
    x, axis = _check("reduce_mean", x, axis)
    if x.shape[axis] == 0:
        raise ValueError(f"reduce_mean: axis {axis} of shape {x.shape} is empty")
    return apply(_sum, x, axis=axis, keepdims=bool(keepdims)) * (1.0 / x.shape[axis])


def max_with_indices(x, axis, keepdims=False):
    """The maximum along ``axis`` and where it is: ``(values, indices)``, Tensors, the indices int64.

    On ties the first maximum wins (and gets the whole gradient, by the library's rule at ties: see
    ``axon.autograd.ops``); NaN wins over numbers.

    >>> import numpy as np
    >>> values, indices = max_with_indices(np.array([[3.0, 9.0], [4.0, 1.0]]), axis=0)
    >>> values.numpy(), indices.numpy()
    (array([4., 9.]), array([1, 0]))
    """
    x, axis = _check("max_with_indices", x, axis)
    if x.shape[axis] == 0:
        raise ValueError(f"max_with_indices: axis {axis} of shape {x.shape} is empty")
    index = apply(_argmax_prim, x, axis=axis)                                  # (A, B) int64
    y = apply(_take, x, index, axis=axis, keepdims=bool(keepdims))
    return y, reshape(index, _out_shape(x.shape, axis, keepdims))


def take_along_axis(x, index, axis):
    """``x`` picked at one position along ``axis`` per line: ``y[a, b] = x[a, index[a, b], b]``.

    ``index`` holds integers in ``[0, x.shape[axis])`` and has x's shape without ``axis`` (a Tensor on
    x's backend, or an array). Differentiable w.r.t. ``x``: the gradient lands on the picked elements.

    >>> import numpy as np
    >>> x = Tensor(np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]]), requires_grad=True)
    >>> y = take_along_axis(x, np.array([2, 0]), axis=1); y.numpy()
    array([2., 7.])
    >>> y.sum().backward(); x.grad
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    x, axis = _check("take_along_axis", x, axis)
    index = as_tensor(index) if isinstance(index, Tensor) else on_backend_of(x, index)
    want = _out_shape(x.shape, axis, False)
    if index.dtype.kind not in "iu" or index.shape != want:
        raise ValueError(f"take_along_axis: index must hold integers of shape {want} for x of shape {x.shape} "
                         f"and axis {axis}, got dtype {index.dtype} and shape {index.shape}")
    in_range(index, 0, x.shape[axis], lambda lo, hi: ValueError(
        f"take_along_axis: index values must be in [0, {x.shape[axis]}) along axis {axis}"))
    A, _, B = _alb(x.shape, axis)
    index = reshape(index if index.dtype == np.int64 else index.astype(np.int64), (A, B))
    return apply(_take, x, index, axis=axis, keepdims=False)
