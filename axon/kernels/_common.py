"""What every kernel wrapper shares: argument checks, window geometry, compile flags.

The wrappers check shapes and dtypes here, in Python, before a kernel runs: a wrong shape is a
``ValueError`` naming the shapes, never an out-of-bounds write in compiled code.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Tensor, as_tensor
from .threads import num_threads

__all__ = ["FASTMATH", "KERNEL", "PARALLEL_MIN", "num_chunks", "float_tensor", "check_same_dtype", "int_tuple",
           "padding_pairs", "to_3d", "out_sizes", "contiguous"]

# Reassociation lets numba vectorise reductions (5x on some loops); without "nnan"/"ninf", so
# NaN checks (max pooling lets NaN win, as PyTorch) keep working.
FASTMATH = {"reassoc", "contract", "arcp", "nsz", "afn"}

# How every kernel is compiled: cached on disk, FASTMATH, and numpy's error model. Python's model
# checks every division for a zero divisor and raises ZeroDivisionError: that branch alone stops a
# loop from being vectorised (the Adam update ran 7x slower with it). numpy's gives inf/nan instead.
# One more rule for vectorised loops: count from 0 (``for i in range(n)`` over a slice), since an
# index that might be negative makes numba wrap it around, element by element.
KERNEL = dict(cache=True, fastmath=FASTMATH, error_model="numpy")

# Below this many elements a kernel runs serially. Starting a parallel region and waking the (passively
# waiting, see ``threads``) workers costs 10-25 us measured, so splitting must save more than that:
# 2^18 float32 elements take 100-200 us for one pass.
PARALLEL_MIN = 1 << 18


def num_chunks(work: int, units: int, minimum: int) -> int:
    """How many chunks a kernel splits its work into: 1 (serial) below ``minimum``, else one per thread.

    ``work`` is measured in the unit of ``minimum`` (elements against ``PARALLEL_MIN``, say); ``units``
    is what the chunks share out (rows, images), so there are never more chunks than units. Callers pass
    their module's threshold, so a test can lower it to force the parallel path.

    >>> num_chunks(1000, 10, PARALLEL_MIN)                                  # small: the serial loop
    1
    >>> num_chunks(1 << 20, 4096, PARALLEL_MIN) == min(num_threads(), 4096)  # large: one chunk per thread
    True
    """
    return 1 if work < minimum else max(1, min(num_threads(), units))


def float_tensor(fn: str, name: str, x) -> Tensor:
    """``x`` as a Tensor, which must hold float32 or float64 (the kernels are compiled for those).

    >>> float_tensor("matmul", "a", np.ones(2, np.float32)).dtype
    dtype('float32')
    >>> float_tensor("matmul", "a", np.ones(2, np.float16))
    Traceback (most recent call last):
    ...
    TypeError: matmul: a must be float32 or float64, got dtype float16 (shape (2,))
    """
    t = as_tensor(x)
    if t.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: {name} must be float32 or float64, got dtype {t.dtype} (shape {t.shape})")
    return t


def check_same_dtype(fn: str, **tensors) -> None:
    """Raise TypeError unless every named Tensor has the same dtype (kernels never mix precisions).

    >>> a, b = float_tensor("matmul", "a", np.ones(2, np.float32)), float_tensor("matmul", "b", np.ones(2))
    >>> check_same_dtype("matmul", a=a, b=b)
    Traceback (most recent call last):
    ...
    TypeError: matmul: all inputs must have the same dtype, got a float32, b float64; cast with .astype(...)
    """
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dt}" for name, dt in dtypes.items())
        raise TypeError(f"{fn}: all inputs must have the same dtype, got {listed}; cast with .astype(...)")


def int_tuple(fn: str, name: str, value, n: int, minimum: int = 1) -> tuple:
    """``value`` (an int, or a sequence of ``n`` ints) as a tuple of ``n`` ints, each ``>= minimum``.

    >>> int_tuple("conv2d", "strides", 2, 2), int_tuple("conv2d", "strides", (1, 2), 2)
    ((2, 2), (1, 2))
    """
    items = (value,) * n if isinstance(value, numbers.Integral) else tuple(value) if isinstance(value, (tuple, list)) else None
    if (items is None or len(items) != n
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum for v in items)):
        raise ValueError(f"{fn}: {name} must be {n} int(s) >= {minimum} (one per spatial axis), got {value!r}")
    return tuple(int(v) for v in items)


def padding_pairs(fn: str, value, n: int) -> tuple:
    """``value`` as ``n`` pairs ``(lo, hi)`` of non-negative ints (an int pads every side equally).

    >>> padding_pairs("conv2d", 1, 2), padding_pairs("conv2d", [(0, 1), (2, 2)], 2)
    (((1, 1), (1, 1)), ((0, 1), (2, 2)))
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = ((value, value),) * n
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in value)
        ok = len(pairs) == n and all(lo >= 0 and hi >= 0 for lo, hi in pairs) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for pair in value for v in pair)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{fn}: padding must be {n} pair(s) (lo, hi) of ints >= 0 (one per spatial axis), "
                         f"got {value!r}")
    return pairs


def to_3d(values: tuple, fill) -> tuple:
    """Pad a per-axis tuple to 3 axes in front: a 2-d kernel is a 3-d kernel of depth 1.

    >>> to_3d((3, 3), 1)
    (1, 3, 3)
    """
    return (fill,) * (3 - len(values)) + tuple(values)


def out_sizes(fn: str, sizes, windows, strides, pads, detail: str) -> tuple:
    """Output size per axis, ``(n + lo + hi - window) // stride + 1``; ValueError when a window does not fit.

    >>> out_sizes("conv2d", (28, 28), (3, 3), (2, 2), ((1, 1), (1, 1)), "")
    (14, 14)
    """
    out = []
    for axis, (n, k, s, (lo, hi)) in enumerate(zip(sizes, windows, strides, pads)):
        if n + lo + hi < k:
            raise ValueError(f"{fn}: the window ({k} after dilation) is larger than spatial axis {axis + 1} "
                             f"after padding ({n} + {lo} + {hi}) ({detail})")
        out.append((n + lo + hi - k) // s + 1)
    return tuple(out)


def contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous array (no copy when it already is): compiled loops assume that layout.

    >>> a = np.zeros((3, 4))
    >>> contiguous(a) is a, a.T.flags.c_contiguous, contiguous(a.T).flags.c_contiguous
    (True, False, True)
    """
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)
