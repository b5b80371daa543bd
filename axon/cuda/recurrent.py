"""The fused LSTM and GRU recurrences on the GPU: one launch for the whole sequence, forward and backward.

The same four primitives as ``axon.kernels.recurrent``, with the same arguments and results (the
wrappers ``lstm_sequence`` / ``gru_sequence`` check shapes and dtypes before ``apply``):

- ``kernels.lstm_sequence(xw, h0, c0, wh, bias, keep, *, reverse) -> (y, gates)``: y (2, B, T, H) the
  carries h and c after each step, gates (B, T, 5H) = i, f, g, o and tanh(c_t), saved;
- ``kernels.lstm_sequence_backward(dy, y, c0, wh, gates, keep, *, reverse) -> out``: one flat array,
  d xw (B, T, 4H) then d(h0, c0) (B, 2, H);
- ``kernels.gru_sequence(xw, h0, wh, bh, keep, *, reverse) -> (hs, gates)``: hs (B, T, H), gates
  (B, T, 4H) = r, z, n and b_n = (h U + b_h)_n, saved;
- ``kernels.gru_sequence_backward(dy, y, h0, wh, gates, keep, *, reverse) -> out``: d xw and
  d(h U + b_h) (B, T, 3H) each, then d h0 (B, H).

Rows of the batch are independent, so each row gets one block of threads, which walks all the steps
itself (a launch per step would cost ~22 us each). A step has two phases with a barrier after each:

    phase 1, thread q of the 4H gate columns:  a_q = xw[b, t, q] + bias_q + sum_k h_{t-1}[k] U[k, q]
                                               i, f, o = sigmoid(a), g = tanh(a)   -> gates[b, t]
    phase 2, thread j of the H units:          c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)

``h_{t-1}`` is read back from the output (global memory: the barrier makes one phase's writes
visible to the whole block). The backward walks the steps in reverse with the running ``dh``, ``dc``
kept in its output's d(h0, c0) part: phase 1 the gate gradients, phase 2 ``dh_{t-1} = da U^T``.
The CPU twin's formulas, step for step (its module docstring has them); on padded steps (``keep`` 0)
the carry passes through unchanged.

>>> import numpy as np
>>> from axon.cuda._runtime import from_host, to_host
>>> xw = from_host(np.zeros((1, 2, 4), np.float32))                  # H = 1, every gate's input 0
>>> zeros, ones = from_host(np.zeros((1, 1), np.float32)), from_host(np.ones((1, 1), np.float32))
>>> y, gates = _lstm_forward(xw, zeros, ones, from_host(np.zeros((1, 4), np.float32)),
...                          from_host(np.zeros(4, np.float32)), from_host(np.ones((1, 2), np.float32)), False)
>>> to_host(y)[1, 0, :, 0]                                           # c = f c + i g = c / 2 each step
array([0.5 , 0.25], dtype=float32)
"""
from __future__ import annotations

import math

from ..autograd.engine import implement
from ._runtime import REDUCE_THREADS, cuda, empty, full, view
from .factories import row_blocks

__all__ = ["FORWARDS"]

T_BLOCK = REDUCE_THREADS                                         # threads per row's block


@cuda.jit(device=True)
def _sigmoid(v, half, one):
    return half * (math.tanh(half * v) + one)                    # stable for any v, as the CPU's


@cuda.jit(device=True)
def _step(T, reverse, s):
    """(t, tp, first): the s-th step of the forward's order, the step before it, whether it is the first."""
    t = T - 1 - s if reverse else s
    return t, (t + 1 if reverse else t - 1), s == 0


@cuda.jit(device=True)
def _back(T, reverse, s):
    """(t, tp, first) of the s-th step of a backward walk (the forward's steps, last first)."""
    t = s if reverse else T - 1 - s
    tp = t + 1 if reverse else t - 1
    return t, tp, tp == T or tp < 0


@cuda.jit(device=True)
def _h_u(a, h0, hs, wh, b, tp, first, q):
    """``a + (h_{t-1} U)[q]``: column q of the previous carry times the hidden kernel (phase 1)."""
    for k in range(wh.shape[0]):
        a += (h0[b, k] if first else hs[b, tp, k]) * wh[k, q]
    return a


@cuda.jit(device=True)
def _d_ut(acc, d, wh, b, t, j):
    """``acc + (d[b, t] U^T)[j]``: a step's gate gradients back through the hidden kernel (phase 2)."""
    for q in range(wh.shape[1]):
        acc += d[b, t, q] * wh[j, q]
    return acc


# ---- LSTM ---------------------------------------------------------------------------------------------
@cuda.jit
def _lstm_kernel(xw, h0, c0, wh, bias, keep, reverse, hs, cs, gates, half, one):
    # xw (B, T, 4H); h0, c0 (B, H); wh (H, 4H); bias (4H,); keep (B, T); hs, cs (B, T, H); gates (B, T, 5H)
    B, T, H = xw.shape[0], xw.shape[1], h0.shape[1]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        for s in range(T):
            t, tp, first = _step(T, reverse, s)
            kept = keep[b, t] != 0
            for q in range(tid, 5 * H, nt):                      # phase 1: the gates of step t
                if not kept or q >= 4 * H:
                    gates[b, t, q] = 0
                    continue
                a = _h_u(xw[b, t, q] + bias[q], h0, hs, wh, b, tp, first, q)
                gates[b, t, q] = math.tanh(a) if 2 * H <= q < 3 * H else _sigmoid(a, half, one)
            cuda.syncthreads()
            for j in range(tid, H, nt):                          # phase 2: the carry after step t
                c_prev = c0[b, j] if first else cs[b, tp, j]
                h_prev = h0[b, j] if first else hs[b, tp, j]
                if kept:
                    c = gates[b, t, H + j] * c_prev + gates[b, t, j] * gates[b, t, 2 * H + j]
                    tc = math.tanh(c)
                    gates[b, t, 4 * H + j] = tc
                    cs[b, t, j] = c
                    hs[b, t, j] = gates[b, t, 3 * H + j] * tc
                else:
                    cs[b, t, j] = c_prev
                    hs[b, t, j] = h_prev
            cuda.syncthreads()


def _lstm_forward(xw, h0, c0, wh, bias, keep, reverse):
    B, T, H = xw.shape[0], xw.shape[1], h0.shape[1]
    y = empty((2, B, T, H), xw.dtype)                            # y[0] the h carries, y[1] the c carries
    gates = empty((B, T, 5 * H), xw.dtype)                       # i, f, g, o, tanh(c)
    if B and T:
        n = B * T * H
        hs, cs = y.reshape(2 * n)[:n].reshape(B, T, H), y.reshape(2 * n)[n:].reshape(B, T, H)
        _lstm_kernel[row_blocks(B), T_BLOCK](xw, h0, c0, wh, bias, keep, bool(reverse), hs, cs, gates,
                                             xw.dtype.type(0.5), xw.dtype.type(1))
    return y, gates


@cuda.jit
def _lstm_backward_kernel(dhs, dcs, c0, wh, keep, reverse, cs, gates, da, dcarry, zero, one):
    # dhs, dcs (B, T, H) the carries' gradients; cs (B, T, H), gates (B, T, 5H) as the forward wrote them
    # da (B, T, 4H) out; dcarry (B, 2, H) zeroed: the running dh, dc, and at the end d h0, d c0
    B, T, H = dhs.shape[0], dhs.shape[1], c0.shape[1]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        for s in range(T):
            t, tp, first = _back(T, reverse, s)
            kept = keep[b, t] != 0
            for j in range(tid, H, nt):                          # phase 1: d of the gates' pre-activations
                dh = dcarry[b, 0, j] + dhs[b, t, j]
                dc = dcarry[b, 1, j] + dcs[b, t, j]
                if kept:
                    i, f, g = gates[b, t, j], gates[b, t, H + j], gates[b, t, 2 * H + j]
                    o, tc = gates[b, t, 3 * H + j], gates[b, t, 4 * H + j]
                    c_prev = c0[b, j] if first else cs[b, tp, j]
                    dcj = dc + dh * o * (one - tc * tc)
                    da[b, t, j] = dcj * g * i * (one - i)
                    da[b, t, H + j] = dcj * c_prev * f * (one - f)
                    da[b, t, 2 * H + j] = dcj * i * (one - g * g)
                    da[b, t, 3 * H + j] = dh * tc * o * (one - o)
                    dc = dcj * f
                else:
                    for part in range(4):
                        da[b, t, part * H + j] = zero
                dcarry[b, 0, j] = dh
                dcarry[b, 1, j] = dc
            cuda.syncthreads()
            if kept:                                             # phase 2: dh_{t-1} = da U^T (padding: dh as it is)
                for j in range(tid, H, nt):
                    dcarry[b, 0, j] = _d_ut(zero, da, wh, b, t, j)
            cuda.syncthreads()


def _lstm_backward(dy, y, c0, wh, gates, keep, reverse):
    B, T, H = dy.shape[1], dy.shape[2], dy.shape[3]
    n = B * T * 4 * H
    out = full((n + 2 * B * H,), 0, dy.dtype)                    # d xw, then d(h0, c0)
    if B and T:
        m = B * T * H
        dys, ys = view(dy)[0], view(y)[0]                        # (2 B T H,): h's part, then c's
        _lstm_backward_kernel[row_blocks(B), T_BLOCK](
            dys[:m].reshape(B, T, H), dys[m:].reshape(B, T, H), c0, wh, keep, bool(reverse),
            ys[m:].reshape(B, T, H), gates, out[:n].reshape(B, T, 4 * H), out[n:].reshape(B, 2, H),
            dy.dtype.type(0), dy.dtype.type(1))
    return out


# ---- GRU ----------------------------------------------------------------------------------------------
@cuda.jit
def _gru_kernel(xw, h0, wh, bh, keep, reverse, hs, gates, half, one):
    # xw (B, T, 3H) (input bias included); h0 (B, H); wh (H, 3H); bh (3H,); keep (B, T)
    # hs (B, T, H); gates (B, T, 4H): r, z, n and b_n = (h_{t-1} U + b_h)_n
    B, T, H = xw.shape[0], xw.shape[1], h0.shape[1]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        for s in range(T):
            t, tp, first = _step(T, reverse, s)
            kept = keep[b, t] != 0
            for q in range(tid, 3 * H, nt):                      # phase 1: r, z and b_n
                if not kept:
                    gates[b, t, q] = 0
                    if q < H:
                        gates[b, t, 3 * H + q] = 0
                    continue
                a = _h_u(bh[q], h0, hs, wh, b, tp, first, q)
                if q < 2 * H:
                    gates[b, t, q] = _sigmoid(xw[b, t, q] + a, half, one)
                else:
                    gates[b, t, H + q] = a                       # b_n at 3H + (q - 2H)
            cuda.syncthreads()
            for j in range(tid, H, nt):                          # phase 2: n and the new carry
                h_prev = h0[b, j] if first else hs[b, tp, j]
                if kept:
                    nn = math.tanh(xw[b, t, 2 * H + j] + gates[b, t, j] * gates[b, t, 3 * H + j])
                    z = gates[b, t, H + j]
                    gates[b, t, 2 * H + j] = nn
                    hs[b, t, j] = (one - z) * nn + z * h_prev
                else:
                    hs[b, t, j] = h_prev
            cuda.syncthreads()


def _gru_forward(xw, h0, wh, bh, keep, reverse):
    B, T, H = xw.shape[0], xw.shape[1], h0.shape[1]
    hs = empty((B, T, H), xw.dtype)
    gates = empty((B, T, 4 * H), xw.dtype)
    if B and T:
        _gru_kernel[row_blocks(B), T_BLOCK](xw, h0, wh, bh, keep, bool(reverse), hs, gates,
                                            xw.dtype.type(0.5), xw.dtype.type(1))
    return hs, gates


@cuda.jit
def _gru_backward_kernel(dhs, h0, wh, keep, reverse, hs, gates, dxw, dhw, dh0, zero, one):
    # dhs (B, T, H); dxw, dhw (B, T, 3H) out: d of the input projections and of h U + b_h
    # dh0 (B, H) zeroed: the running dh, and at the end d h0
    B, T, H = dhs.shape[0], dhs.shape[1], h0.shape[1]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        for s in range(T):
            t, tp, first = _back(T, reverse, s)
            kept = keep[b, t] != 0
            for j in range(tid, H, nt):                          # phase 1: the gates' gradients
                g = dh0[b, j] + dhs[b, t, j]
                if kept:
                    r, z = gates[b, t, j], gates[b, t, H + j]
                    nn, bn = gates[b, t, 2 * H + j], gates[b, t, 3 * H + j]
                    h_prev = h0[b, j] if first else hs[b, tp, j]
                    dan = g * (one - z) * (one - nn * nn)
                    dar = dan * bn * r * (one - r)
                    daz = g * (h_prev - nn) * z * (one - z)
                    dxw[b, t, j] = dar
                    dxw[b, t, H + j] = daz
                    dxw[b, t, 2 * H + j] = dan
                    dhw[b, t, j] = dar
                    dhw[b, t, H + j] = daz
                    dhw[b, t, 2 * H + j] = dan * r
                    g = g * z                                    # the direct path z h_{t-1}
                else:
                    for part in range(3):
                        dxw[b, t, part * H + j] = zero
                        dhw[b, t, part * H + j] = zero
                dh0[b, j] = g
            cuda.syncthreads()
            if kept:                                             # phase 2: dh_{t-1} += d(h U) U^T
                for j in range(tid, H, nt):
                    dh0[b, j] = _d_ut(dh0[b, j], dhw, wh, b, t, j)
            cuda.syncthreads()


def _gru_backward(dy, y, h0, wh, gates, keep, reverse):
    B, T, H = dy.shape[0], dy.shape[1], dy.shape[2]
    n = B * T * 3 * H
    out = full((2 * n + B * H,), 0, dy.dtype)                    # d xw, d(h U + b_h), then d h0
    if B and T:
        _gru_backward_kernel[row_blocks(B), T_BLOCK](
            view(dy)[0].reshape(B, T, H), h0, wh, keep, bool(reverse), y, gates, out[:n].reshape(B, T, 3 * H),
            out[n:2 * n].reshape(B, T, 3 * H), out[2 * n:].reshape(B, H), dy.dtype.type(0), dy.dtype.type(1))
    return out


implement("kernels.lstm_sequence", "cuda", _lstm_forward)
implement("kernels.lstm_sequence_backward", "cuda", _lstm_backward)
implement("kernels.gru_sequence", "cuda", _gru_forward)
implement("kernels.gru_sequence_backward", "cuda", _gru_backward)

FORWARDS = ("kernels.lstm_sequence", "kernels.lstm_sequence_backward", "kernels.gru_sequence",
            "kernels.gru_sequence_backward")
"""The primitives this module gives a CUDA forward."""
