"""The Adam/AdamW parameter update, in place, in one pass over memory.

For every element, with bias-corrected moments (``step`` counts from 1):

    m = b1 m + (1 - b1) g              m_hat = m / (1 - b1^step)
    v = b2 v + (1 - b2) g^2            v_hat = v / (1 - b2^step)
    p = p - lr (m_hat / (sqrt(v_hat) + eps) + weight_decay p)

(``weight_decay`` > 0 is AdamW's decoupled decay; 0 is plain Adam). The kernel computes it as
PyTorch does, ``p (1 - lr wd) - (lr / (1 - b1^step)) m / (sqrt(v) / sqrt(1 - b2^step) + eps)``. Written as separate numpy
expressions this reads and writes the four arrays about ten times; fused it reads ``p, g, m, v`` once
and writes ``p, m, v`` once. The scalars (``1 - b2`` included) are computed in float64 and then cast
to the arrays' dtype, so float32 stays float32 and matches PyTorch's rounding.

>>> import numpy as np
>>> p, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
>>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
>>> adam_update(p, g, m, v, lr=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, step=1)
>>> p.round(6)                                                 # the first step moves by lr * sign(g)
array([0.9, 0.9, 0.9], dtype=float32)
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from numba import njit, prange

from ._common import KERNEL, PARALLEL_MIN
from .threads import num_threads

__all__ = ["adam_update"]


@njit(**KERNEL)
def _adam_kernel(p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay):
    # p, g, m, v (n,) flat, one dtype; the scalars in that dtype; updated in place:
    # m_hat / (sqrt(v_hat) + eps) = (m / bc1) / (sqrt(v) / sqrt(bc2) + eps), so with
    # step_size = lr / bc1, inv_sqrt_bc2 = 1 / sqrt(bc2), decay = 1 - lr * weight_decay:
    for i in range(p.shape[0]):                                 # from 0: vectorised (8 floats at a time)
        g_i = g[i]
        m_i = b1 * m[i] + c1 * g_i                              # c1 = 1 - b1
        v_i = b2 * v[i] + c2 * g_i * g_i                        # c2 = 1 - b2
        m[i] = m_i
        v[i] = v_i
        p[i] = p[i] * decay - step_size * m_i / (np.sqrt(v_i) * inv_sqrt_bc2 + eps)


@njit(parallel=True, **KERNEL)
def _adam_parallel(p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay, n_chunks):
    n = p.shape[0]
    for t in prange(n_chunks):
        i0, i1 = t * n // n_chunks, (t + 1) * n // n_chunks
        _adam_kernel(p[i0:i1], g[i0:i1], m[i0:i1], v[i0:i1], b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay)


def adam_update(p, g, m, v, *, lr, b1, b2, eps, weight_decay, step) -> None:
    """Update ``p`` (and the moments ``m``, ``v``) in place by one Adam/AdamW step; returns None.

    ``p, g, m, v``: numpy arrays of one shape and one float dtype, ``p, m, v`` writeable and
    C-contiguous. ``step`` is the 1-based step number (for the bias correction).

    >>> import numpy as np
    >>> p, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    >>> adam_update(p, np.array([1.0, -1.0]), m, v, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8,
    ...             weight_decay=0.0, step=1)
    >>> p.round(6), m, v.round(6)
    (array([-0.001,  0.001]), array([ 0.1, -0.1]), array([0.001, 0.001]))
    """
    fn = "adam_update"
    arrays = {"p": p, "g": g, "m": m, "v": v}
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{fn}: {name} must be a numpy array, got {type(a).__name__}")
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{fn}: {name} must be float32 or float64, got dtype {a.dtype}")
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError(f"{fn}: p, g, m, v must share one shape and dtype, got "
                             + ", ".join(f"{k} {b.shape} {b.dtype}" for k, b in arrays.items()))
    for name in ("p", "m", "v"):
        if not (arrays[name].flags.c_contiguous and arrays[name].flags.writeable):
            raise ValueError(f"{fn}: {name} is updated in place, so it must be a writeable C-contiguous array")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"{fn}: step must be an int >= 1 (steps count from 1), got {step!r}")
    for name, s in (("lr", lr), ("b1", b1), ("b2", b2), ("eps", eps), ("weight_decay", weight_decay)):
        if isinstance(s, bool) or not isinstance(s, numbers.Real):
            raise TypeError(f"{fn}: {name} must be a number, got {s!r}")
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"{fn}: b1 and b2 must be in [0, 1), got b1={b1!r}, b2={b2!r}")
    t = p.dtype.type                                 # computed in float64, then rounded once to p's dtype
    scalars = (t(b1), t(1 - b1), t(b2), t(1 - b2), t(lr / (1 - b1 ** step)), t(1 / math.sqrt(1 - b2 ** step)),
               t(eps), t(1 - lr * weight_decay))
    g = g if g.flags.c_contiguous else np.ascontiguousarray(g)
    flat = [a.reshape(-1) for a in (p, g, m, v)]                                # views: (n,)
    n = p.size
    if n < PARALLEL_MIN or num_threads() == 1:
        _adam_kernel(*flat, *scalars)
    else:
        _adam_parallel(*flat, *scalars, num_threads())
