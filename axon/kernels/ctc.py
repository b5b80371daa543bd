"""Connectionist temporal classification (CTC): the loss and its gradient by the forward-backward recursions.

For one sequence of log-probabilities ``lp`` (T, C) and a target ``l`` of length L, the extended target
puts blanks around and between the labels, ``ext = [_, l1, _, l2, ..., _]`` (2L + 1); a path may stay on
a position, advance one, or skip a blank between two different labels. In log space:

    alpha[t, s] = lp[t, ext[s]] + logsumexp(alpha[t-1, s], alpha[t-1, s-1], alpha[t-1, s-2] if allowed)
    nll = -logsumexp(alpha[T-1, 2L], alpha[T-1, 2L-1])
    d nll / d lp[t, k] = -sum_{s: ext[s] = k} exp(alpha[t, s] + beta[t, s] - lp[t, k] + nll)

with ``beta`` the same recursion run backwards. Both run in float64 whatever ``lp``'s dtype, serially per
sequence (``parallel=True`` did not pay for typical batches).

Primitives (a backend implements both forwards with these signatures; the integer inputs are int64):

- ``kernels.ctc_loss(lp, targets, input_lengths, target_lengths, *, blank, zero_infinity) -> (loss, (alpha, nll))``:
  lp (B, T, C), targets (B, S), the lengths (B,); ``loss`` (B,) in lp's dtype; alpha (B, T, 2S + 1) and
  nll (B,) float64, saved for the backward;
- ``kernels.ctc_loss_backward(dy, lp, targets, input_lengths, target_lengths, alpha, nll, *, blank,
  zero_infinity) -> (dlp,)``.

>>> import numpy as np
>>> lp = np.log(np.full((1, 3, 2), 0.5))            # 3 steps, classes {blank, a}, all 50/50
>>> one = np.array([1])
>>> float(ctc_loss(lp, np.array([[1]]), np.array([3]), one, blank=0).numpy()[0])   # 6 of 8 paths give "a"
0.2876820724517809
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..autograd import Tensor, apply, as_tensor, primitive
from ._common import KERNEL, on_backend_of

__all__ = ["ctc_loss"]


@njit(**KERNEL)
def _logaddexp(a, b):
    """log(e^a + e^b) for scalars, exact when either is -inf."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@njit(**KERNEL)
def _extended(labels, length, blank):
    """The target with blanks around and between its labels: (2 L + 1,) = [_, l1, _, l2, ..., _]."""
    ext = np.full(2 * length + 1, blank, dtype=np.int64)
    for i in range(length):
        ext[2 * i + 1] = labels[i]
    return ext


@njit(**KERNEL)
def _ctc_alpha_kernel(lp, targets, input_lengths, target_lengths, blank, alpha, nll):
    """Forward variables of CTC in log space, and nll = -log p(target | input) per sequence.

    lp (B, T, C) log-probabilities; targets (B, S); input_lengths, target_lengths (B,);
    alpha (B, T, 2S + 1) out: log-probability of all prefixes of paths that are at extended
    position s at time t; nll (B,) out. Serial: ``parallel=True`` did not pay for typical batches.
    """
    for b in range(lp.shape[0]):
        t_len, length = input_lengths[b], target_lengths[b]
        ext = _extended(targets[b], length, blank)
        n = ext.size
        alpha[b] = -np.inf
        alpha[b, 0, 0] = lp[b, 0, blank]                      # start on the leading blank...
        if length > 0:
            alpha[b, 0, 1] = lp[b, 0, ext[1]]                 # ... or on the first label
        for t in range(1, t_len):
            for s in range(n):
                a = alpha[b, t - 1, s]                        # stay
                if s >= 1:
                    a = _logaddexp(a, alpha[b, t - 1, s - 1])     # advance one
                if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                    a = _logaddexp(a, alpha[b, t - 1, s - 2])     # skip a blank between different labels
                alpha[b, t, s] = a + lp[b, t, ext[s]]
        log_p = alpha[b, t_len - 1, n - 1]                    # end on the trailing blank...
        if length > 0:
            log_p = _logaddexp(log_p, alpha[b, t_len - 1, n - 2])     # ... or on the last label
        nll[b] = -log_p


@njit(**KERNEL)
def _ctc_grad_kernel(lp, targets, input_lengths, target_lengths, blank, alpha, nll, grad):
    """d nll / d lp from the forward variables and the backward ones (beta), computed here.

    grad (B, T, C) out, zero-filled by the caller. With beta[t, s] the log-probability of all
    suffixes from (t, s) (both alpha and beta include lp[t, ext[s]]):
    d nll / d lp[t, k] = -sum_{s: ext[s] = k} exp(alpha[t, s] + beta[t, s] - lp[t, k] + nll).
    """
    n_classes = lp.shape[2]
    for b in range(lp.shape[0]):
        t_len, length = input_lengths[b], target_lengths[b]
        ext = _extended(targets[b], length, blank)
        n = ext.size
        beta = np.full(n, -np.inf)                            # (2L + 1,) beta at time t
        beta_next = np.full(n, -np.inf)                       # (2L + 1,) beta at time t + 1
        acc = np.empty(n_classes)                             # (C,) log sum of alpha * beta per class
        for t in range(t_len - 1, -1, -1):
            if t == t_len - 1:
                beta[n - 1] = lp[b, t, ext[n - 1]]
                if length > 0:
                    beta[n - 2] = lp[b, t, ext[n - 2]]
            else:
                for s in range(n):
                    v = beta_next[s]
                    if s + 1 < n:
                        v = _logaddexp(v, beta_next[s + 1])
                    if s + 2 < n and ext[s] != blank and ext[s + 2] != ext[s]:
                        v = _logaddexp(v, beta_next[s + 2])
                    beta[s] = v + lp[b, t, ext[s]]
            acc[:] = -np.inf
            for s in range(n):
                acc[ext[s]] = _logaddexp(acc[ext[s]], alpha[b, t, s] + beta[s])
            for k in range(n_classes):
                if acc[k] != -np.inf:
                    grad[b, t, k] = -math.exp(acc[k] - lp[b, t, k] + nll[b])
            beta, beta_next = beta_next, beta


def _ctc_forward(lp, targets, input_lengths, target_lengths, blank, zero_infinity):
    lp64 = np.ascontiguousarray(lp, dtype=np.float64)          # (B, T, C): the recursion runs in float64
    batch, steps, _ = lp64.shape
    alpha = np.empty((batch, steps, 2 * targets.shape[1] + 1))  # (B, T, 2S + 1)
    nll = np.empty(batch)
    _ctc_alpha_kernel(lp64, targets, input_lengths, target_lengths, blank, alpha, nll)
    loss = np.where(np.isinf(nll), 0.0, nll) if zero_infinity else nll
    return loss.astype(lp.dtype), (alpha, nll)


def _ctc_backward(dy, lp, targets, input_lengths, target_lengths, alpha, nll, blank, zero_infinity):
    lp64 = np.ascontiguousarray(lp, dtype=np.float64)
    g = np.zeros_like(lp64)                                    # (B, T, C); zero past each input length
    _ctc_grad_kernel(lp64, targets, input_lengths, target_lengths, blank, alpha, nll, g)
    if zero_infinity:
        g[np.isinf(nll)] = 0.0
    g *= dy[:, None, None]                                     # (B,) -> (B, 1, 1)
    return (g.astype(lp.dtype),)


def _ctc_vjp(dy, y, lp, targets, input_lengths, target_lengths, blank, zero_infinity, saved):
    alpha, nll = (Tensor._wrap(a) for a in saved)
    return apply(_ctc_backward_prim, dy, lp, targets, input_lengths, target_lengths, alpha, nll, blank=blank,
                 zero_infinity=zero_infinity) + (None, None, None)


_ctc = primitive("kernels.ctc_loss", _ctc_forward, _ctc_vjp, saves=True, higher_order=False)
_ctc_backward_prim = primitive("kernels.ctc_loss_backward", _ctc_backward)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, *, blank, zero_infinity=False):
    """Per-sequence CTC loss ``-log p(target | input)``, (B,), differentiable w.r.t. ``log_probs``.

    ``log_probs`` (B, T, C); ``targets`` (B, S) class indices padded to S; ``input_lengths``,
    ``target_lengths`` (B,). The arguments are taken as checked (``axon.functional.losses.
    connectionist_temporal_classification`` checks them); integer arrays are moved to the backend of
    ``log_probs``. ``zero_infinity`` replaces an impossible alignment's infinite loss (and gradient) by 0.

    >>> import numpy as np
    >>> lp = np.log(np.full((1, 2, 2), 0.5))
    >>> float(ctc_loss(lp, np.array([[1]]), np.array([2]), np.array([1]), blank=0).numpy()[0])   # 3 of 4 paths
    0.2876820724517809
    """
    lp = as_tensor(log_probs)

    def ints(a):
        a = a if isinstance(a, Tensor) else on_backend_of(lp, np.asarray(a))
        return a if a.dtype == np.int64 else a.astype(np.int64)

    return apply(_ctc, lp, ints(targets), ints(input_lengths), ints(target_lengths), blank=int(blank),
                 zero_infinity=bool(zero_infinity))
