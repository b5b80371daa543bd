"""Pooling, channels-last, for 1, 2 and 3 spatial axes: max, average, LP, adaptive and global.

Every pool reduces a box of the input to one output. Along each spatial axis, output ``o`` reads
inputs ``[start(o), stop(o))``, a *bin*; the box is the product of the bins of its axes:

    window pools    start = o * stride - pad_lo,  stop = start + window   (then clipped to the input)
    adaptive pools  start = floor(o * n / out),   stop = ceil((o + 1) * n / out)   (PyTorch's bins)

so one kernel per reduction (max, mean, p-norm) serves both kinds, and clipping the bins is why padded
positions never win a max. As in conv, 1-d and 2-d inputs are 3-d inputs with leading axes of size 1.
The argmax is the box's first maximum, so a tie gives all of ``dy`` to it (the library's one rule at
ties, and PyTorch's: see "Gradients at ties" in ``axon.autograd.ops``). ``global_max_pool`` is no pool
but a reduction that returns only values (``ops.max`` over the spatial axes), so its ties share ``dy``
evenly, by the same rule.

    max:  y = max_box x                 dx[argmax] += dy        (argmax saved as the input position)
    avg:  y = sum_box x / count         dx[box]    += dy / count
    lp:   y = (sum_box x^p)^(1/p)       dx[box]    += dy x^(p-1) y^(1-p)

The forward kernels split the output lines across threads; the backward kernels split the images,
so overlapping windows of one image never add into ``dx`` from two threads. Small inputs run serially.

Primitives (a backend implements the four forwards with these signatures; ``bins`` are three int64
(O, 2) host arrays, the geometry, and ``scale`` a float64 (Do, Ho, Wo) host array):

- ``kernels.max_pool(x, *, bins, out_shape) -> (y, arg)``: ``arg`` int32, saved for the backward;
- ``kernels.max_pool_backward(dy, arg, *, x_shape) -> (dx,)``;
- ``kernels.sum_pool(x, *, bins, out_shape, scale, p) -> y``;
- ``kernels.sum_pool_backward(dy, x, y, *, bins, out_shape, scale, p) -> (dx,)``.

>>> import numpy as np
>>> x = np.array([[[1.0], [3.0], [2.0], [5.0]]])              # (N, W, C) = (1, 4, 1)
>>> max_pool(x, (2,), (2,), ((0, 0),)).numpy().ravel()
array([3., 5.])
>>> adaptive_avg_pool(x, (1,)).numpy().ravel()
array([2.75])
"""
from __future__ import annotations

import numbers

import numpy as np
from numba import njit, prange

from ..autograd import Tensor, apply, primitive
from ..autograd.ops import max as reduce_max
from ._common import (KERNEL, PARALLEL_MIN, check_pool_padding, contiguous, float_tensor, int_tuple, num_chunks, out_sizes, padding_pairs,
                      run_chunks, same_dtype, to_3d)

__all__ = ["max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool",
           "global_max_pool", "global_avg_pool"]


# ---- kernels: a serial body over a range of output lines or images, and a driver that splits the range ----
@njit(**KERNEL)
def _max_pool_lines(x, y, arg, bins_d, bins_h, bins_w, l0, l1):
    # x (N, D, H, W, C); y, arg (N, Do, Ho, Wo, C); bins_* (O, 2): [start, stop) per output along each axis.
    # Output lines l = (n, od, oh) in [l0, l1); arg holds the winner's input position (i_d * H + i_h) * W + i_w
    N, D, H, W, C = x.shape
    Do, Ho, Wo = y.shape[1:4]
    for line in range(l0, l1):
        n, od, oh = line // (Do * Ho), (line // Ho) % Do, line % Ho
        for ow in range(Wo):
            best, where = y[n, od, oh, ow], arg[n, od, oh, ow]   # (C,) views
            best[:] = -np.inf
            where[:] = (bins_d[od, 0] * H + bins_h[oh, 0]) * W + bins_w[ow, 0]
            for i_d in range(bins_d[od, 0], bins_d[od, 1]):
                for i_h in range(bins_h[oh, 0], bins_h[oh, 1]):
                    for i_w in range(bins_w[ow, 0], bins_w[ow, 1]):
                        pos = (i_d * H + i_h) * W + i_w
                        for c in range(C):                       # selects, not branches: vectorised
                            v = x[n, i_d, i_h, i_w, c]
                            wins = v > best[c] or v != v         # NaN wins, as in PyTorch
                            best[c] = v if wins else best[c]
                            where[c] = pos if wins else where[c]


@njit(**KERNEL)
def _max_pool_backward_images(dy, arg, dx, n0, n1):
    # dy, arg (N, Do, Ho, Wo, C); dx (N, D*H*W, C): dx[n] = 0, then dx[n, arg, c] += dy, for images [n0, n1)
    N, Do, Ho, Wo, C = dy.shape
    for n in range(n0, n1):
        dx[n] = 0                                                # zeroed here: in parallel and in cache
        for od in range(Do):
            for oh in range(Ho):
                for ow in range(Wo):
                    for c in range(C):
                        dx[n, arg[n, od, oh, ow, c], c] += dy[n, od, oh, ow, c]


@njit(**KERNEL)
def _sum_pool_lines(x, y, scale, p, bins_d, bins_h, bins_w, l0, l1):
    # x (N, D, H, W, C); y (N, Do, Ho, Wo, C); scale (Do, Ho, Wo): 1 / count (avg) or 1 (lp)
    # p == 1: y = scale * sum_box x;  p != 1: y = (sum_box x^p)^(1/p); output lines [l0, l1)
    N, D, H, W, C = x.shape
    Do, Ho, Wo = y.shape[1:4]
    inv_p = x.dtype.type(1) / p
    for line in range(l0, l1):
        n, od, oh = line // (Do * Ho), (line // Ho) % Do, line % Ho
        for ow in range(Wo):
            acc = y[n, od, oh, ow]                               # (C,) view
            acc[:] = 0
            for i_d in range(bins_d[od, 0], bins_d[od, 1]):
                for i_h in range(bins_h[oh, 0], bins_h[oh, 1]):
                    for i_w in range(bins_w[ow, 0], bins_w[ow, 1]):
                        if p == 1:
                            for c in range(C):
                                acc[c] += x[n, i_d, i_h, i_w, c]
                        else:
                            for c in range(C):
                                acc[c] += x[n, i_d, i_h, i_w, c] ** p
            if p == 1:
                for c in range(C):
                    acc[c] *= scale[od, oh, ow]
            else:
                for c in range(C):
                    acc[c] = acc[c] ** inv_p


@njit(**KERNEL)
def _sum_pool_backward_images(dy, x, y, dx, scale, p, bins_d, bins_h, bins_w, n0, n1):
    # dy, y (N, Do, Ho, Wo, C); x, dx (N, D, H, W, C); the VJP of _sum_pool_lines, images [n0, n1)
    N, Do, Ho, Wo, C = dy.shape
    one = dx.dtype.type(1)
    for n in range(n0, n1):
        dx[n] = 0
        for od in range(Do):
            for oh in range(Ho):
                for ow in range(Wo):
                    for i_d in range(bins_d[od, 0], bins_d[od, 1]):
                        for i_h in range(bins_h[oh, 0], bins_h[oh, 1]):
                            for i_w in range(bins_w[ow, 0], bins_w[ow, 1]):
                                if p == 1:
                                    s = scale[od, oh, ow]
                                    for c in range(C):
                                        dx[n, i_d, i_h, i_w, c] += dy[n, od, oh, ow, c] * s
                                else:
                                    for c in range(C):
                                        y_c = y[n, od, oh, ow, c]
                                        if y_c != 0:             # d(sum x^p)^(1/p)/dx = x^(p-1) y^(1-p)
                                            dx[n, i_d, i_h, i_w, c] += (dy[n, od, oh, ow, c] * x[n, i_d, i_h, i_w, c] ** (p - one)
                                                                        * y_c ** (one - p))


@njit(parallel=True, **KERNEL)
def _max_pool_parallel(x, y, arg, bins_d, bins_h, bins_w, n_chunks):
    L = y.shape[0] * y.shape[1] * y.shape[2]                     # output lines
    for t in prange(n_chunks):
        _max_pool_lines(x, y, arg, bins_d, bins_h, bins_w, t * L // n_chunks, (t + 1) * L // n_chunks)


@njit(parallel=True, **KERNEL)
def _max_pool_backward_parallel(dy, arg, dx, n_chunks):
    N = dy.shape[0]                                              # whole images: dx is private to a chunk
    for t in prange(n_chunks):
        _max_pool_backward_images(dy, arg, dx, t * N // n_chunks, (t + 1) * N // n_chunks)


@njit(parallel=True, **KERNEL)
def _sum_pool_parallel(x, y, scale, p, bins_d, bins_h, bins_w, n_chunks):
    L = y.shape[0] * y.shape[1] * y.shape[2]
    for t in prange(n_chunks):
        _sum_pool_lines(x, y, scale, p, bins_d, bins_h, bins_w, t * L // n_chunks, (t + 1) * L // n_chunks)


@njit(parallel=True, **KERNEL)
def _sum_pool_backward_parallel(dy, x, y, dx, scale, p, bins_d, bins_h, bins_w, n_chunks):
    N = dy.shape[0]
    for t in prange(n_chunks):
        _sum_pool_backward_images(dy, x, y, dx, scale, p, bins_d, bins_h, bins_w,
                                  t * N // n_chunks, (t + 1) * N // n_chunks)


# ---- primitives ----------------------------------------------------------------------------------------
def _as_5d(x):
    """(N, *spatial, C) -> (N, D, H, W, C), leading spatial axes of size 1."""
    return x.reshape((x.shape[0],) + (1,) * (5 - x.ndim) + x.shape[1:])


def _max_forward(x, bins, out_shape):
    x5 = _as_5d(contiguous(x))
    y = np.empty((x.shape[0],) + to_3d(out_shape, 1) + (x.shape[-1],), dtype=x.dtype)   # (N, Do, Ho, Wo, C)
    arg = np.empty(y.shape, dtype=np.int32)
    lines = int(np.prod(y.shape[:3]))
    if y.size:
        n = num_chunks(x.size, lines, PARALLEL_MIN)
        run_chunks(_max_pool_lines, _max_pool_parallel, n, lines, x5, y, arg, *bins)
    return y.reshape((x.shape[0],) + out_shape + (x.shape[-1],)), arg


def _max_backward(dy, arg, x_shape):
    N, C = x_shape[0], x_shape[-1]
    size = int(np.prod(x_shape))
    dx = np.empty((N, size // max(N * C, 1), C), dtype=dy.dtype)   # (N, D*H*W, C), zeroed by the kernel
    n = num_chunks(size, N, PARALLEL_MIN)
    run_chunks(_max_pool_backward_images, _max_pool_backward_parallel, n, N, _as_5d(contiguous(dy)), arg, dx)
    return (dx.reshape(x_shape),)


def _max_vjp(dy, y, x, bins, out_shape, saved):
    return apply(_max_pool_backward, same_dtype(dy, x), Tensor._wrap(saved), x_shape=x.shape)


def _sum_forward(x, bins, out_shape, scale, p):
    x5 = _as_5d(contiguous(x))
    y = np.empty((x.shape[0],) + to_3d(out_shape, 1) + (x.shape[-1],), dtype=x.dtype)   # (N, Do, Ho, Wo, C)
    lines = int(np.prod(y.shape[:3]))
    if y.size:
        n = num_chunks(x.size, lines, PARALLEL_MIN)
        run_chunks(_sum_pool_lines, _sum_pool_parallel, n, lines, x5, y, scale.astype(x.dtype, copy=False),
                   x.dtype.type(p), *bins)
    return y.reshape((x.shape[0],) + out_shape + (x.shape[-1],))


def _sum_backward(dy, x, y, bins, out_shape, scale, p):
    x5 = _as_5d(contiguous(x))
    dx = np.empty(x5.shape, dtype=x.dtype)                                             # zeroed by the kernel
    N = x.shape[0]
    n = num_chunks(x.size, N, PARALLEL_MIN)
    run_chunks(_sum_pool_backward_images, _sum_pool_backward_parallel, n, N, _as_5d(contiguous(dy)), x5,
               _as_5d(contiguous(y)), dx, scale.astype(x.dtype, copy=False), x.dtype.type(p), *bins)
    return (dx.reshape(x.shape),)


def _sum_vjp(dy, y, x, bins, out_shape, scale, p):
    return apply(_sum_pool_backward, same_dtype(dy, x), x, y, bins=bins, out_shape=out_shape, scale=scale, p=p)


_max_pool = primitive("kernels.max_pool", _max_forward, _max_vjp, saves=True, higher_order=False)
_max_pool_backward = primitive("kernels.max_pool_backward", _max_backward)
_sum_pool = primitive("kernels.sum_pool", _sum_forward, _sum_vjp, higher_order=False)
_sum_pool_backward = primitive("kernels.sum_pool_backward", _sum_backward)


# ---- geometry ------------------------------------------------------------------------------------------
def _check_x(fn, x):
    x = float_tensor(fn, "x", x)
    if not 3 <= x.ndim <= 5:
        raise ValueError(f"{fn}: x must be (N, *spatial, C) with 1 to 3 spatial axes, got shape {x.shape}")
    if 0 in x.shape[1:-1]:
        raise ValueError(f"{fn}: x has an empty spatial axis (shape {x.shape})")
    return x


def _window_bins(fn, x, window, strides, padding):
    """Check a window pool's options; return per-axis bins (3 arrays (O, 2), 3-d) and the output shape."""
    n_sp = x.ndim - 2
    window = int_tuple(fn, "window", window, n_sp)
    strides = int_tuple(fn, "strides", strides, n_sp)
    padding = padding_pairs(fn, padding, n_sp)
    check_pool_padding(fn, window, padding)
    detail = f"input shape {x.shape}, window {window}, padding {padding}"
    out_shape = out_sizes(fn, x.shape[1:-1], window, strides, padding, detail, what="window")
    bins = []
    for n, k, s, (lo, _), o in zip(x.shape[1:-1], window, strides, padding, out_shape):
        start = np.arange(o) * s - lo                                             # (O,)
        bins.append(np.stack([np.clip(start, 0, n), np.clip(start + k, 0, n)], axis=1))
    return _bins_3d(bins), out_shape, window


def _adaptive_bins(fn, x, output_size):
    """Per-axis bins ``[floor(o n / out), ceil((o + 1) n / out))`` (3-d) and the output shape."""
    out_shape = int_tuple(fn, "output_size", output_size, x.ndim - 2)
    bins = []
    for n, o in zip(x.shape[1:-1], out_shape):
        i = np.arange(o)
        bins.append(np.stack([i * n // o, -(-(i + 1) * n // o)], axis=1))       # (O, 2)
    return _bins_3d(bins), out_shape


def _bins_3d(bins):
    return tuple(np.ascontiguousarray(b, dtype=np.int64) for b in to_3d(tuple(bins), np.array([[0, 1]])))


def _counts(bins):
    """Inputs per box: (Do, Ho, Wo), the outer product of the per-axis bin lengths."""
    d, h, w = (b[:, 1] - b[:, 0] for b in bins)
    return d[:, None, None] * h[None, :, None] * w[None, None, :]


# ---- public functions ----------------------------------------------------------------------------------
def max_pool(x, window, strides, padding):
    """Largest value of each window, channels-last: ``y[n, o, c] = max_k x[n, o s + k - lo, c]``.

    ``x``: (N, *spatial, C), 1 to 3 spatial axes; ``window``, ``strides``: one int per axis; ``padding``:
    one ``(lo, hi)`` pair per axis, each smaller than the window. Padded positions never win. The
    gradient goes to each window's maximum (its position is saved). NaN propagates, as in PyTorch.

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> max_pool(x, (2, 2), (2, 2), ((0, 0), (0, 0))).numpy()[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    x = _check_x("max_pool", x)
    bins, out_shape, _ = _window_bins("max_pool", x, window, strides, padding)
    return apply(_max_pool, x, bins=bins, out_shape=out_shape)


def avg_pool(x, window, strides, padding, count_include_pad=True):
    """Mean of each window, channels-last; padding counts as zeros (``count_include_pad``) or is left out.

    Arguments as ``max_pool``. ``count_include_pad=True`` divides every window by its full size
    (PyTorch's default), ``False`` by the number of real inputs in it.

    >>> import numpy as np
    >>> x = np.array([[[2.0], [4.0]]])                         # (1, 2, 1)
    >>> avg_pool(x, (2,), (2,), ((1, 1),)).numpy().ravel()
    array([1., 2.])
    >>> avg_pool(x, (2,), (2,), ((1, 1),), count_include_pad=False).numpy().ravel()
    array([2., 4.])
    """
    x = _check_x("avg_pool", x)
    bins, out_shape, window = _window_bins("avg_pool", x, window, strides, padding)
    count = np.full(to_3d(out_shape, 1), np.prod(window)) if count_include_pad else _counts(bins)
    return apply(_sum_pool, x, bins=bins, out_shape=out_shape, scale=1.0 / count, p=1.0)


def lp_pool(x, norm, window, strides, padding):
    """Power-average pooling: ``y = (sum_window x^p)^(1/p)`` with ``p = norm`` (padding adds zeros).

    As Axon's ``lp_pool`` and ``torch.nn.functional.lp_pool2d`` (no absolute value: for negative
    inputs use an even or integer ``p``). ``p = 1`` sums each window; large ``p`` tends to the max.
    Where a window's output is 0 its gradient is 0.

    >>> import numpy as np
    >>> lp_pool(np.array([[[3.0], [4.0]]]), 2, (2,), (2,), ((0, 0),)).numpy().ravel()
    array([5.])
    """
    x = _check_x("lp_pool", x)
    if isinstance(norm, bool) or not isinstance(norm, numbers.Real) or not norm > 0:
        raise ValueError(f"lp_pool: norm must be a positive number, got {norm!r}")
    bins, out_shape, _ = _window_bins("lp_pool", x, window, strides, padding)
    ones = np.ones(to_3d(out_shape, 1))                       # p = 1: the plain window sum
    return apply(_sum_pool, x, bins=bins, out_shape=out_shape, scale=ones, p=float(norm))


def adaptive_max_pool(x, output_size):
    """Max pooling into ``output_size`` (one int per spatial axis) with PyTorch's bins.

    Along an axis of size ``n``, output ``o`` pools inputs ``floor(o n / out)`` to ``ceil((o + 1) n / out) - 1``.

    >>> import numpy as np
    >>> adaptive_max_pool(np.array([[[1.0], [5.0], [2.0]]]), (2,)).numpy().ravel()
    array([5., 5.])
    """
    x = _check_x("adaptive_max_pool", x)
    bins, out_shape = _adaptive_bins("adaptive_max_pool", x, output_size)
    return apply(_max_pool, x, bins=bins, out_shape=out_shape)


def adaptive_avg_pool(x, output_size):
    """Average pooling into ``output_size`` (one int per spatial axis) with PyTorch's bins.

    >>> import numpy as np
    >>> adaptive_avg_pool(np.array([[[1.0], [5.0], [3.0]]]), (2,)).numpy().ravel()
    array([3., 4.])
    """
    x = _check_x("adaptive_avg_pool", x)
    bins, out_shape = _adaptive_bins("adaptive_avg_pool", x, output_size)
    return apply(_sum_pool, x, bins=bins, out_shape=out_shape, scale=1.0 / _counts(bins), p=1.0)


def global_max_pool(x):
    """Largest value over all spatial axes: (N, *spatial, C) -> (N, C).

    A reduction, ``ops.max`` over the spatial axes, as ``axon.layers.global_max_pool`` is (not a pool
    with one window): tied maxima share the gradient evenly, by the library's one rule at ties (see
    "Gradients at ties" in ``axon.autograd.ops``).

    >>> import numpy as np
    >>> global_max_pool(np.arange(8.0).reshape(1, 2, 2, 2)).numpy()
    array([[6., 7.]])
    >>> x = Tensor(np.zeros((1, 2, 2, 1), np.float32), requires_grad=True)
    >>> global_max_pool(x).sum().backward(); x.grad.ravel()          # four tied zeros: a quarter each
    array([0.25, 0.25, 0.25, 0.25], dtype=float32)
    """
    x = _check_x("global_max_pool", x)
    return reduce_max(x, axis=tuple(range(1, x.ndim - 1)))


def global_avg_pool(x):
    """Mean over all spatial axes: (N, *spatial, C) -> (N, C).

    >>> import numpy as np
    >>> global_avg_pool(np.arange(8.0).reshape(1, 2, 2, 2)).numpy()
    array([[3., 4.]])
    """
    x = _check_x("global_avg_pool", x)
    return adaptive_avg_pool(x, (1,) * (x.ndim - 2)).reshape(x.shape[0], x.shape[-1])
