"""Matrix product on the GPU: shared-memory tiles, and a small block of outputs per thread.

A thread block computes one ``BM x BN`` tile of ``C = A B``. It walks the inner dimension ``BK`` at a
time: the block copies a ``BM x BK`` slab of A and a ``BK x BN`` slab of B into shared memory (each
element read from global memory once per block instead of once per thread), waits at a barrier, and
every thread multiplies out of shared memory:

    for k0 in 0, BK, 2 BK, ...:                 As = A[tile rows, k0:k0+BK]    Bs = B[k0:k0+BK, tile cols]
        for k in 0 .. BK-1:                     a = As[k, my TM rows]  b = Bs[k, my TN cols]   (registers)
            acc[TM, TN] += outer(a, b)          TM*TN multiply-adds for TM+TN reads of shared memory

That last line is *register blocking*: with one output per thread (the plain 16x16 tile) every
multiply-add needs two shared-memory reads and the kernel is bound by them (7.8 TFLOP/s on an H200);
with a 4x4 block per thread it is 16 multiply-adds for 8 reads. A thread's rows are ``ty, ty + TY, ...``
and its columns ``tx, tx + TX, ...`` (not a contiguous block), so neighbouring threads read
neighbouring shared-memory words (no bank conflicts) and write neighbouring words of C (coalesced).
``As`` is stored transposed and padded by one column so that storing it is conflict-free too.

Batches broadcast as in numpy (a batch stride of 0 reuses one matrix); vectors are matrices of one
row or column, as ``np.matmul``. The CPU twin's checks run on zero-memory ghosts when shapes do not fit.

>>> import numpy as np
>>> from axon.cuda._runtime import from_host, to_host
>>> a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 2))
>>> to_host(matmul(from_host(a), from_host(b)))
array([[ 3.,  3.],
       [12., 12.]])
"""
from __future__ import annotations

import numpy as np

from ..autograd.engine import PRIMITIVES, implement
from ._runtime import SIMULATOR, cuda, empty, full, nb_type, position, view
from .factories import padded, twin_dtype

__all__ = ["matmul", "launch_matmul", "TILES", "TILES_LARGE", "make_matmul_kernel"]

# (BM, BN, BK, TM, TN): the tile of C per block, the depth of a slab, the outputs per thread. The
# simulator runs every thread in Python, so it gets a tiny tile (the same code).
TILES = (8, 8, 4, 2, 2) if SIMULATOR else (64, 64, 16, 4, 4)
# For large products (both sides of C >= LARGE), 128x128 tiles with 8x8 outputs per thread: 64 multiply-adds
# per 16 shared-memory reads instead of 16 per 8 (the compiled PTX keeps all 64 accumulators in registers).
# Smaller ones keep the 64x64 tile, so that a (128, 784) @ (784, 128) layer still fills the GPU with blocks.
TILES_LARGE, LARGE = (TILES, 1 << 62) if SIMULATOR else ((128, 128, 8, 8, 8), 1024)


def make_matmul_kernel(dtype, BM, BN, BK, TM, TN):
    """Compile-on-first-use kernel for one dtype and tile shape; launched with blocks of (BN/TN, BM/TM) threads.

    >>> k = make_matmul_kernel(np.float32, *TILES); callable(k)
    True
    """
    TY, TX = BM // TM, BN // TN                                   # threads per block along rows, columns
    NT = TX * TY
    BM1 = BM + 1                                                  # (a shared array's shape must be constants)
    t = nb_type(dtype)
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def kernel(c, c_bs, c_s0, a, a_offset, a_bstrides, a_s0, a_s1, b, b_offset, b_bstrides, b_s0, b_s1, batch_shape,
               M, N, K, B):
        # c: matrix z at z * c_bs, row stride c_s0 (columns contiguous); a, b: flat storages read through
        # offsets, batch strides (over batch_shape) and two matrix strides each
        As = cuda.shared.array((BK, BM1), t)                      # A's slab, transposed: As[k, i]
        Bs = cuda.shared.array((BK, BN), t)
        acc = cuda.local.array((TM, TN), t)
        a_reg = cuda.local.array(TM, t)
        b_reg = cuda.local.array(TN, t)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        row0, col0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
        for z in range(cuda.blockIdx.z, B, cuda.gridDim.z):      # one matrix of the batch
            a0 = position(z, a_offset, batch_shape, a_bstrides)
            b0 = position(z, b_offset, batch_shape, b_bstrides)
            for i in range(TM):
                for j in range(TN):
                    acc[i, j] = zero
            for k0 in range(0, K, BK):
                for e in range(tid, BM * BK, NT):                 # A slab: consecutive threads, consecutive k
                    i, kk = e // BK, e % BK
                    v = zero
                    if row0 + i < M and k0 + kk < K:
                        v = a[a0 + (row0 + i) * a_s0 + (k0 + kk) * a_s1]
                    As[kk, i] = v
                for e in range(tid, BK * BN, NT):                 # B slab: consecutive threads, consecutive columns
                    kk, j = e // BN, e % BN
                    v = zero
                    if k0 + kk < K and col0 + j < N:
                        v = b[b0 + (k0 + kk) * b_s0 + (col0 + j) * b_s1]
                    Bs[kk, j] = v
                cuda.syncthreads()
                for kk in range(BK):
                    for i in range(TM):
                        a_reg[i] = As[kk, ty + i * TY]
                    for j in range(TN):
                        b_reg[j] = Bs[kk, tx + j * TX]
                    for i in range(TM):                           # TM x TN multiply-adds from registers
                        for j in range(TN):
                            acc[i, j] += a_reg[i] * b_reg[j]
                cuda.syncthreads()
            for i in range(TM):
                r = row0 + ty + i * TY
                for j in range(TN):
                    col = col0 + tx + j * TX
                    if r < M and col < N:
                        c[z * c_bs + r * c_s0 + col] = acc[i, j]
    return kernel


_kernels = {}


def _zero_ghost(shape, dtype):
    return np.broadcast_to(np.zeros((), dtype), shape)


def launch_matmul(c, c_bs, c_s0, a, b, M, N, K, B=1, batch_shape=(1,), tiles=None):
    """Launch the tiled kernel: ``a`` and ``b`` are views ``(storage, offset, batch_strides, s0, s1)``.

    ``c`` is a flat output storage: matrix ``z`` of the batch at ``z * c_bs``, rows ``c_s0`` apart.
    Convolution calls this directly (its groups are the batch, its columns matrix is ``a``).

    >>> import numpy as np
    >>> from axon.cuda._runtime import from_host, to_host, empty
    >>> a, b, c = from_host(np.ones(6)), from_host(np.ones(6)), empty((4,), np.float64)
    >>> launch_matmul(c, 4, 2, (a, 0, (0,), 3, 1), (b, 0, (0,), 2, 1), 2, 2, 3)     # (2, 3) @ (3, 2)
    >>> to_host(c)
    array([3., 3., 3., 3.])
    """
    BM, BN, BK, TM, TN = tiles or (TILES_LARGE if M >= LARGE and N >= LARGE else TILES)
    key = (np.dtype(c.dtype), BM, BN, BK, TM, TN)
    if key not in _kernels:
        _kernels[key] = make_matmul_kernel(c.dtype, BM, BN, BK, TM, TN)
    grid = (-(-N // BN), -(-M // BM), min(B, 65535))
    _kernels[key][grid, (BN // TN, BM // TM)](c, c_bs, c_s0, *a, *b, batch_shape, M, N, K, B)


def _swap_last(shape, strides, swap):
    if not swap:
        return shape, strides
    return shape[:-2] + shape[-1:] + shape[-2:-1], strides[:-2] + strides[-1:] + strides[-2:-1]


def matmul(a, b, transpose_a=False, transpose_b=False, tiles=None):
    """``np.matmul(a, b)`` for device arrays (vectors, batches with broadcasting), tiled as above.

    ``transpose_a``/``transpose_b`` multiply by the transpose of the last two axes without copying
    (the signature of ``kernels.matmul``); ``tiles`` overrides the choice of ``TILES`` / ``TILES_LARGE`` (the benchmark compares them).

    >>> import numpy as np
    >>> from axon.cuda._runtime import from_host, to_host
    >>> x = np.arange(24.0).reshape(2, 3, 4); v = np.arange(4.0)
    >>> bool(np.allclose(to_host(matmul(from_host(x), from_host(v))), x @ v))
    True
    """
    a_storage, a_offset, a_strides = view(a)
    b_storage, b_offset, b_strides = view(b)
    a_shape, a_strides = _swap_last(a.shape, a_strides, transpose_a)
    b_shape, b_strides = _swap_last(b.shape, b_strides, transpose_b)
    try:
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError
        if a.ndim == 1:                                           # a vector is one row
            a_shape, a_strides = (1,) + a_shape, (0,) + a_strides
        if b.ndim == 1:                                           # ... or one column
            b_shape, b_strides = b_shape + (1,), b_strides + (0,)
        M, K = a_shape[-2:]
        K2, N = b_shape[-2:]
        if K != K2:
            raise ValueError
        batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    except ValueError:                                            # the CPU's error, raised from ghosts
        PRIMITIVES["matmul"].forwards["cpu"](_zero_ghost(a_shape, a.dtype), _zero_ghost(b_shape, b.dtype))
        raise
    out_shape = batch + ((M,) if a.ndim > 1 else ()) + ((N,) if b.ndim > 1 else ())
    dtype = twin_dtype("matmul", (a.dtype, b.dtype))
    B = int(np.prod(batch))
    if M * N * B == 0 or K == 0:
        return full(out_shape, 0, dtype)
    a_b = tuple(0 if n == 1 else s for n, s in zip(a_shape[:-2], a_strides[:-2]))
    b_b = tuple(0 if n == 1 else s for n, s in zip(b_shape[:-2], b_strides[:-2]))
    a_b = (0,) * (len(batch) - len(a_b)) + a_b                    # missing batch axes broadcast
    b_b = (0,) * (len(batch) - len(b_b)) + b_b
    batch_shape, a_b, b_b = padded(batch, a_b, b_b)
    c = empty(out_shape, dtype)
    launch_matmul(c.reshape(c.size), M * N, N, (a_storage, a_offset, a_b, a_strides[-2], a_strides[-1]),
                  (b_storage, b_offset, b_b, b_strides[-2], b_strides[-1]), M, N, K, B, batch_shape, tiles)
    return c


implement("matmul", "cuda", matmul)
implement("kernels.matmul", "cuda", matmul)
implement("kernels.matmul_loop", "cuda", matmul)
