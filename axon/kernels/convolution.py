"""Convolution by im2col and col2im, channels-last, for 1, 2 and 3 spatial axes.

The idea (the same in 1-d, 2-d and 3-d): each output position ``o`` looks at a window of the input;
copy that window into one row of a matrix (im2col), and the convolution becomes one matrix product

    cols[r, (k, c)] = x[n, o * stride + k * dilation - pad_lo, c]       r = (n, o), one row per output
    y[r, c_out]     = sum_(k, c) cols[r, (k, c)] w[k, c, c_out]          y = cols @ W

and the backward pass is two more products and the reverse copy (col2im, which adds overlapping
windows back into place):

    dW = cols^T @ dY        dcols = dY @ W^T        dx[n, o * stride + k * dilation - pad_lo, c] += dcols[r, (k, c)]

1-d and 2-d inputs are 3-d inputs with leading spatial axes of size 1, so one set of kernels serves all.

Speed (see ``threads`` and ``workspace``): the full column matrix of a batch is large (27.6 MiB,
28.9 MB, for 128 x 14 x 14 x 32 and a 3x3 kernel: chapter 2, section 2.7), so it is never built. Each
thread takes a contiguous range of output rows and handles it ``R`` rows at a time: im2col into a block
that stays in the L2 cache, then one single-threaded BLAS call (even for one input channel, whose 9-deep
columns a plain loop multiplied 2x slower than OpenBLAS). With few channels per group the block is built
transposed, ``cols_t = cols^T``, which turns im2col into strided runs along a line of outputs. The
backward pass does dW and dx in the same sweep over the blocks, recomputing the columns instead of
keeping them. Groups (``groups == C_in``: depthwise) split the channels; group ``g`` uses input channels
``g*Cg:(g+1)*Cg`` and output channels ``g*COg:(g+1)*COg``.

Primitives (a backend implements both forwards with these signatures):

- ``kernels.conv(x, w, *, strides, padding, dilation, groups, out_spatial) -> y``;
- ``kernels.conv_backward(dy, x, w, *, strides, padding, dilation, groups, out_spatial, need_dx, need_dw)
  -> (dx, dw)`` (``None`` for a gradient not asked for; never differentiated).

Grad of grad (``backward(create_graph=True)``): the VJP is then built from ``kernels.conv`` itself, so
it differentiates again, to any order, on every backend. Per spatial axis (stride s, dilation d,
padding lo, kernel size K, input size I, output size O):

    dx = conv(dilate(dy, s), flip(w)^T, stride 1, dilation d, padding ((K-1)d - lo, I - (O-1)s - 1 + lo))
    dw = conv(x^T, dy^T, stride d, dilation s, padding (lo, (K-1)d + (O-1)s + 1 - I - lo))

The first is the transposed convolution (``flip(w)^T``: the kernel reversed along each spatial axis,
its channel axes swapped within each group). The second swaps the roles of the batch and the
channels: ``x^T`` (Cg, *I, G N) is x's channels as the batch and its images as the channels, ``dy^T``
(*O, N, C_out) is the kernel; its output (Cg, *K, C_out) is ``dw`` with the axes moved. A negative
padding crops the input instead.

>>> import numpy as np
>>> x = np.arange(5.0).reshape(1, 5, 1)                       # (N, W, C): one signal 0..4
>>> w = np.ones((2, 1, 1))                                     # (KW, C_in, C_out): sums pairs
>>> conv(x, w, strides=(1,), padding=((0, 0),), dilation=(1,)).numpy().ravel()
array([1., 3., 5., 7.])
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..autograd import apply, getitem, is_grad_enabled, primitive, reshape, scatter_add, transpose
from ._common import (KERNEL, check_same_dtype, contiguous, float_tensor, int_tuple, num_chunks, out_sizes,
                      padding_pairs, same_dtype, to_3d)
from .threads import use_single_threaded_blas
from .workspace import scratch

__all__ = ["conv", "dilate"]

# Column blocks up to this many bytes (half of a 512 KB L2 cache), and between these many rows.
_BLOCK_BYTES = 1 << 18
_MIN_ROWS, _MAX_ROWS = 32, 1024
# Convolutions of fewer multiply-adds than this run on one thread (no parallel region to start).
_PARALLEL_MACS = 1 << 23
# With at least this many channels per group, im2col copies a kernel row's window (KW, C) as one run
# (2.5x faster for 3x3 x 32 channels). With fewer (the input layer's 1 or 3, depthwise's 1) it builds
# the columns transposed, (Kc, R): a line of outputs then reads x at a fixed stride (3x faster for one
# channel), and BLAS reads the transpose in place.
_SPAN_MIN_CHANNELS = 8


# ---- the two copies: window -> row (im2col), row -> window (col2im) ---------------------------------------
# The geometry travels as one int64 array (5, 3) (parallel kernels take arrays, not nested tuples):
# one row per quantity, one column per spatial axis (d, h, w).
_OUT, _STRIDE, _DILATION, _PAD, _KERNEL = range(5)


@njit(**KERNEL)
def _transposed_columns(Kc, geometry):
    # whether the column blocks of a Kc-wide window are built transposed: fewer than _SPAN_MIN_CHANNELS
    # channels per group (Kc / the kernel's positions)
    return Kc // (geometry[_KERNEL, 0] * geometry[_KERNEL, 1] * geometry[_KERNEL, 2]) < _SPAN_MIN_CHANNELS


@njit(**KERNEL)
def _unravel(r, geometry):
    # output row r = ((n * Do + od) * Ho + oh) * Wo + ow  ->  (n, od, oh, ow)
    Do, Ho, Wo = geometry[_OUT, 0], geometry[_OUT, 1], geometry[_OUT, 2]
    return r // (Wo * Ho * Do), (r // (Wo * Ho)) % Do, (r // Wo) % Ho, r % Wo


@njit(**KERNEL)
def _next_position(n, od, oh, ow, geometry):
    # the output position of row r + 1, from that of row r: count like an odometer (no divisions)
    Do, Ho, Wo = geometry[_OUT, 0], geometry[_OUT, 1], geometry[_OUT, 2]
    ow += 1
    if ow == Wo:
        ow, oh = 0, oh + 1
        if oh == Ho:
            oh, od = 0, od + 1
            if od == Do:
                od, n = 0, n + 1
    return n, od, oh, ow


@njit(**KERNEL)
def _im2col_block(x, cols, r0, r1, g, geometry):
    # x (N, D, H, W, C); cols (>= r1 - r0, KD*KH*KW*Cg): row r - r0 <- the window of output row r
    N, D, H, W, C = x.shape
    strides, dilation, pad_lo = geometry[_STRIDE], geometry[_DILATION], geometry[_PAD]
    KD, KH, KW = geometry[_KERNEL, 0], geometry[_KERNEL, 1], geometry[_KERNEL, 2]
    Cg = cols.shape[1] // (KD * KH * KW)
    c0 = g * Cg                                                  # first input channel of group g
    span = KW * Cg                                               # one kernel row of the window, (KW, Cg)
    spans_contiguous = Cg == C and dilation[2] == 1 and Cg >= _SPAN_MIN_CHANNELS
    x_flat = x.reshape(x.size)            # a view, made once (a view per window row cost 4x the copying)
    n, od, oh, ow = _unravel(r0, geometry)
    for r in range(r0, r1):
        row = cols[r - r0]
        i_w0 = ow * strides[2] - pad_lo[2]
        whole_span = spans_contiguous and i_w0 >= 0 and i_w0 + KW <= W   # x[n, d, h, i_w0:i_w0+KW, :] is one run
        for kd in range(KD):
            i_d = od * strides[0] + kd * dilation[0] - pad_lo[0]
            for kh in range(KH):
                i_h = oh * strides[1] + kh * dilation[1] - pad_lo[1]
                base = (kd * KH + kh) * span
                dst = row[base:base + span]                      # (KW * Cg,): one kernel row of the window
                if not (0 <= i_d < D and 0 <= i_h < H):          # the whole kernel row is padding
                    for j in range(span):
                        dst[j] = 0
                elif whole_span:                                 # one contiguous copy of KW * C values
                    at = (((n * D + i_d) * H + i_h) * W + i_w0) * C       # x[n, i_d, i_h, i_w0, 0] in x_flat
                    src = x_flat[at:at + span]
                    for j in range(span):
                        dst[j] = src[j]
                else:
                    for kw in range(KW):
                        i_w = i_w0 + kw * dilation[2]
                        d = dst[kw * Cg:(kw + 1) * Cg]
                        if 0 <= i_w < W:
                            src = x[n, i_d, i_h, i_w, c0:c0 + Cg]
                            for c in range(Cg):
                                d[c] = src[c]
                        else:                                    # padding reads zeros
                            for c in range(Cg):
                                d[c] = 0
        n, od, oh, ow = _next_position(n, od, oh, ow, geometry)


@njit(**KERNEL)
def _col2im_block(dcols, dx, r0, r1, g, geometry):
    # dcols (>= r1 - r0, KD*KH*KW*Cg); dx (N, D, H, W, C): the window of output row r += row r - r0
    N, D, H, W, C = dx.shape
    strides, dilation, pad_lo = geometry[_STRIDE], geometry[_DILATION], geometry[_PAD]
    KD, KH, KW = geometry[_KERNEL, 0], geometry[_KERNEL, 1], geometry[_KERNEL, 2]
    Cg = dcols.shape[1] // (KD * KH * KW)
    c0 = g * Cg
    span = KW * Cg
    spans_contiguous = Cg == C and dilation[2] == 1 and Cg >= _SPAN_MIN_CHANNELS
    dx_flat = dx.reshape(dx.size)                                # a view: writes land in dx
    n, od, oh, ow = _unravel(r0, geometry)
    for r in range(r0, r1):
        row = dcols[r - r0]
        i_w0 = ow * strides[2] - pad_lo[2]
        whole_span = spans_contiguous and i_w0 >= 0 and i_w0 + KW <= W
        for kd in range(KD):
            i_d = od * strides[0] + kd * dilation[0] - pad_lo[0]
            for kh in range(KH):
                i_h = oh * strides[1] + kh * dilation[1] - pad_lo[1]
                base = (kd * KH + kh) * span
                if not (0 <= i_d < D and 0 <= i_h < H):          # padding's gradient is dropped
                    continue
                src = row[base:base + span]
                if whole_span:
                    at = (((n * D + i_d) * H + i_h) * W + i_w0) * C
                    dst = dx_flat[at:at + span]                  # a view: adds into dx
                    for j in range(span):
                        dst[j] += src[j]
                else:
                    for kw in range(KW):
                        i_w = i_w0 + kw * dilation[2]
                        if 0 <= i_w < W:
                            s, d = src[kw * Cg:(kw + 1) * Cg], dx[n, i_d, i_h, i_w, c0:c0 + Cg]
                            for c in range(Cg):
                                d[c] += s[c]
        n, od, oh, ow = _next_position(n, od, oh, ow, geometry)


@njit(**KERNEL)
def _valid_run(first, step, run, size):
    # the outputs t in [0, run) whose input index first + t * step lies in [0, size): [t_lo, t_hi)
    t_lo = 0 if first >= 0 else min(run, (step - 1 - first) // step)
    t_hi = min(run, max(t_lo, (size - first + step - 1) // step))
    return t_lo, t_hi


@njit(**KERNEL)
def _im2col_t_block(x, cols_t, r0, r1, g, geometry):
    # x (N, D, H, W, C); cols_t (KD*KH*KW*Cg, r1 - r0): column r - r0 <- the window of output row r.
    # The transposed layout, for few channels per group (one, for the input layer): along a line of
    # outputs, each (kernel position, channel) reads x at a fixed stride: contiguous for stride 1, one channel.
    N, D, H, W, C = x.shape
    Wo = geometry[_OUT, 2]
    strides, dilation, pad_lo = geometry[_STRIDE], geometry[_DILATION], geometry[_PAD]
    KD, KH, KW = geometry[_KERNEL, 0], geometry[_KERNEL, 1], geometry[_KERNEL, 2]
    Cg = cols_t.shape[0] // (KD * KH * KW)
    c0 = g * Cg
    j = 0
    while j < r1 - r0:
        n, od, oh, ow = _unravel(r0 + j, geometry)
        run = min(Wo - ow, r1 - r0 - j)                          # outputs ow .. ow + run - 1 of one line
        for kd in range(KD):
            i_d = od * strides[0] + kd * dilation[0] - pad_lo[0]
            for kh in range(KH):
                i_h = oh * strides[1] + kh * dilation[1] - pad_lo[1]
                for kw in range(KW):
                    first = ow * strides[2] + kw * dilation[2] - pad_lo[2]    # input column of output ow
                    t_lo, t_hi = _valid_run(first, strides[2], run, W)
                    if not (0 <= i_d < D and 0 <= i_h < H):
                        t_lo = t_hi = 0
                    for c in range(Cg):
                        dst = cols_t[((kd * KH + kh) * KW + kw) * Cg + c, j:j + run]   # this line's outputs
                        for t in range(t_lo):                            # padding reads zeros
                            dst[t] = 0
                        if t_hi > t_lo:                                  # x along the line, at the stride
                            src = x[n, i_d, i_h, first + t_lo * strides[2]:, c0 + c]
                            d = dst[t_lo:t_hi]
                            for t in range(t_hi - t_lo):
                                d[t] = src[t * strides[2]]
                        d = dst[max(t_lo, t_hi):]
                        for t in range(d.shape[0]):
                            d[t] = 0
        j += run


@njit(**KERNEL)
def _col2im_t_block(dcols_t, dx, r0, r1, g, geometry):
    # dcols_t (KD*KH*KW*Cg, r1 - r0); dx (N, D, H, W, C): the window of output row r += column r - r0
    N, D, H, W, C = dx.shape
    Wo = geometry[_OUT, 2]
    strides, dilation, pad_lo = geometry[_STRIDE], geometry[_DILATION], geometry[_PAD]
    KD, KH, KW = geometry[_KERNEL, 0], geometry[_KERNEL, 1], geometry[_KERNEL, 2]
    Cg = dcols_t.shape[0] // (KD * KH * KW)
    c0 = g * Cg
    j = 0
    while j < r1 - r0:
        n, od, oh, ow = _unravel(r0 + j, geometry)
        run = min(Wo - ow, r1 - r0 - j)
        for kd in range(KD):
            i_d = od * strides[0] + kd * dilation[0] - pad_lo[0]
            for kh in range(KH):
                i_h = oh * strides[1] + kh * dilation[1] - pad_lo[1]
                if not (0 <= i_d < D and 0 <= i_h < H):          # padding's gradient is dropped
                    continue
                for kw in range(KW):
                    first = ow * strides[2] + kw * dilation[2] - pad_lo[2]
                    t_lo, t_hi = _valid_run(first, strides[2], run, W)
                    if t_hi <= t_lo:
                        continue
                    for c in range(Cg):
                        s = dcols_t[((kd * KH + kh) * KW + kw) * Cg + c, j + t_lo:j + t_hi]
                        d = dx[n, i_d, i_h, first + t_lo * strides[2]:, c0 + c]
                        for t in range(t_hi - t_lo):
                            d[t * strides[2]] += s[t]
        j += run


# ---- small copies, as loops: array-to-array operators (``a += b``, ``a[:, j:k] = b``) would compile their
# shape-error messages, seconds of compile time each --------------------------------------------------------
@njit(**KERNEL)
def _add_to(out, tmp):
    # out, tmp (K, N): out += tmp
    for k in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[k, j] += tmp[k, j]


@njit(**KERNEL)
def _copy_columns(src, c0, dst, d0, rows, width):
    # dst[:rows, d0:d0 + width] = src[:rows, c0:c0 + width]
    for r in range(rows):
        for j in range(width):
            dst[r, d0 + j] = src[r, c0 + j]


# ---- forward and backward sweeps: one thread's share of the rows, and the driver that splits them ---------
@njit(**KERNEL)
def _forward_rows(x, w, y, cols, y_block, geometry, start, stop):
    # x (N, D, H, W, C); w (G, Kc, COg); y (M, G*COg), M = N*Do*Ho*Wo; this thread's scratch:
    # cols (R, Kc), y_block (R, COg). Computes output rows [start, stop), R rows at a time.
    G, Kc, COg = w.shape
    R = cols.shape[0]
    transposed = _transposed_columns(Kc, geometry)
    for r0 in range(start, stop, R):
        r1 = min(r0 + R, stop)
        rows = r1 - r0
        out = y[r0:r1] if G == 1 else y_block[:rows]                                # (rows, COg)
        for g in range(G):
            if transposed:                                                          # out = cols_t^T @ W
                cols_t = cols.ravel()[:Kc * rows].reshape((Kc, rows))
                _im2col_t_block(x, cols_t, r0, r1, g, geometry)
                np.dot(cols_t.T, w[g], out)
            else:                                                                   # out = cols @ W
                _im2col_block(x, cols, r0, r1, g, geometry)
                np.dot(cols[:rows], w[g], out)
            if G > 1:
                _copy_columns(out, 0, y[r0:r1], g * COg, rows, COg)                # group g's output channels


@njit(parallel=True, **KERNEL)
def _forward_parallel(x, w, y, cols, y_block, geometry, n_chunks):
    # cols (T, R, Kc), y_block (T, R, COg): chunk t's scratch; chunk t computes rows [t M / T, (t + 1) M / T)
    M = y.shape[0]
    for t in prange(n_chunks):
        _forward_rows(x, w, y, cols[t], y_block[t], geometry, t * M // n_chunks, (t + 1) * M // n_chunks)


@njit(**KERNEL)
def _backward_images(x, w_t, dy, dx, dw, cols, dcols, dy_block, dw_tmp, geometry, n0, n1, need_dx, need_dw):
    # x (N, D, H, W, C); w_t (G, COg, Kc); dy (M, G*COg); dx (N, D, H, W, C); this thread's share:
    # images [n0, n1), its partial dw_t (G, COg, Kc) zeroed and scratch cols, dcols (R, Kc), dy_block (R, COg),
    # dw_tmp (COg, Kc). Whole images, so the windows it adds into dx are its own. The weight gradient is
    # accumulated transposed, dW^T += dY^T @ cols: OpenBLAS runs that shape 10% faster than cols^T @ dY.
    P = dy.shape[0] // x.shape[0]                                # output rows per image
    G, COg, Kc = w_t.shape
    R = cols.shape[0]
    transposed = _transposed_columns(Kc, geometry)
    if need_dx:
        dx[n0:n1] = 0                                            # zeroed here: in parallel, not by np.zeros
    for r0 in range(n0 * P, n1 * P, R):
        r1 = min(r0 + R, n1 * P)
        rows = r1 - r0
        for g in range(G):
            if G == 1:
                dy_g = dy[r0:r1]                                                   # (rows, CO)
            else:
                _copy_columns(dy[r0:r1], g * COg, dy_block, 0, rows, COg)
                dy_g = dy_block[:rows]
            if transposed:
                cols_t = cols.ravel()[:Kc * rows].reshape((Kc, rows))
                dcols_t = dcols.ravel()[:Kc * rows].reshape((Kc, rows))
                if need_dw:                                                        # dW^T += dY^T @ cols_t^T
                    _im2col_t_block(x, cols_t, r0, r1, g, geometry)
                    np.dot(dy_g.T, cols_t.T, dw_tmp)
                    _add_to(dw[g], dw_tmp)
                if need_dx:                                                        # dcols_t = W @ dY^T
                    np.dot(w_t[g].T, dy_g.T, dcols_t)
                    _col2im_t_block(dcols_t, dx, r0, r1, g, geometry)
            else:
                if need_dw:                                                        # dW^T += dY^T @ cols
                    _im2col_block(x, cols, r0, r1, g, geometry)
                    np.dot(dy_g.T, cols[:rows], dw_tmp)
                    _add_to(dw[g], dw_tmp)
                if need_dx:                                                        # dcols = dY @ W^T
                    np.dot(dy_g, w_t[g], dcols[:rows])
                    _col2im_block(dcols, dx, r0, r1, g, geometry)


@njit(parallel=True, **KERNEL)
def _backward_parallel(x, w_t, dy, dx, dw, cols, dcols, dy_block, dw_tmp, geometry, n_chunks, need_dx, need_dw):
    # dw (T, G, COg, Kc) and the scratch: one slice per chunk; chunk t takes images [t N / T, (t + 1) N / T)
    N = x.shape[0]
    for t in prange(n_chunks):
        _backward_images(x, w_t, dy, dx, dw[t], cols[t], dcols[t], dy_block[t], dw_tmp[t], geometry,
                         t * N // n_chunks, (t + 1) * N // n_chunks, need_dx, need_dw)


# ---- the primitive -----------------------------------------------------------------------------------------
def _block_rows(Kc: int, itemsize: int, M: int) -> int:
    """Rows per column block: a block of about ``_BLOCK_BYTES``, at most the rows there are."""
    return max(1, min(M, max(_MIN_ROWS, min(_MAX_ROWS, _BLOCK_BYTES // max(Kc * itemsize, 1)))))


def _shapes(x, w, strides, padding, dilation, groups, out_spatial):
    """Everything as 3-d: x5 (N, D, H, W, C), the geometry array the kernels take, COg, Kc."""
    n_sp = x.ndim - 2
    x5 = x.reshape((x.shape[0],) + (1,) * (3 - n_sp) + x.shape[1:])       # (N, *spatial, C) -> (N, D, H, W, C)
    k_shape = to_3d(w.shape[:n_sp], 1)
    geometry = np.array([to_3d(out_spatial, 1), to_3d(strides, 1), to_3d(dilation, 1),   # (5, 3): see _OUT
                         to_3d(tuple(lo for lo, _ in padding), 0), k_shape], dtype=np.int64)
    return x5, geometry, w.shape[-1] // groups, w.shape[-2] * int(np.prod(k_shape))


def _conv_forward(x, w, strides, padding, dilation, groups, out_spatial):
    x, w = contiguous(x), contiguous(w)
    x5, geometry, COg, Kc = _shapes(x, w, strides, padding, dilation, groups, out_spatial)
    M = x.shape[0] * int(np.prod(out_spatial))                                # output rows
    y = np.empty((M, w.shape[-1]), dtype=x.dtype)                               # (N*Do*Ho*Wo, C_out)
    if M > 0:
        w_g = w.reshape(Kc, groups, COg).transpose(1, 0, 2).copy()              # (*k, Cg, CO) -> (G, Kc, COg)
        T = num_chunks(M * Kc * w.shape[-1], M, _PARALLEL_MACS)               # small convolutions: 1
        R = _block_rows(Kc, x.dtype.itemsize, -(-M // T))
        use_single_threaded_blas()
        cols = scratch("conv.cols", (T, R, Kc), x.dtype)
        y_block = scratch("conv.y_block", (T, R, COg), x.dtype)
        if T == 1:
            _forward_rows(x5, w_g, y, cols[0], y_block[0], geometry, 0, M)
        else:
            _forward_parallel(x5, w_g, y, cols, y_block, geometry, T)
    return y.reshape((x.shape[0],) + tuple(out_spatial) + (w.shape[-1],))


def _conv_backward(dy, x, w, strides, padding, dilation, groups, out_spatial, need_dx, need_dw):
    """``(dx, dw)`` on arrays, in one sweep over the column blocks (``None`` for one not asked for)."""
    xa, wa = contiguous(x), contiguous(w)
    x5, geometry, COg, Kc = _shapes(xa, wa, strides, padding, dilation, groups, out_spatial)
    N = xa.shape[0]
    M = N * int(np.prod(out_spatial))                                           # output rows, as the forward
    dy2 = contiguous(dy).reshape(M, w.shape[-1])                                # (N, *out, CO) -> (M, CO)
    T = num_chunks(M * Kc * w.shape[-1] * (need_dx + need_dw), N, _PARALLEL_MACS)
    dx = np.empty(x5.shape if need_dx else (1,) * 5, dtype=xa.dtype)          # the kernel zeroes it
    dw = np.zeros((T, groups, COg, Kc) if need_dw else (T, 1, 1, 1), dtype=xa.dtype)   # partial dW^T per chunk
    if M > 0 and (need_dx or need_dw):
        w_t = wa.reshape(Kc, groups, COg).transpose(1, 2, 0).copy()             # (*k, Cg, CO) -> (G, COg, Kc)
        R = _block_rows(Kc, xa.dtype.itemsize, M // N)
        use_single_threaded_blas()
        cols = scratch("conv.cols", (T, R, Kc), xa.dtype)
        dcols = scratch("conv.dcols", (T, R, Kc), xa.dtype)
        dy_block = scratch("conv.dy_block", (T, R, COg), xa.dtype)
        dw_tmp = scratch("conv.dw_tmp", (T, COg, Kc), xa.dtype)
        if T == 1:                                                              # (the serial body takes chunk 0)
            _backward_images(x5, w_t, dy2, dx, dw[0], cols[0], dcols[0], dy_block[0], dw_tmp[0], geometry,
                             0, N, need_dx, need_dw)
        else:
            _backward_parallel(x5, w_t, dy2, dx, dw, cols, dcols, dy_block, dw_tmp, geometry, T, need_dx, need_dw)
    dx_out = dx.reshape(xa.shape) if need_dx else None
    dw_out = None
    if need_dw:
        dw_sum = dw.sum(axis=0) if T > 1 else dw[0]                              # (G, COg, Kc)
        dw_out = dw_sum.transpose(2, 0, 1).reshape(wa.shape)                     # -> (Kc, G, COg) -> w.shape
    return dx_out, dw_out


# ---- the VJP as convolutions, for grad of grad -------------------------------------------------------------
def dilate(x, factors):
    """Insert ``d - 1`` zeros between neighbours on each spatial axis: (N, *S, C) -> (N, *((S - 1) d + 1), C).

    A strided scatter into zeros (differentiable: its gradient is the strided slice back).

    >>> import numpy as np
    >>> dilate(np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1), (2,)).numpy().ravel()
    array([1., 0., 2., 0., 3.])
    """
    index = (slice(None),) + tuple(slice(None, None, d) for d in factors) + (slice(None),)
    shape = (x.shape[0],) + tuple((s - 1) * d + 1 for s, d in zip(x.shape[1:-1], factors)) + (x.shape[-1],)
    return scatter_add(x, index, shape)


def _conv_pad_or_crop(x, pairs):
    """``conv`` of ``x`` with (lo, hi) pairs that may be negative: crop those sides, pad the others."""
    crop = (slice(None),) + tuple(slice(max(-lo, 0), s - max(-hi, 0)) for (lo, hi), s in zip(pairs, x.shape[1:-1]))
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        x = getitem(x, crop + (slice(None),))
    return x, tuple((max(lo, 0), max(hi, 0)) for lo, hi in pairs)


def _conv_of(x, w, pairs, **geometry):
    x, padding = _conv_pad_or_crop(x, pairs)
    return apply(_conv, x, w, padding=padding, **geometry)


def _conv_vjp_ops(dy, x, w, strides, padding, dilation, groups, out_spatial):
    """``(dx, dw)`` as two convolutions (see the module docstring): recorded, so differentiable again."""
    n = x.ndim - 2
    sp = tuple(range(n))                                                        # the spatial axes of w
    I, K, O = x.shape[1:-1], w.shape[:n], tuple(out_spatial)
    G, Cg, CO = groups, w.shape[-2], w.shape[-1]
    N = x.shape[0]
    dx = dw = None
    if x.requires_grad:
        w_t = reshape(w, K + (Cg, G, CO // G))                                  # (*K, Cg, CO) -> (*K, Cg, G, COg)
        w_t = transpose(w_t, sp + (n + 2, n + 1, n))                            # -> (*K, COg, G, Cg)
        w_t = reshape(w_t, K + (CO // G, G * Cg))                               # -> (*K, COg, C_in)
        w_t = getitem(w_t, (slice(None, None, -1),) * n)                        # each kernel axis reversed
        pairs = tuple(((k - 1) * d - lo, i - (o - 1) * s - 1 + lo)
                      for k, d, (lo, _), i, o, s in zip(K, dilation, padding, I, O, strides))
        dy_d = dilate(dy, strides) if any(s > 1 for s in strides) else dy       # (N, *((O-1)s+1), CO)
        dx = _conv_of(dy_d, w_t, pairs, strides=(1,) * n, dilation=dilation, groups=G,
                      out_spatial=I)                                            # (N, *I, C_in)
    if w.requires_grad:
        x_t = reshape(x, (N,) + I + (G, Cg))                                    # (N, *I, C_in) -> (N, *I, G, Cg)
        x_t = reshape(transpose(x_t, (n + 2,) + tuple(range(1, n + 1)) + (n + 1, 0)), (Cg,) + I + (G * N,))
        dy_t = transpose(dy, tuple(range(1, n + 1)) + (0, n + 1))               # (N, *O, CO) -> (*O, N, CO)
        pairs = tuple((lo, (k - 1) * d + (o - 1) * s + 1 - i - lo)
                      for k, d, (lo, _), i, o, s in zip(K, dilation, padding, I, O, strides))
        dw_t = _conv_of(x_t, dy_t, pairs, strides=dilation, dilation=strides, groups=G, out_spatial=K)
        dw = transpose(dw_t, tuple(range(1, n + 1)) + (0, n + 1))               # (Cg, *K, CO) -> (*K, Cg, CO)
    return dx, dw


def _conv_vjp(dy, y, x, w, **geometry):
    # (an empty dy or x: the gradients are zeros whatever the inputs, so the kernel's constants serve both)
    if is_grad_enabled() and dy.size and x.size:   # backward(create_graph=True): convolutions, recorded
        return _conv_vjp_ops(same_dtype(dy, x), x, w, **geometry)
    return apply(_conv_backward_prim, same_dtype(dy, x), x, w, need_dx=x.requires_grad, need_dw=w.requires_grad, **geometry)


_conv_backward_prim = primitive("kernels.conv_backward", _conv_backward)
_conv = primitive("kernels.conv", _conv_forward, _conv_vjp)


def conv(x, w, strides, padding, dilation, groups=1):
    """N-d convolution (cross-correlation), channels-last: ``y[n, o, co] = sum_(k, c) x[n, o s + k d - lo, c] w[k, c, co]``.

    ``x``: (N, *spatial, C_in) with 1, 2 or 3 spatial axes; ``w``: (*kernel, C_in // groups, C_out);
    ``strides`` and ``dilation`` (of the kernel): one int per spatial axis; ``padding``: one ``(lo, hi)``
    pair per spatial axis (zeros). Returns (N, *out, C_out) with ``out = (n + lo + hi - (k - 1) d - 1) // s + 1``.
    ``groups`` splits the channels into independent convolutions (``groups == C_in``: depthwise).
    Differentiable w.r.t. ``x`` and ``w``; float32 stays float32. Equals ``torch.nn.functional.conv2d``
    with x permuted to (N, C, H, W) and w to (C_out, C_in // groups, KH, KW).

    >>> import numpy as np
    >>> x = np.ones((1, 4, 4, 3), np.float32)                   # one 4x4 image, 3 channels
    >>> w = np.ones((3, 3, 3, 8), np.float32)                   # 3x3 kernel, 3 -> 8 channels
    >>> y = conv(x, w, strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))
    >>> y.shape, y.dtype, float(y.numpy()[0, 1, 1, 0])           # an inner pixel sums 3*3*3 ones
    ((1, 4, 4, 8), dtype('float32'), 27.0)
    """
    x, w = float_tensor("conv", "x", x), float_tensor("conv", "w", w)
    check_same_dtype("conv", x=x, w=w)
    detail = f"input shape {x.shape}, kernel shape {w.shape}"
    if not 3 <= x.ndim <= 5:
        raise ValueError(f"conv: x must be (N, *spatial, C) with 1 to 3 spatial axes, got shape {x.shape}")
    n_sp = x.ndim - 2
    if w.ndim != x.ndim:
        raise ValueError(f"conv: a {n_sp}-d input needs a kernel (*{n_sp} sizes, C_in // groups, C_out), "
                         f"got {detail}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv: groups must be a positive int, got {groups!r}")
    c_in, (cg, c_out) = x.shape[-1], w.shape[-2:]
    if c_in % groups or c_out % groups:
        raise ValueError(f"conv: groups={groups} must divide the input channels ({c_in}) and the output "
                         f"channels ({c_out}) ({detail})")
    if cg * groups != c_in:
        raise ValueError(f"conv: kernel expects {cg * groups} input channels, input has {c_in} ({detail})")
    strides = int_tuple("conv", "strides", strides, n_sp)
    dilation = int_tuple("conv", "dilation", dilation, n_sp)
    padding = padding_pairs("conv", padding, n_sp)
    windows = tuple((k - 1) * d + 1 for k, d in zip(w.shape[:n_sp], dilation))
    if 0 in w.shape[:n_sp]:
        raise ValueError(f"conv: kernel has an empty spatial axis ({detail})")
    out_spatial = out_sizes("conv", x.shape[1:-1], windows, strides, padding, detail)
    return apply(_conv, x, w, strides=strides, padding=padding, dilation=dilation, groups=int(groups),
                 out_spatial=out_spatial)
