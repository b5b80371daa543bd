"""Layout ops on the GPU: reshape, transpose, broadcast_to, indexing and its scatter-add, joins, pad.

Most of them move elements without computing anything, so they are one strided copy
(``factories.strided_copy``) with the right strides. Those strides come from numpy itself: the op's
CPU forward is applied to a *ghost* (a host array with the real shape and strides that owns a single
element) and the offset and strides of the view it returns are read off. numpy thereby checks the
arguments and raises its usual errors, and no data crosses to the host.

- ``reshape`` of a C-contiguous array is a view (no copy), as on the CPU;
- ``transpose``, ``broadcast_to`` and basic indexing (ints, slices, None, ...) copy through a view;
- integer-array and boolean indexing turn the index into flat positions on the host (numpy's rules,
  one int64 per *output* element), then gather; ``scatter_add`` adds back with atomics
  (``cuda.atomic.add``), so repeated indices accumulate. Rows picked by one integer array that lives
  on the device (``x[ids]``, ``x[ids, ...]``: an embedding's lookup) never leave it: the kernels read
  ``ids`` there, and only its smallest and largest value come back, to raise numpy's IndexError;
- ``concatenate``, ``stack`` and ``pad`` copy each input into its slice of the output;
- ``flat.split`` cuts views of one buffer (each remembers where), and ``flat.join`` of views that tile
  their buffer in order is that buffer; other leaves are copied into a new one, many leaves a launch.

>>> import numpy as np
>>> from axon.autograd import Tensor
>>> from axon.cuda._runtime import from_host
>>> x = Tensor(from_host(np.arange(6.0).reshape(2, 3)))
>>> x.T[::-1, 1].numpy(), x[[1, 1], 0].numpy()
(array([5., 4., 3.]), array([3., 3.]))
"""
from __future__ import annotations

import numpy as np

from ..autograd.engine import PRIMITIVES, implement
from ..autograd.ops import _fill_index
from ..flat import bounds
from ..backend import is_host, to_host as any_to_host
from ._runtime import (broadcast_strides, piece, contiguous_strides, cuda, empty, from_host, full, ghost, ghost_view,
                       launch_1d, position, view)
from .factories import on_host, strided_copy

__all__ = ["positions", "FORWARDS"]


def _twin(name):
    return PRIMITIVES[name].forwards["cpu"]


def _copy_view(x, g, base):
    """A new C-contiguous array holding the elements of ``x`` that the ghost view ``g`` (of ``base``) picks."""
    storage, x_offset, _ = view(x)
    offset, strides = ghost_view(g, base)
    out = empty(g.shape, x.dtype)
    strided_copy(g.shape, out.reshape(out.size), 0, contiguous_strides(g.shape), storage, x_offset + offset, strides)
    return out


def _via_ghost(name):
    """The forward of a view-making op (transpose, broadcast_to): its CPU twin on a ghost, then one copy."""
    def forward(x, **params):
        if x.size == 0:
            return on_host(name, x, **params)
        base = ghost(x.shape, x.dtype)
        return _copy_view(x, _twin(name)(base, **params), base)
    return forward


def _reshape(x, shape):
    new_shape = _twin("reshape")(ghost(x.shape, x.dtype), shape).shape        # numpy's checks and -1
    storage, _, _ = view(x)                                                   # C-contiguous: a view
    return storage.reshape(new_shape) if x.size else empty(new_shape, x.dtype)


# ---- indexing --------------------------------------------------------------------------------------
def _host_index(index):
    """The index with device arrays (from Tensors on the GPU) brought to the host: numpy reads it."""
    if isinstance(index, tuple):
        return tuple(_host_index(i) for i in index)
    return index if is_host(index) else any_to_host(index)


def _is_advanced(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, np.ndarray) and i.dtype.kind in "biu" for i in parts)


def positions(shape, index) -> np.ndarray:
    """Flat C-order positions in an array of ``shape`` of the elements ``x[index]`` picks (int64, x[index]'s shape).

    Each axis contributes ``i_d * stride_d``: a broadcast (zero-memory) view of those numbers is indexed
    with numpy, which applies every rule of advanced indexing; the terms are summed.

    >>> positions((3, 4), (np.array([2, 0]), slice(1, 3)))
    array([[ 9, 10],
           [ 1,  2]])
    """
    pos = 0
    for d, (n, s) in enumerate(zip(shape, contiguous_strides(shape))):
        along = (np.arange(n, dtype=np.int64) * s).reshape((1,) * d + (n,) + (1,) * (len(shape) - d - 1))
        pos = pos + np.broadcast_to(along, shape)[index]                       # (x[index].shape)
    return np.asarray(pos, dtype=np.int64)


@cuda.jit
def _gather_kernel(out, src, pos):
    # out (n,), pos (n,) int64: out[i] = src[pos[i]]
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = src[pos[i]]


@cuda.jit
def _scatter_add_kernel(g, pos, shape, dy, dy_offset, dy_strides):
    # g (m,) zeroed; pos (n,) int64 over shape (C order); dy a view broadcast to shape: g[pos[i]] += dy[i]
    for i in range(cuda.grid(1), pos.shape[0], cuda.gridsize(1)):
        cuda.atomic.add(g, pos[i], dy[position(i, dy_offset, shape, dy_strides)])


def _device_rows(index, x_ndim):
    """``ids`` when ``index`` picks rows along axis 0 with one integer device array (``ids``, ``(ids, :, ...)``,
    ``(ids, ...)``); else None (numpy's rules decide, on the host)."""
    parts = index if isinstance(index, tuple) else (index,)
    if not parts or is_host(parts[0]) or parts[0].dtype.kind not in "iu":
        return None
    rest = parts[1:]
    full = all(p is Ellipsis or (isinstance(p, slice) and p == slice(None)) for p in rest)
    if not full or sum(p is Ellipsis for p in rest) > 1 or len([p for p in rest if p is not Ellipsis]) >= x_ndim:
        return None
    return parts[0]


def _check_rows(ids, n: int) -> None:
    """numpy's IndexError when an id is outside [-n, n): two numbers (the ids' min and max) come to the host."""
    lo, hi = (PRIMITIVES[name].forwards["cuda"](ids, axis=None, keepdims=False).reshape(1) for name in ("min", "max"))
    lo, hi = (int(v) for v in any_to_host(_concatenate(lo, hi, axis=0)))                # one copy
    if lo < -n or hi >= n:
        raise IndexError(f"index {lo if lo < -n else hi} is out of bounds for axis 0 with size {n}")


@cuda.jit(device=True)
def _source_at(ids, i, n, inner):
    # the flat index in (n*inner,) that element i of (m*inner,) rows ids[i // inner] reads (negative ids: + n)
    r = ids[i // inner]
    if r < 0:
        r += n
    return r * inner + i % inner


@cuda.jit
def _take_rows_kernel(out, src, ids, n, inner):
    # out (m*inner,); src (n*inner,); ids (m,) in [-n, n): out[j*inner + k] = src[ids[j]*inner + k]
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = src[_source_at(ids, i, n, inner)]


@cuda.jit
def _scatter_rows_kernel(g, ids, dy, n, inner):
    # g (n*inner,) zeroed; ids (m,); dy (m*inner,): g[ids[j]*inner + k] += dy[j*inner + k] (ids may repeat)
    for i in range(cuda.grid(1), dy.shape[0], cuda.gridsize(1)):
        cuda.atomic.add(g, _source_at(ids, i, n, inner), dy[i])


def _getitem(x, index):
    ids = _device_rows(index, x.ndim)
    if ids is not None:                                          # rows by device ids: on the device
        out = empty(ids.shape + x.shape[1:], x.dtype)
        if out.size:
            _check_rows(ids, x.shape[0])
            inner = out.size // ids.size
            _take_rows_kernel[launch_1d(out.size)](out.reshape(out.size), view(x)[0], view(ids)[0], x.shape[0], inner)
        return out
    index = _host_index(index)
    if not _is_advanced(index):
        base = ghost(x.shape, x.dtype)
        g = base[index]                                          # numpy checks the index (IndexError)
        return _copy_view(x, g, base) if x.size else on_host("getitem", x, index=index)
    pos = positions(x.shape, index)
    out = empty(pos.shape, x.dtype)
    if pos.size:
        storage, _, _ = view(x)
        _gather_kernel[launch_1d(pos.size)](out.reshape(out.size), storage, from_host(pos.reshape(-1)))
    return out


def _scatter_add(dy, index, shape):
    ids = _device_rows(index, len(shape))
    if ids is not None and dy.shape == ids.shape + tuple(shape[1:]):   # rows by device ids: on the device
        g = full(shape, 0, dy.dtype)
        if dy.size:
            _check_rows(ids, shape[0])
            _scatter_rows_kernel[launch_1d(dy.size)](g.reshape(g.size), view(ids)[0], view(dy)[0], shape[0],
                                                     dy.size // ids.size)
        return g
    index = _host_index(index)
    g = full(shape, 0, dy.dtype)
    base = ghost(shape, dy.dtype)
    advanced = _is_advanced(index)
    target = positions(shape, index) if advanced else base[index]              # what x[index] picked
    if dy.size == 0 or target.size == 0:
        return g
    storage, dy_offset, dy_strides = view(dy)
    b_strides = broadcast_strides(dy.shape, dy_strides, target.shape)          # numpy broadcasts dy too
    if not advanced:                                                           # slices never repeat: a copy
        offset, strides = ghost_view(target, base)
        strided_copy(target.shape, g.reshape(g.size), offset, strides, storage, dy_offset, b_strides)
        return g
    shape_k, b_strides = (target.shape, b_strides) if target.ndim else ((1,), (0,))
    _scatter_add_kernel[launch_1d(target.size)](g.reshape(g.size), from_host(target.reshape(-1)), shape_k,
                                                storage, dy_offset, b_strides)
    return g


# ---- joining and padding ---------------------------------------------------------------------------
def _place(out, base, xs, where):
    """Copy each ``xs[i]`` into the ghost view ``where(i)`` of ``out``."""
    flat = out.reshape(out.size)
    for i, x in enumerate(xs):
        if x.size:
            storage, x_offset, x_strides = view(x)
            offset, strides = ghost_view(base[where(i) + (Ellipsis,)], base)   # (a view, 0-d too)
            strided_copy(x.shape, flat, offset, strides, storage, x_offset, x_strides)
    return out


def _concatenate(*xs, axis):
    if any(x.ndim == 0 for x in xs) or all(x.size == 0 for x in xs):
        return on_host("concatenate", *xs, axis=axis)                       # numpy's errors, or nothing to copy
    ax = axis % xs[0].ndim
    shape = list(xs[0].shape)
    shape[ax] = sum(x.shape[ax] for x in xs)
    bounds = np.cumsum([0] + [x.shape[ax] for x in xs])
    out = empty(shape, np.result_type(*(x.dtype for x in xs)))
    lead = (slice(None),) * ax
    return _place(out, ghost(shape, out.dtype), xs, lambda i: lead + (slice(int(bounds[i]), int(bounds[i + 1])),))


def _stack(*xs, axis):
    ax = axis % (xs[0].ndim + 1)
    shape = xs[0].shape[:ax] + (len(xs),) + xs[0].shape[ax:]
    out = empty(shape, np.result_type(*(x.dtype for x in xs)))
    lead = (slice(None),) * ax
    return _place(out, ghost(shape, out.dtype), xs, lambda i: lead + (i,))


def _pad(x, pad_width, value):
    shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, pad_width))
    out = full(shape, value, x.dtype)
    inner = tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape, pad_width))
    return _place(out, ghost(shape, x.dtype), [x], lambda i: inner)


# ---- axon.flat: a tree's leaves as views of one buffer ----------------------------------------------------
# ``flat.split``'s views remember the buffer and the place they were cut from (an attribute of the view:
# numba's device arrays have no ``base``); ``flat.join`` of views that tile their buffer in order is the
# buffer itself, so params and Adam's moments stay in one buffer each from the second step on.
_CUT = "_axon_flat_cut"                                         # (flat, lo) of a view made by _flat_split


def _flat_split(flat, shapes):
    # flat (n,) -> one view per shape, in order (no copy), each knowing where it was cut
    out = []
    for lo, size, shape in bounds(shapes):
        v = piece(flat, lo, size, shape)
        setattr(v, _CUT, (flat, lo))
        out.append(v)
    return tuple(out)


def _tiled_base(leaves):
    """The 1-d device array that ``leaves`` (``_flat_split``'s views) tile exactly, in order; else None."""
    cut = getattr(leaves[0], _CUT, None)
    if cut is None:
        return None
    base, end = cut[0], 0
    for a in leaves:
        cut = getattr(a, _CUT, None)
        if cut is None or cut[0] is not base or cut[1] != end or a.dtype != base.dtype:
            return None
        end += a.size
    return base if end == base.size else None


# A launch copies up to this many leaves (each a kernel argument of 7 words: numba passes a 1-d array as
# meminfo, parent, size, itemsize, pointer, shape and stride; CUDA before 12.1 allows 4 KB of arguments).
JOIN_LEAVES = 32


@cuda.jit
def _join_kernel(out, parts, starts):
    # out (n,); parts: a tuple of K 1-d arrays, part k copied to out[starts[k]:starts[k] + parts[k].shape[0]]
    # (starts (K,) increasing, starts[0] = 0: element i belongs to the last part that starts at or before i)
    K = len(starts)
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        lo, hi = 0, K - 1
        while lo < hi:                                          # binary search over the parts' starts
            mid = (lo + hi + 1) // 2
            if starts[mid] <= i:
                lo = mid
            else:
                hi = mid - 1
        out[i] = parts[lo][i - starts[lo]]


def _flat_join(*leaves):
    # leaves: C-contiguous device arrays of one dtype -> (sum of sizes,): the buffer they tile, or one copy
    # (one launch for every JOIN_LEAVES leaves, not one per leaf)
    if len(leaves) == 1:
        return leaves[0].reshape(leaves[0].size)                 # a view
    base = _tiled_base(leaves)
    if base is not None:
        return base
    if len({a.dtype for a in leaves}) > 1:                       # numpy's promotion, as the CPU's concatenate
        return _concatenate(*[a.reshape(a.size) for a in leaves], axis=0)
    out = empty((sum(a.size for a in leaves),), leaves[0].dtype)
    parts, lo = [], 0
    for a in leaves:
        if a.size:
            parts.append((view(a)[0], lo))
        lo += a.size
    for k in range(0, len(parts), JOIN_LEAVES):
        chunk = parts[k:k + JOIN_LEAVES]
        first = chunk[0][1]
        n = sum(p.size for p, _ in chunk)
        _join_kernel[launch_1d(n)](out[first:first + n], tuple(p for p, _ in chunk),
                                   tuple(start - first for _, start in chunk))
    return out


implement("reshape", "cuda", _reshape)
implement("transpose", "cuda", _via_ghost("transpose"))
implement("broadcast_to", "cuda", _via_ghost("broadcast_to"))
implement("getitem", "cuda", _getitem)
implement("scatter_add", "cuda", _scatter_add)
implement("flat.join", "cuda", _flat_join)
implement("flat.split", "cuda", _flat_split)
implement("getitem_at", "cuda", lambda x, *arrays, index: _getitem(x, _fill_index(index, arrays)))
implement("scatter_add_at", "cuda", lambda dy, *arrays, index, shape: _scatter_add(dy, _fill_index(index, arrays),
                                                                                  shape))
implement("concatenate", "cuda", _concatenate)
implement("stack", "cuda", _stack)
implement("pad", "cuda", _pad)

FORWARDS = ("reshape", "transpose", "broadcast_to", "getitem", "scatter_add", "concatenate", "stack", "pad")
"""The primitives this module gives a CUDA forward."""
