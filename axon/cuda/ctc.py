"""CTC on the GPU: the forward-backward recursions of ``axon.kernels.ctc``, one block per sequence.

The same two primitives, arguments and results as the CPU (the loss's wrapper checks them):

- ``kernels.ctc_loss(lp, targets, input_lengths, target_lengths, *, blank, zero_infinity) -> (loss, (alpha, nll))``:
  lp (B, T, C), targets (B, S), the lengths (B,) int64; loss (B,) in lp's dtype, alpha (B, T, 2S + 1)
  and nll (B,) float64, saved;
- ``kernels.ctc_loss_backward(dy, lp, targets, input_lengths, target_lengths, alpha, nll, *, blank,
  zero_infinity) -> (dlp,)``.

A step of the recursion depends on the whole previous step, so the time loop stays serial; inside a
step the extended positions ``s`` are independent. Each sequence gets one block: its threads split
the positions, and a barrier separates the steps (``alpha[b, t - 1]`` is read from global memory
once every thread has written it). The backward runs ``beta`` the same way, backwards in time, then
one thread per element of ``dlp`` (B, T, C) sums its class's positions:

    d nll / d lp[t, k] = -exp(logsumexp_{s: ext[s] = k} (alpha[t, s] + beta[t, s]) - lp[t, k] + nll)

Everything runs in float64, as the CPU's; ``ext[s]`` (the target with blanks around and between its
labels) is computed on the fly: the blank at even ``s``, label ``s // 2`` at odd ``s``.

>>> import numpy as np
>>> from axon.cuda._runtime import from_host, to_host
>>> lp = from_host(np.log(np.full((1, 3, 2), 0.5)))                 # 3 steps, classes {blank, a}
>>> one = from_host(np.array([1]))
>>> loss, _ = _ctc_forward(lp, from_host(np.array([[1]])), from_host(np.array([3])), one, 0, False)
>>> float(to_host(loss)[0])                                         # 6 of 8 paths give "a"
0.2876820724517809
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd.engine import implement
from ..kernels.ctc import _logaddexp
from ._runtime import REDUCE_THREADS, cuda, empty, launch_1d
from .factories import row_blocks

__all__ = ["FORWARDS"]

_lae = cuda.jit(device=True)(_logaddexp.py_func)                # the CPU's scalar helper, compiled for the GPU


@cuda.jit(device=True)
def _ext(targets, b, s, blank):
    """The extended target's class at position s: blank at even s, label s // 2 at odd s."""
    return blank if s % 2 == 0 else targets[b, s // 2]


@cuda.jit(device=True)
def _fill_log_zero(a, b, tid, nt):
    """Row b of a (B, T, N) log-space table set to log 0 = -inf, the block's threads over N."""
    for s in range(tid, a.shape[2], nt):
        for t in range(a.shape[1]):
            a[b, t, s] = -math.inf


@cuda.jit
def _alpha_kernel(lp, targets, input_lengths, target_lengths, blank, zero_infinity, alpha, nll, loss):
    # lp (B, T, C); targets (B, S); lengths (B,); alpha (B, T, 2S + 1) float64; nll (B,) float64; loss (B,)
    B, T = alpha.shape[0], alpha.shape[1]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        t_len, L = input_lengths[b], target_lengths[b]
        n = 2 * L + 1
        _fill_log_zero(alpha, b, tid, nt)
        cuda.syncthreads()
        if tid == 0:                                             # start on the leading blank...
            alpha[b, 0, 0] = lp[b, 0, blank]
            if L > 0:                                            # ... or on the first label
                alpha[b, 0, 1] = lp[b, 0, _ext(targets, b, 1, blank)]
        cuda.syncthreads()
        for t in range(1, t_len):
            for s in range(tid, n, nt):
                e = _ext(targets, b, s, blank)
                a = alpha[b, t - 1, s]                           # stay
                if s >= 1:
                    a = _lae(a, alpha[b, t - 1, s - 1])          # advance one
                if s >= 2 and e != blank and e != _ext(targets, b, s - 2, blank):
                    a = _lae(a, alpha[b, t - 1, s - 2])          # skip a blank between different labels
                alpha[b, t, s] = a + lp[b, t, e]
            cuda.syncthreads()
        if tid == 0:
            last = t_len - 1 if t_len > 0 else T - 1             # (the CPU's alpha[b, -1] when t_len is 0)
            log_p = alpha[b, last, n - 1]                        # end on the trailing blank...
            if L > 0:
                log_p = _lae(log_p, alpha[b, last, n - 2])       # ... or on the last label
            nll[b] = -log_p
            loss[b] = 0.0 if zero_infinity and math.isinf(log_p) else -log_p
        cuda.syncthreads()


@cuda.jit
def _beta_kernel(lp, targets, input_lengths, target_lengths, blank, beta):
    # beta (B, T, 2S + 1) float64 out: the log-probability of all suffixes from (t, s), lp[t, ext[s]] included
    B = beta.shape[0]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        t_len, L = input_lengths[b], target_lengths[b]
        n = 2 * L + 1
        _fill_log_zero(beta, b, tid, nt)
        cuda.syncthreads()
        for t in range(t_len - 1, -1, -1):
            for s in range(tid, n, nt):
                e = _ext(targets, b, s, blank)
                if t == t_len - 1:                               # end on the trailing blank or the last label
                    v = lp[b, t, e] if s == n - 1 or (s == n - 2 and L > 0) else -math.inf
                else:
                    v = beta[b, t + 1, s]
                    if s + 1 < n:
                        v = _lae(v, beta[b, t + 1, s + 1])
                    if s + 2 < n and e != blank and _ext(targets, b, s + 2, blank) != e:
                        v = _lae(v, beta[b, t + 1, s + 2])
                    v = v + lp[b, t, e]
                beta[b, t, s] = v
            cuda.syncthreads()


@cuda.jit
def _grad_kernel(dlp, dy, lp, targets, input_lengths, target_lengths, blank, zero_infinity, alpha, beta, nll):
    # dlp (B*T*C,) out, lp's dtype: one thread per (b, t, k); 0 past each input length
    T, C = lp.shape[1], lp.shape[2]
    for i in range(cuda.grid(1), dlp.shape[0], cuda.gridsize(1)):
        b, t, k = i // (T * C), (i // C) % T, i % C
        v = 0.0
        if t < input_lengths[b] and not (zero_infinity and math.isinf(nll[b])):
            acc = -math.inf
            for s in range(2 * target_lengths[b] + 1):
                if _ext(targets, b, s, blank) == k:
                    acc = _lae(acc, alpha[b, t, s] + beta[b, t, s])
            if acc != -math.inf:
                v = -math.exp(acc - lp[b, t, k] + nll[b]) * dy[b]
        dlp[i] = v


def _ctc_forward(lp, targets, input_lengths, target_lengths, blank, zero_infinity):
    B, T = lp.shape[0], lp.shape[1]
    alpha = empty((B, T, 2 * targets.shape[1] + 1), np.float64)  # (B, T, 2S + 1)
    nll, loss = empty((B,), np.float64), empty((B,), lp.dtype)
    if B:
        _alpha_kernel[row_blocks(B), REDUCE_THREADS](lp, targets, input_lengths, target_lengths, int(blank),
                                                     bool(zero_infinity), alpha, nll, loss)
    return loss, (alpha, nll)


def _ctc_backward(dy, lp, targets, input_lengths, target_lengths, alpha, nll, blank, zero_infinity):
    dlp = empty(lp.shape, lp.dtype)                              # (B, T, C)
    if dlp.size:
        beta = empty(alpha.shape, np.float64)
        _beta_kernel[row_blocks(lp.shape[0]), REDUCE_THREADS](lp, targets, input_lengths, target_lengths,
                                                              int(blank), beta)
        _grad_kernel[launch_1d(dlp.size)](dlp.reshape(dlp.size), dy, lp, targets, input_lengths, target_lengths,
                                          int(blank), bool(zero_infinity), alpha, beta, nll)
    return (dlp,)


implement("kernels.ctc_loss", "cuda", _ctc_forward)
implement("kernels.ctc_loss_backward", "cuda", _ctc_backward)

FORWARDS = ("kernels.ctc_loss", "kernels.ctc_loss_backward")
"""The primitives this module gives a CUDA forward."""
