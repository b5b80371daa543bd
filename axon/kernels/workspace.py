"""Scratch buffers reused from call to call, so a training step does not reallocate its temporaries.

A kernel's temporaries (the im2col columns of a block of rows, per-thread partial sums) live only
during one call. Allocating 10-20 MB of them afresh every step sends the memory back to the OS and
faults it in again (measured: a large share of a step). ``scratch(name, shape, dtype)`` instead hands
out a view of one flat buffer per ``(name, dtype)`` that only grows. Buffers are per Python thread.

Never return a scratch buffer to the caller: the next call with the same name overwrites it.

Outputs and gradients cannot live in such buffers (they outlive the call), so ``keep_freed_memory()``
tells glibc's ``malloc`` to keep freed blocks for the next allocation instead of handing them back to
the OS (it otherwise maps blocks over 128 KB afresh and returns them when freed, so every step faults
20 MB of pages in again: measured, a third of a CNN step's CPU time). ``import axon.kernels`` calls it
once on Linux; set ``AXON_KEEP_FREED_MEMORY=0`` to leave the allocator alone.

>>> import numpy as np
>>> a = scratch("example", (2, 3), np.float32)
>>> b = scratch("example", (3,), np.float32)
>>> np.shares_memory(a, b), a.dtype
(True, dtype('float32'))
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
import threading

import numpy as np

__all__ = ["scratch", "clear", "keep_freed_memory"]

_local = threading.local()


def scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, reused by every call with ``name``.

    >>> a = scratch("doc", (2, 3), np.float64)
    >>> b = scratch("doc", (6,), np.float64)                   # same name: the same memory, new shape
    >>> a.shape, b.shape, np.shares_memory(a, b)
    ((2, 3), (6,), True)
    """
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    flat = buffers.get((name, dtype))
    if flat is None or flat.size < size:
        flat = buffers[(name, dtype)] = np.empty(max(size, 1), dtype=dtype)
    return flat[:size].reshape(shape)


def clear() -> None:
    """Free every scratch buffer of this thread (they are reallocated on the next call).

    >>> clear()
    """
    _local.buffers = {}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3                  # glibc's mallopt() parameter numbers


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory: blocks up to 32 MB from the heap, freed heap kept (up to 1 GB).

    Returns True when the settings were applied (Linux with glibc, not disabled by
    ``AXON_KEEP_FREED_MEMORY=0``). Affects the whole process, like any allocator tuning.

    >>> keep_freed_memory() in (True, False)
    True
    """
    if os.environ.get("AXON_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)                               # the C library this process already runs on
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):                          # not glibc (musl, ...): nothing to tune
        return False
