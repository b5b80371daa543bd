"""Bias add and ReLU fused into one pass: ``y = max(x + b, 0)``, channels-last.

After a dense or conv layer, ``relu(x + b)`` as two numpy operations reads and writes the
activation twice forward and three times backward (the mask, the product, the bias sum). Fused:

    forward:   y[m, c] = max(x[m, c] + b[c], 0)
    backward:  dx[m, c] = dy[m, c] if y[m, c] > 0 else 0         db[c] = sum_m dx[m, c]

one pass each way; the backward threads each sum ``db`` for their own rows, then the partial sums
are added. Under ``backward(create_graph=True)`` the VJP is built from Tensor operations instead, so
grad of grad works through it.

Primitives (a backend implements both forwards with these signatures):

- ``kernels.bias_relu(x, b) -> y``;
- ``kernels.bias_relu_backward(dy, y) -> (dx, db)`` (never differentiated).

>>> import numpy as np
>>> bias_relu(np.array([[-1.0, 2.0]]), np.array([0.5, 0.5])).numpy()
array([[0. , 2.5]])
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..autograd import apply, is_grad_enabled, primitive
from ..autograd import sum as tsum
from ._common import KERNEL, PARALLEL_MIN, check_same_dtype, contiguous, float_tensor, num_chunks, run_chunks, same_dtype

__all__ = ["bias_relu"]


@njit(**KERNEL)
def _bias_relu_rows(x, b, y, m0, m1):
    # x, y (M, C); b (C,): y = max(x + b, 0) for rows [m0, m1)
    zero = x.dtype.type(0)
    for m in range(m0, m1):
        for c in range(x.shape[1]):
            y[m, c] = max(x[m, c] + b[c], zero)


@njit(**KERNEL)
def _bias_relu_backward_rows(dy, y, dx, db, m0, m1):
    # dy, y, dx (M, C); db (C,) zeroed: dx = dy where y > 0 (else 0), db += the column sums of dx, rows [m0, m1)
    zero = dy.dtype.type(0)
    for m in range(m0, m1):
        for c in range(dy.shape[1]):
            g = dy[m, c] if y[m, c] > zero else zero
            dx[m, c] = g
            db[c] += g


@njit(parallel=True, **KERNEL)
def _bias_relu_parallel(x, b, y, n_chunks):
    M = x.shape[0]
    for t in prange(n_chunks):
        _bias_relu_rows(x, b, y, t * M // n_chunks, (t + 1) * M // n_chunks)


@njit(parallel=True, **KERNEL)
def _bias_relu_backward_parallel(dy, y, dx, db, n_chunks):
    # db (T, C): one zeroed row of partial sums per chunk
    M = dy.shape[0]
    for t in prange(n_chunks):
        _bias_relu_backward_rows(dy, y, dx, db[t], t * M // n_chunks, (t + 1) * M // n_chunks)


def _forward(x, b):
    x2 = contiguous(x).reshape(-1, x.shape[-1])                                # (..., C) -> (M, C)
    y = np.empty_like(x2)
    n = num_chunks(x2.size, x2.shape[0], PARALLEL_MIN)
    run_chunks(_bias_relu_rows, _bias_relu_parallel, n, x2.shape[0], x2, contiguous(b), y)
    return y.reshape(x.shape)


def _backward_forward(dy, y):
    """``(dx, db)`` on arrays: dx = dy where y > 0, db = the column sums of dx."""
    C = y.shape[-1]
    dy2 = contiguous(dy).reshape(-1, C)                                        # (M, C)
    y2 = contiguous(y).reshape(-1, C)
    n = num_chunks(dy2.size, dy2.shape[0], PARALLEL_MIN)
    dx = np.empty_like(dy2)
    db = np.zeros((n, C), dtype=dy2.dtype)                                     # per-chunk partial sums
    if n == 1:                                                                 # (the serial body takes one row)
        _bias_relu_backward_rows(dy2, y2, dx, db[0], 0, dy2.shape[0])
    else:
        _bias_relu_backward_parallel(dy2, y2, dx, db, n)
    return dx.reshape(y.shape), db.sum(axis=0)


def _vjp(dy, y, x, b):
    if is_grad_enabled():                                      # backward(create_graph=True): record it
        dx = dy * (y > 0)                                      # the mask is constant: relu'' = 0
        return dx, tsum(dx, tuple(range(dx.ndim - 1)))
    return apply(_bias_relu_backward, same_dtype(dy, y), y)


_bias_relu_backward = primitive("kernels.bias_relu_backward", _backward_forward)
_bias_relu = primitive("kernels.bias_relu", _forward, _vjp)


def bias_relu(x, b):
    """``relu(x + b)`` in one pass: ``x`` (..., C), ``b`` (C,) added along the last axis.

    Differentiable w.r.t. ``x`` and ``b`` (the gradient at exactly 0 is 0, as ``relu``).

    >>> import numpy as np
    >>> y = bias_relu(np.ones((2, 3), np.float32), np.array([-2.0, 0.0, 1.0], np.float32))
    >>> y.numpy(), y.dtype
    (array([[0., 1., 2.],
           [0., 1., 2.]], dtype=float32), dtype('float32'))
    """
    x, b = float_tensor("bias_relu", "x", x), float_tensor("bias_relu", "b", b)
    check_same_dtype("bias_relu", x=x, b=b)
    if x.ndim < 1 or b.shape != x.shape[-1:]:
        raise ValueError(f"bias_relu: b must have shape ({x.shape[-1] if x.ndim else '?'},) to match the last "
                         f"axis of x (shape {x.shape}), got {b.shape}")
    return apply(_bias_relu, x, b)
