"""Kernel factories: one scalar function in, a broadcasting CUDA kernel (and its Python launcher) out.

MiniTorch's idea: an elementwise op is a loop that every op shares plus a scalar function that differs,
so the loop is written once, as a factory, and each op is one line on top of it:

    cuda_map(fn)            y[i]    = fn(x[i])                     (unary, also with constants)
    cuda_zip(fn)            y[i]    = fn(a[i'], b[i''])            (binary or ternary, numpy broadcasting)
    cuda_reduce(fn, start)  y[a]    = fn(...fn(fn(start, x[a, 0]), x[a, 1])..., x[a, L-1])

``fn`` is a plain Python function of scalars; the factory compiles it as a CUDA device function
(``cuda.jit(device=True)``) and calls it from a kernel over *views* (``_runtime``): the output is
C-contiguous, every input is read through its own offset and strides, so a broadcast input (stride 0)
or a transposed one costs nothing extra. Each thread handles elements ``i, i + G, i + 2G, ...`` with ``G``
the number of threads in the grid (a grid-stride loop: any size runs with a bounded grid).

A reduction gives each output one block of threads: thread ``t`` folds elements ``t, t + T, ...`` of its
row into a register, then the block folds the ``T`` partial results in shared memory in ``log2 T``
rounds, halving the active threads each time (a tree, not one thread looping serially):

    round 1: s[t] = fn(s[t], s[t + T/2])   for t < T/2        round 2: ... for t < T/4  ...   y = s[0]

Each launcher keeps its device function as ``forward.scalar`` (a function of the operands and a tuple
of constants): ``axon.fusion`` generates one kernel for a chain of ops from these (``axon.cuda.fused``),
so an op's scalar function is written once, here and in ``ops``, alone or fused.

``like`` names the CPU twin of the op (its primitive in the table): the output dtype is whatever that
CPU forward gives on one-element arrays of the input dtypes (numpy's promotion rules, shared, not
copied), arguments it refuses (shapes that do not broadcast, a repeated axis) raise the twin's own
error from zero-memory ghosts (``twin_error``), and empty inputs are handed to the CPU forward
outright (nothing to launch).

>>> import math, numpy as np
>>> from axon.cuda._runtime import from_host, to_host
>>> exp = cuda_map(lambda v: math.exp(v), like="exp")
>>> to_host(exp(from_host(np.zeros(3, np.float32))))
array([1., 1., 1.], dtype=float32)
>>> add = cuda_zip(lambda a, b: a + b, like="add")
>>> to_host(add(from_host(np.ones((2, 1))), from_host(np.arange(3.0))))
array([[1., 2., 3.],
       [1., 2., 3.]])
"""
from __future__ import annotations

import inspect
from functools import lru_cache

import numpy as np

from ..autograd.engine import PRIMITIVES
from ._runtime import (REDUCE_THREADS, broadcast_strides, cuda, empty, from_host, launch_1d,
                       nb_type, position, to_host, view)

__all__ = ["cuda_map", "cuda_zip", "cuda_reduce", "block_fold", "split_rows", "row_blocks", "strided_copy", "twin_dtype",
           "twin_error", "on_host", "padded"]


# ---- what the CPU twin decides: output dtypes, and what to do with empty arrays ---------------------
@lru_cache(maxsize=None)
def _twin_dtype(name, dtypes, params):
    with np.errstate(all="ignore"):
        out = PRIMITIVES[name].forwards["cpu"](*(np.ones(1, dt) for dt in dtypes), **dict(params))
    return out.dtype


def twin_dtype(name: str, dtypes, **params) -> np.dtype:
    """The dtype the CPU forward of primitive ``name`` returns for inputs of ``dtypes`` (cached).

    >>> twin_dtype("add", (np.dtype(np.float32), np.dtype(np.bool_))), twin_dtype("less", (np.dtype(np.int64),) * 2)
    (dtype('float32'), dtype('bool'))
    """
    return _twin_dtype(name, tuple(np.dtype(d) for d in dtypes), tuple(sorted(params.items())))


def twin_error(name, *arrays, **params) -> None:
    """Raise what the CPU forward of ``name`` raises for arrays of these shapes and dtypes (shared checks).

    The twin runs on zero-memory ghosts (a 0-d zero broadcast to each shape), so numpy checks the
    arguments with its own rules and words; nothing of the real size is touched. Returns when the
    twin accepts them (the caller then raises its own error).

    >>> twin_error("add", from_host(np.ones((2, 3))), from_host(np.ones(4)))
    Traceback (most recent call last):
    ...
    ValueError: add: shapes (2, 3) and (4,) cannot be broadcast together
    """
    if name is not None:
        PRIMITIVES[name].forwards["cpu"](*(np.broadcast_to(np.zeros((), a.dtype), a.shape) for a in arrays), **params)


def on_host(name: str, *arrays, **params):
    """Run the CPU forward of ``name`` on host copies and move the result back (for empty arrays).

    >>> to_host(on_host("sum", from_host(np.zeros((0, 3))), axis=0, keepdims=False))
    array([0., 0., 0.])
    """
    out = PRIMITIVES[name].forwards["cpu"](*(to_host(a) for a in arrays), **params)
    return from_host(np.asarray(out))


def padded(shape, *strides) -> tuple:
    """``shape`` and strides with at least one axis (a 0-d array is one element): kernels loop over axes.

    >>> padded((), ())
    ((1,), (0,))
    """
    if len(shape):
        return (tuple(shape),) + tuple(tuple(s) for s in strides)
    return ((1,),) + tuple((0,) for _ in strides)


def _device_fn(fn, n_args):
    """``fn`` compiled as a device function taking ``n_args`` values and a tuple of constants."""
    f = cuda.jit(device=True)(fn)
    if len(inspect.signature(fn).parameters) == n_args + 1:   # fn(v..., consts) already
        return f
    if n_args == 1:
        return cuda.jit(device=True)(lambda v, c: f(v))
    if n_args == 2:
        return cuda.jit(device=True)(lambda a, b, c: f(a, b))
    return cuda.jit(device=True)(lambda a, b, c3, c: f(a, b, c3))


# ---- map ------------------------------------------------------------------------------------------
def cuda_map(fn, like: str | None = None):
    """A unary elementwise op from the scalar function ``fn(v)`` (or ``fn(v, consts)``, a tuple of numbers).

    The launcher ``forward(x, *consts, dtype=None)`` returns a new C-contiguous array of x's shape;
    its dtype is ``dtype`` if given, else the CPU twin's (``like``), else x's.

    >>> import numpy as np
    >>> from axon.cuda._runtime import from_host, to_host
    >>> clip = cuda_map(lambda v, c: c[0] if v < c[0] else (c[1] if v > c[1] else v))
    >>> to_host(clip(from_host(np.array([-2.0, 0.5, 3.0])), -1.0, 1.0))
    array([-1. ,  0.5,  1. ])
    """
    f = _device_fn(fn, 1)

    @cuda.jit
    def kernel(out, shape, x, x_offset, x_strides, consts):
        # out (n,) C order over shape; x read through (x_offset, x_strides)
        for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            out[i] = f(x[position(i, x_offset, shape, x_strides)], consts)

    def forward(x, *consts, dtype=None):
        if dtype is None:
            dtype = twin_dtype(like, (x.dtype,)) if like else x.dtype
        out = empty(x.shape, dtype)
        if x.size:
            storage, offset, strides = view(x)
            shape, strides = padded(x.shape, strides)
            kernel[launch_1d(x.size)](out.reshape(out.size), shape, storage, offset, strides, tuple(consts))
        return out

    forward.kernel, forward.scalar = kernel, f                   # scalar: what axon.fusion's kernels call
    return forward


# ---- zip ------------------------------------------------------------------------------------------
def cuda_zip(fn, like: str | None = None):
    """A binary ``fn(a, b)`` (or ternary ``fn(cond, a, b)``) elementwise op with numpy broadcasting.

    Each input is read through strides over the broadcast output shape (0 along stretched axes), so
    nothing is materialised. The output dtype is the CPU twin's (``like``), else ``np.result_type``.

    >>> import numpy as np
    >>> from axon.cuda._runtime import from_host, to_host
    >>> where = cuda_zip(lambda c, a, b: a if c else b)
    >>> to_host(where(from_host(np.array([True, False])), from_host(np.ones(2)), from_host(np.zeros(()))))
    array([1., 0.])
    """
    n_args = len(inspect.signature(fn).parameters)
    f = _device_fn(fn, n_args)

    if n_args == 2:
        @cuda.jit
        def kernel(out, shape, a, a_offset, a_strides, b, b_offset, b_strides):
            for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
                out[i] = f(a[position(i, a_offset, shape, a_strides)],
                           b[position(i, b_offset, shape, b_strides)], ())
    else:
        @cuda.jit
        def kernel(out, shape, a, a_offset, a_strides, b, b_offset, b_strides, c, c_offset, c_strides):
            for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
                out[i] = f(a[position(i, a_offset, shape, a_strides)],
                           b[position(i, b_offset, shape, b_strides)],
                           c[position(i, c_offset, shape, c_strides)], ())

    def forward(*xs):
        name = like or "zip"
        try:
            out_shape = np.broadcast_shapes(*(x.shape for x in xs))
        except ValueError:
            twin_error(like, *xs)                                # the CPU twin's own error, when it has one
            shapes = " and ".join(str(x.shape) for x in xs)
            raise ValueError(f"{name}: shapes {shapes} cannot be broadcast together") from None
        dtypes = tuple(x.dtype for x in xs)
        dtype = twin_dtype(like, dtypes) if like else np.result_type(*dtypes)
        if any(x.size == 0 for x in xs) or 0 in out_shape:
            return on_host(like, *xs) if like else empty(out_shape, dtype)
        out = empty(out_shape, dtype)
        args = []
        for x in xs:                                             # each input: storage, offset, strides
            storage, offset, strides = view(x)
            args += [storage, offset, broadcast_strides(x.shape, strides, out_shape) if out_shape else (0,)]
        shape = out_shape or (1,)
        kernel[launch_1d(out.size)](out.reshape(out.size), shape, *args)
        return out

    forward.kernel, forward.scalar = kernel, f                   # scalar: what axon.fusion's kernels call
    return forward


# ---- strided copy: the layout ops' one kernel -----------------------------------------------------------
@cuda.jit
def _copy_kernel(n, shape, dst, d_offset, d_strides, src, s_offset, s_strides):
    # dst[view d][i] = src[view s][i] for the n elements of shape (C order): both sides strided
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[position(i, d_offset, shape, d_strides)] = src[position(i, s_offset, shape, s_strides)]


def strided_copy(shape, dst, d_offset, d_strides, src, s_offset, s_strides) -> None:
    """Copy ``shape``'s elements from a view of ``src`` into a view of ``dst`` (flat storages).

    Transpose, broadcast_to, basic indexing, concatenate, stack and pad are all this one kernel with
    different strides (read from a numpy *ghost*: ``_runtime.ghost``).

    >>> import numpy as np
    >>> from axon.cuda._runtime import from_host, to_host, empty
    >>> src, out = from_host(np.arange(6.0)), empty((6,), np.float64)
    >>> strided_copy((3, 2), out, 0, (2, 1), src, 0, (1, 3))            # (2, 3) -> its transpose
    >>> to_host(out).reshape(3, 2)
    array([[0., 3.],
           [1., 4.],
           [2., 5.]])
    """
    n = int(np.prod(shape))
    if n:
        shape, d_strides, s_strides = padded(shape, d_strides, s_strides)
        _copy_kernel[launch_1d(n)](n, shape, dst, int(d_offset), d_strides, src, int(s_offset), s_strides)


# ---- reduce ---------------------------------------------------------------------------------------
def block_fold(f):
    """A device function ``fold(partial, acc, t)``: the block's ``REDUCE_THREADS`` values of ``acc`` folded by ``f``.

    ``partial`` is a shared array of ``REDUCE_THREADS`` elements, ``t`` the thread's index; every thread
    gets the result. The rounds halve the active threads: ``s[t] = f(s[t], s[t + h])`` for ``t < h``,
    ``h = T/2, T/4, ..., 1``, with a barrier after each (so the block's threads must all call it).

    >>> callable(block_fold(cuda.jit(device=True)(lambda a, b: a + b)))
    True
    """
    T = REDUCE_THREADS

    @cuda.jit(device=True)
    def fold(partial, acc, t):
        partial[t] = acc
        cuda.syncthreads()
        h = T // 2
        while h > 0:                                             # the tree: T -> T/2 -> ... -> 1
            if t < h:
                partial[t] = f(partial[t], partial[t + h])
            cuda.syncthreads()
            h //= 2
        total = partial[0]
        cuda.syncthreads()                                       # partial may be reused at once
        return total
    return fold


def cuda_reduce(fn, start, like: str | None = None):
    """A reduction over any axes from a binary scalar ``fn(acc, v)`` and its ``start`` value.

    The launcher is ``forward(x, axis=None, keepdims=False)`` (numpy's meaning). One block per output
    element, ``REDUCE_THREADS`` threads each: a strided fold into registers, then a shared-memory tree.
    ``start`` is cast to the output dtype (infinities become the integer limits for integer arrays).

    >>> import numpy as np
    >>> from axon.cuda._runtime import from_host, to_host
    >>> amax = cuda_reduce(lambda a, b: a if a > b or a != a else b, -np.inf)
    >>> to_host(amax(from_host(np.array([[1.0, 7.0, 2.0], [4.0, 0.0, 3.0]])), axis=1))
    array([7., 4.])
    """
    f = cuda.jit(device=True)(fn)
    fold = block_fold(f)
    T = REDUCE_THREADS
    kernels = {}

    def make(dtype):
        acc_type = nb_type(dtype)

        @cuda.jit
        def kernel(out, x, x_offset, kept_shape, kept_strides, red_shape, red_strides, L, start):
            # out (A,): out[a] = fold of the L elements of row a; row a starts at its kept position
            partial = cuda.shared.array(T, acc_type)
            t = cuda.threadIdx.x
            for a in range(cuda.blockIdx.x, out.shape[0], cuda.gridDim.x):
                base = position(a, x_offset, kept_shape, kept_strides)
                acc = start
                for l in range(t, L, T):                        # thread t: elements t, t + T, ...
                    acc = f(acc, x[position(l, base, red_shape, red_strides)])
                acc = fold(partial, acc, t)                     # the tree
                if t == 0:
                    out[a] = acc
        return kernel

    def forward(x, axis=None, keepdims=False):
        try:
            axes = tuple(range(x.ndim)) if axis is None else np.lib.array_utils.normalize_axis_tuple(axis, max(x.ndim, 1))
        except ValueError:                                       # (numpy's AxisError is one too)
            twin_error(like, x, axis=axis, keepdims=keepdims)    # the CPU twin's own words
            raise
        if x.ndim == 0:
            axes = ()
        dtype = twin_dtype(like, (x.dtype,), axis=None, keepdims=False) if like else x.dtype
        if x.size == 0:
            return on_host(like, x, axis=axis, keepdims=keepdims)
        storage, offset, strides = view(x)
        out_shape = tuple(1 if d in axes else n for d, n in enumerate(x.shape) if keepdims or d not in axes)
        out = empty(out_shape, dtype)
        kept_shape, kept_strides, red_shape, red_strides = split_rows(x.shape, strides, axes)
        L = int(np.prod(red_shape))
        if dtype not in kernels:
            kernels[dtype] = make(dtype)
        kernels[dtype][row_blocks(out.size), T](out.reshape(out.size), storage, offset, kept_shape, kept_strides,
                                                red_shape, red_strides, L, _start(dtype, start))
        return out

    return forward


def split_rows(shape, strides, axes) -> tuple:
    """``(kept_shape, kept_strides, red_shape, red_strides)``: rows over the kept axes, each row over ``axes``.

    >>> split_rows((2, 3, 4), (12, 4, 1), (1,))
    ((2, 4), (12, 1), (3,), (4,))
    """
    kept = [d for d in range(len(shape)) if d not in axes]
    return (*padded(tuple(shape[d] for d in kept), tuple(strides[d] for d in kept)),
            *padded(tuple(shape[d] for d in axes), tuple(strides[d] for d in axes)))


def row_blocks(rows: int) -> int:
    """Blocks for a kernel that gives each row one block (a grid-stride loop over the rest).

    >>> row_blocks(3)
    3
    """
    return max(1, min(rows, 65535 if REDUCE_THREADS > 32 else 4))


def _start(dtype, value):
    """``value`` in ``dtype``; +-inf as the limits of an integer dtype, as True/False for bool."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.bool_(value > 0)
    if dtype.kind in "iu" and np.isinf(value):
        info = np.iinfo(dtype)
        return dtype.type(info.max if value > 0 else info.min)
    return dtype.type(value)
