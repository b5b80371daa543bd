"""The fused kernels of ``axon.kernels`` on the GPU: the same primitives, the same arguments.

The public wrappers (``axon.kernels.conv``, ``softmax``, ...) check shapes and dtypes before ``apply``,
once, for both backends; the forwards here receive checked device arrays (and the host-side settings
the wrappers computed: pooling bins, batch-norm statistics, labels) and only launch.

- ``kernels.conv``: im2col on the device, one column matrix ``(G, M, Kc)`` for all groups, then the
  tiled matmul with the groups as its batch, written straight into the channels of ``y``;
- ``kernels.max_pool`` / ``kernels.sum_pool``: one thread per output element walks its box (the bins);
- ``kernels.softmax`` / ``kernels.logsumexp`` / ``kernels.softmax_cross_entropy``: one block per row,
  the row's max and its sum of exponentials by shared-memory trees (``factories.block_fold``);
- ``kernels.batch_norm_train``, ``kernels.bias_relu``: one pass per element;
- ``kernels.reduce_sum`` is the ``sum`` reduction; ``kernels.take_along_axis`` a gather;
- ``random.keep_mask`` (``keep_mask``): dropout's mask drawn on the device (``numba.cuda.random``'s
  xoroshiro128+, seeded from the key input on the device).

>>> import numpy as np
>>> from axon import kernels
>>> from axon.cuda._runtime import from_host
>>> x = from_host(np.array([[0.0, np.log(3.0)]], np.float32))
>>> kernels.softmax(x).numpy().round(4)
array([[0.25, 0.75]], dtype=float32)
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
from numba import float64, uint64
from numba.cuda.random import init_xoroshiro128p_state, xoroshiro128p_dtype, xoroshiro128p_uniform_float32

from ..autograd.engine import PRIMITIVES, implement
from ..functional import metrics as _metrics  # noqa: F401  (defines the primitive metrics.counts)
from ..random import _salt_int
from ._runtime import (REDUCE_THREADS, constant, contiguous_strides, cuda, empty, from_host, full, launch_1d,
                       nb_type, position, view)
from .factories import block_fold, cuda_zip, row_blocks, split_rows
from .matmul import launch_matmul

__all__ = ["keep_mask", "FORWARDS"]

T = REDUCE_THREADS
_SOFTMAX, _LOG_SOFTMAX, _LOGSUMEXP = 0, 1, 2                      # as axon.kernels.softmax


@cuda.jit(device=True)
def _add(a, b):
    return a + b


@cuda.jit(device=True)
def _max2(a, b):
    return a if a > b or a != a else b


_fold_sum, _fold_max = block_fold(_add), block_fold(_max2)


# ---- convolution: im2col on the device, then the tiled matmul ------------------------------------------
@cuda.jit(device=True)
def window_index(e, geo, Cg, Kc, M):
    """Entry e of the column matrix (G, M, Kc): its image n, group g, channel c and input position (i_d, i_h, i_w).

    q = ((kd*KH + kh)*KW + kw)*Cg + c (the layout of w (KD, KH, KW, Cg, CO)), r = ((n*Do + od)*Ho + oh)*Wo + ow;
    the input position may lie in the padding (outside [0, D) x [0, H) x [0, W)).
    """
    D, H, W, C, Do, Ho, Wo, KD, KH, KW, sd, sh, sw, dd, dh, dw, pd, ph, pw = geo
    q, r, g = e % Kc, (e // Kc) % M, e // (Kc * M)
    c, kw, kh, kd = q % Cg, (q // Cg) % KW, (q // (Cg * KW)) % KH, q // (Cg * KW * KH)
    ow, oh, od, n = r % Wo, (r // Wo) % Ho, (r // (Wo * Ho)) % Do, r // (Wo * Ho * Do)
    return n, g, c, od * sd + kd * dd - pd, oh * sh + kh * dh - ph, ow * sw + kw * dw - pw


@cuda.jit
def _im2col_kernel(cols, x, geo, Cg, Kc, M):
    # cols (G*M*Kc,): cols[g, r, q] = x[n, od*s - lo + kd*dil, ..., g*Cg + c] (0 in the padding)
    D, H, W, C = geo[0], geo[1], geo[2], geo[3]
    for e in range(cuda.grid(1), cols.shape[0], cuda.gridsize(1)):
        n, g, c, i_d, i_h, i_w = window_index(e, geo, Cg, Kc, M)
        v = x[0] * 0
        if 0 <= i_d < D and 0 <= i_h < H and 0 <= i_w < W:
            v = x[(((n * D + i_d) * H + i_h) * W + i_w) * C + g * Cg + c]
        cols[e] = v


def _conv_geometry(x, w, strides, padding, dilation, groups, out_spatial):
    """The 3-d geometry tuple the kernels take, and (M, Kc, COg)."""
    n_sp = x.ndim - 2
    pad3 = lambda t, fill: (fill,) * (3 - n_sp) + tuple(t)    # noqa: E731  (a 2-d conv is 3-d of depth 1)
    spatial, out3, k3 = pad3(x.shape[1:-1], 1), pad3(out_spatial, 1), pad3(w.shape[:n_sp], 1)
    geo = (*spatial, x.shape[-1], *out3, *k3, *pad3(strides, 1), *pad3(dilation, 1),
           *pad3(tuple(lo for lo, _ in padding), 0))
    M = x.shape[0] * int(np.prod(out_spatial))
    Kc = int(np.prod(k3)) * w.shape[-2]
    return tuple(int(v) for v in geo), M, Kc, w.shape[-1] // groups


def _im2col(x, geo, groups, Cg, Kc, M):
    cols = empty((groups * M * Kc,), x.dtype)                              # (G, M, Kc) flat
    xs, _, _ = view(x)
    _im2col_kernel[launch_1d(cols.size)](cols, xs, geo, Cg, Kc, M)
    return cols


def _conv_forward(x, w, strides, padding, dilation, groups, out_spatial):
    geo, M, Kc, COg = _conv_geometry(x, w, strides, padding, dilation, groups, out_spatial)
    CO = w.shape[-1]
    y = empty((M, CO), x.dtype)                                            # (N*Do*Ho*Wo, C_out)
    if M and Kc:
        cols = _im2col(x, geo, groups, w.shape[-2], Kc, M)
        ws, _, _ = view(w)                                                 # (Kc, CO): group g = columns g*COg..
        # y[:, g*COg:(g+1)*COg] = cols[g] @ w[:, g*COg:(g+1)*COg], for every g at once (the batch)
        launch_matmul(y.reshape(y.size), COg, CO, (cols, 0, (M * Kc,), Kc, 1), (ws, 0, (COg,), CO, 1),
                      M, COg, Kc, groups, (groups,))
    return y.reshape((x.shape[0],) + tuple(out_spatial) + (CO,))


# ---- pooling: one thread per output element walks its box ---------------------------------------------
@cuda.jit(device=True)
def pool_index(e, Do, Ho, Wo, C):
    """(n, od, oh, ow, c) of element e of a C-contiguous (N, Do, Ho, Wo, C) array."""
    return e // (C * Wo * Ho * Do), (e // (C * Wo * Ho)) % Do, (e // (C * Wo)) % Ho, (e // C) % Wo, e % C


@cuda.jit
def _max_pool_kernel(y, arg, x, bins_d, bins_h, bins_w, D, H, W, C, Do, Ho, Wo):
    # y, arg (N*Do*Ho*Wo*C,); x (N, D, H, W, C) flat; arg = the winner's (i_d * H + i_h) * W + i_w; NaN wins
    for e in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        n, od, oh, ow, c = pool_index(e, Do, Ho, Wo, C)
        best = -math.inf
        where = (bins_d[od, 0] * H + bins_h[oh, 0]) * W + bins_w[ow, 0]
        for i_d in range(bins_d[od, 0], bins_d[od, 1]):
            for i_h in range(bins_h[oh, 0], bins_h[oh, 1]):
                for i_w in range(bins_w[ow, 0], bins_w[ow, 1]):
                    v = x[(((n * D + i_d) * H + i_h) * W + i_w) * C + c]
                    if v > best or (v != v and best == best):        # the first NaN wins
                        best = v
                        where = (i_d * H + i_h) * W + i_w
        y[e] = best
        arg[e] = where


@cuda.jit
def _sum_pool_kernel(y, x, scale, p, bins_d, bins_h, bins_w, D, H, W, C, Do, Ho, Wo):
    # p == 1: y = scale * sum_box x;  else y = (sum_box x^p)^(1/p)
    for e in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        n, od, oh, ow, c = pool_index(e, Do, Ho, Wo, C)
        acc = x[0] * 0
        for i_d in range(bins_d[od, 0], bins_d[od, 1]):
            for i_h in range(bins_h[oh, 0], bins_h[oh, 1]):
                for i_w in range(bins_w[ow, 0], bins_w[ow, 1]):
                    v = x[(((n * D + i_d) * H + i_h) * W + i_w) * C + c]
                    acc += v if p == 1 else v ** p
        y[e] = acc * scale[(od * Ho + oh) * Wo + ow] if p == 1 else acc ** (1 / p)


def _pool_dims(x, out_shape):
    n_sp = x.ndim - 2
    spatial = (1,) * (3 - n_sp) + x.shape[1:-1]
    out3 = (1,) * (3 - n_sp) + tuple(out_shape)
    return (*spatial, x.shape[-1], *out3)


def _max_pool_forward(x, bins, out_shape):
    dims = _pool_dims(x, out_shape)
    y = empty((x.shape[0],) + dims[4:] + (x.shape[-1],), x.dtype)         # (N, Do, Ho, Wo, C)
    arg = empty(y.shape, np.int32)
    if y.size:
        xs, _, _ = view(x)
        _max_pool_kernel[launch_1d(y.size)](y.reshape(y.size), arg.reshape(arg.size), xs,
                                            *(constant(b) for b in bins), *dims)
    return y.reshape((x.shape[0],) + tuple(out_shape) + (x.shape[-1],)), arg


def _sum_pool_forward(x, bins, out_shape, scale, p):
    dims = _pool_dims(x, out_shape)
    y = empty((x.shape[0],) + tuple(out_shape) + (x.shape[-1],), x.dtype)
    if y.size:
        xs, _, _ = view(x)
        _sum_pool_kernel[launch_1d(y.size)](y.reshape(y.size), xs, constant(scale.astype(x.dtype).ravel()),
                                            x.dtype.type(p), *(constant(b) for b in bins), *dims)
    return y


# ---- the softmax family: one block per row, two trees -------------------------------------------------
def _row_kernels(dtype, cache={}):
    """(rows kernel, cross-entropy kernel, their (m, s) device function) for one dtype (shared memory is typed)."""
    if dtype in cache:
        return cache[dtype]
    acc_type = nb_type(dtype)

    @cuda.jit(device=True)
    def max_and_sum(partial, x, base, red_shape, red_strides, L, t, lowest, zero):
        # (m, s) of a row: m = max x, s = sum exp(x - m), every thread gets both (m = 0 for an all -inf row)
        m = lowest
        for l in range(t, L, T):
            m = _max2(m, x[position(l, base, red_shape, red_strides)])
        m = _fold_max(partial, m, t)
        if m == lowest:
            m = zero
        s = zero
        for l in range(t, L, T):
            s += math.exp(x[position(l, base, red_shape, red_strides)] - m)
        return m, _fold_sum(partial, s, t)

    @cuda.jit
    def rows(y, x, x_offset, kept_shape, x_kept, red_shape, x_red, y_kept, y_red, A, L, what, lowest, zero):
        # y: softmax / log_softmax of each row (y's own strides), or logsumexp (one value per row)
        partial = cuda.shared.array(T, acc_type)
        t = cuda.threadIdx.x
        for a in range(cuda.blockIdx.x, A, cuda.gridDim.x):           # row a: kept index a
            base = position(a, x_offset, kept_shape, x_kept)
            y_base = position(a, 0, kept_shape, y_kept)
            m, s = max_and_sum(partial, x, base, red_shape, x_red, L, t, lowest, zero)
            log_s = math.log(s) if s > zero else -math.inf
            if what == 2:
                if t == 0:
                    y[y_base] = m + log_s
            else:
                for l in range(t, L, T):
                    v = x[position(l, base, red_shape, x_red)] - m
                    y[position(l, y_base, red_shape, y_red)] = v - log_s if what == 1 else math.exp(v) / s

    @cuda.jit
    def xent(loss, x, tgt, labels, K, use_labels, lowest, zero):
        # loss (N,); x (N*K,) logits; tgt (N*K,) probabilities or labels (N,): sum_k t_k ((m - x_k) + log s)
        partial = cuda.shared.array(T, acc_type)
        t = cuda.threadIdx.x
        for r in range(cuda.blockIdx.x, loss.shape[0], cuda.gridDim.x):
            m, s = max_and_sum(partial, x, r * K, (K,), (1,), K, t, lowest, zero)
            log_s = math.log(s)
            if use_labels:
                if t == 0:
                    loss[r] = (m - x[r * K + labels[r]]) + log_s
            else:
                acc = zero
                for k in range(t, K, T):
                    acc += tgt[r * K + k] * ((m - x[r * K + k]) + log_s)
                acc = _fold_sum(partial, acc, t)
                if t == 0:
                    loss[r] = acc

    cache[dtype] = rows, xent, max_and_sum
    return rows, xent, max_and_sum


def _rows(x, axes, what, y_shape):
    """Launch the rows kernel over ``axes`` of ``x``; ``y`` (C-contiguous, ``y_shape``) gets the result."""
    y = empty(y_shape, x.dtype)
    xs, x_offset, x_strides = view(x)
    kept_shape, x_kept, red_shape, x_red = split_rows(x.shape, x_strides, axes)
    y_full = tuple(1 if d in axes else n for d, n in enumerate(x.shape)) if what == _LOGSUMEXP else x.shape
    _, y_kept, _, y_red = split_rows(y_full, contiguous_strides(y_full), axes)
    A, L = int(np.prod(kept_shape)), int(np.prod(red_shape))
    rows = _row_kernels(x.dtype)[0]
    rows[row_blocks(A), T](y.reshape(y.size), xs, x_offset, kept_shape, x_kept, red_shape, x_red, y_kept, y_red,
                           A, L, what, x.dtype.type(-np.inf), x.dtype.type(0))
    return y


def _softmax_forward(x, axis, what):
    return _rows(x, axis, what, x.shape) if x.size else empty(x.shape, x.dtype)


def _lse_forward(x, axis, keepdims):
    shape = tuple(1 if d in axis else n for d, n in enumerate(x.shape) if keepdims or d not in axis)
    return _rows(x, axis, _LOGSUMEXP, shape) if x.size else empty(shape, x.dtype)


def _xent_forward(x, t, labels):
    # t (N, K) probabilities, or an empty placeholder when labels (N,) are given (a host or device array;
    # labels empty (0,) or None: probabilities)
    N, K = x.shape
    loss = empty((N,), x.dtype)
    if N:
        xent = _row_kernels(x.dtype)[1]
        xs, _, _ = view(x)
        use_labels = labels is not None and labels.shape[0] > 0
        tgt = xs if use_labels else view(t)[0]
        if not use_labels:
            lab = constant(np.zeros(1, np.int64))
        elif isinstance(labels, np.ndarray):
            lab = from_host(labels.astype(np.int64, copy=False))
        else:
            lab = view(labels)[0]
        xent[row_blocks(N), T](loss, xs, tgt, lab, K, use_labels, x.dtype.type(-np.inf), x.dtype.type(0))
    return loss


# ---- batch norm, bias + relu -----------------------------------------------------------------------------
@cuda.jit
def _affine2_kernel(out, a, b, alpha, beta, gamma, C):
    # out, a, b (M*C,); alpha, beta, gamma (C,): out = a * alpha + b * beta + gamma per channel
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        c = i % C
        out[i] = a[i] * alpha[c] + b[i] * beta[c] + gamma[c]


def affine2(a, b, alpha, beta, gamma):
    """``a * alpha + b * beta + gamma`` per channel (the last axis): batch norm's forward and its dx.

    >>> import numpy as np
    >>> from axon.cuda._runtime import from_host, to_host
    >>> one = from_host(np.ones((2, 2)))
    >>> to_host(affine2(one, one, from_host(np.array([1.0, 2.0])), from_host(np.zeros(2)), from_host(np.ones(2))))
    array([[2., 3.],
           [2., 3.]])
    """
    out = empty(a.shape, a.dtype)
    if out.size:
        _affine2_kernel[launch_1d(out.size)](out.reshape(out.size), view(a)[0], view(b)[0], view(alpha)[0],
                                             view(beta)[0], view(gamma)[0], a.shape[-1])
    return out


_mul, _sub = PRIMITIVES["mul"].forwards, PRIMITIVES["sub"].forwards


def host_or_device(a, dtype=None):
    """A parameter that may be a host array (the CPU wrappers' settings) as a device array of ``dtype``.

    A device array of another dtype is cast on the device (the ``astype`` primitive's CUDA forward: a
    real ``DeviceNDArray`` has no ``astype`` method, and no host round trip is wanted).

    >>> host_or_device(np.arange(2), np.float32).dtype
    dtype('float32')
    """
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return from_host(np.asarray(a, dtype=dtype))
    return a if dtype is None or a.dtype == dtype else PRIMITIVES["astype"].forwards["cuda"](a, np.dtype(dtype))


def _bn_forward(x, gamma, beta, mean, invstd):
    # y = x * scale + shift, scale = gamma invstd, shift = beta - mean scale (C,), as the CPU forward;
    # mean, invstd (C,) float64: device arrays when training (batch_norm_statistics), host ones otherwise
    scale = _mul["cuda"](gamma, host_or_device(invstd, x.dtype))
    shift = _sub["cuda"](beta, _mul["cuda"](host_or_device(mean, x.dtype), scale))
    return affine2(x, x, scale, from_host(np.zeros(x.shape[-1], x.dtype)), shift)


def _bias_relu_scalar(x, b):
    v = x + b
    return v if v > 0 else 0


# ---- reductions along one axis (kernels.reduce) -----------------------------------------------------------
@cuda.jit
def _take_kernel(y, x, index, L, B):
    # y, index (A*B,); x (A*L*B,): y[a, b] = x[a, index[a, b], b] (index made on the device: argmax)
    for e in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        a, b = e // B, e % B
        y[e] = x[(a * L + index[e]) * B + b]


def _take_forward(x, index, axis, keepdims):
    # index (A, B): a host or device array; read where it is, no copy of a device one to the host
    A, B = index.shape
    shape = x.shape[:axis] + ((1,) if keepdims else ()) + x.shape[axis + 1:]
    y = empty(shape, x.dtype)
    if y.size:
        _take_kernel[launch_1d(y.size)](y.reshape(y.size), view(x)[0], view(host_or_device(index))[0],
                                        x.shape[axis], B)
    return y


# ---- metrics: one pass over a batch, four numbers ---------------------------------------------------------
@cuda.jit(device=True)
def _min2(a, b):
    return a if a < b or a != a else b


_fold_min = block_fold(_min2)


@cuda.jit
def _counts_kernel(out, t, p, R, K, kind, cut):
    # out (4,) float64; one block of T threads, thread i takes rows i, i + T, ... (axon.functional.metrics):
    # kind 0 "binary": t, p (R,) (K = 1): tp, fp, tn, fn of t > 0.5 against p > cut;
    # kind 1 "sparse": t (R,) labels, p (R*K,): label == argmax, 0, 0, 0;
    # kind 2 "categorical": t, p (R*K,): argmax == argmax, min t, max t, max over rows |sum t - 1|
    partial = cuda.shared.array(T, float64)
    i = cuda.threadIdx.x
    c0, c1, c2, c3 = 0.0, 0.0, 0.0, 0.0                  # the four numbers (min/max start at +-inf)
    if kind == 2:
        c1, c2 = math.inf, -math.inf
    for r in range(i, R, T):
        if kind == 0:
            actual, predicted = t[r] > 0.5, p[r] > cut
            if actual and predicted:
                c0 += 1.0
            elif predicted:
                c1 += 1.0
            elif actual:
                c3 += 1.0
            else:
                c2 += 1.0
            continue
        best, guess = p[r * K], 0                        # argmax of the predictions (the first; NaN wins)
        for k in range(1, K):
            v = p[r * K + k]
            if (v > best or v != v) and best == best:
                best, guess = v, k
        if kind == 1:
            if t[r] == guess:
                c0 += 1.0
            continue
        top, label, row = t[r * K], 0, 0.0               # the targets' argmax, their range and row sum
        for k in range(K):
            v = t[r * K + k]
            row += v
            c1, c2 = _min2(c1, v), _max2(c2, v)
            if k and (v > top or v != v) and top == top:
                top, label = v, k
        if label == guess:
            c0 += 1.0
        c3 = _max2(c3, abs(row - 1.0))
    c0 = _fold_sum(partial, c0, i)
    if kind == 2:
        c1, c2, c3 = _fold_min(partial, c1, i), _fold_max(partial, c2, i), _fold_max(partial, c3, i)
    else:
        c1, c2, c3 = _fold_sum(partial, c1, i), _fold_sum(partial, c2, i), _fold_sum(partial, c3, i)
    if i == 0:
        out[0], out[1], out[2], out[3] = c0, c1, c2, c3


_COUNT_KINDS = {"binary": 0, "sparse": 1, "categorical": 2}


def _counts_forward(y_true, y_pred, kind, cut):
    # the four numbers of axon.functional.metrics' "metrics.counts" in one launch of one block
    K = 1 if kind == "binary" else y_pred.shape[-1]
    R = y_pred.size // max(K, 1)
    if not R:
        return full((4,), 0, np.float64)
    out = empty((4,), np.float64)                                # (thread 0 writes all four)
    _counts_kernel[1, T](out, view(y_true)[0], view(y_pred)[0], R, K, _COUNT_KINDS[kind], cut)
    return out


# ---- dropout: the keep mask drawn on the device ---------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)                          # 2^64 / phi: spreads the threads' seeds
_STATES: dict = {}                                               # scratch RNG states, one array per launch size


@cuda.jit
def _keep_mask_kernel(mask, states, key, salt, keep, scale, zero):
    # mask (n,): scale with probability keep, else zero. Thread i0 of the launch seeds its own xoroshiro128+
    # state from (key, salt, i0) (SplitMix64, numba's seeding), then draws mask[i0], mask[i0 + G], ...
    i0 = cuda.grid(1)
    init_xoroshiro128p_state(states, i0, key[0] ^ salt ^ (uint64(i0) * _GOLDEN))
    for i in range(i0, mask.shape[0], cuda.gridsize(1)):
        mask[i] = scale if xoroshiro128p_uniform_float32(states, i0) < keep else zero


@lru_cache(maxsize=None)
def _salt_mix(salt: tuple) -> np.uint64:
    """One uint64 from a key's salt (a layer's name, ...): the salts' ints through numpy's SeedSequence."""
    return np.random.SeedSequence([0] + [_salt_int(v) for v in salt]).generate_state(1, np.uint64)[0]


def keep_mask(key, like, salt, shape, rate, scale):
    """Dropout's mask drawn on the device (``random.keep_mask``): ``scale`` with probability ``1 - rate``, else 0.

    ``key`` is a 0-d uint64 array (a device array: the key stays an input, so a traced step draws a
    new mask from each step's key), ``like`` gives the dtype, ``salt`` (a tuple) separates the layers.
    Each thread of one launch seeds its own stream of ``numba.cuda.random``'s xoroshiro128+ generator
    from ``(key, salt, thread)`` and draws its elements, so the mask is made and stays on the device:
    one launch, no copy. The same key, salt and shape give the same mask; the bits differ from the
    CPU's (numpy's generator), and from the simulator's (another launch size).

    >>> k = from_host(np.asarray(7, np.uint64))
    >>> m = keep_mask(k, from_host(np.zeros(1, np.float32)), ("dropout_0",), (4, 250), 0.2, 1.25).copy_to_host()
    >>> m.dtype, sorted(set(m.ravel().tolist())), bool(0.7 < (m > 0).mean() < 0.9)
    (dtype('float32'), [0.0, 1.25], True)
    """
    mask = empty(shape, like.dtype)
    if mask.size:
        blocks, threads = launch_1d(mask.size)
        n = blocks * threads
        states = _STATES.get(n)
        if states is None:                                       # re-seeded by every launch: reusable
            states = _STATES[n] = cuda.device_array(n, dtype=xoroshiro128p_dtype)
        key = from_host(np.asarray(key, np.uint64)) if isinstance(key, (np.ndarray, np.generic)) else key
        with warnings.catch_warnings():                          # the simulator does uint64 arithmetic in
            warnings.simplefilter("ignore", RuntimeWarning)      # numpy, which warns as it wraps (as it must)
            _keep_mask_kernel[blocks, threads](mask.reshape(mask.size), states, view(key)[0], _salt_mix(tuple(salt)),
                                               np.float32(1 - rate), like.dtype.type(scale), like.dtype.type(0))
    return mask


implement("kernels.conv", "cuda", _conv_forward)
implement("kernels.max_pool", "cuda", _max_pool_forward)
implement("kernels.sum_pool", "cuda", _sum_pool_forward)
implement("kernels.softmax", "cuda", _softmax_forward)
implement("kernels.logsumexp", "cuda", _lse_forward)
implement("kernels.softmax_cross_entropy", "cuda", _xent_forward)
implement("kernels.batch_norm_train", "cuda", _bn_forward)
implement("kernels.bias_relu", "cuda", cuda_zip(_bias_relu_scalar))
implement("kernels.reduce_sum", "cuda", PRIMITIVES["sum"].forwards["cuda"])
implement("kernels.take_along_axis", "cuda", _take_forward)
implement("random.keep_mask", "cuda", keep_mask)
implement("metrics.counts", "cuda", _counts_forward)

FORWARDS = ("kernels.conv", "kernels.max_pool", "kernels.sum_pool", "kernels.softmax", "kernels.logsumexp",
            "kernels.softmax_cross_entropy", "kernels.batch_norm_train", "kernels.bias_relu", "kernels.reduce_sum",
            "kernels.take_along_axis", "kernels.matmul", "kernels.matmul_loop", "random.keep_mask", "metrics.counts")
"""The ``kernels.*`` primitives given a CUDA forward (the matmuls in ``matmul``)."""
