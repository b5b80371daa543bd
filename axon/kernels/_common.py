"""What every kernel wrapper shares: argument checks, window geometry, compile flags.

The wrappers check shapes and dtypes here, in Python, before a kernel runs: a wrong shape is a
``ValueError`` naming the shapes, never an out-of-bounds write in compiled code.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Tensor, as_tensor
from ..autograd import max as tmax, min as tmin
from ..backend import backend_of, is_host, to_device
from .threads import num_threads

__all__ = ["FASTMATH", "KERNEL", "PARALLEL_MIN", "num_chunks", "run_chunks", "float_tensor", "check_same_dtype",
           "int_tuple", "padding_pairs", "check_pool_padding", "to_3d", "window_output_size", "check_window_fits",
           "out_sizes", "contiguous", "on_backend_of", "bool_mask",
           "same_dtype", "in_range"]

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


def run_chunks(serial, parallel, n_chunks: int, units: int, *args) -> None:
    """The one serial-or-parallel dispatch: ``serial(*args, 0, units)`` for one chunk, else ``parallel(*args, n_chunks)``.

    Every kernel comes as a serial body over a range ``[u0, u1)`` of its units (rows, lines, images) and a
    ``prange`` driver that gives each chunk its share; one chunk needs no parallel region at all.

    >>> def serial(out, u0, u1): out.extend(range(u0, u1))
    >>> def parallel(out, n): out.append(f"{n} chunks")
    >>> a, b = [], []
    >>> run_chunks(serial, parallel, 1, 3, a), run_chunks(serial, parallel, 2, 3, b)
    (None, None)
    >>> a, b
    ([0, 1, 2], ['2 chunks'])
    """
    if n_chunks == 1:
        serial(*args, 0, units)
    else:
        parallel(*args, n_chunks)


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

    The one check of per-axis options (strides, dilation, window and output sizes), for the kernels and
    the layers alike (``axon.functional.layers`` calls it ``spatial_tuple``).

    >>> int_tuple("conv2d", "strides", 2, 2), int_tuple("conv2d", "strides", (1, 2), 2)
    ((2, 2), (1, 2))
    >>> int_tuple("conv2d", "strides", (1, 0), 2)
    Traceback (most recent call last):
    ...
    ValueError: conv2d: strides must be >= 1, got (1, 0)
    """
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    items = (value,) * n if is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or len(items) != n or not all(is_int(v) for v in items):
        raise ValueError(f"{fn}: {name} must be an int or a sequence of {n} ints (one per spatial axis), "
                         f"got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def padding_pairs(fn: str, value, n: int, also: str = "") -> tuple:
    """``value`` as ``n`` pairs ``(lo, hi)`` of non-negative ints: an int pads every side equally, a
    sequence gives each axis an int or a pair. ``also`` names other forms the caller accepts (for the error).

    >>> padding_pairs("conv2d", 1, 2), padding_pairs("conv2d", [(0, 1), 2], 2)
    (((1, 1), (1, 1)), ((0, 1), (2, 2)))
    """
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    value_in = value
    if is_int(value):
        value = (value,) * n
    try:
        pairs = tuple((p, p) if is_int(p) else tuple(p) for p in value)
        ok = len(pairs) == n and all(len(p) == 2 and all(is_int(v) for v in p) for p in pairs)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{fn}: padding must be {also}an int or {n} (lo, hi) pairs (one per spatial axis), "
                         f"got {value_in!r}")
    pairs = tuple((int(lo), int(hi)) for lo, hi in pairs)
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"{fn}: padding must be non-negative, got {value_in!r}")
    return pairs


def check_pool_padding(fn: str, window: tuple, pads: tuple) -> None:
    """A pool's padding must be smaller than its window on every side, so that every window holds an input.

    >>> check_pool_padding("max_pool", (2,), ((2, 0),))
    Traceback (most recent call last):
    ...
    ValueError: max_pool: padding ((2, 0),) must be smaller than the window (2,) on every side, so that every window holds an input
    """
    if any(lo >= k or hi >= k for (lo, hi), k in zip(pads, window)):
        raise ValueError(f"{fn}: padding {pads} must be smaller than the window {window} on every side, so that "
                         f"every window holds an input")


def to_3d(values: tuple, fill) -> tuple:
    """Pad a per-axis tuple to 3 axes in front: a 2-d kernel is a 3-d kernel of depth 1.

    >>> to_3d((3, 3), 1)
    (1, 3, 3)
    """
    return (fill,) * (3 - len(values)) + tuple(values)


def window_output_size(size: int, window: int, stride: int, pad) -> int:
    """Number of window positions: ``(size + lo + hi - window) // stride + 1``.

    >>> window_output_size(28, 3, 2, (1, 1))                 # (28 + 2 - 3) // 2 + 1
    14
    """
    return (size + pad[0] + pad[1] - window) // stride + 1


def check_window_fits(fn: str, sizes, windows, pads, detail: str, what: str = "kernel") -> None:
    """Raise ValueError when an (effective) window is larger than the padded input on some axis.

    >>> check_window_fits("conv", (2, 5), (3, 3), ((0, 0), (0, 0)), "input shape (1, 2, 5, 1)")
    Traceback (most recent call last):
    ...
    ValueError: conv: kernel spatial size (3, 3) is larger than the padded input (2, 5) (input shape (1, 2, 5, 1))
    """
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(sizes, pads))
    if any(k > p for k, p in zip(windows, padded)):
        raise ValueError(f"{fn}: {what} spatial size {tuple(windows)} is larger than the padded input "
                         f"{padded} ({detail})")


def out_sizes(fn: str, sizes, windows, strides, pads, detail: str, what: str = "kernel") -> tuple:
    """Output size per axis, ``(n + lo + hi - window) // stride + 1``; ValueError when a window does not fit.

    >>> out_sizes("conv2d", (28, 28), (3, 3), (2, 2), ((1, 1), (1, 1)), "")
    (14, 14)
    """
    check_window_fits(fn, sizes, windows, pads, detail, what)
    return tuple(window_output_size(n, k, s, p) for n, k, s, p in zip(sizes, windows, strides, pads))


def on_backend_of(like: Tensor, a) -> Tensor:
    """An array (a host constant made from shapes, a user's labels) as a Tensor on ``like``'s backend.

    Inputs of one primitive must live on one backend; a kernel's own index arrays and constants are
    moved to the backend of the data they go with (no copy on the CPU).

    >>> t = on_backend_of(Tensor([1.0, 2.0]), np.arange(3)); t.device, t.dtype
    ('cpu', dtype('int64'))
    """
    return Tensor._wrap(to_device(a if not is_host(a) else np.asarray(a), like.device))


def bool_mask(fn: str, mask, like: Tensor) -> Tensor:
    """``mask`` as a boolean Tensor on ``like``'s backend: True keeps (a real step, a key to attend to).

    Booleans pass as they are; integers count as True where nonzero (a 0/1 mask). Floats are refused:
    PyTorch's additive masks (0 to keep, -inf to drop) mean the opposite of a 0/1 mask read as numbers.
    The mask stays a Tensor, so it flows through primitives (``where``, a kernel's input) and a traced
    mask (``axon.jit``) is never read on the host.

    >>> bool_mask("lstm", np.array([1, 0]), Tensor([0.5, 0.5])).numpy()
    array([ True, False])
    >>> bool_mask("lstm", np.array([0.0, -np.inf]), Tensor([0.5, 0.5]))
    Traceback (most recent call last):
    ...
    TypeError: lstm: mask must be boolean (True: keep) or integer (nonzero: keep), got dtype float64 (shape (2,))
    """
    m = mask if isinstance(mask, Tensor) else Tensor._wrap(np.asarray(mask) if is_host(mask) else mask)
    if m.dtype.kind not in "biu":
        raise TypeError(f"{fn}: mask must be boolean (True: keep) or integer (nonzero: keep), got dtype {m.dtype} "
                        f"(shape {m.shape})")
    if m.device != like.device and backend_of(m.data).device:     # (a traced mask stays where it is)
        m = on_backend_of(like, m.data)
    return m if m.dtype.kind == "b" else m != 0


def same_dtype(dy: Tensor, x: Tensor) -> Tensor:
    """``dy`` in ``x``'s dtype: a backward kernel is compiled for one dtype, and an upstream gradient may
    arrive promoted (a float32 output times a float64 weight gives a float64 ``dy``).

    >>> same_dtype(Tensor(np.ones(2)), Tensor(np.ones(2, np.float32))).dtype
    dtype('float32')
    """
    return dy if dy.dtype == x.dtype else dy.astype(x.dtype)


def in_range(t: Tensor, lo: int, hi: int, error) -> None:
    """Raise ``error(smallest, largest)`` unless every element of the integer Tensor ``t`` is in ``[lo, hi)``.

    The one check of labels and indices before a kernel uses them (an index out of range would read or
    write outside an array in compiled code). Host data is checked with numpy at once; data on a device
    with Tensor operations there (one value comes back); under ``axon.jit`` the check is an op of the
    plan (``axon.tracing.check_range`` for host arrays, ``axon.tracing.check`` on a device), run on every call's
    indices.

    >>> in_range(Tensor(np.array([0, 2])), 0, 3, lambda lo, hi: ValueError(f"{lo}..{hi}"))   # fine: nothing
    >>> in_range(Tensor(np.array([0, 3])), 0, 3, lambda lo, hi: ValueError(f"{lo}..{hi}"))
    Traceback (most recent call last):
    ...
    ValueError: 0..3
    """
    if t.size == 0:
        return
    if type(t.data) is np.ndarray:                              # the CPU: numpy, no primitives to run
        lo_t, hi_t = t.data.min(), t.data.max()
        if not (lo <= lo_t and hi_t < hi):
            raise error(int(lo_t), int(hi_t))
        return
    from ..tracing import check, check_range                    # (axon.tracing imports the engine, as this does)
    if not check_range(t.data, lo, hi, error):                  # a traced host array: one op of the plan
        check(tmax((t < lo) | (t >= hi)), lambda a: error(int(a.min()), int(a.max())), t)


def contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous array (no copy when it already is): compiled loops assume that layout.

    >>> a = np.zeros((3, 4))
    >>> contiguous(a) is a, a.T.flags.c_contiguous, contiguous(a.T).flags.c_contiguous
    (True, False, True)
    """
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)
