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

Numba's pool and another library's OpenMP runtime. When a library with its own OpenMP runtime is
loaded first and globally (PyTorch: its ``libgomp``), numba's OpenMP layer binds to that runtime rather
than to a copy of its own, and starting numba's pool resets the runtime's settings: its thread count
(``omp_set_num_threads``) and nesting levels. PyTorch's ``torch.set_num_threads(1)`` became 2, and each
of its ops then woke a second thread that spun beside it. Measured with ``benchmarks/torch_after_axon.py``
on the 2-core machine: 200 steps of PyTorch's 784-256-10 MLP (1 thread) took 0.35 s of CPU before 100
axon steps and 11.1 s after them (1.2 s and 45.6 s of wall time, the machine being shared). So
``start_workers()``, which every kernel reaches through ``num_threads()``, starts numba's pool once and
puts those settings back as it found them: then 0.42 s before and 0.41 s after. Numba's own loops keep
their thread count, since numba passes it to every parallel region itself.

>>> from axon.kernels import threads
>>> threads.set_num_threads(threads.num_threads())           # one thread per core by default
"""
from __future__ import annotations

import ctypes

import numba

__all__ = ["num_threads", "set_num_threads", "use_single_threaded_blas", "start_workers"]

_blas_done = False
_workers_started = False


def _openmp_settings():
    """``(set_fns, values)`` of the OpenMP runtime loaded globally (the one numba binds to), or None."""
    try:
        omp = ctypes.CDLL(None)                                # the symbols every later library resolves to
        names = ("num_threads", "max_active_levels", "dynamic")
        values = [getattr(omp, f"omp_get_{n}" if n != "num_threads" else "omp_get_max_threads")() for n in names]
        return [getattr(omp, f"omp_set_{n}") for n in names], values
    except (OSError, AttributeError, TypeError):               # no OpenMP runtime in the global scope
        return None


def start_workers() -> None:
    """Start numba's worker pool once, leaving any OpenMP runtime it shares as it was (see above).

    >>> start_workers()                                        # idempotent
    """
    global _workers_started
    if _workers_started:
        return
    _workers_started = True
    saved = _openmp_settings()
    numba.get_num_threads()                                    # launches the pool (and its threading layer)
    if saved is not None:
        for set_fn, value in zip(*saved):
            set_fn(value)


def num_threads() -> int:
    """How many chunks a parallel kernel splits its work into: numba's thread count.

    >>> num_threads() >= 1
    True
    """
    start_workers()
    return numba.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in every kernel (at most the ``NUMBA_NUM_THREADS`` numba started with).

    >>> set_num_threads(num_threads())
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"set_num_threads: n must be an int in [1, {numba.config.NUMBA_NUM_THREADS}], got {n!r}")
    start_workers()
    numba.set_num_threads(n)


def use_single_threaded_blas() -> None:
    """Limit the BLAS that compiled kernels call (SciPy's) to one thread, so numba's pool is the only one.

    Runs once per process. SciPy is a dependency of axon, not an option: numba compiles ``np.dot`` inside
    a kernel into a call of SciPy's BLAS, so without SciPy those kernels fail to compile. Without
    threadpoolctl this does nothing: the kernels stay correct, the two pools may just compete.
    numpy's private BLAS (in ``numpy.libs``) keeps its threads; a BLAS that numpy and SciPy share (a
    system or conda OpenBLAS) becomes single-threaded for both.

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
