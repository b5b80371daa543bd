"""One thread pool for every kernel: numba's workers split the work, BLAS runs single-threaded inside them.

Two pools on the same cores fight: OpenBLAS's threads keep spinning after a matrix product and steal
the cores numba's workers need next, and the reverse (measured on axon's kernels: whole training
steps ran 1.5-3x slower than their kernels alone). So the kernels here never call a multi-threaded
BLAS. A kernel that needs a matrix product splits its rows into ``num_threads()`` chunks inside a
``prange`` and calls single-threaded ``sgemm``/``dgemm`` (``np.dot`` inside ``njit``, which numba
routes to SciPy's BLAS) on each chunk.

``use_single_threaded_blas()`` limits *SciPy's* BLAS (the one compiled kernels call) to one thread, once,
the first time a kernel needs it. numpy's own BLAS (``a @ b`` in plain Python) is left alone.

Between kernels numba's workers (its OpenMP layer) wait as OpenMP does by default: they spin for
a moment, then sleep. Measured here on an idle 2-core machine, that beat ``OMP_WAIT_POLICY=PASSIVE``
(sleep at once) by about 15% per MNIST training step, because a parallel kernel that starts soon
after the last one finds its workers awake. On a machine shared with other busy processes, set
``OMP_WAIT_POLICY=PASSIVE`` in the environment before starting Python: spinning workers then steal
time slices the others need.

>>> from axon.kernels import threads
>>> threads.set_num_threads(threads.num_threads())           # one thread per core by default
"""
from __future__ import annotations

import numba

__all__ = ["num_threads", "set_num_threads", "use_single_threaded_blas"]

_blas_done = False


def num_threads() -> int:
    """How many chunks a parallel kernel splits its work into: numba's thread count.

    >>> num_threads() >= 1
    True
    """
    return numba.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in every kernel (at most the ``NUMBA_NUM_THREADS`` numba started with).

    >>> set_num_threads(num_threads())
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"set_num_threads: n must be an int in [1, {numba.config.NUMBA_NUM_THREADS}], got {n!r}")
    numba.set_num_threads(n)


def use_single_threaded_blas() -> None:
    """Limit the BLAS that compiled kernels call (SciPy's) to one thread, so numba's pool is the only one.

    Runs once per process; a no-op without SciPy or threadpoolctl (the kernels stay correct, the
    pools may just compete). numpy's private BLAS (in ``numpy.libs``) keeps its threads; a BLAS that
    numpy and SciPy share (a system or conda OpenBLAS) becomes single-threaded for both.

    >>> use_single_threaded_blas()                               # idempotent
    """
    global _blas_done
    if _blas_done:
        return
    _blas_done = True
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS numba's np.dot calls)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if "numpy.libs" not in lib.filepath:                  # numpy's private copy is not the one we call
            lib.set_num_threads(1)
