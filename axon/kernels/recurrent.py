"""LSTM and GRU recurrences fused over the whole sequence: one primitive per layer, not ~15 per step.

Run through per-step Tensor operations, a 64-step LSTM records about a thousand small operations,
each paying Python's and numpy's overhead on a (32, 512) array. Here the input projections of every
step are one big matrix product made beforehand (``xw = x W``, by the caller), and the kernel
runs the recurrence itself: per step the product ``h_{t-1} U`` (single-threaded BLAS, one call per
gate's block of columns, see ``_block_products``) and a pass over the gates. Rows of the batch are
independent, so each thread takes its own rows through all the steps (one parallel region per
sequence, not one per step).

LSTM (PyTorch's gate order i, f, g, o), with ``a = xw_t + h_{t-1} U + b`` split in four:

    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o)     g = tanh(a_g)
    c_t = f c_{t-1} + i g                                   h_t = o tanh(c_t)

and its backward, walking the steps in reverse with the running ``dh``, ``dc``:

    dc += dh o (1 - tanh(c_t)^2)
    da_i = dc g i (1 - i)   da_f = dc c_{t-1} f (1 - f)   da_g = dc i (1 - g^2)   da_o = dh tanh(c_t) o (1 - o)
    dh_{t-1} = da U^T        dc_{t-1} = dc f             dU = sum_t h_{t-1}^T da_t  (one product at the end)

(``dh_{t-1} = da U^T`` in four blocks of columns too, each a quarter of H.)

GRU (PyTorch's r, z, n and formula), with ``a = xw_t`` and ``b = h_{t-1} U + b_h``:

    r, z = sigmoid(a_r + b_r), sigmoid(a_z + b_z)    n = tanh(a_n + r b_n)    h_t = (1 - z) n + z h_{t-1}

A ``keep`` mask (B, T) marks real steps (1) and padding (0): on padding the carry passes through
unchanged, forward and backward. It is an input array of the primitive (with no gradient), not a
setting, so a mask computed inside a traced function (``axon.jit``) is each call's own. The backward
kernel is a primitive too (its forward is the backward pass), so it runs through the engine's table
on any backend; under ``backward(create_graph=True)`` the VJP is written with Tensor operations
instead, step by step, so grad of grad works.

>>> import numpy as np
>>> B, T, H = 2, 3, 4
>>> r = np.random.default_rng(0)
>>> xw, wh = r.standard_normal((B, T, 4 * H)), r.standard_normal((H, 4 * H))
>>> y = lstm_sequence(xw, np.zeros((B, H)), np.zeros((B, H)), wh)   # (2, B, T, H): the carries h, c
>>> y.shape
(2, 2, 3, 4)
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange
from numba.extending import overload

from ..autograd import Tensor, apply, concatenate, is_grad_enabled, primitive, reshape, stack, transpose
from ..autograd import sigmoid as tsigmoid, sum as tsum, tanh as ttanh
from ._common import KERNEL, bool_mask, check_same_dtype, contiguous, float_tensor, num_chunks, on_backend_of
from .matrix_product import _product
from .threads import use_single_threaded_blas

__all__ = ["lstm_sequence", "gru_sequence"]

# Below this many multiply-adds in the recurrent products (B T H 4H) one thread runs every row.
_PARALLEL_MIN = 1 << 23


# ---- tanh and sigmoid that vectorise ------------------------------------------------------------------
def _tanh(x):
    """tanh: in float32 a rational approximation LLVM can vectorise (libm's tanh cannot be), exact in float64."""
    return np.tanh(x)


@overload(_tanh, inline="always")
def _tanh_overload(x):
    if x != numba.float32:
        return lambda x: np.tanh(x)

    def tanh32(x):
        # Eigen's float tanh: a (13, 6) rational fit on [-7.9, 7.9] (beyond it tanh is +-1 in float32);
        # measured here: 2.6e-7 from the exact value at worst (2 ulp), 50x libm's speed in a loop.
        c = np.float32(7.90531110763549805)
        x = min(max(x, -c), c)
        x2 = x * x
        p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
        p = x2 * p + np.float32(-8.60467152213735e-11)
        p = x2 * p + np.float32(5.12229709037114e-08)
        p = x2 * p + np.float32(1.48572235717979e-05)
        p = x2 * p + np.float32(6.37261928875436e-04)
        p = x2 * p + np.float32(4.89352455891786e-03)
        q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
        q = x2 * q + np.float32(2.26843463243900e-03)
        q = x2 * q + np.float32(4.89352518554385e-03)
        return x * p / q
    return tanh32


@njit(**KERNEL)
def _sigmoid_of_sum(a, x, b, out):
    # a, x, b, out (n,), out apart from the others: out = sigmoid(a + x + b) = (tanh((a + x + b) / 2) + 1) / 2,
    # stable for any value (out in place of an input makes LLVM's overlap check pick the scalar loop: 7x slower)
    half, one = a.dtype.type(0.5), a.dtype.type(1)
    for k in range(a.shape[0]):
        out[k] = half * (_tanh(half * (a[k] + x[k] + b[k])) + one)


@njit(**KERNEL)
def _tanh_of_sum(a, x, b, out):
    # a, x, b, out (n,), out apart from the others: out = tanh(a + x + b)
    for k in range(a.shape[0]):
        out[k] = _tanh(a[k] + x[k] + b[k])


@njit(**KERNEL)
def _tanh_into(v, out):
    # v, out (n,): out = tanh(v)
    for k in range(v.shape[0]):
        out[k] = _tanh(v[k])


@njit(**KERNEL)
def _copy_into(src, dst):
    # src, dst (n,): dst = src. A plain loop: numba's slice assignment (dst[:] = src) measured about 2x
    # slower on these short rows, and the kernels below copy a few rows per batch row and step
    for j in range(src.shape[0]):
        dst[j] = src[j]


# ---- the recurrent products, a block of columns at a time ----------------------------------------------
def _column_blocks(w, g):
    """``w`` (K, N) as ``g`` contiguous blocks of columns, (g, K, N / g): the operand of ``_block_products``."""
    K, N = w.shape
    return np.ascontiguousarray(w.reshape(K, g, N // g).transpose(1, 0, 2))


def _quarters(H):
    """How many blocks of columns ``dh = da U^T`` (B, H) is made in: 4 where H allows it, else 1."""
    return 4 if H % 4 == 0 else 1


@njit(**KERNEL)
def _block_products(a, w, out):
    # a (n, K); w (G, K, N/G) the column blocks of W; out (G, n, N/G): out[k] = a @ w[k], block k of a @ W.
    # G products, not one: OpenBLAS (on AVX-512 CPUs) runs a product of up to 10^6 multiply-adds with
    # small-matrix kernels that skip packing its operands into buffers. Per step, B 32 H 128, one gate's
    # h U_k is such a product, and so is a quarter of da U^T. Measured here, 64 steps on 1 thread: h U
    # 2.8-2.9 ms in one call each, 2.1-2.2 ms in four; da U^T 2.9-3.1 ms, 1.8-2.0 ms in quarters.
    for k in range(w.shape[0]):
        np.dot(a, w[k], out[k])


@njit(**KERNEL)
def _add_block_products(a, w, part, out):
    # a (n, K); w (G, K, H/G) the column blocks of W; part (G, n, H/G) scratch; out (n, H) += a @ W
    G, Q = part.shape[0], part.shape[2]
    _block_products(a, w, part)
    for r in range(out.shape[0]):
        for k in range(G):
            o, p = out[r, k * Q:(k + 1) * Q], part[k, r]
            for j in range(Q):
                o[j] += p[j]


# ---- LSTM ---------------------------------------------------------------------------------------------
@njit(**KERNEL)
def _lstm_rows(xw, h0, c0, wu, bias, keep, reverse, hs, cs, gates, b0, b1):
    # xw (B, T, 4H); h0, c0 (B, H); wu (4, H, H): U's blocks U_i, U_f, U_g, U_o; bias (4H,);
    # keep (B, T): 1 a real step, 0 padding (the carry is kept)
    # hs, cs (B, T, H): the carry after each step; gates (B, T, 5H): i, f, g, o after their
    # nonlinearities, and tanh(c_t). Each loop below runs over one contiguous slice, so it vectorises.
    T, H = xw.shape[1], h0.shape[1]
    n = b1 - b0
    h, c = h0[b0:b1].copy(), c0[b0:b1].copy()                  # (n, H): this thread's rows of the carry
    hu = np.empty((4, n, H), dtype=xw.dtype)                   # h_{t-1} U_i, h_{t-1} U_f, ...
    for s in range(T):
        t = T - 1 - s if reverse else s
        _block_products(h, wu, hu)
        for r in range(n):
            b = b0 + r
            gb = gates[b, t]                                   # (5H,)
            if keep[b, t] != 0:
                xr = xw[b, t]
                i, f, g, o, tc = gb[:H], gb[H:2 * H], gb[2 * H:3 * H], gb[3 * H:4 * H], gb[4 * H:]
                _sigmoid_of_sum(hu[0, r], xr[:H], bias[:H], i)
                _sigmoid_of_sum(hu[1, r], xr[H:2 * H], bias[H:2 * H], f)
                _tanh_of_sum(hu[2, r], xr[2 * H:3 * H], bias[2 * H:3 * H], g)
                _sigmoid_of_sum(hu[3, r], xr[3 * H:], bias[3 * H:], o)
                cr, hr = c[r], h[r]
                for j in range(H):
                    cr[j] = f[j] * cr[j] + i[j] * g[j]
                _tanh_into(cr, tc)
                for j in range(H):
                    hr[j] = o[j] * tc[j]
            else:
                gb[:] = 0
            _copy_into(h[r], hs[b, t])
            _copy_into(c[r], cs[b, t])


@njit(parallel=True, **KERNEL)
def _lstm_parallel(xw, h0, c0, wu, bias, keep, reverse, hs, cs, gates, n_chunks):
    B = xw.shape[0]
    for k in prange(n_chunks):
        _lstm_rows(xw, h0, c0, wu, bias, keep, reverse, hs, cs, gates, k * B // n_chunks, (k + 1) * B // n_chunks)


@njit(**KERNEL)
def _lstm_cell_backward(dhs_t, dcs_t, gb, c_prev, dh, dc, da):
    # One step of one row, in one loop over j: dhs_t, dcs_t (H,) the gradients arriving at the step's
    # carries; gb (5H,) i, f, g, o, tanh(c_t); c_prev (H,); dh, dc (H,) the running gradients from the
    # steps after. Writes da (4H,), the gate pre-activations' gradients, dc_{t-1} into dc, and 0 into
    # dh: dh_{t-1} = da U^T is the caller's product, added to it over all rows at once.
    H = dh.shape[0]
    one = dh.dtype.type(1)
    for j in range(H):
        i, f, g, o, tc = gb[j], gb[H + j], gb[2 * H + j], gb[3 * H + j], gb[4 * H + j]
        dh_j = dh[j] + dhs_t[j]
        dc_j = dc[j] + dcs_t[j] + dh_j * o * (one - tc * tc)
        da[j] = dc_j * g * i * (one - i)
        da[H + j] = dc_j * c_prev[j] * f * (one - f)
        da[2 * H + j] = dc_j * i * (one - g * g)
        da[3 * H + j] = dh_j * tc * o * (one - o)
        dc[j] = dc_j * f
        dh[j] = 0


@njit(**KERNEL)
def _lstm_backward_rows(dhs, dcs, c0, wt, keep, reverse, cs, gates, da_all, dcarry, b0, b1):
    # dhs, dcs (B, T, H): gradients of the carries after each step; wt (G, 4H, H/G): U^T's column blocks;
    # cs, gates as the forward wrote them
    # da_all (B, T, 4H): gradients of the gate pre-activations (= of xw); dcarry (B, 2, H): of h0 and c0.
    # Every element of da_all and dcarry is written (0 on padding), so they need no zeroing beforehand.
    T, H = dhs.shape[1], c0.shape[1]
    n = b1 - b0
    dh = np.zeros((n, H), dtype=dhs.dtype)
    dc = np.zeros((n, H), dtype=dhs.dtype)
    da = np.empty((n, 4 * H), dtype=dhs.dtype)                 # this step's da, contiguous for the product
    part = np.empty((wt.shape[0], n, wt.shape[2]), dtype=dhs.dtype)   # da U^T, block by block
    for s in range(T):
        t = s if reverse else T - 1 - s                       # the forward's steps, last first
        tp = t + 1 if reverse else t - 1                      # the step before t in the forward's order
        first = tp == T or tp < 0
        for r in range(n):
            b = b0 + r
            if keep[b, t] != 0:
                c_prev = c0[b] if first else cs[b, tp]
                _lstm_cell_backward(dhs[b, t], dcs[b, t], gates[b, t], c_prev, dh[r], dc[r], da[r])
            else:                                              # padding: the carries' gradients pass through
                for j in range(H):
                    dh[r, j] += dhs[b, t, j]
                    dc[r, j] += dcs[b, t, j]
                for j in range(4 * H):
                    da[r, j] = 0
            _copy_into(da[r], da_all[b, t])
        _add_block_products(da, wt, part, dh)                  # dh += da U^T (padding: da = 0, dh passes)
    for r in range(n):
        _copy_into(dh[r], dcarry[b0 + r, 0])
        _copy_into(dc[r], dcarry[b0 + r, 1])


@njit(parallel=True, **KERNEL)
def _lstm_backward_parallel(dhs, dcs, c0, wt, keep, reverse, cs, gates, da_all, dcarry, n_chunks):
    B = dhs.shape[0]
    for k in prange(n_chunks):
        _lstm_backward_rows(dhs, dcs, c0, wt, keep, reverse, cs, gates, da_all, dcarry,
                            k * B // n_chunks, (k + 1) * B // n_chunks)


def _chunks(B, T, H, G):
    use_single_threaded_blas()
    return num_chunks(B * T * H * G, B, _PARALLEL_MIN)


def _lstm_forward(xw, h0, c0, wh, bias, keep, reverse):
    xw, h0, c0, wh, bias = contiguous(xw), contiguous(h0), contiguous(c0), contiguous(wh), contiguous(bias)
    keep = contiguous(keep)
    B, T, H = xw.shape[0], xw.shape[1], h0.shape[1]
    y = np.empty((2, B, T, H), dtype=xw.dtype)                 # y[0] the h carries, y[1] the c carries
    gates = np.empty((B, T, 5 * H), dtype=xw.dtype)            # i, f, g, o, tanh(c)
    if B and T:
        n = _chunks(B, T, H, 4 * H)
        wu = _column_blocks(wh, 4)                             # (H, 4H) -> (4, H, H): U_i, U_f, U_g, U_o
        if n == 1:
            _lstm_rows(xw, h0, c0, wu, bias, keep, reverse, y[0], y[1], gates, 0, B)
        else:
            _lstm_parallel(xw, h0, c0, wu, bias, keep, reverse, y[0], y[1], gates, n)
    return y, gates


def _lstm_backward_forward(dy, y, c0, wh, gates, keep, reverse):
    """The backward kernel as a primitive's forward: one flat array, d xw (B, T, 4H) then d(h0, c0) (B, 2, H).

    A primitive returns one array; flat, both parts are contiguous views of it (no copies).
    """
    dy, y = contiguous(dy), contiguous(y)
    B, T, H = dy.shape[1], dy.shape[2], dy.shape[3]
    out = (np.empty if B and T else np.zeros)(B * T * 4 * H + 2 * B * H, dtype=dy.dtype)   # the kernel writes it all
    da, dcarry = out[:B * T * 4 * H].reshape(B, T, 4 * H), out[B * T * 4 * H:].reshape(B, 2, H)
    if B and T:
        n = _chunks(B, T, H, 4 * H)
        wt = _column_blocks(wh.T, _quarters(H))                # (4H, H) -> (G, 4H, H/G)
        args = (dy[0], dy[1], contiguous(c0), wt, contiguous(keep), reverse, y[1], gates, da, dcarry)
        if n == 1:
            _lstm_backward_rows(*args, 0, B)
        else:
            _lstm_backward_parallel(*args, n)
    return out


def _no_vjp(*_, **__):
    raise NotImplementedError("the backward kernels are differentiated through their Tensor-op twins")


_lstm_backward = primitive("kernels.lstm_sequence_backward", _lstm_backward_forward, _no_vjp, higher_order=False)


def _previous(seq, first, reverse):
    """The carry before each step: (B, T, H) seq shifted one step along the forward's order, ``first`` in front."""
    first = reshape(first, (first.shape[0], 1, first.shape[1]))
    return concatenate([seq[:, 1:], first] if reverse else [first, seq[:, :-1]], axis=1)


def _weight_grad(prev, da):
    """sum_t prev_t^T da_t: one (H, B T) @ (B T, G) product."""
    return _product(reshape(prev, (-1, prev.shape[-1])), reshape(da, (-1, da.shape[-1])), True, False)


def _steps(T, reverse):
    """The forward's steps, last first (the order a backward walks them), with the step before each."""
    return [(t, t + 1 if reverse else t - 1) for t in (range(T) if reverse else range(T - 1, -1, -1))]


def _lstm_vjp_ops(dy, y, xw, h0, c0, wh, bias, keep, reverse):
    """The LSTM's VJP from Tensor operations, step by step (differentiable again)."""
    T, H = xw.shape[1], h0.shape[1]
    k = reshape(keep, keep.shape + (1,))                       # (B, T) -> (B, T, 1)
    dh = dc = None
    da = [None] * T
    for t, tp in _steps(T, reverse):
        h_prev = h0 if tp in (-1, T) else y[0][:, tp]
        c_prev = c0 if tp in (-1, T) else y[1][:, tp]
        dh = dy[0][:, t] if dh is None else dh + dy[0][:, t]
        dc = dy[1][:, t] if dc is None else dc + dy[1][:, t]
        a = xw[:, t] + bias + h_prev @ wh                      # (B, 4H)
        i, f, g, o = tsigmoid(a[:, :H]), tsigmoid(a[:, H:2 * H]), ttanh(a[:, 2 * H:3 * H]), tsigmoid(a[:, 3 * H:])
        tc = ttanh(f * c_prev + i * g)
        dcj = dc + dh * o * (1 - tc * tc)
        kt = k[:, t]
        da[t] = concatenate([dcj * g * i * (1 - i), dcj * c_prev * f * (1 - f), dcj * i * (1 - g * g),
                             dh * tc * o * (1 - o)], axis=1) * kt
        dh = dh * (1 - kt) + da[t] @ transpose(wh)
        dc = dc * (1 - kt) + dcj * f * kt
    da = stack(da, axis=1)                                     # (B, T, 4H)
    return da, dh, dc, _weight_grad(_previous(y[0], h0, reverse), da), tsum(da, (0, 1))


def _lstm_vjp(dy, y, xw, h0, c0, wh, bias, keep, reverse, saved):
    if is_grad_enabled():                                      # backward(create_graph=True): record it
        return (*_lstm_vjp_ops(dy, y, xw, h0, c0, wh, bias, keep, reverse), None)     # (the mask: no gradient)
    B, T, H = xw.shape[0], xw.shape[1], h0.shape[1]
    out = apply(_lstm_backward, dy, y, c0, wh, Tensor._wrap(saved), keep, reverse=reverse)
    n = B * T * 4 * H
    da, dcarry = reshape(out[:n], (B, T, 4 * H)), reshape(out[n:], (B, 2, H))
    dwh = _weight_grad(_previous(y[0], h0, reverse), da) if wh.requires_grad else None
    return da, dcarry[:, 0], dcarry[:, 1], dwh, tsum(da, (0, 1)) if bias.requires_grad else None, None


_lstm = primitive("kernels.lstm_sequence", _lstm_forward, _lstm_vjp, saves=True)


# ---- GRU ----------------------------------------------------------------------------------------------
@njit(**KERNEL)
def _gru_rows(xw, h0, wu, bh, keep, reverse, hs, gates, b0, b1):
    # xw (B, T, 3H) the input projections (their bias included); h0 (B, H); wu (3, H, H): U's blocks
    # U_r, U_z, U_n; bh (3H,); keep (B, T)
    # hs (B, T, H): the carry after each step; gates (B, T, 4H): r, z, n and b_n = (h U + b_h)_n
    T, H = xw.shape[1], h0.shape[1]
    n = b1 - b0
    h = h0[b0:b1].copy()                                       # (n, H)
    hu = np.empty((3, n, H), dtype=xw.dtype)                   # h_{t-1} U_r, h_{t-1} U_z, h_{t-1} U_n
    one = xw.dtype.type(1)
    for s in range(T):
        t = T - 1 - s if reverse else s
        _block_products(h, wu, hu)
        for r in range(n):
            b = b0 + r
            gb = gates[b, t]                                   # (4H,)
            if keep[b, t] != 0:
                xr, hr = xw[b, t], h[r]
                rr, z, nn, bn = gb[:H], gb[H:2 * H], gb[2 * H:3 * H], gb[3 * H:]
                _sigmoid_of_sum(hu[0, r], xr[:H], bh[:H], rr)
                _sigmoid_of_sum(hu[1, r], xr[H:2 * H], bh[H:2 * H], z)
                hn, xn, bhn = hu[2, r], xr[2 * H:], bh[2 * H:]
                for j in range(H):
                    bn_j = hn[j] + bhn[j]                      # (h U + b_h)_n
                    bn[j] = bn_j
                    nn[j] = _tanh(xn[j] + rr[j] * bn_j)
                for j in range(H):
                    hr[j] = (one - z[j]) * nn[j] + z[j] * hr[j]
            else:
                gb[:] = 0
            _copy_into(h[r], hs[b, t])


@njit(parallel=True, **KERNEL)
def _gru_parallel(xw, h0, wu, bh, keep, reverse, hs, gates, n_chunks):
    B = xw.shape[0]
    for k in prange(n_chunks):
        _gru_rows(xw, h0, wu, bh, keep, reverse, hs, gates, k * B // n_chunks, (k + 1) * B // n_chunks)


@njit(**KERNEL)
def _gru_backward_rows(dhs, h0, wt, keep, reverse, hs, gates, dxw, dhw, dh0, b0, b1):
    # dhs (B, T, H); wt (G, 3H, H/G): U^T's column blocks
    # dxw, dhw (B, T, 3H): gradients of the input projections and of h U + b_h; dh0 (B, H). Every
    # element of dxw, dhw and dh0 is written (0 on padding), so they need no zeroing beforehand.
    T, H = dhs.shape[1], h0.shape[1]
    n = b1 - b0
    dh = np.zeros((n, H), dtype=dhs.dtype)
    db = np.empty((n, 3 * H), dtype=dhs.dtype)
    part = np.empty((wt.shape[0], n, wt.shape[2]), dtype=dhs.dtype)   # db U^T, block by block
    one = dhs.dtype.type(1)
    for s in range(T):
        t = s if reverse else T - 1 - s
        tp = t + 1 if reverse else t - 1
        first = tp == T or tp < 0
        for r in range(n):
            b = b0 + r
            dhs_t = dhs[b, t]
            for j in range(H):
                dh[r, j] += dhs_t[j]
            if keep[b, t] != 0:
                gb, dxr, dhr, dbr = gates[b, t], dxw[b, t], dh[r], db[r]
                rr, z, nn, bn = gb[:H], gb[H:2 * H], gb[2 * H:3 * H], gb[3 * H:]
                h_prev = h0[b] if first else hs[b, tp]
                dx_r, dx_z, dx_n = dxr[:H], dxr[H:2 * H], dxr[2 * H:]
                db_r, db_z, db_n = dbr[:H], dbr[H:2 * H], dbr[2 * H:]
                for j in range(H):
                    g = dhr[j]
                    dan = g * (one - z[j]) * (one - nn[j] * nn[j])
                    dar = dan * bn[j] * rr[j] * (one - rr[j])
                    daz = g * (h_prev[j] - nn[j]) * z[j] * (one - z[j])
                    dx_r[j], dx_z[j], dx_n[j] = dar, daz, dan
                    db_r[j], db_z[j], db_n[j] = dar, daz, dan * rr[j]
                    dhr[j] = g * z[j]                          # the direct path z h_{t-1}
            else:
                db[r, :] = 0
                dxw[b, t, :] = 0
            _copy_into(db[r], dhw[b, t])
        _add_block_products(db, wt, part, dh)                  # dh += db U^T (padding: db = 0)
    for r in range(n):
        _copy_into(dh[r], dh0[b0 + r])


@njit(parallel=True, **KERNEL)
def _gru_backward_parallel(dhs, h0, wt, keep, reverse, hs, gates, dxw, dhw, dh0, n_chunks):
    B = dhs.shape[0]
    for k in prange(n_chunks):
        _gru_backward_rows(dhs, h0, wt, keep, reverse, hs, gates, dxw, dhw, dh0,
                           k * B // n_chunks, (k + 1) * B // n_chunks)


def _gru_forward(xw, h0, wh, bh, keep, reverse):
    xw, h0, wh, bh, keep = contiguous(xw), contiguous(h0), contiguous(wh), contiguous(bh), contiguous(keep)
    B, T, H = xw.shape[0], xw.shape[1], h0.shape[1]
    hs = np.empty((B, T, H), dtype=xw.dtype)
    gates = np.empty((B, T, 4 * H), dtype=xw.dtype)
    if B and T:
        n = _chunks(B, T, H, 3 * H)
        wu = _column_blocks(wh, 3)                             # (H, 3H) -> (3, H, H): U_r, U_z, U_n
        if n == 1:
            _gru_rows(xw, h0, wu, bh, keep, reverse, hs, gates, 0, B)
        else:
            _gru_parallel(xw, h0, wu, bh, keep, reverse, hs, gates, n)
    return hs, gates


def _gru_backward_forward(dy, y, h0, wh, gates, keep, reverse):
    """The backward kernel as a primitive's forward: one flat array, d xw and d(h U + b_h) (B, T, 3H) each, then dh0."""
    dy, y = contiguous(dy), contiguous(y)
    B, T, H = dy.shape[0], dy.shape[1], dy.shape[2]
    n = B * T * 3 * H
    out = (np.empty if B and T else np.zeros)(2 * n + B * H, dtype=dy.dtype)   # the kernel writes it all
    dxw, dhw, dh0 = out[:n].reshape(B, T, 3 * H), out[n:2 * n].reshape(B, T, 3 * H), out[2 * n:].reshape(B, H)
    if B and T:
        chunks = _chunks(B, T, H, 3 * H)
        wt = _column_blocks(wh.T, _quarters(H))                # (3H, H) -> (G, 3H, H/G)
        args = (dy, contiguous(h0), wt, contiguous(keep), reverse, y, gates, dxw, dhw, dh0)
        if chunks == 1:
            _gru_backward_rows(*args, 0, B)
        else:
            _gru_backward_parallel(*args, chunks)
    return out


_gru_backward = primitive("kernels.gru_sequence_backward", _gru_backward_forward, _no_vjp, higher_order=False)


def _gru_vjp_ops(dy, y, xw, h0, wh, bh, keep, reverse):
    """The GRU's VJP from Tensor operations, step by step (differentiable again)."""
    T, H = xw.shape[1], h0.shape[1]
    k = reshape(keep, keep.shape + (1,))                       # (B, T) -> (B, T, 1)
    dh = None
    dxw, dhw = [None] * T, [None] * T
    for t, tp in _steps(T, reverse):
        h_prev = h0 if tp in (-1, T) else y[:, tp]
        dh = dy[:, t] if dh is None else dh + dy[:, t]
        a, b = xw[:, t], h_prev @ wh + bh                     # (B, 3H) each
        r, z = tsigmoid(a[:, :H] + b[:, :H]), tsigmoid(a[:, H:2 * H] + b[:, H:2 * H])
        n = ttanh(a[:, 2 * H:] + r * b[:, 2 * H:])
        kt = k[:, t]
        dan = dh * (1 - z) * (1 - n * n) * kt
        dar = dan * b[:, 2 * H:] * r * (1 - r)
        daz = dh * (h_prev - n) * z * (1 - z) * kt
        dxw[t] = concatenate([dar, daz, dan], axis=1)
        dhw[t] = concatenate([dar, daz, dan * r], axis=1)
        dh = dh * (1 - kt) + dh * z * kt + dhw[t] @ transpose(wh)
    dxw, dhw = stack(dxw, axis=1), stack(dhw, axis=1)          # (B, T, 3H) each
    return dxw, dh, _weight_grad(_previous(y, h0, reverse), dhw), tsum(dhw, (0, 1))


def _gru_vjp(dy, y, xw, h0, wh, bh, keep, reverse, saved):
    if is_grad_enabled():
        return (*_gru_vjp_ops(dy, y, xw, h0, wh, bh, keep, reverse), None)             # (the mask: no gradient)
    B, T, H = xw.shape[0], xw.shape[1], h0.shape[1]
    out = apply(_gru_backward, dy, y, h0, wh, Tensor._wrap(saved), keep, reverse=reverse)
    n = B * T * 3 * H
    dxw, dhw, dh0 = reshape(out[:n], (B, T, 3 * H)), reshape(out[n:2 * n], (B, T, 3 * H)), reshape(out[2 * n:], (B, H))
    dwh = _weight_grad(_previous(y, h0, reverse), dhw) if wh.requires_grad else None
    return dxw, dh0, dwh, tsum(dhw, (0, 1)) if bh.requires_grad else None, None


_gru = primitive("kernels.gru_sequence", _gru_forward, _gru_vjp, saves=True)


# ---- the wrappers: checks in Python, then one primitive -----------------------------------------------
def _check(fn, xw, carry, wh, gates, mask, extra=()):
    xw = float_tensor(fn, "xw", xw)
    carry = [float_tensor(fn, name, c) for name, c in carry]
    wh = float_tensor(fn, "wh", wh)
    extra = [float_tensor(fn, name, e) for name, e in extra]
    check_same_dtype(fn, xw=xw, wh=wh, **{f"carry{i}": c for i, c in enumerate(carry)},
                     **{f"extra{i}": e for i, e in enumerate(extra)})
    if xw.ndim != 3:
        raise ValueError(f"{fn}: xw must be (B, T, {gates}H), got shape {xw.shape}")
    B, T = xw.shape[:2]
    H = carry[0].shape[-1] if carry[0].ndim == 2 else -1
    for c in carry:
        if c.shape != (B, H):
            raise ValueError(f"{fn}: the carry must be (B, H) = ({B}, H), got shapes {[c.shape for c in carry]}")
    if xw.shape[2] != gates * H or wh.shape != (H, gates * H):
        raise ValueError(f"{fn}: expects xw (B, T, {gates}H) and wh (H, {gates}H) for H = {H}, got xw {xw.shape} "
                         f"and wh {wh.shape}")
    if mask is None:
        return xw, carry, wh, extra, on_backend_of(xw, np.ones((B, T), xw.dtype))
    keep = bool_mask(fn, mask, xw)
    if keep.shape != (B, T):
        raise ValueError(f"{fn}: mask must be (B, T) = ({B}, {T}), got shape {keep.shape}")
    return xw, carry, wh, extra, keep.astype(xw.dtype)        # (B, T): 1 a real step, 0 padding


def lstm_sequence(xw, h0, c0, wh, bias=None, mask=None, reverse=False):
    """The LSTM recurrence over all steps: ``xw`` (B, T, 4H) = x W precomputed, carry (h0, c0) (B, H) each.

    ``bias`` (4H,) (or None) is added inside the kernel, in the same pass as ``xw_t + h_{t-1} U``.

    Returns y (2, B, T, H): ``y[0, :, t]`` and ``y[1, :, t]`` are h and c after step t (on a padded
    step, where ``mask`` (B, T) is False, the carry from before). ``reverse`` runs from the last step.

    >>> import numpy as np
    >>> xw = np.zeros((1, 2, 4), np.float32)                 # H = 1, every gate's input 0
    >>> y = lstm_sequence(xw, np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32), np.zeros((1, 4), np.float32))
    >>> y[1, 0, :, 0].numpy()                                # c = f c + i g = c / 2 each step
    array([0.5 , 0.25], dtype=float32)
    """
    extra = [] if bias is None else [("bias", bias)]
    xw, (h0, c0), wh, extra, keep = _check("lstm_sequence", xw, [("h0", h0), ("c0", c0)], wh, 4, mask, extra)
    bias = extra[0] if extra else on_backend_of(xw, np.zeros(wh.shape[1], xw.dtype))   # no bias: zeros, xw's device
    if bias.shape != (wh.shape[1],):
        raise ValueError(f"lstm_sequence: bias must be ({wh.shape[1]},), got shape {bias.shape}")
    return apply(_lstm, xw, h0, c0, wh, bias, keep, reverse=bool(reverse))


def gru_sequence(xw, h0, wh, bh, mask=None, reverse=False):
    """The GRU recurrence over all steps: ``xw`` (B, T, 3H) = x W + b_i precomputed, h0 (B, H), ``bh`` (3H,).

    Returns the carry after every step, (B, T, H) (kept from before on padded steps).

    >>> import numpy as np
    >>> xw = np.zeros((1, 2, 3), np.float32)                 # H = 1: z = 1/2, n = 0
    >>> gru_sequence(xw, np.ones((1, 1), np.float32), np.zeros((1, 3), np.float32), np.zeros(3, np.float32)).numpy()
    array([[[0.5 ],
            [0.25]]], dtype=float32)
    """
    xw, (h0,), wh, (bh,), keep = _check("gru_sequence", xw, [("h0", h0)], wh, 3, mask, [("bh", bh)])
    if bh.shape != (wh.shape[1],):
        raise ValueError(f"gru_sequence: bh must be ({wh.shape[1]},), got shape {bh.shape}")
    return apply(_gru, xw, h0, wh, bh, keep, reverse=bool(reverse))
