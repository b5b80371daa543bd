"""A convolution and the max pooling after it in one sweep: the convolution's output never reaches memory.

In a CNN's ``max_pool(conv(x, w))`` the convolution writes its whole output (12.8 MB for the MNIST CNN's
first layer, 128 x 28 x 28 x 32 float32) only for the pool to read it back and keep a quarter. Here each
block of the convolution's rows is pooled while it is still in the cache, and only the pooled values
and the argmax are written:

    forward    q, arg = max_pool(conv(x, w))       one block of conv rows at a time, pooled at once
    backward   dy = unpool(dq, arg)                built block by block from the pooled gradient,
               dx, dw = conv_backward(dy, x, w)     used by the same block's products, never stored

Rows of the convolution (see ``convolution``) are ordered (n, oh, ow). A pooled line ``ph`` of image
``n`` reads conv output lines ``ph*KH .. ph*KH + KH - 1``, all ``KW`` columns of each window: a *group*
of ``KH * Wo`` consecutive rows. Blocks hold whole groups, so each window is complete in its block. The
numbers are the unfused ops' to rounding: the same products, each output row made by the same BLAS
kernel, and the pooling scans each window in ``max_pool``'s order with its rule (the first maximum
wins, NaN wins), so ``arg`` holds the same positions. Rows that no window reads (the last line of an
odd height, the last column of an odd width) are skipped, forward and backward: their gradient is zero.

Only what ``axon.fusion.conv_pool`` fuses is supported: one group (``groups=1``), 1-d or 2-d
convolutions, and pooling windows that tile the output without padding or overlap (window = stride),
the usual ``max_pool(2)``. The two functions take and return numpy arrays, like a primitive's forward.

>>> import numpy as np
>>> from axon.kernels import conv, max_pool
>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal((2, 6, 6, 3)).astype(np.float32), rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
>>> same = dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))
>>> q, arg = conv_max_pool(x, w, **same, groups=1, out_spatial=(6, 6), window=(2, 2), out_shape=(3, 3))
>>> ref = max_pool(conv(x, w, **same), (2, 2), (2, 2), ((0, 0), (0, 0))).numpy()
>>> q.shape, bool(np.allclose(q, ref, rtol=1e-6))
((2, 3, 3, 4), True)
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._common import KERNEL, contiguous, num_chunks
from .convolution import (_BLOCK_BYTES, _OUT, _PARALLEL_MACS, _add_to, _block_rows, _col2im_block, _col2im_t_block,
                          _im2col_block, _im2col_t_block, _shapes, _transposed_columns)
from .threads import use_single_threaded_blas
from .workspace import scratch

__all__ = ["conv_max_pool", "conv_max_pool_backward", "fuses"]


# ---- one group: pool its conv rows, or spread its pooled gradient back over them ---------------------------
@njit(**KERNEL)
def _pool_group(y, q, arg, ph, KH, KW, Wo):
    # y (KH * Wo, C): the conv rows of pooled line ph; q, arg (Wp, C): that line's max and its argmax, the
    # conv output position oh * Wo + ow (max_pool's, for an input (N, 1, Ho, Wo, C)). max_pool's scan order
    # and rule: the first maximum wins, and NaN wins.
    C = y.shape[1]
    for pw in range(q.shape[0]):
        best, where = q[pw], arg[pw]
        first = ph * KH * Wo + pw * KW                           # the window's first position
        for c in range(C):
            best[c] = -np.inf
            where[c] = first
        for i in range(KH):
            for j in range(KW):
                row = y[i * Wo + pw * KW + j]
                pos = first + i * Wo + j
                for c in range(C):                               # selects, not branches: vectorised
                    v = row[c]
                    wins = (v > best[c]) | (v != v)
                    best[c] = v if wins else best[c]
                    where[c] = pos if wins else where[c]


@njit(**KERNEL)
def _unpool_group(dq, arg, dy, ph, KH, Wo):
    # dq, arg (Wp, C): pooled line ph's gradient and argmax; dy (KH * Wo, C) zeroed: its conv rows' gradient
    first = ph * KH * Wo
    for pw in range(dq.shape[0]):
        for c in range(dq.shape[1]):
            dy[arg[pw, c] - first, c] += dq[pw, c]


# ---- the copies for a block of groups: one call when the groups are consecutive rows ---------------------
@njit(**KERNEL)
def _group_rows(g, Hp, Ho, Wo, KH):
    # the first conv row of group g = n * Hp + ph: row (n, ph * KH, 0) = (n * Ho + ph * KH) * Wo
    return ((g // Hp) * Ho + (g % Hp) * KH) * Wo


@njit(**KERNEL)
def _runs(b0, b1, Hp, KH, geometry):
    # groups [b0, b1) as runs of consecutive conv rows: (runs, rows per run). With Ho a multiple of KH the
    # groups follow each other, one run; else a line no window reads lies between them, one run per group.
    # (Run k starts at _group_rows(b0 + k, ...).)
    L = KH * geometry[_OUT, 2]
    return (1, (b1 - b0) * L) if geometry[_OUT, 1] % KH == 0 else (b1 - b0, L)


# The four copies below are one loop each, over the runs. The transposed layout has functions of its own:
# one function calling both kinds of copy ran its copies 4x slower (its views were no longer optimised away).
@njit(**KERNEL)
def _im2col_groups(x, cols, b0, b1, Hp, KH, geometry):
    # cols (>= rows, Kc): the windows of groups [b0, b1), in order
    runs, L = _runs(b0, b1, Hp, KH, geometry)
    for k in range(runs):
        r0 = _group_rows(b0 + k, Hp, geometry[_OUT, 1], geometry[_OUT, 2], KH)
        _im2col_block(x, cols[k * L:], r0, r0 + L, 0, geometry)


@njit(**KERNEL)
def _col2im_groups(dcols, dx, b0, b1, Hp, KH, geometry):
    # dx += the windows of groups [b0, b1) from dcols (>= rows, Kc), laid out as _im2col_groups makes them
    runs, L = _runs(b0, b1, Hp, KH, geometry)
    for k in range(runs):
        r0 = _group_rows(b0 + k, Hp, geometry[_OUT, 1], geometry[_OUT, 2], KH)
        _col2im_block(dcols[k * L:], dx, r0, r0 + L, 0, geometry)


@njit(**KERNEL)
def _im2col_t_groups(x, cols_t, b0, b1, Hp, KH, geometry):
    # cols_t (Kc, rows): _im2col_groups transposed; one run is the whole block (a C-contiguous array)
    runs, L = _runs(b0, b1, Hp, KH, geometry)
    if runs == 1:
        r0 = _group_rows(b0, Hp, geometry[_OUT, 1], geometry[_OUT, 2], KH)
        _im2col_t_block(x, cols_t, r0, r0 + L, 0, geometry)
        return
    for k in range(runs):
        r0 = _group_rows(b0 + k, Hp, geometry[_OUT, 1], geometry[_OUT, 2], KH)
        _im2col_t_block(x, cols_t[:, k * L:(k + 1) * L], r0, r0 + L, 0, geometry)


@njit(**KERNEL)
def _col2im_t_groups(dcols_t, dx, b0, b1, Hp, KH, geometry):
    # dx += the windows of groups [b0, b1) from dcols_t (Kc, rows)
    runs, L = _runs(b0, b1, Hp, KH, geometry)
    if runs == 1:
        r0 = _group_rows(b0, Hp, geometry[_OUT, 1], geometry[_OUT, 2], KH)
        _col2im_t_block(dcols_t, dx, r0, r0 + L, 0, geometry)
        return
    for k in range(runs):
        r0 = _group_rows(b0 + k, Hp, geometry[_OUT, 1], geometry[_OUT, 2], KH)
        _col2im_t_block(dcols_t[:, k * L:(k + 1) * L], dx, r0, r0 + L, 0, geometry)


# ---- forward: conv rows a block of groups at a time, each group pooled from the block -----------------------
@njit(**KERNEL)
def _forward_groups(x, w, q, arg, cols, y_block, geometry, window, g0, g1):
    # x (N, 1, H, W, C); w (Kc, CO); q, arg (N, 1, Hp, Wp, CO); this thread's scratch: cols (R, Kc),
    # y_block (R, CO), R a whole number of groups. Groups g = n * Hp + ph in [g0, g1).
    Kc = w.shape[0]
    Ho, Wo = geometry[_OUT, 1], geometry[_OUT, 2]
    KH, KW = window[0], window[1]
    Hp = q.shape[2]
    L = KH * Wo                                                  # conv rows per group
    per_block = y_block.shape[0] // L
    transposed = _transposed_columns(Kc, geometry)
    for b0 in range(g0, g1, per_block):
        b1 = min(b0 + per_block, g1)
        rows = (b1 - b0) * L
        y = y_block[:rows]                                       # (rows, CO)
        if transposed:                                           # y = cols_t^T @ W
            cols_t = cols.ravel()[:Kc * rows].reshape((Kc, rows))
            _im2col_t_groups(x, cols_t, b0, b1, Hp, KH, geometry)
            np.dot(cols_t.T, w, y)
        else:                                                    # y = cols @ W
            _im2col_groups(x, cols, b0, b1, Hp, KH, geometry)
            np.dot(cols[:rows], w, y)
        for g in range(b0, b1):
            n, ph = g // Hp, g % Hp
            _pool_group(y[(g - b0) * L:(g - b0 + 1) * L], q[n, 0, ph], arg[n, 0, ph], ph, KH, KW, Wo)


@njit(parallel=True, **KERNEL)
def _forward_parallel(x, w, q, arg, cols, y_block, geometry, window, n_chunks):
    # cols (T, R, Kc), y_block (T, R, CO): chunk t's scratch; chunk t takes groups [t G / T, (t + 1) G / T)
    G = q.shape[0] * q.shape[2]
    for t in prange(n_chunks):
        _forward_groups(x, w, q, arg, cols[t], y_block[t], geometry, window, t * G // n_chunks,
                        (t + 1) * G // n_chunks)


# ---- backward: the same blocks, their gradient rebuilt from the pooled one ---------------------------------
@njit(**KERNEL)
def _backward_images(x, w_t, dq, arg, dx, dw, cols, dcols, dy_block, dw_tmp, geometry, window, n0, n1,
                     need_dx, need_dw):
    # x (N, 1, H, W, C); w_t (CO, Kc); dq, arg (N, 1, Hp, Wp, CO); dx as x; this thread's share: images
    # [n0, n1), its partial dW^T dw (CO, Kc) zeroed, scratch cols, dcols (R, Kc), dy_block (R, CO), dw_tmp
    # (CO, Kc). Whole images, so the windows it adds into dx are its own (as convolution's backward).
    CO, Kc = w_t.shape
    Ho, Wo = geometry[_OUT, 1], geometry[_OUT, 2]
    KH = window[0]
    Hp = dq.shape[2]
    L = KH * Wo
    per_block = dy_block.shape[0] // L
    transposed = _transposed_columns(Kc, geometry)
    if need_dx:
        dx[n0:n1] = 0
    for b0 in range(n0 * Hp, n1 * Hp, per_block):
        b1 = min(b0 + per_block, n1 * Hp)
        rows = (b1 - b0) * L
        dy = dy_block[:rows]                                     # (rows, CO): the block's conv gradient
        dy[:] = 0
        for g in range(b0, b1):
            _unpool_group(dq[g // Hp, 0, g % Hp], arg[g // Hp, 0, g % Hp], dy[(g - b0) * L:(g - b0 + 1) * L],
                          g % Hp, KH, Wo)
        if transposed:
            cols_t = cols.ravel()[:Kc * rows].reshape((Kc, rows))
            dcols_t = dcols.ravel()[:Kc * rows].reshape((Kc, rows))
            if need_dw:                                          # dW^T += dY^T @ cols_t^T
                _im2col_t_groups(x, cols_t, b0, b1, Hp, KH, geometry)
                np.dot(dy.T, cols_t.T, dw_tmp)
                _add_to(dw, dw_tmp)
            if need_dx:                                          # dcols_t = W @ dY^T, then col2im
                np.dot(w_t.T, dy.T, dcols_t)
                _col2im_t_groups(dcols_t, dx, b0, b1, Hp, KH, geometry)
        else:
            if need_dw:                                          # dW^T += dY^T @ cols
                _im2col_groups(x, cols, b0, b1, Hp, KH, geometry)
                np.dot(dy.T, cols[:rows], dw_tmp)
                _add_to(dw, dw_tmp)
            if need_dx:                                          # dcols = dY @ W^T, then col2im
                np.dot(dy, w_t, dcols[:rows])
                _col2im_groups(dcols, dx, b0, b1, Hp, KH, geometry)


@njit(parallel=True, **KERNEL)
def _backward_parallel(x, w_t, dq, arg, dx, dw, cols, dcols, dy_block, dw_tmp, geometry, window, n_chunks,
                       need_dx, need_dw):
    # dw (T, CO, Kc) and the scratch: one slice per chunk; chunk t takes images [t N / T, (t + 1) N / T)
    N = x.shape[0]
    for t in prange(n_chunks):
        _backward_images(x, w_t, dq, arg, dx, dw[t], cols[t], dcols[t], dy_block[t], dw_tmp[t], geometry, window,
                         t * N // n_chunks, (t + 1) * N // n_chunks, need_dx, need_dw)


# ---- the two forwards, on arrays ---------------------------------------------------------------------------
# A group (a pooled line's conv rows) must fit one block. Up to this many bytes of columns per group
# (4 of convolution's blocks: an L2 cache) the sweep stays in the cache; wider lines are left unfused.
_GROUP_BYTES = 4 * _BLOCK_BYTES


def fuses(w_shape: tuple, dtype, groups: int, out_spatial: tuple, window: tuple) -> bool:
    """Whether ``conv_max_pool`` serves a convolution (kernel ``w_shape``, output ``out_spatial``) pooled
    by windows of ``window`` that tile it: 1-d or 2-d, ``groups == 1``, one pooled line's columns within
    ``_GROUP_BYTES``.

    >>> fuses((3, 3, 32, 64), np.float32, 1, (14, 14), (2, 2)), fuses((3, 64, 64), np.float32, 1, (16000,), (2,))
    (True, False)
    """
    if groups != 1 or len(out_spatial) > 2 or len(window) != len(out_spatial):
        return False
    KH, _ = _window_2d(window)
    Kc = int(np.prod(w_shape[:-1]))
    return KH * out_spatial[-1] * Kc * np.dtype(dtype).itemsize <= _GROUP_BYTES


def _window_2d(window: tuple) -> tuple:
    """``(KH, KW)``: a 1-d pool's windows are one line high."""
    return (1,) * (2 - len(window)) + tuple(window)


def _setup(fn, x, w, strides, padding, dilation, groups, out_spatial, window):
    """x as (N, 1, H, W, C), the geometry, Kc, the pooling window (KH, KW) and rows per block (whole groups);
    a ValueError naming ``fn`` for what the sweep does not serve."""
    if groups != 1 or len(out_spatial) > 2:
        raise ValueError(f"{fn}: 1-d or 2-d convolutions with groups=1 only, got groups={groups} and output "
                         f"{out_spatial}")
    x5, geometry, _, Kc = _shapes(x, w, strides, padding, dilation, 1, out_spatial)
    KH, KW = _window_2d(window)
    L = KH * int(geometry[_OUT, 2])                                         # conv rows per group
    rows = max(L, _block_rows(Kc, x.dtype.itemsize, 1 << 30) // L * L)
    return x5, geometry, Kc, np.array([KH, KW], np.int64), rows


def conv_max_pool(x, w, *, strides, padding, dilation, groups, out_spatial, window, out_shape):
    """``max_pool(conv(x, w))`` for windows that tile the conv output (window = stride, no padding).

    The ``kernels.conv`` parameters, with ``groups == 1``, then the pool's ``window`` (one size per spatial
    axis) and its ``out_shape``. Returns ``(q, arg)`` as ``kernels.max_pool`` does: q (N, *out_shape, C_out),
    arg (N, 1, Hp, Wp, C_out) int32, the conv output position of each maximum.

    >>> x, w = np.ones((1, 4, 4, 1), np.float32), np.ones((3, 3, 1, 1), np.float32)
    >>> geometry = dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, out_spatial=(4, 4))
    >>> q, arg = conv_max_pool(x, w, **geometry, window=(2, 2), out_shape=(2, 2))
    >>> q[0, :, :, 0], arg[0, 0, :, :, 0]                       # each window's 9-tap inner pixel, and where
    (array([[9., 9.],
           [9., 9.]], dtype=float32), array([[ 5,  6],
           [ 9, 10]], dtype=int32))
    """
    x, w = contiguous(x), contiguous(w)
    x5, geometry, Kc, win, R = _setup("conv_max_pool", x, w, strides, padding, dilation, groups, out_spatial, window)
    N, CO = x.shape[0], w.shape[-1]
    Hp, Wp = int(geometry[_OUT, 1]) // int(win[0]), int(geometry[_OUT, 2]) // int(win[1])
    q = np.empty((N, 1, Hp, Wp, CO), dtype=x.dtype)
    arg = np.empty(q.shape, dtype=np.int32)
    if q.size:
        G = N * Hp                                                          # groups: one per pooled line
        T = num_chunks(G * int(win[0]) * int(geometry[_OUT, 2]) * Kc * CO, G, _PARALLEL_MACS)   # multiply-adds
        use_single_threaded_blas()
        cols = scratch("conv.cols", (T, R, Kc), x.dtype)
        y_block = scratch("conv.y_block", (T, R, CO), x.dtype)
        w2 = w.reshape(Kc, CO)
        if T == 1:
            _forward_groups(x5, w2, q, arg, cols[0], y_block[0], geometry, win, 0, G)
        else:
            _forward_parallel(x5, w2, q, arg, cols, y_block, geometry, win, T)
    return q.reshape((N,) + tuple(out_shape) + (CO,)), arg


def conv_max_pool_backward(dq, arg, x, w, *, strides, padding, dilation, groups, out_spatial, window, need_dx,
                           need_dw):
    """``kernels.conv_backward(max_pool_backward(dq, arg), x, w)``: ``(dx, dw)``, None for one not asked for.

    ``dq`` is the gradient of ``conv_max_pool``'s ``q`` and ``arg`` its argmax; the other arguments are its
    own, with ``need_dx`` and ``need_dw`` saying which gradients to make.

    >>> x, w = np.ones((1, 4, 4, 1), np.float32), np.ones((3, 3, 1, 1), np.float32)
    >>> geometry = dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, out_spatial=(4, 4))
    >>> q, arg = conv_max_pool(x, w, **geometry, window=(2, 2), out_shape=(2, 2))
    >>> dx, dw = conv_max_pool_backward(np.ones_like(q), arg, x, w, **geometry, window=(2, 2), need_dx=True,
    ...                                 need_dw=False)
    >>> dx[0, :, :, 0], dw                                       # each pixel: the windows of 4 maxima it is in
    (array([[1., 2., 2., 1.],
           [2., 4., 4., 2.],
           [2., 4., 4., 2.],
           [1., 2., 2., 1.]], dtype=float32), None)
    """
    xa, wa = contiguous(x), contiguous(w)
    x5, geometry, Kc, win, R = _setup("conv_max_pool_backward", xa, wa, strides, padding, dilation, groups,
                                      out_spatial, window)
    N, CO = xa.shape[0], wa.shape[-1]
    dq5 = contiguous(dq).reshape(arg.shape)                                 # (N, 1, Hp, Wp, CO)
    T = num_chunks(dq5.size * int(np.prod(win)) * Kc * (need_dx + need_dw), N, _PARALLEL_MACS)
    dx = (np.empty if dq5.size else np.zeros)(x5.shape if need_dx else (1,) * 5, dtype=xa.dtype)   # kernel zeroes
    dw = np.zeros((T, CO, Kc) if need_dw else (T, 1, 1), dtype=xa.dtype)   # partial dW^T per chunk
    if dq5.size and (need_dx or need_dw):
        w_t = np.ascontiguousarray(wa.reshape(Kc, CO).T)                    # (CO, Kc)
        use_single_threaded_blas()
        cols = scratch("conv.cols", (T, R, Kc), xa.dtype)
        dcols = scratch("conv.dcols", (T, R, Kc), xa.dtype)
        dy_block = scratch("conv.dy_block", (T, R, CO), xa.dtype)
        dw_tmp = scratch("conv.dw_tmp", (T, CO, Kc), xa.dtype)
        args = (x5, w_t, dq5, arg, dx)
        if T == 1:
            _backward_images(*args, dw[0], cols[0], dcols[0], dy_block[0], dw_tmp[0], geometry, win, 0, N,
                             need_dx, need_dw)
        else:
            _backward_parallel(*args, dw, cols, dcols, dy_block, dw_tmp, geometry, win, T, need_dx, need_dw)
    dx_out = dx.reshape(xa.shape) if need_dx else None
    dw_out = None
    if need_dw:
        dw_out = (dw.sum(axis=0) if T > 1 else dw[0]).T.reshape(wa.shape)   # (CO, Kc) -> (Kc, CO) -> w.shape
    return dx_out, dw_out
