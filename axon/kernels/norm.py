"""Batch normalization in training mode, channels-last: two passes over memory forward, two backward.

With ``x`` viewed as (M, C) (every axis but the channels flattened into M rows):

    mean = sum_m x / M          var = sum_m (x - mean)^2 / M (biased)       invstd = 1 / sqrt(var + eps)
    y = (x - mean) invstd gamma + beta  =  x * scale + shift    (scale = gamma invstd, shift = beta - mean scale)

and the gradient, from two per-channel sums of the upstream ``dy``:

    dbeta = sum_m dy        dgamma = invstd sum_m dy (x - mean)
    dx = scale (dy - dbeta / M - (x - mean) invstd dgamma / M)       an affine map of dy and x per channel

Pass 1 (statistics) and pass 3 (the two sums of the backward) split the rows across threads, each
thread adding into its own row of partial sums (float64, so a million float32 values still add up
exactly enough); passes 2 and 4 are one fused multiply-add per element.

Primitives (a backend implements the three forwards with these signatures; ``mean`` and ``invstd``
are float64 (C,), everything else in x's dtype):

- ``kernels.batch_norm_statistics(x) -> (mean, var)``: per channel of (..., C), the biased variance;
- ``kernels.batch_norm_train(x, gamma, beta, mean, invstd) -> y``;
- ``kernels.batch_norm_backward(dy, x, gamma, mean, invstd, *, need_dx) -> (dx, dgamma, dbeta)``.

``standardize_rows(x, epsilon)`` is the same standardization along rows instead, ``y = (x - mean) r``
with ``r = 1 / sqrt(var + eps)`` per row of (M, K): layer norm's forward (``layers.standardize`` over
the trailing axes), one thread's rows in one pass each, instead of numpy's five passes over memory.

>>> import numpy as np
>>> x = np.array([[1.0], [3.0]])                               # (M, C) = (2, 1)
>>> y, mean, var = batch_norm_train(x, np.ones(1), np.zeros(1), 0.0)
>>> y.numpy().ravel(), mean.numpy(), var.numpy()
(array([-1.,  1.]), array([2.]), array([1.]))
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..autograd import apply, primitive, sqrt
from ._common import KERNEL, PARALLEL_MIN, check_same_dtype, contiguous, float_tensor, num_chunks, run_chunks, same_dtype

__all__ = ["batch_norm_train", "standardize_rows"]


@njit(**KERNEL)
def _channel_sums_rows(a, b, a0, b0, sums, m0, m1):
    # a, b (M, C); a0, b0 (C,); sums (2, C) float64, zeroed:
    # sums[0] += sum_m (a - a0), sums[1] += sum_m (a - a0) * (b - b0), over rows [m0, m1)
    C = a.shape[1]
    for m in range(m0, m1):
        for c in range(C):
            u = np.float64(a[m, c] - a0[c])
            sums[0, c] += u
            sums[1, c] += u * np.float64(b[m, c] - b0[c])


@njit(**KERNEL)
def _affine2_rows(a, b, alpha, beta, gamma, out, m0, m1):
    # a, b, out (M, C); alpha, beta, gamma (C,): out = a * alpha + b * beta + gamma per channel, rows [m0, m1)
    for m in range(m0, m1):
        for c in range(a.shape[1]):
            out[m, c] = a[m, c] * alpha[c] + b[m, c] * beta[c] + gamma[c]


@njit(**KERNEL)
def _standardize_rows(x, y, r, m0, m1):
    # x, y (M, K); r (M, 1) holding eps on entry: y[m] = (x[m] - mean) r[m], r[m] = 1 / sqrt(var + eps),
    # the mean and the biased variance of row m added up in float64 (two passes over the row, in cache)
    K = x.shape[1]
    for m in range(m0, m1):
        total = 0.0
        for k in range(K):
            total += np.float64(x[m, k])
        mu = total / K
        squares = 0.0
        for k in range(K):
            d = np.float64(x[m, k]) - mu
            squares += d * d
        inv = 1.0 / np.sqrt(squares / K + np.float64(r[m, 0]))
        r[m, 0] = inv
        for k in range(K):
            y[m, k] = (np.float64(x[m, k]) - mu) * inv


@njit(parallel=True, **KERNEL)
def _standardize_parallel(x, y, r, n_chunks):
    M = x.shape[0]
    for t in prange(n_chunks):
        _standardize_rows(x, y, r, t * M // n_chunks, (t + 1) * M // n_chunks)


def standardize_rows(x, epsilon: float):
    """``(y, r)`` for float32/float64 arrays x (M, K): each row standardized, ``r`` (M, 1) = 1 / sqrt(var + eps).

    >>> y, r = standardize_rows(np.array([[1.0, 3.0]]), 0.0)
    >>> y, r
    (array([[-1.,  1.]]), array([[1.]]))
    """
    x = contiguous(x)
    y = np.empty_like(x)                                       # (M, K)
    r = np.full((x.shape[0], 1), epsilon, dtype=x.dtype)       # (M, 1)
    if x.size:
        run_chunks(_standardize_rows, _standardize_parallel, num_chunks(x.size, x.shape[0], PARALLEL_MIN),
                   x.shape[0], x, y, r)
    return y, r


@njit(parallel=True, **KERNEL)
def _channel_sums_parallel(a, b, a0, b0, sums, n_chunks):
    # sums (T, 2, C): one zeroed slice of partial sums per chunk of rows
    M = a.shape[0]
    for t in prange(n_chunks):
        _channel_sums_rows(a, b, a0, b0, sums[t], t * M // n_chunks, (t + 1) * M // n_chunks)


@njit(parallel=True, **KERNEL)
def _affine2_parallel(a, b, alpha, beta, gamma, out, n_chunks):
    M = a.shape[0]
    for t in prange(n_chunks):
        _affine2_rows(a, b, alpha, beta, gamma, out, t * M // n_chunks, (t + 1) * M // n_chunks)


def _affine2(a, b, alpha, beta, gamma, out):
    """``out = a * alpha + b * beta + gamma`` per channel, on (M, C) rows."""
    n = num_chunks(a.size, a.shape[0], PARALLEL_MIN)
    run_chunks(_affine2_rows, _affine2_parallel, n, a.shape[0], a, b, alpha, beta, gamma, out)


def _sums(a, b, a0, b0):
    """Per-channel ``(sum (a - a0), sum (a - a0)(b - b0))`` in float64: (C,), (C,)."""
    n = num_chunks(a.size, a.shape[0], PARALLEL_MIN)
    sums = np.zeros((n, 2, a.shape[1]), dtype=np.float64)                     # (T, 2, C) partial sums
    a0, b0 = a0.astype(a.dtype), b0.astype(b.dtype)
    if n == 1:                                                                # (the serial body takes one slice)
        _channel_sums_rows(a, b, a0, b0, sums[0], 0, a.shape[0])
    else:
        _channel_sums_parallel(a, b, a0, b0, sums, n)
    total = sums.sum(axis=0)                                                  # (2, C)
    return total[0], total[1]


def _statistics(x):
    """Mean and biased variance per channel of (..., C), float64 (shifted by the first row: exact)."""
    x2 = contiguous(x).reshape(-1, x.shape[-1])                               # (..., C) -> (M, C)
    shift = x2[0].copy()                                                      # (C,)
    s, ss = _sums(x2, x2, shift, shift)
    M = x2.shape[0]
    mean = s / M
    return shift + mean, np.maximum(ss / M - mean * mean, 0.0)


def _bn_forward(x, gamma, beta, mean, invstd):
    x2 = contiguous(x).reshape(-1, x.shape[-1])                               # (..., C) -> (M, C)
    scale = (gamma * invstd).astype(x.dtype)                                  # (C,)
    shift = (beta - mean * scale).astype(x.dtype)
    y = np.empty_like(x2)
    _affine2(x2, x2, scale, np.zeros_like(scale), shift, y)   # y = x scale + 0 x + shift
    return y.reshape(x.shape)


def _bn_backward(dy, x, gamma, mean, invstd, need_dx):
    """``(dx, dgamma, dbeta)`` on arrays: two per-channel sums, then one affine pass for dx."""
    C = x.shape[-1]
    x2 = contiguous(x).reshape(-1, C)                                         # (M, C)
    dy2 = contiguous(dy).reshape(-1, C)
    M = x2.shape[0]
    sum_dy, sum_dy_xc = _sums(dy2, x2, np.zeros(C), mean)                     # sum dy, sum dy (x - mean)
    dbeta = sum_dy
    dgamma = invstd * sum_dy_xc
    dx = None
    if need_dx:                                                               # dx = a dy + b x + c
        g = gamma.astype(np.float64)
        a = g * invstd
        b = -g * invstd ** 3 * sum_dy_xc / M
        c = -a * sum_dy / M - b * mean
        dx2 = np.empty_like(x2)
        _affine2(dy2, x2, a.astype(x2.dtype), b.astype(x2.dtype), c.astype(x2.dtype), dx2)
        dx = dx2.reshape(x.shape)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def _bn_vjp(dy, y, x, gamma, beta, mean, invstd):
    # mean and invstd are constants here: the formula already holds their dependence on x
    dx, dgamma, dbeta = apply(_batch_norm_backward, same_dtype(dy, x), x, gamma, mean, invstd, need_dx=x.requires_grad)
    return dx, dgamma, dbeta, None, None


_batch_norm_statistics = primitive("kernels.batch_norm_statistics", _statistics)
_batch_norm = primitive("kernels.batch_norm_train", _bn_forward, _bn_vjp, higher_order=False)
_batch_norm_backward = primitive("kernels.batch_norm_backward", _bn_backward)


def batch_norm_train(x, gamma, beta, eps):
    """Batch normalization with the batch's statistics, normalising every axis but the last (channels).

    ``y = (x - mean) / sqrt(var + eps) * gamma + beta``; ``x``: (..., C), ``gamma``, ``beta``: (C,).
    Returns ``(y, mean, var)``: ``y`` differentiable w.r.t. x, gamma, beta; ``mean`` and ``var`` (C,)
    in x's dtype (the biased variance), constant Tensors for the caller's running statistics.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, (64, 4)).astype(np.float32)
    >>> y, mean, var = batch_norm_train(x, np.ones(4, np.float32), np.zeros(4, np.float32), 1e-5)
    >>> y.dtype, bool(np.allclose(y.numpy().mean(0), 0, atol=1e-5)), bool(np.allclose(y.numpy().std(0), 1, atol=1e-3))
    (dtype('float32'), True, True)
    """
    fn = "batch_norm_train"
    x, gamma, beta = float_tensor(fn, "x", x), float_tensor(fn, "gamma", gamma), float_tensor(fn, "beta", beta)
    check_same_dtype(fn, x=x, gamma=gamma, beta=beta)
    if x.ndim < 2:
        raise ValueError(f"{fn}: x must be (..., C) with at least 2 axes, got shape {x.shape}")
    C = x.shape[-1]
    if gamma.shape != (C,) or beta.shape != (C,):
        raise ValueError(f"{fn}: gamma and beta must have shape ({C},) for x of shape {x.shape}, "
                         f"got {gamma.shape} and {beta.shape}")
    if x.size == 0:
        raise ValueError(f"{fn}: x is empty (shape {x.shape})")
    if not eps >= 0:
        raise ValueError(f"{fn}: eps must be a number >= 0, got {eps!r}")
    mean, var = apply(_batch_norm_statistics, x)                              # (C,), (C,) float64
    invstd = 1.0 / sqrt(var + float(eps))
    y = apply(_batch_norm, x, gamma, beta, mean, invstd)
    return y, mean.astype(x.dtype), var.astype(x.dtype)
