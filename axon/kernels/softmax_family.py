"""Softmax, log-softmax, logsumexp and the fused softmax cross-entropy, along one axis.

All of them start from the same two numbers per row: its maximum ``m`` and ``s = sum_k exp(x_k - m)``.
Subtracting the maximum first means ``exp`` never overflows (logits of +-1000 are fine):

    logsumexp(x) = m + log s               d/dx: dx = dy * softmax(x)
    softmax(x) = exp(x - m) / s            d/dx: dx = y * (dy - sum_k dy_k y_k)
    log_softmax(x) = (x - m) - log s       d/dx: dx = dy - exp(y) * sum_k dy_k

The cross-entropy of logits ``x`` against targets ``t`` (probabilities, or integer labels) is fused into
one pass per row, and so is its gradient (which recomputes ``m`` and ``s`` rather than storing the
softmax):

    loss_i = sum_k t_ik (lse_i - x_ik)      with lse_i - x_ik = (m_i - x_ik) + log s_i
    dx_ik  = dy_i (softmax_ik sum_k t_ik - t_ik)        dt_ik = dy_i (lse_i - x_ik)

The kernels work on rows of a C-contiguous (M, K) matrix; other axes (one, or several flattened into
one) are moved last first. Small inputs run serially (a parallel region costs more than a 128 x 10
softmax), large ones split the rows.

``exp`` is where a large forward spends its time: numba calls libm's scalar ``exp`` once per element
(it has no vector math library here), 5-10 ns each, while numpy's ``np.exp`` runs SIMD loops, under
1 ns. So from ``VECTOR_EXP_MIN`` elements on the forward takes three passes instead of one: the rows
shifted by their maxima (``d = x - m``, a numba pass), numpy's ``exp(d)``, then each row's sum and
the result (a numba pass): 4x faster on attention's (32, 4, 128, 128) scores, one thread.

The VJPs run the numba kernels in an ordinary backward pass; under ``backward(create_graph=True)``
(grad of grad) they build the same formulas from Tensor operations instead, so they can be
differentiated again.

Primitives (a backend implements the five forwards with these signatures; ``axis`` is a sorted tuple
of non-negative ints, ``what`` 0 softmax, 1 log_softmax, 2 logsumexp; ``labels`` int64 (N,) and ``t``
(N, K), one of them empty: (0,) or (0, 0)):

- ``kernels.softmax(x, *, axis, what) -> y`` (softmax and log_softmax);
- ``kernels.logsumexp(x, *, axis, keepdims) -> y``;
- ``kernels.softmax_backward(dy, y, x, *, axis, what) -> (dx,)``: dy and y with size 1 at ``axis`` for logsumexp;
- ``kernels.softmax_cross_entropy(x, t, labels) -> loss`` (N,);
- ``kernels.softmax_cross_entropy_backward(dy, x, t, labels, *, need_dt) -> (dx, dt)``; on the CPU ``dy``
  may also be one number for every row (size 1: what ``axon.fusion.xent_sum`` passes).

>>> import numpy as np
>>> softmax(np.array([1000.0, 1000.0])).numpy()
array([0.5, 0.5])
>>> float(softmax_cross_entropy(np.array([[0.0, 0.0]]), np.array([1])).numpy()[0])   # log 2
0.6931471805599453
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..autograd import Tensor, apply, astype, equal, exp, is_grad_enabled, primitive, reshape
from ..autograd import sum as tsum
from ._common import (KERNEL, PARALLEL_MIN, check_same_dtype, contiguous, float_tensor, in_range, num_chunks,
                      on_backend_of,
                      run_chunks, same_dtype)

__all__ = ["softmax", "log_softmax", "logsumexp", "softmax_cross_entropy", "xent_sum", "VECTOR_EXP_MIN"]

_SOFTMAX, _LOG_SOFTMAX, _LOGSUMEXP = 0, 1, 2                      # what _rows_forward writes

# From this many elements on, a forward takes exp from numpy's vectorised loop (see above); below it
# the one-pass kernel wins, its three calls costing more than the exps they save.
VECTOR_EXP_MIN = 1 << 14


# ---- row kernels: a serial body over rows [r0, r1), and a driver that splits the rows ------------------
@njit(**KERNEL)
def _row_max_sum(x, r):
    # x (M, K): (m, s) for row r, m = max_k x[r, k], s = sum_k exp(x[r, k] - m), in x's dtype.
    # Everything is derived from (m, s), never from lse = m + log s: at |lse| ~ 1000, float32 rounds
    # lse by 6e-5, and exp(x - lse) would inherit that error.
    m = x[r, 0]
    for k in range(1, x.shape[1]):
        m = max(m, x[r, k])
    if m == -np.inf:                                             # an all -inf row: s = 0, lse = -inf
        m = x.dtype.type(0)
    s = x.dtype.type(0)
    for k in range(x.shape[1]):
        s += np.exp(x[r, k] - m)
    return m, s


@njit(**KERNEL)
def _rows_forward(x, y, what, r0, r1):
    # x, y (M, K) (y (M, 1) for logsumexp): softmax, log_softmax or logsumexp of rows r0..r1
    for r in range(r0, r1):
        m, s = _row_max_sum(x, r)
        if what == _LOGSUMEXP:
            y[r, 0] = m + np.log(s)
        elif what == _LOG_SOFTMAX:                               # two loops: fastmath's reassoc would
            log_s = np.log(s)                                    # make one x - (m + log s), losing
            for k in range(x.shape[1]):                          # float32 digits at |x| ~ 1000
                y[r, k] = x[r, k] - m
            for k in range(x.shape[1]):
                y[r, k] -= log_s
        else:
            inv_s = x.dtype.type(1) / s
            for k in range(x.shape[1]):
                y[r, k] = np.exp(x[r, k] - m) * inv_s


@njit(**KERNEL)
def _shift_rows(x, d, m, r0, r1):
    # x, d (M, K), m (M,): m[r] = max_k x[r, k] (0 for an all -inf row, as _row_max_sum), d[r] = x[r] - m[r]
    for r in range(r0, r1):
        top = x[r, 0]
        for k in range(1, x.shape[1]):
            top = max(top, x[r, k])
        if top == -np.inf:
            top = x.dtype.type(0)
        m[r] = top
        for k in range(x.shape[1]):
            d[r, k] = x[r, k] - top


@njit(**KERNEL)
def _finish_rows(d, e, m, y, what, r0, r1):
    # d = x - m and e = exp(d), (M, K); m (M,); y as _rows_forward's (it may be d or e itself):
    # s = sum_k e[r, k], then softmax e / s, log_softmax d - log s, or logsumexp m + log s
    for r in range(r0, r1):
        s = e.dtype.type(0)
        for k in range(e.shape[1]):
            s += e[r, k]
        if what == _LOGSUMEXP:
            y[r, 0] = m[r] + np.log(s)
        elif what == _LOG_SOFTMAX:
            log_s = np.log(s)
            for k in range(e.shape[1]):
                y[r, k] = d[r, k] - log_s
        else:
            inv_s = e.dtype.type(1) / s
            for k in range(e.shape[1]):
                y[r, k] = e[r, k] * inv_s


@njit(**KERNEL)
def _rows_backward(dy, y, x, dx, what, r0, r1):
    # dy, y like the forward's output; x, dx (M, K): the VJP of _rows_forward for rows r0..r1
    for r in range(r0, r1):
        if what == _LOGSUMEXP:                                   # dx = dy softmax(x)
            m, s = _row_max_sum(x, r)
            g = dy[r, 0] / s
            for k in range(x.shape[1]):
                dx[r, k] = g * np.exp(x[r, k] - m)
        elif what == _LOG_SOFTMAX:
            total = dy.dtype.type(0)
            for k in range(x.shape[1]):
                total += dy[r, k]
            for k in range(x.shape[1]):
                dx[r, k] = dy[r, k] - np.exp(y[r, k]) * total
        else:
            dot = dy.dtype.type(0)
            for k in range(x.shape[1]):
                dot += dy[r, k] * y[r, k]
            for k in range(x.shape[1]):
                dx[r, k] = y[r, k] * (dy[r, k] - dot)


@njit(parallel=True, **KERNEL)
def _rows_forward_parallel(x, y, what, n_chunks):
    M = x.shape[0]
    for t in prange(n_chunks):
        _rows_forward(x, y, what, t * M // n_chunks, (t + 1) * M // n_chunks)


@njit(parallel=True, **KERNEL)
def _shift_rows_parallel(x, d, m, n_chunks):
    M = x.shape[0]
    for t in prange(n_chunks):
        _shift_rows(x, d, m, t * M // n_chunks, (t + 1) * M // n_chunks)


@njit(parallel=True, **KERNEL)
def _finish_rows_parallel(d, e, m, y, what, n_chunks):
    M = d.shape[0]
    for t in prange(n_chunks):
        _finish_rows(d, e, m, y, what, t * M // n_chunks, (t + 1) * M // n_chunks)


@njit(parallel=True, **KERNEL)
def _rows_backward_parallel(dy, y, x, dx, what, n_chunks):
    M = x.shape[0]
    for t in prange(n_chunks):
        _rows_backward(dy, y, x, dx, what, t * M // n_chunks, (t + 1) * M // n_chunks)


@njit(**KERNEL)
def _xent_rows(x, t, labels, loss, r0, r1):
    # x (M, K) logits; t (M, K) probabilities or labels (M,) (the other one is empty); loss (M,)
    # loss = sum_k t_k (lse - x_k) with lse - x_k = (m - x_k) + log s
    for r in range(r0, r1):
        m, s = _row_max_sum(x, r)
        log_s = np.log(s)
        if labels.shape[0]:
            loss[r] = (m - x[r, labels[r]]) + log_s
        else:
            total = x.dtype.type(0)
            for k in range(x.shape[1]):
                total += t[r, k] * ((m - x[r, k]) + log_s)
            loss[r] = total


@njit(**KERNEL)
def _xent_backward_rows(dloss, x, t, labels, dx, dt, r0, r1):
    # dloss (M,); x, dx (M, K); t, dt (M, K) or empty; labels (M,) or empty
    for r in range(r0, r1):
        m, s = _row_max_sum(x, r)
        g = dloss[0] if dloss.shape[0] == 1 else dloss[r]       # (size 1: one dloss for every row)
        g_over_s = g / s
        if labels.shape[0]:                                      # dx = g (softmax - onehot)
            for k in range(x.shape[1]):
                dx[r, k] = g_over_s * np.exp(x[r, k] - m)
            dx[r, labels[r]] -= g
        else:                                                    # dx = g (softmax sum_k t_k - t)
            t_sum = x.dtype.type(0)
            for k in range(x.shape[1]):
                t_sum += t[r, k]
            for k in range(x.shape[1]):
                dx[r, k] = g_over_s * np.exp(x[r, k] - m) * t_sum - g * t[r, k]
            if dt.shape[0]:                                      # dt = g (lse - x)
                log_s = np.log(s)
                for k in range(x.shape[1]):
                    dt[r, k] = g * ((m - x[r, k]) + log_s)


@njit(parallel=True, **KERNEL)
def _xent_parallel(x, t, labels, loss, n_chunks):
    M = x.shape[0]
    for c in prange(n_chunks):
        _xent_rows(x, t, labels, loss, c * M // n_chunks, (c + 1) * M // n_chunks)


@njit(parallel=True, **KERNEL)
def _xent_backward_parallel(dloss, x, t, labels, dx, dt, n_chunks):
    M = x.shape[0]
    for c in prange(n_chunks):
        _xent_backward_rows(dloss, x, t, labels, dx, dt, c * M // n_chunks, (c + 1) * M // n_chunks)


# ---- softmax, log_softmax, logsumexp -------------------------------------------------------------------
def _to_rows(x, axes):
    """(..., K1 at axes[0], ..., K2 at axes[1], ...) -> C-contiguous (M, K1 K2 ...) rows: the axes moved last."""
    last = tuple(range(-len(axes), 0))
    moved = np.moveaxis(x, axes, last)
    k = int(np.prod([x.shape[a] for a in axes]))
    return contiguous(moved).reshape(-1, k), moved.shape


def _from_rows(rows, moved_shape, axes):
    return np.moveaxis(rows.reshape(moved_shape), tuple(range(-len(axes), 0)), axes)


def _rows_forward_any(x, axes, what):
    x2, moved_shape = _to_rows(x, axes)
    M = x2.shape[0]
    n = num_chunks(x2.size, M, PARALLEL_MIN)
    if x2.size < VECTOR_EXP_MIN:                               # one pass, numba's exp
        y2 = np.empty((M, 1 if what == _LOGSUMEXP else x2.shape[1]), dtype=x.dtype)   # (M, K) or (M, 1)
        if x2.size:
            run_chunks(_rows_forward, _rows_forward_parallel, n, M, x2, y2, what)
        return y2, moved_shape
    d, m = np.empty_like(x2), np.empty(M, dtype=x.dtype)       # d = x - m (M, K), the row maxima m (M,)
    run_chunks(_shift_rows, _shift_rows_parallel, n, M, x2, d, m)
    e = np.exp(d, out=d if what == _SOFTMAX else None)         # (M, K), numpy's SIMD exp
    y2 = e if what == _SOFTMAX else d if what == _LOG_SOFTMAX else np.empty((M, 1), dtype=x.dtype)
    run_chunks(_finish_rows, _finish_rows_parallel, n, M, d, e, m, y2, what)
    return y2, moved_shape


def _softmax_forward(x, axis, what):
    y2, moved_shape = _rows_forward_any(x, axis, what)
    return _from_rows(y2, moved_shape, axis)


def _rows_vjp_ops(dy, y, x, axis, what):
    """The same VJPs written with Tensor operations: differentiable again (for grad of grad)."""
    if what == _LOGSUMEXP:                                     # dy (and y) have size 1 along ``axis``
        return dy * exp(x - y)                                 # dy softmax(x)
    if what == _LOG_SOFTMAX:
        return dy - exp(y) * tsum(dy, axis, keepdims=True)
    return y * (dy - tsum(dy * y, axis, keepdims=True))


def _rows_backward_any(dy, y, x, axis, what):
    """The VJP of softmax, log_softmax or logsumexp on arrays, one pass per row: ``(dx,)``."""
    x2, moved_shape = _to_rows(x, axis)
    y2, _ = _to_rows(y, axis)
    dy2, _ = _to_rows(dy, axis)
    dx2 = np.empty_like(x2)
    if x2.size:
        n = num_chunks(x2.size, x2.shape[0], PARALLEL_MIN)
        run_chunks(_rows_backward, _rows_backward_parallel, n, x2.shape[0], dy2, y2, x2, dx2, what)
    return (_from_rows(dx2, moved_shape, axis),)


def _rows_vjp(dy, y, x, axis, what):
    if is_grad_enabled():                                      # backward(create_graph=True): record it
        return (_rows_vjp_ops(dy, y, x, axis, what),)
    return apply(_softmax_backward, same_dtype(dy, x), y, x, axis=axis, what=what)


_softmax_backward = primitive("kernels.softmax_backward", _rows_backward_any)
_softmax = primitive("kernels.softmax", _softmax_forward, _rows_vjp)


def _lse_forward(x, axis, keepdims):
    y2, moved_shape = _rows_forward_any(x, axis, _LOGSUMEXP)
    y = _from_rows(y2, moved_shape[:-len(axis)] + (1,) * len(axis), axis)   # keepdims: size 1 at each axis
    return y if keepdims else np.squeeze(y, axis=axis)


def _lse_vjp(dy, y, x, axis, keepdims):
    if not keepdims:                                           # put the reduced axes back (size 1)
        kept = tuple(1 if i in axis else n for i, n in enumerate(x.shape))
        dy, y = reshape(dy, kept), reshape(y, kept)
    return _rows_vjp(dy, y, x, axis, _LOGSUMEXP)


_logsumexp = primitive("kernels.logsumexp", _lse_forward, _lse_vjp)


def _axis(fn, x, axis) -> tuple:
    """``axis`` (an int or a tuple of ints) as a sorted tuple of non-negative axes, checked."""
    axes = (axis,) if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) else axis
    if not isinstance(axes, (tuple, list)) or not axes or \
            not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
        raise ValueError(f"{fn}: axis must be an int or a tuple of ints, got {axis!r}")
    for a in axes:
        if not -x.ndim <= a < x.ndim:
            raise ValueError(f"{fn}: axis {a} is out of range for a Tensor of shape {x.shape}")
    axes = tuple(sorted({int(a) % x.ndim for a in axes}))
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"{fn}: axis {axis} of shape {x.shape} is empty")
    return axes


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis``, computed stably (the row maximum is subtracted first).

    >>> import numpy as np
    >>> softmax(np.log(np.array([[1.0, 3.0]], np.float32))).numpy().round(6)
    array([[0.25, 0.75]], dtype=float32)
    """
    x = float_tensor("softmax", "x", x)
    return apply(_softmax, x, axis=_axis("softmax", x, axis), what=_SOFTMAX)


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along ``axis``: the log of the softmax, without its underflow.

    >>> import numpy as np
    >>> log_softmax(np.array([0.0, -1000.0])).numpy()
    array([    0., -1000.])
    """
    x = float_tensor("log_softmax", "x", x)
    return apply(_softmax, x, axis=_axis("log_softmax", x, axis), what=_LOG_SOFTMAX)


def logsumexp(x, axis=-1, keepdims=False):
    """``log(sum(exp(x)))`` along ``axis``, stably: ``m + log(sum(exp(x - m)))`` with ``m = max(x)``.

    >>> import numpy as np
    >>> float(logsumexp(np.array([1000.0, 1000.0])).numpy())   # 1000 + log 2
    1000.6931471805599
    """
    x = float_tensor("logsumexp", "x", x)
    return apply(_logsumexp, x, axis=_axis("logsumexp", x, axis), keepdims=bool(keepdims))


# ---- fused softmax cross-entropy -----------------------------------------------------------------------
_NO_LABELS = np.empty(0, dtype=np.int64)


def _xent_forward(x, t, labels):
    # x (N, K); t (N, K) probabilities and labels empty (0,), or t empty (0, 0) and labels (N,) int64
    x, t, labels = contiguous(x), contiguous(t), contiguous(labels)
    M = x.shape[0]
    loss = np.empty(M, dtype=x.dtype)                                          # (N,)
    if M:
        n = num_chunks(x.size, M, PARALLEL_MIN)
        run_chunks(_xent_rows, _xent_parallel, n, M, x, t, labels, loss)
    return loss


def _xent_backward(dy, x, t, labels, need_dt):
    """``(dx, dt)`` on arrays (dt None unless asked for), one pass per row."""
    xa, ta, labels = contiguous(x), contiguous(t), contiguous(labels)
    dx = np.empty_like(xa)
    dt = np.empty_like(ta) if need_dt else np.empty((0, 0), dtype=xa.dtype)
    M = xa.shape[0]
    if M:
        n = num_chunks(xa.size, M, PARALLEL_MIN)
        run_chunks(_xent_backward_rows, _xent_backward_parallel, n, M, contiguous(dy).reshape(-1), xa, ta, labels,
                   dx, dt)
    return dx, (dt if need_dt else None)


def xent_sum(x, t, labels):
    """``np.sum`` of ``kernels.softmax_cross_entropy``'s losses as a 0-d array (``axon.fusion.xent_sum``'s op).

    >>> xent_sum(np.zeros((3, 2)), np.empty((0, 0)), np.array([0, 1, 1]))          # 3 log 2
    array(2.07944154)
    """
    return np.asarray(np.sum(_xent_forward(x, t, labels)))


def _xent_vjp_ops(dy, x, t, labels):
    """The cross-entropy's VJP from Tensor operations (differentiable again)."""
    axis = (1,)
    p = apply(_softmax, x, axis=axis, what=_SOFTMAX)                               # (N, K)
    if labels.shape[0]:                                                              # one-hot rows (N, K)
        classes = on_backend_of(labels, np.arange(x.shape[1], dtype=labels.dtype))  # (K,)
        targets = astype(equal(reshape(labels, (-1, 1)), classes), x.dtype)
    else:
        targets = t
    g = reshape(dy, (-1, 1))                                                         # (N,) -> (N, 1)
    dx = g * (p * tsum(targets, axis, keepdims=True) - targets)
    dt = None
    if not labels.shape[0] and t.requires_grad:
        dt = -g * apply(_softmax, x, axis=axis, what=_LOG_SOFTMAX)
    return dx, dt, None


def _xent_vjp(dy, y, x, t, labels):
    if is_grad_enabled():                                      # backward(create_graph=True): record it
        return _xent_vjp_ops(dy, x, t, labels)
    need_dt = not labels.shape[0] and t.requires_grad
    return apply(_xent_backward_prim, same_dtype(dy, x), x, t, labels, need_dt=need_dt) + (None,)


_xent = primitive("kernels.softmax_cross_entropy", _xent_forward, _xent_vjp)
_xent_backward_prim = primitive("kernels.softmax_cross_entropy_backward", _xent_backward)


def softmax_cross_entropy(logits, targets):
    """Per-example cross-entropy of softmax(logits) against ``targets``: (N, K) logits -> (N,) losses.

    ``loss_i = -sum_k t_ik log softmax(x_i)_k``; ``targets`` are probabilities (or one-hot) of shape
    (N, K), differentiable too, or integer labels (N,) in ``[0, K)``. Stable for logits of +-1000.
    Average the result for the usual mean loss.

    >>> import numpy as np
    >>> x = np.array([[2.0, 0.0, 0.0]], np.float32)
    >>> a = softmax_cross_entropy(x, np.array([0]))
    >>> b = softmax_cross_entropy(x, np.array([[1.0, 0.0, 0.0]], np.float32))
    >>> a.dtype, bool(np.allclose(a.numpy(), b.numpy()))
    (dtype('float32'), True)
    """
    x = float_tensor("softmax_cross_entropy", "logits", logits)
    if x.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be (N, K), got shape {x.shape}")
    t = targets if isinstance(targets, Tensor) else on_backend_of(x, targets)
    if t.dtype.kind in "iu":
        if t.shape != x.shape[:1]:
            raise ValueError(f"softmax_cross_entropy: integer labels must have shape ({x.shape[0]},) for logits "
                             f"of shape {x.shape}, got {t.shape}")
        in_range(t, 0, x.shape[1], lambda lo, hi: ValueError(
            f"softmax_cross_entropy: labels must be in [0, {x.shape[1]}), got values from {lo} to {hi}"))
        labels = t if t.dtype == np.int64 else astype(t, np.int64)
        return apply(_xent, x, on_backend_of(x, np.empty((0, 0), dtype=x.dtype)), labels)
    t = float_tensor("softmax_cross_entropy", "targets", t)
    check_same_dtype("softmax_cross_entropy", logits=x, targets=t)
    if t.shape != x.shape:
        raise ValueError(f"softmax_cross_entropy: targets must be labels ({x.shape[0]},) or probabilities of the "
                         f"logits' shape {x.shape}, got {t.shape}")
    return apply(_xent, x, t, on_backend_of(x, _NO_LABELS))
