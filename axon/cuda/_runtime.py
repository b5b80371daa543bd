"""What every CUDA kernel shares: the device check, launch sizes, views of arrays, the index helper.

Loading: ``numba.cuda`` is imported and checked once, here; without numba-cuda, without a driver or a
device (and without numba's simulator, ``NUMBA_ENABLE_CUDASIM=1``), importing ``axon.cuda`` raises one
``RuntimeError`` (``CudaUnavailable``) that says which of these is missing.

Views: a kernel never receives an n-d array. It receives a *view*: the flat storage of a C-contiguous
device array, an offset and one stride per axis, all counted in elements (MiniTorch's storage /
strides). Broadcasting is a stride of 0; a transpose permutes the strides; a slice changes the offset.
``position(i, offset, shape, strides)`` turns the i-th element of ``shape`` (C order) into a place in
the storage, so one compiled kernel serves every layout.

>>> import numpy as np
>>> x = from_host(np.arange(6.0).reshape(2, 3))
>>> storage, offset, strides = view(x)
>>> storage.shape, offset, strides
((6,), 0, (3, 1))
"""
from __future__ import annotations

import numpy as np

__all__ = ["CudaUnavailable", "cuda", "SIMULATOR", "ARRAY_TYPES", "THREADS", "BLOCKS", "REDUCE_THREADS", "position", "view",
           "contiguous_strides", "broadcast_strides", "ghost", "empty", "full", "copy", "to_host", "from_host",
           "launch_1d", "nb_type", "constant", "ghost_view", "copy_ahead", "piece"]


class CudaUnavailable(ImportError, RuntimeError):
    """Why the CUDA backend cannot start here (a RuntimeError, and an ImportError for tools that walk packages).

    >>> issubclass(CudaUnavailable, RuntimeError)
    True
    """


def _load_cuda():
    """``numba.cuda``, checked: one clear error (``CudaUnavailable``) saying why the backend cannot start."""
    try:
        from numba import cuda
        from numba.cuda import config
    except Exception as e:                                       # no numba-cuda, or it fails to load
        raise CudaUnavailable(f"the 'cuda' backend needs numba-cuda (pip install 'axon[cuda]'); importing "
                           f"numba.cuda failed: {type(e).__name__}: {e}") from e
    simulator = bool(config.ENABLE_CUDASIM)
    if not simulator and not cuda.is_available():
        try:
            cuda.current_context()
            reason = "numba finds no usable CUDA device"
        except Exception as e:                                   # no driver, or a driver and no device
            reason = " ".join(str(e).split()).rstrip(" :.")
        raise CudaUnavailable(f"the 'cuda' backend cannot start: {reason}. (Without an NVIDIA GPU, "
                           f"NUMBA_ENABLE_CUDASIM=1 runs its kernels on numba's CUDA simulator, slowly.)")
    try:                                                         # numba's CUDA target itself must compile
        @cuda.jit
        def _probe(a):
            a[0] = 1

        a = cuda.device_array(1, np.int32)
        _probe[1, 1](a)
    except Exception as e:                                       # e.g. numba-cuda 0.30 under numpy 2.5
        raise CudaUnavailable(f"the 'cuda' backend cannot start: numba's CUDA target failed on a test kernel "
                           f"({type(e).__name__}: {e}); check that numba-cuda supports this numpy "
                           f"({np.__version__})") from e
    return cuda, simulator


cuda, SIMULATOR = _load_cuda()

if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _DeviceArray

    class _SimArray(_DeviceArray):
        """The simulator's device array, with a plain tuple as its host-side shape (as a real DeviceNDArray).

        (The simulator's own shape refuses negative indices, ``x.shape[-1]``, even outside kernels.)
        """
        shape = property(lambda self: tuple(self._ary.shape))

        def reshape(self, *args, **kwargs):
            return _SimArray(self._ary.reshape(*args, **kwargs))

    def _own(a):
        return _SimArray(a._ary, a.stream)

    def _lock_simulator_shared_arrays():
        """Make the simulator's ``cuda.shared.array`` thread-safe (numba-cuda 0.30.4 allocates without a lock).

        The simulator gives a block's shared array on first use at a source line, but two of the block's
        threads arriving together could each make one: the block's threads then no longer share memory,
        and a tree reduction read another array's numbers (measured: 1 block in 12,000). This is the
        same lookup, under a lock; only the simulator is touched, and only once.
        """
        import sys
        import threading

        try:                                                      # (the simulator's internals, as of 0.30)
            from numba.cuda import types
            from numba.cuda.np import numpy_support
            from numba.cuda.simulator import kernelapi
            original = kernelapi.FakeCUDAShared.array
        except (ImportError, AttributeError):                     # another numba-cuda: leave it as it is
            return
        if getattr(original, "locked_by_axon", False):
            return
        lock = threading.Lock()

        def array(self, shape, dtype, alignment=None):
            if shape == 0 or alignment is not None:               # dynamic shared memory: no allocation
                return original(self, shape, dtype, alignment)
            if isinstance(dtype, types.Type):
                dtype = numpy_support.as_dtype(dtype)
            caller = sys._getframe(1)
            key = (caller.f_code.co_filename, caller.f_lineno)    # the simulator's key: the calling line
            with lock:
                res = self._allocations.get(key)
                if res is None:
                    res = self._allocations[key] = np.empty(shape, dtype)
            return res

        array.locked_by_axon = True
        kernelapi.FakeCUDAShared.array = array

    _lock_simulator_shared_arrays()
else:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceArray

    def _own(a):
        return a
ARRAY_TYPES = (_DeviceArray,)

# Launch sizes. The simulator runs every thread as a Python thread and every barrier as a lock, so
# there the same kernels run with small blocks (the code and the tree reductions stay the same).
THREADS = 32 if SIMULATOR else 256          # threads per block, elementwise kernels (grid-stride loops)
BLOCKS = 4 if SIMULATOR else 4096           # at most this many blocks: each thread loops over the rest
REDUCE_THREADS = 8 if SIMULATOR else 256    # a power of 2: the shared-memory tree reductions


@cuda.jit(device=True)
def position(i, offset, shape, strides):
    """Place in the storage of element ``i`` (C order over ``shape``) of a view ``(offset, strides)``."""
    p = offset
    for d in range(len(shape) - 1, -1, -1):                      # last axis fastest, as C order
        n = shape[d]
        p += (i % n) * strides[d]
        i //= n
    return p


def contiguous_strides(shape) -> tuple:
    """Element strides of a C-contiguous array of ``shape``.

    >>> contiguous_strides((2, 3, 4))
    (12, 4, 1)
    """
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(int(n), 1)
    return tuple(reversed(strides))


def broadcast_strides(shape, strides, out_shape) -> tuple:
    """The strides that read an array of ``shape`` broadcast to ``out_shape``: 0 along stretched axes.

    >>> broadcast_strides((3, 1), (1, 1), (2, 3, 4))
    (0, 1, 0)
    """
    lead = len(out_shape) - len(shape)
    return (0,) * lead + tuple(0 if n == 1 and m != 1 else s for n, s, m in zip(shape, strides, out_shape[lead:]))


def view(a):
    """``(storage, offset, strides)`` of a device array: its flat storage and element strides.

    A 0-d array is a 1-element storage; a device array that is not C-contiguous (made outside axon)
    is copied through the host once.

    >>> s, o, st = view(from_host(np.float32(2.5)))
    >>> s.shape, o, st
    ((1,), 0, ())
    """
    if not a.is_c_contiguous():
        a = from_host(a.copy_to_host())
    return a.reshape(max(a.size, 1)) if a.size else a.reshape(0), 0, contiguous_strides(a.shape)


def ghost(shape, dtype=np.float64) -> np.ndarray:
    """A host array of ``shape`` that owns one element: slicing it tells offsets and strides for free.

    Layout ops index the ghost with numpy (same rules, same errors as the CPU) and read off
    ``ghost_offset`` and ``strides``; no memory of the real size is ever touched.

    >>> g = ghost((4, 5))
    >>> g[1:, ::2].shape, g[1:, ::2].strides
    ((3, 3), (40, 16))
    """
    itemsize = np.dtype(dtype).itemsize
    strides = tuple(s * itemsize for s in contiguous_strides(shape))
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=tuple(shape), strides=strides, writeable=False)


def ghost_view(g, base) -> tuple:
    """``(offset, strides)`` in elements of ``g``, a numpy view of the ghost ``base``.

    >>> base = ghost((4, 5)); ghost_view(base[1:, ::2], base)
    (5, (5, 2))
    """
    itemsize = base.itemsize
    offset = (g.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // itemsize
    return int(offset), tuple(s // itemsize for s in g.strides)


def launch_1d(n: int) -> tuple:
    """``(blocks, threads)`` for a grid-stride loop over ``n`` elements.

    >>> launch_1d(10)[1] == THREADS
    True
    """
    return max(1, min(BLOCKS, -(-n // THREADS))), THREADS


def nb_type(dtype):
    """numba's scalar type for a numpy dtype (what ``cuda.shared.array`` and ``cuda.local.array`` take).

    >>> str(nb_type(np.float32))
    'float32'
    """
    from numba import from_dtype
    return from_dtype(np.dtype(dtype))


# ---- what the Backend entry needs: make, fill, copy, move -------------------------------------------
def piece(flat, lo: int, size: int, shape):
    """``flat[lo:lo + size].reshape(shape)`` for a 1-d device array: a view, no copy (``axon.flat``'s split).

    (Through ``_own``: on the simulator a slice would otherwise be its bare array type.)

    >>> piece(from_host(np.arange(6.0)), 2, 4, (2, 2)).shape
    (2, 2)
    """
    return _own(flat[lo:lo + size]).reshape(shape)


@cuda.jit
def _fill_kernel(out, value):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = value


def empty(shape, dtype):
    """A new, uninitialised C-contiguous device array.

    >>> empty((2, 3), np.float32).shape
    (2, 3)
    """
    return _own(cuda.device_array(tuple(int(n) for n in shape), dtype=np.dtype(dtype)))


def full(shape, value, dtype):
    """A new device array filled with ``value`` (one kernel launch).

    >>> to_host(full((2,), 3.0, np.float32))
    array([3., 3.], dtype=float32)
    """
    out = empty(shape, dtype)
    if out.size:
        flat = out.reshape(out.size)
        _fill_kernel[launch_1d(out.size)](flat, np.asarray(value, dtype=out.dtype)[()])
    return out


def copy(a):
    """An independent device copy of a device array (device to device, no host round trip).

    >>> a = from_host(np.arange(3.0)); b = copy(a); to_host(b)
    array([0., 1., 2.])
    """
    out = empty(a.shape, a.dtype)
    if a.size:
        out.copy_to_device(a)
    return out


def to_host(a) -> np.ndarray:
    """A device array copied into a new numpy array.

    >>> to_host(from_host(np.ones(2, np.float32)))
    array([1., 1.], dtype=float32)
    """
    return a.copy_to_host()


def from_host(a):
    """A numpy array (or scalar) copied to the device, C-contiguous, with its dtype.

    A 0-d array (the scalar of ``x * 2.0``, which the engine moves to the inputs' device) is copied once
    per value and then reused (``constant``): no host-to-device copy per operation. Device arrays are
    never written in place by axon, so sharing them is safe.

    >>> from_host(np.zeros((2, 2), np.float32)).dtype
    dtype('float32')
    >>> from_host(np.float32(2.0)) is from_host(np.asarray(2.0, np.float32))
    True
    """
    a = np.asarray(a, order="C")                                          # (ascontiguousarray makes 0-d 1-d)
    return constant(a) if a.ndim == 0 else _copy_in(a)


def _copy_in(a):
    return _own(cuda.to_device(a))


_CONSTANTS: dict = {}


def constant(a) -> object:
    """A small host array (a layer's pooling bins, its scale) on the device, copied once and then reused.

    Keyed by value, so a new array with the same contents finds the same device copy; at most 512 kept.

    >>> c = constant(np.array([1, 2])); c is constant(np.array([1, 2]))
    True
    """
    a = np.asarray(a, order="C")                                          # (keeps a 0-d array 0-d)
    key = (a.dtype.str, a.shape, a.tobytes())
    hit = _CONSTANTS.get(key)
    if hit is None:
        if len(_CONSTANTS) >= 512:
            _CONSTANTS.clear()
        hit = _CONSTANTS[key] = _copy_in(a)
    return hit


def _copy_stream():
    """``(stream, kind)``: a stream for copies that need not wait for the kernels of the default stream.

    numba's ``cuda.stream()`` makes a *blocking* stream: the legacy default stream, where axon's kernels
    run, waits for its copies (and they for its kernels). A ``CU_STREAM_NON_BLOCKING`` stream, made
    through numba's driver bindings and wrapped with ``cuda.external_stream``, does not, so the
    copy can overlap the kernels too; the loop's ``wait()`` orders the two explicitly. Where the
    bindings differ (another numba-cuda), or on the simulator, numba's own stream.
    """
    if not SIMULATOR:
        try:
            from numba.cuda.cudadrv.driver import binding, driver
            handle = driver.cuStreamCreate(binding.CUstream_flags.CU_STREAM_NON_BLOCKING.value)
            return cuda.external_stream(int(handle)), "non-blocking"   # (two per process, never destroyed)
        except Exception:                                            # noqa: BLE001  (then the portable one)
            pass
    return cuda.stream(), "blocking"


class _Slot:
    """One stream and its pinned (page-locked) host buffers: where one batch waits to be copied."""

    def __init__(self):
        self.stream, self.kind = _copy_stream()
        self.buffers: dict = {}

    def pinned(self, i, a):
        key = (i, a.shape, a.dtype.str)
        buf = self.buffers.get(key)
        if buf is None:
            if len(self.buffers) >= 16:                         # batches of ever new shapes: start afresh
                self.buffers.clear()
            buf = self.buffers[key] = cuda.pinned_array(a.shape, dtype=a.dtype)
        return buf


_SLOTS = [None, None]
_NEXT = [0]


def copy_ahead(tree):
    """Start copying a tree's host arrays to the device; return ``wait()``, which gives the device tree.

    Each array goes through a page-locked host buffer and ``cuda.to_device(..., stream=...)`` on a
    stream of its own (non-blocking where numba's driver allows: ``_copy_stream``), so the copy runs
    while the host goes on launching the current step's kernels, and while the device runs them:
    the training loop starts the next batch's copy before it runs a step, and calls ``wait()`` (the
    stream's synchronize, normally done by then) before the next step uses it. Two slots alternate,
    so a buffer is refilled only after its copy has finished. Host scalars (0-d) stay on the host, as
    ``axon.to_device`` leaves them.

    >>> wait = copy_ahead({"x": np.ones((2, 3), np.float32), "n": np.asarray(3)})
    >>> batch = wait(); to_host(batch["x"]).sum(), batch["n"]
    (np.float32(6.0), array(3))
    """
    import itertools

    from ..tree import tree_map
    k = _NEXT[0]
    _NEXT[0] = 1 - k
    if _SLOTS[k] is None:
        _SLOTS[k] = _Slot()
    slot = _SLOTS[k]
    slot.stream.synchronize()                                    # its last copy is done: refill its buffers
    position = itertools.count()                                 # a leaf's place in the tree: its buffer

    def start(a):
        i = next(position)
        if not (isinstance(a, np.ndarray) and a.ndim > 0):
            return a
        buf = slot.pinned(i, a)
        np.copyto(buf, a)                                        # host to page-locked host: a memcpy
        return _own(cuda.to_device(buf, stream=slot.stream))     # page-locked to device: asynchronous
    out = tree_map(start, tree)

    def wait():
        slot.stream.synchronize()
        return out
    return wait
