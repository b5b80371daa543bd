"""The Adam/AdamW parameter update in one pass over memory: in place, or into fresh arrays.

For every element, with bias-corrected moments (``step`` counts from 1):

    m = b1 m + (1 - b1) g              m_hat = m / (1 - b1^step)
    v = b2 v + (1 - b2) g^2            v_hat = v / (1 - b2^step)
    p = p - lr (m_hat / (sqrt(v_hat) + eps) + weight_decay p)

(``weight_decay`` > 0 is AdamW's decoupled decay; 0 is plain Adam). The kernels compute it as
PyTorch does, ``p (1 - lr wd) - (lr / (1 - b1^step)) m / (sqrt(v) / sqrt(1 - b2^step) + eps)``.
Written as separate numpy expressions this reads and writes the arrays about ten times; fused it
reads ``p, g, m, v`` once and writes ``p, m, v`` once. The scalars (``1 - b2`` included) are computed
in float64 and then cast to the arrays' dtype, so float32 stays float32 and matches PyTorch's rounding.

One per-element step (``_adam_element``), a loop around it for each of the two entry points:

- ``adam_update(p, g, m, v, ...)`` overwrites ``p``, ``m``, ``v`` (PyTorch's ``optimizer.step()``);
- ``adam_step(p, g, m, v, ...) -> (u, m_new, v_new)`` leaves its inputs alone and returns the update
  ``u`` (add it to ``p``) and the new moments, still in one pass. It is the primitive
  ``kernels.adam_step``, so it runs on the backend where the arrays live.

- ``ADAM_STEP_AT``, the primitive ``kernels.adam_step_at(p, g, m, v, t, lr, ...)``: the same, with the step
  number ``t`` and the learning rate ``lr`` as 0-d *arrays* (inputs, not settings), so a traced training
  step (``axon.jit``) records it once and each replay feeds it that step's count: the bias corrections
  are computed from ``t`` when the kernel runs, by the same ``adam_scalars`` as the eager step
  (bit-identical). This is what a functional optimizer (``axon.optimizers.adam``, ``adamw``) calls; in a
  CPU plan ``axon.fusion``'s ``adam_apply`` pass replaces it and the add of ``apply_updates`` with
  ``adam_apply_at``, one pass that writes the new params instead of the update.

Primitives (a backend implements these forwards; never differentiated):

- ``kernels.adam_step(p, g, m, v, *, lr, b1, b2, eps, weight_decay, step) -> (u, m_new, v_new)``;
- ``kernels.adam_step_at(p, g, m, v, t, lr, *, b1, b2, eps, weight_decay) -> (u, m_new, v_new)``, ``t`` an
  int 0-d array (the 1-based step), ``lr`` a float64 0-d array.

>>> import numpy as np
>>> p, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
>>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
>>> adam_update(p, g, m, v, lr=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, step=1)
>>> p.round(6)                                                 # the first step moves by lr * sign(g)
array([0.9, 0.9, 0.9], dtype=float32)
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from ..autograd import apply, primitive
from ._common import FASTMATH, KERNEL, check_same_dtype, contiguous, float_tensor, num_chunks, run_chunks

__all__ = ["adam_update", "adam_step", "adam_scalars", "adam_into", "adam_apply_at", "adam_apply_in_place",
           "ADAM_STEP", "ADAM_STEP_AT", "PARALLEL_MIN"]

# The update is memory-bound, and out of place it streams seven arrays: at 100k float32 (2.8 MB) that
# spills one core's 2 MB L2, and two cores' caches make it 3x faster (measured, 2-core Xeon: 100k
# elements 111 -> 35 us, 16k 12.3 -> 9.6 us, 4k 2.9 -> 4.8 us). So its threshold is lower than the
# kernels' default (``_common.PARALLEL_MIN``, 2^18).
PARALLEL_MIN = 1 << 14

# The loops are compiled without reassociation or contraction (nothing here is a reduction to
# vectorise), so each computes exactly the expression written: ``_adam_apply``'s ``base + u`` is then
# the same number as ``_adam_out_of_place``'s ``u`` added to ``base`` apart (AdamW included).
_LOOP = dict(KERNEL, fastmath=FASTMATH - {"reassoc", "contract"})


@njit(inline="always")
def _adam_element(g_i, m_i, v_i, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps):
    # one element's new moments and step; with step_size = lr / bc1 and inv_sqrt_bc2 = 1 / sqrt(bc2):
    #   m_hat / (sqrt(v_hat) + eps) = (m / bc1) / (sqrt(v) / sqrt(bc2) + eps)
    m_i = b1 * m_i + c1 * g_i                                   # c1 = 1 - b1
    v_i = b2 * v_i + c2 * g_i * g_i                             # c2 = 1 - b2
    return m_i, v_i, step_size * m_i / (np.sqrt(v_i) * inv_sqrt_bc2 + eps)


# Two loops around the one element step: the in-place one reads and writes the same arrays, the other
# writes separate ones. (One loop for both, its outputs the inputs for in place, ran 6x slower in place:
# outputs that may alias the inputs stop the compiler from vectorising. Measured, 100k float32.)
@njit(**_LOOP)
def _adam_in_place(p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay, i0, i1):
    # p, g, m, v (n,) flat, one dtype, the scalars in that dtype; p, m, v overwritten on [i0, i1)
    # (decay = 1 - lr * weight_decay: PyTorch's form of the decoupled decay)
    p, g, m, v = p[i0:i1], g[i0:i1], m[i0:i1], v[i0:i1]
    for i in range(p.shape[0]):                                 # from 0: vectorised (8 floats at a time)
        m_i, v_i, step_i = _adam_element(g[i], m[i], v[i], b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps)
        m[i] = m_i
        v[i] = v_i
        p[i] = p[i] * decay - step_i


@njit(**_LOOP)
def _adam_out_of_place(p, g, m, v, u, m_out, v_out, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd, i0, i1):
    # the same step into u, m_out, v_out (n,) on [i0, i1): u = new p - p (lr_wd = lr * weight_decay, apart
    # from decay: 1 - decay would cancel digits in float32)
    p, g, m, v = p[i0:i1], g[i0:i1], m[i0:i1], v[i0:i1]
    u, m_out, v_out = u[i0:i1], m_out[i0:i1], v_out[i0:i1]
    for i in range(p.shape[0]):
        m_i, v_i, step_i = _adam_element(g[i], m[i], v[i], b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps)
        m_out[i] = m_i
        v_out[i] = v_i
        u[i] = -(p[i] * lr_wd) - step_i


@njit(**_LOOP)
def _adam_apply(base, p, g, m, v, p_out, m_out, v_out, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd, i0, i1):
    # _adam_out_of_place with its update added to base (the params) as it is made: p_out = base + u, the
    # same expression for u and then one add, so the same bits as the two apart, one pass fewer
    base, p, g, m, v = base[i0:i1], p[i0:i1], g[i0:i1], m[i0:i1], v[i0:i1]
    p_out, m_out, v_out = p_out[i0:i1], m_out[i0:i1], v_out[i0:i1]
    for i in range(p.shape[0]):
        m_i, v_i, step_i = _adam_element(g[i], m[i], v[i], b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps)
        m_out[i] = m_i
        v_out[i] = v_i
        p_out[i] = base[i] + (-(p[i] * lr_wd) - step_i)


@njit(**_LOOP)
def _adam_apply_over(p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd, i0, i1):
    # _adam_apply with p as its own base and its outputs p, m, v themselves: the same expression, so the
    # same bits, written over the (donated) inputs; reading and writing one array keeps it vectorised
    p, g, m, v = p[i0:i1], g[i0:i1], m[i0:i1], v[i0:i1]
    for i in range(p.shape[0]):
        m_i, v_i, step_i = _adam_element(g[i], m[i], v[i], b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps)
        m[i] = m_i
        v[i] = v_i
        p[i] = p[i] + (-(p[i] * lr_wd) - step_i)


@njit(parallel=True, **_LOOP)
def _adam_apply_over_parallel(p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd, n_chunks):
    n = p.shape[0]
    for t in prange(n_chunks):
        _adam_apply_over(p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd,
                         t * n // n_chunks, (t + 1) * n // n_chunks)


@njit(parallel=True, **_LOOP)
def _adam_in_place_parallel(p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay, n_chunks):
    n = p.shape[0]
    for t in prange(n_chunks):
        _adam_in_place(p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay,
                       t * n // n_chunks, (t + 1) * n // n_chunks)


@njit(parallel=True, **_LOOP)
def _adam_out_of_place_parallel(p, g, m, v, u, m_out, v_out, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd,
                                n_chunks):
    n = p.shape[0]
    for t in prange(n_chunks):
        _adam_out_of_place(p, g, m, v, u, m_out, v_out, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd,
                           t * n // n_chunks, (t + 1) * n // n_chunks)


@njit(parallel=True, **_LOOP)
def _adam_apply_parallel(base, p, g, m, v, p_out, m_out, v_out, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd,
                         n_chunks):
    n = p.shape[0]
    for t in prange(n_chunks):
        _adam_apply(base, p, g, m, v, p_out, m_out, v_out, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd,
                    t * n // n_chunks, (t + 1) * n // n_chunks)


@functools.lru_cache(maxsize=256)                             # the same step's scalars for every leaf
def adam_scalars(dtype, *, lr, b1, b2, eps, weight_decay, step) -> tuple:
    """The kernel's scalar arguments for one step, checked, in ``dtype`` (computed in float64, rounded once).

    >>> len(adam_scalars(np.float32, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, step=1))
    9
    """
    fn = "adam"
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"{fn}: step must be an int >= 1 (steps count from 1), got {step!r}")
    for name, s in (("lr", lr), ("b1", b1), ("b2", b2), ("eps", eps), ("weight_decay", weight_decay)):
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
            raise TypeError(f"{fn}: {name} must be a number, got {s!r}")
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"{fn}: b1 and b2 must be in [0, 1), got b1={b1!r}, b2={b2!r}")
    t = np.dtype(dtype).type
    return (t(b1), t(1 - b1), t(b2), t(1 - b2), t(lr / (1 - b1 ** step)), t(1 / math.sqrt(1 - b2 ** step)),
            t(eps), t(1 - lr * weight_decay), t(lr * weight_decay))


def adam_into(p, g, m, v, out, scalars, base=None) -> None:
    """Run the kernel on arrays already checked (one shape and dtype, C-contiguous): the fast path.

    ``out=None`` updates ``p, m, v`` in place; ``out=(u, m_new, v_new)`` writes the update and the new
    moments there instead, leaving the inputs alone; with ``base`` (the params, when ``p`` is not them)
    ``out`` gets ``base + u`` in place of ``u``.

    >>> p, g, m, v = np.zeros(2), np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
    >>> s = adam_scalars(p.dtype, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, step=1)
    >>> adam_into(p, g, m, v, None, s)                         # in place, like adam_update
    >>> p.round(6), m
    (array([-0.001,  0.001]), array([ 0.1, -0.1]))
    """
    flat = [a.reshape(-1) for a in (p, g, m, v)]                                # views: (n,)
    *common, decay, lr_wd = scalars
    n = num_chunks(p.size, p.size, PARALLEL_MIN)                # 1: the serial loop; else chunks of elements
    if out is None:                                             # write over p, m, v
        run_chunks(_adam_in_place, _adam_in_place_parallel, n, p.size, *flat, *common, decay)
    elif base is None:                                          # write u, m_new, v_new
        run_chunks(_adam_out_of_place, _adam_out_of_place_parallel, n, p.size, *flat,
                   *[a.reshape(-1) for a in out], *common, lr_wd)
    else:                                                       # write base + u, m_new, v_new
        run_chunks(_adam_apply, _adam_apply_parallel, n, p.size, base.reshape(-1), *flat,
                   *[a.reshape(-1) for a in out], *common, lr_wd)


def _check(fn, p, g, m, v, in_place: bool):
    arrays = {"p": p, "g": g, "m": m, "v": v}
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{fn}: {name} must be a numpy array, got {type(a).__name__}")
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{fn}: {name} must be float32 or float64, got dtype {a.dtype}")
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError(f"{fn}: p, g, m, v must share one shape and dtype, got "
                             + ", ".join(f"{k} {b.shape} {b.dtype}" for k, b in arrays.items()))
    if in_place:
        for name in ("p", "m", "v"):
            if not (arrays[name].flags.c_contiguous and arrays[name].flags.writeable):
                raise ValueError(f"{fn}: {name} is updated in place, so it must be a writeable C-contiguous array")
    return [np.ascontiguousarray(a) for a in (p, g, m, v)]


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
    p, g, m, v = _check("adam_update", p, g, m, v, in_place=True)
    scalars = adam_scalars(p.dtype, lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, step=step)
    adam_into(p, g, m, v, None, scalars)


def _into_fresh(p, g, m, v, scalars, base=None) -> tuple:
    """``adam_into`` on numpy arrays, into fresh ones: ``(u, m_new, v_new)``, or ``(base + u, ...)``."""
    p, g, m, v = (contiguous(a) for a in (p, g, m, v))
    out = (np.empty_like(p), np.empty_like(m), np.empty_like(v))                 # u (or base + u), m_new, v_new
    adam_into(p, g, m, v, out, scalars, base=None if base is None else contiguous(base))
    return out


def _adam_step_forward(p, g, m, v, lr, b1, b2, eps, weight_decay, step):
    """The primitive's forward on numpy arrays: ``(u, m_new, v_new)`` in fresh arrays."""
    scalars = adam_scalars(p.dtype, lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, step=step)
    return _into_fresh(p, g, m, v, scalars)


def _adam_step_at_forward(p, g, m, v, t, lr, b1, b2, eps, weight_decay):
    """``kernels.adam_step_at`` on numpy arrays: the step number ``t`` and ``lr`` read when it runs (0-d arrays)."""
    return _adam_step_forward(p, g, m, v, lr=float(lr), b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                              step=int(t))


def adam_apply_at(base, p, g, m, v, t, lr, b1, b2, eps, weight_decay) -> tuple:
    """``kernels.adam_step_at`` and ``base + u`` in one pass: ``(base + u, m_new, v_new)``, numpy arrays.

    What ``axon.fusion``'s ``adam_apply`` pass puts in a CPU plan for the update and ``apply_updates``'s
    add; the same bits as the two apart (``base``: the params; ``p``: what the update reads for weight
    decay, which may be another array when the decay is 0).

    >>> p, g, m, v = np.ones(2), np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
    >>> new_p, m_new, v_new = adam_apply_at(p, p, g, m, v, np.asarray(1), np.asarray(1e-3), 0.9, 0.999, 1e-8, 0.0)
    >>> new_p, m_new
    (array([0.999, 1.001]), array([ 0.1, -0.1]))
    """
    scalars = adam_scalars(p.dtype, lr=float(lr), b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, step=int(t))
    return _into_fresh(p, g, m, v, scalars, base)


def adam_apply_in_place(base, p, g, m, v, t, lr, b1, b2, eps, weight_decay) -> tuple:
    """``adam_apply_at`` written over ``base``, ``m`` and ``v``: returns them, updated (the same bits).

    What a plan runs when the caller gave up its params and state (``axon.jit(..., donate_argnums=...)``,
    ``axon.training.step(..., donate=True)``): no fresh arrays, and each element is read and written in
    one place, as PyTorch's ``optimizer.step()`` does. ``p`` must be ``base``, or the decay 0 (then only
    the params' own values are read for it). Arrays that cannot be written (not C-contiguous, read-only)
    get ``adam_apply_at``'s fresh ones instead.

    >>> p, g, m, v = np.ones(2), np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
    >>> new_p, m_new, v_new = adam_apply_in_place(p, g, g, m, v, np.asarray(1), np.asarray(1e-3), 0.9, 0.999, 1e-8, 0.0)
    >>> new_p is p, p, m
    (True, array([0.999, 1.001]), array([ 0.1, -0.1]))
    """
    if weight_decay and p is not base:
        raise ValueError("adam_apply_in_place: with weight decay, p must be base (the params it updates)")
    if not all(type(a) is np.ndarray and a.flags.c_contiguous and a.flags.writeable for a in (base, m, v)):
        return adam_apply_at(base, p, g, m, v, t, lr, b1, b2, eps, weight_decay)
    *common, _, lr_wd = adam_scalars(base.dtype, lr=float(lr), b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                                     step=int(t))
    n = num_chunks(base.size, base.size, PARALLEL_MIN)
    run_chunks(_adam_apply_over, _adam_apply_over_parallel, n, base.size,
               *[a.reshape(-1) for a in (base, contiguous(g), m, v)], *common, lr_wd)
    return base, m, v


_adam_step = primitive("kernels.adam_step", _adam_step_forward)
ADAM_STEP = _adam_step          # for callers that checked their arrays already: apply(ADAM_STEP, p, g, m, v, lr=...)
# the same step with t and lr as array inputs (what axon.optimizers.adam calls, so a traced step replays it)
ADAM_STEP_AT = primitive("kernels.adam_step_at", _adam_step_at_forward)


def adam_step(p, g, m, v, *, lr, b1, b2, eps, weight_decay, step):
    """One Adam/AdamW step without touching the inputs: returns Tensors ``(u, m_new, v_new)``, ``p + u`` the new p.

    ``p, g, m, v``: Tensors or arrays of one shape and one float dtype, on one backend.

    >>> import numpy as np
    >>> p, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    >>> u, m2, v2 = adam_step(p, np.array([1.0, -1.0]), m, v, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8,
    ...                       weight_decay=0.0, step=1)
    >>> u.numpy().round(6), m                                      # m itself is unchanged
    (array([-0.001,  0.001]), array([0., 0.]))
    """
    tensors = {name: float_tensor("adam_step", name, a) for name, a in (("p", p), ("g", g), ("m", m), ("v", v))}
    shapes = {t.shape for t in tensors.values()}
    if len(shapes) > 1:
        raise ValueError("adam_step: p, g, m, v must share one shape, got "
                         + ", ".join(f"{k} {t.shape}" for k, t in tensors.items()))
    check_same_dtype("adam_step", **tensors)
    adam_scalars(np.float64, lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, step=step)   # checks them
    return apply(_adam_step, *tensors.values(), lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, step=step)
