"""Matrix products: a readable triple loop for teaching, and the fast path the other kernels use.

``matmul_loop`` is the textbook definition ``C[i, j] = sum_k A[i, k] B[k, j]`` as a loop nest, with the
rows split across threads. The loop order ``i, k, j`` reads a row of ``B`` contiguously in the inner
loop, so numba vectorises it; still, it is 10-50x slower than BLAS, which blocks for the caches.

``matmul`` is the fast path: BLAS, split across threads by hand so that numba's pool is the only
thread pool (see ``threads``): each thread makes one single-threaded BLAS call (``np.dot`` inside
``njit``) on its chunk. The backward products need transposes,

    dA = dY @ B^T        dB = A^T @ dY

and copying ``A^T`` or ``B^T`` would cost a pass over memory, so the primitive computes
``op(A) @ op(B)`` with ``op`` the identity or the transpose (BLAS reads a transpose in place):
``op(A) @ op(B)`` splits the rows of ``A`` across threads, and ``A^T @ op(B)`` splits the inner
dimension (each thread a partial sum of rows, added at the end), or, when that dimension is short
(a dense layer's ``x^T @ dy``, K the batch), the rows of the result, each thread copying its block of
``A^T``. The VJPs are ``matmul``s again,
so the gradient can be differentiated again.

The engine's own ``matmul`` primitive (``a @ b`` on Tensors) is numpy's ``np.matmul`` in
``autograd/ops.py``; for stacks of matrices (attention's (B, heads, T, D) products) numpy runs the
BLAS calls one after another on one thread, so this module gives that primitive a CPU forward of its
own (``stacked_matmul``, one registration line at the bottom): the stack split over numba's threads,
one single-threaded BLAS call per matrix, transposed operands read in place.

Primitives (a backend implements both forwards; the VJPs need nothing more):

- ``kernels.matmul_loop(a, b) -> c``;
- ``kernels.matmul(a, b, *, transpose_a, transpose_b) -> c``: ``op(a) @ op(b)``.

>>> import numpy as np
>>> a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 2))
>>> matmul_loop(a, b).numpy()
array([[ 3.,  3.],
       [12., 12.]])
>>> np.allclose(matmul(a, b).numpy(), a @ b)
True
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..autograd import apply, implement, primitive, transpose
from ..autograd.ops import _matmul_forward as _numpy_matmul
from ._common import KERNEL, check_same_dtype, contiguous, float_tensor, num_chunks, same_dtype
from .threads import num_threads, use_single_threaded_blas

__all__ = ["matmul_loop", "matmul", "stacked_matmul"]

# Below this many multiply-adds one BLAS call on one thread beats splitting (2^23: about 0.2 ms).
_SPLIT_MIN = 1 << 23


@njit(parallel=True, **KERNEL)
def _matmul_loop_kernel(a, b, out):
    # a (M, K), b (K, N), out (M, N) zeroed: out[i, j] += a[i, k] * b[k, j]; one row of out per iteration
    M, K = a.shape
    N = b.shape[1]
    for i in prange(M):
        for k in range(K):
            a_ik = a[i, k]
            for j in range(N):                                  # contiguous in b and out: vectorised
                out[i, j] += a_ik * b[k, j]


@njit(**KERNEL)
def _blas_kernel(a, b, out):
    # a (M, K), b (K, N), out (M, N), C- or F-ordered: out = a @ b, one single-threaded BLAS call
    np.dot(a, b, out)


@njit(parallel=True, **KERNEL)
def _split_rows_kernel(a, b, out, n_chunks):
    # a (M, K) C-ordered, b (K, N), out (M, N): out = a @ b, the rows of a split into n_chunks BLAS calls
    M = a.shape[0]
    for t in prange(n_chunks):
        r0, r1 = t * M // n_chunks, (t + 1) * M // n_chunks
        if r1 > r0:
            np.dot(a[r0:r1], b, out[r0:r1])


@njit(parallel=True, **KERNEL)
def _split_inner_kernel(a, b, partial, n_chunks):
    # a (K, M), b (K, N) C-ordered; partial (n_chunks, M, N): partial[t] = a[k0:k1]^T @ b[k0:k1], so that
    # a^T @ b = sum_t partial[t] (the inner dimension K split into n_chunks BLAS calls)
    K = a.shape[0]
    for t in prange(n_chunks):
        k0, k1 = t * K // n_chunks, (t + 1) * K // n_chunks
        if k1 > k0:
            np.dot(a[k0:k1].T, b[k0:k1], partial[t])
        else:
            partial[t] = 0


@njit(parallel=True, **KERNEL)
def _split_columns_kernel(a, b, out, n_chunks):
    # a (K, M), b (K, N) C-ordered, out (M, N): out = a^T @ b, the columns of a (the rows of out) split
    # into n_chunks BLAS calls, each on a C-ordered copy of its block a[:, m0:m1]^T (m1 - m0, K)
    M = a.shape[1]
    for t in prange(n_chunks):
        m0, m1 = t * M // n_chunks, (t + 1) * M // n_chunks
        if m1 > m0:
            np.dot(np.ascontiguousarray(a[:, m0:m1].T), b, out[m0:m1])


@njit(parallel=True, **KERNEL)
def _stacked_kernel(a, b, out, transpose_a, transpose_b):
    # a (G, M, K) or (G, K, M) transposed; b (G, K, N) or (G, N, K) transposed; out (G, M, N):
    # out[g] = op(a[g]) @ op(b[g]), the G products shared out over the threads
    # (four calls, not one on op(a[g]): numba types a[g] and a[g].T differently, C and F order, and BLAS
    # reads either in place, while one variable holding both would be typed 'any order' and copied)
    for g in prange(a.shape[0]):
        if transpose_a and transpose_b:
            np.dot(a[g].T, b[g].T, out[g])
        elif transpose_a:
            np.dot(a[g].T, b[g], out[g])
        elif transpose_b:
            np.dot(a[g], b[g].T, out[g])
        else:
            np.dot(a[g], b[g], out[g])


def _as_stack(x):
    """``(x as (G, rows, cols) C-contiguous, transposed)``: a view of x or of its last two axes swapped."""
    flipped = np.swapaxes(x, -1, -2)
    if not x.flags.c_contiguous and flipped.flags.c_contiguous:           # a swapaxes view: read in place
        return flipped.reshape(-1, *flipped.shape[-2:]), True
    x = contiguous(x)
    return x.reshape(-1, *x.shape[-2:]), False


def stacked_matmul(a, b):
    """``np.matmul(a, b)`` on arrays, the stack of products split over numba's threads (the CPU forward
    of the engine's ``matmul``).

    Stacks of one batch shape (..., M, K) @ (..., K, N) in float32 or float64, large enough to split
    (``_SPLIT_MIN`` multiply-adds) with more than one thread, run here; anything else (broadcast batch
    axes, vectors, integers, small products) is numpy's ``np.matmul``.

    >>> a, b = np.ones((3, 2, 4), np.float32), np.ones((3, 4, 5), np.float32)
    >>> stacked_matmul(a, b).shape, bool((stacked_matmul(a, b) == a @ b).all())
    ((3, 2, 5), True)
    """
    if (a.ndim < 3 or b.ndim != a.ndim or a.shape[:-2] != b.shape[:-2] or a.dtype != b.dtype
            or a.dtype not in (np.float32, np.float64) or a.shape[-1] != b.shape[-2]
            or a.size * b.shape[-1] < _SPLIT_MIN or num_threads() == 1):
        return _numpy_matmul(a, b)
    use_single_threaded_blas()
    a3, ta = _as_stack(a)
    b3, tb = _as_stack(b)
    out = np.empty(a.shape[:-1] + b.shape[-1:], dtype=a.dtype)            # (..., M, N)
    _stacked_kernel(a3, b3, out.reshape(-1, *out.shape[-2:]), ta, tb)
    return out


def _check(fn, a, b):
    a, b = float_tensor(fn, "a", a), float_tensor(fn, "b", b)
    check_same_dtype(fn, a=a, b=b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"{fn}: expects matrices (M, K) and (K, N), got shapes {a.shape} and {b.shape}")
    return a, b


def _matmul_loop_forward(a, b):
    out = np.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)   # (M, N)
    _matmul_loop_kernel(contiguous(a), contiguous(b), out)
    return out


def _matmul_forward(a, b, transpose_a, transpose_b, out=None):
    # out: None (a new array), or a C-contiguous (M, N) array of a's dtype to write into (axon.buffers)
    a, b = contiguous(a), contiguous(b)
    A, B = (a.T if transpose_a else a), (b.T if transpose_b else b)            # views: op(a), op(b)
    M, K = A.shape
    N = B.shape[1]
    out = np.empty((M, N), dtype=a.dtype) if out is None else out
    if out.size == 0 or K == 0:
        out[:] = 0
        return out
    use_single_threaded_blas()
    T = num_chunks(M * K * N, K if transpose_a else M, _SPLIT_MIN)            # chunks of rows, or of K
    if T == 1:
        _blas_kernel(A, B, out)
    elif not transpose_a:
        _split_rows_kernel(a, B, out, T)
    elif not transpose_b and K < T * N:                        # a short inner axis (a dense layer's dW =
        _split_columns_kernel(a, b, out, T)                    # x^T dy): copying a costs less than adding
    elif not transpose_b:                                      # T partial products of out's size
        partial = np.empty((T, M, N), dtype=a.dtype)           # (T, M, N)
        _split_inner_kernel(a, b, partial, T)
        np.add(partial[0], partial[1], out=out)                # (np.sum over axis 0 was 3x slower, measured)
        for t in range(2, T):
            out += partial[t]
    else:                                                                         # a^T b^T = (b a)^T
        out[...] = _matmul_forward(b, a, False, False).T
    return out


def _matmul_vjp(dy, y, a, b, transpose_a, transpose_b):
    """C = op(A) op(B): d op(A) = dC op(B)^T and d op(B) = op(A)^T dC, each a matmul without copies."""
    ta, tb = transpose_a, transpose_b
    dy = same_dtype(dy, y)                                     # BLAS takes one dtype
    da = db = None
    if a.requires_grad:
        da = _product(b, dy, tb, True) if ta else _product(dy, b, False, not tb)
    if b.requires_grad:
        db = _product(dy, a, True, ta) if tb else _product(a, dy, not ta, False)
    return da, db


# The VJPs are the products themselves, so they are differentiable again.
def _matmul_loop_vjp(dy, y, a, b):
    """``dA = dC B^T``, ``dB = A^T dC``, each only for an input that needs it (None: no gradient)."""
    da = matmul_loop(dy, transpose(b)) if a.requires_grad else None      # (M, N) @ (N, K) -> (M, K)
    db = matmul_loop(transpose(a), dy) if b.requires_grad else None      # (K, M) @ (M, N) -> (K, N)
    return da, db


_matmul_loop = primitive("kernels.matmul_loop", _matmul_loop_forward, _matmul_loop_vjp)
_matmul = primitive("kernels.matmul", _matmul_forward, _matmul_vjp)
implement("matmul", "cpu", stacked_matmul)                    # the engine's a @ b, for stacks of matrices


def _product(a, b, transpose_a, transpose_b):
    return apply(_matmul, a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def matmul_loop(a, b):
    """``a @ b`` for matrices (M, K) @ (K, N) as a plain loop nest: the teaching kernel.

    ``C[i, j] = sum_k A[i, k] B[k, j]``; differentiable (``dA = dC B^T``, ``dB = A^T dC``).

    >>> import numpy as np
    >>> matmul_loop(np.eye(2), np.array([[1.0, 2.0], [3.0, 4.0]])).numpy()
    array([[1., 2.],
           [3., 4.]])
    """
    a, b = _check("matmul_loop", a, b)
    return apply(_matmul_loop, a, b)


def matmul(a, b):
    """``a @ b`` for matrices (M, K) @ (K, N): BLAS on one chunk of rows per thread.

    Same values as ``np.matmul`` (to rounding); differentiable (``dA = dC B^T``, ``dB = A^T dC``).

    >>> import numpy as np
    >>> matmul(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)).shape
    (2, 4)
    """
    a, b = _check("matmul", a, b)
    return _product(a, b, False, False)
