"""Data-parallel training on MPI: each process trains on its slice of every batch; gradients are averaged.

Start the same script once per process with an MPI launcher, and ask ``train`` for the strategy:

    mpiexec -n 4 python train.py                        # 4 processes on this machine
    mpiexec -f hosts.txt -n 16 python train.py          # 16 processes over the machines listed in hosts.txt

    # train.py
    state = axon.training.train(step, x, y, batch_size=256, strategy="data_parallel")

Every process holds the whole model and the whole data set. Each step, the global batch (the
``batch_size`` rows that one process alone would take, in the same shuffled order: every process
draws the permutation from ``(seed, epoch)``) is cut into ``size`` nearly equal slices; process ``r``
computes the gradient ``g_r`` of the mean loss over its ``n_r`` rows, and one Allreduce over one flat
buffer gives every process

    g = sum_r n_r g_r / sum_r n_r

the gradient of the mean loss over the whole global batch. Every process then takes the same
optimizer step, so the params stay equal without ever being sent again. The result is the
single-process run's, up to float rounding, for any number of processes: same ``batch_size``, same
steps per epoch, same learning-rate schedule, and a checkpoint resumes with any number of processes.
(Randomness is the exception: each process draws its own dropout masks and augmentation stream, so
runs with dropout or augmentation are equally good, not equal.)

Without an MPI launcher (no ``PMI_RANK`` / ``OMPI_COMM_WORLD_SIZE`` / ``PMIX_RANK`` in the
environment) this is one process of one, mpi4py is never imported, and ``strategy="data_parallel"``
trains exactly as the default does. mpi4py and an MPI library come with ``pip install "axon[distributed]"``
(the ``mpich`` wheel: no system MPI needed).

>>> rank(), size(), is_main()                              # not started by mpiexec: one process
(0, 1, True)
>>> type(get_strategy("data_parallel")).__name__, type(get_strategy(None)).__name__
('DataParallel', 'SingleProcess')
"""
from __future__ import annotations

import copy
import os
import sys
import time
import traceback

import numpy as np

from .random import split
from .tree import tree_leaves, tree_map

__all__ = ["rank", "size", "is_main", "world", "SingleProcess", "DataParallel", "get_strategy"]

# Set by the launchers (MPICH / Intel MPI / Slurm's PMI, Open MPI, PMIx) in every process they start.
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


def _launched_size() -> int | None:
    """The number of processes the MPI launcher says it started, or None when there is no launcher."""
    if not any(v in os.environ for v in _LAUNCHER_VARS):
        return None
    for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(v, "").isdigit():
            return int(os.environ[v])
    return 0                                                   # started by a launcher that did not say how many


def world():
    """``MPI.COMM_WORLD`` when this process was started by an MPI launcher, else None (one process).

    Importing mpi4py initialises MPI, so it happens only here, on first use, and only under a launcher.
    Started by ``mpiexec -n 2`` without mpi4py installed, this raises rather than letting two
    processes each train alone.

    >>> world() is None                                        # a plain ``python`` process
    True
    """
    n = _launched_size()
    if n is None:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        if n == 1:
            return None
        raise ImportError(f"axon.distributed: this process was started by an MPI launcher ({n or 'several'} "
                          f"processes) but mpi4py is not installed: pip install 'axon[distributed]'") from None
    return MPI.COMM_WORLD


def rank() -> int:
    """This process's number, 0 to ``size() - 1`` (0 without MPI).

    >>> rank()
    0
    """
    comm = world()
    return 0 if comm is None else comm.Get_rank()


def size() -> int:
    """How many processes train together (1 without MPI).

    >>> size()
    1
    """
    comm = world()
    return 1 if comm is None else comm.Get_size()


def is_main() -> bool:
    """Whether this is process 0, the one that prints and writes files.

    >>> is_main()
    True
    """
    return rank() == 0


class SingleProcess:
    """The default strategy of ``train``: one process, nothing to share. Every hook is the identity.

    ``train`` calls the same hooks whatever the strategy, so its loop reads the same for one process
    and for many: ``start`` (agree on the initial state), ``attach`` (the step's gradient hook),
    ``shard`` (this process's rows of a batch), ``total`` (metrics summed over processes),
    ``from_main`` (computed once, on process 0), ``stop_all`` (a failure stops every process).

    >>> s = SingleProcess()
    >>> s.shard([1, 2, 3], [4, 5, 6]), s.total({"loss": 2.0}, 4), s.from_main(max, 1, 2)
    (([1, 2, 3], [4, 5, 6]), ({'loss': 2.0}, 4), 2)
    """
    rank, size, is_main = 0, 1, True
    salt = ()                                                  # extra salt of this process's random streams

    def start(self, state, data=None):
        """The state every process starts from (here: ``state`` itself)."""
        return state

    def attach(self, step_fn):
        """The step function this process runs (here: ``step_fn`` itself)."""
        return step_fn

    def shard(self, x, y):
        """This process's rows of the batch ``(x, y)`` (here: all of them)."""
        return x, y

    def total(self, sums: dict, count):
        """``sums`` and ``count`` added up over every process (here: as they are)."""
        return sums, count

    def from_main(self, fn, *args):
        """``fn(*args)``, computed on process 0 and sent to the others (here: just computed)."""
        return fn(*args)

    def stop_all(self, error: BaseException) -> None:
        """Called with the error that ends training on this process (here: nothing to stop)."""
        return None


def _rows(tree) -> int:
    """The number of examples (first-axis length) of an array or a tree of arrays."""
    return len(tree_leaves(tree)[0])


def _slice(tree, lo: int, hi: int):
    return tree_map(lambda a: a[lo:hi], tree)


class DataParallel(SingleProcess):
    """Every process trains on its slice of each batch; one Allreduce per step averages the gradients.

    ``comm``: an mpi4py communicator (default: ``world()``, all processes of the launch; None or a
    single process: trains as ``SingleProcess`` does). ``train(..., strategy="data_parallel")`` makes one.

    - ``start`` broadcasts the ``TrainState`` of process 0 (params, optimizer state, step, history) to
      all, so they start equal even when only process 0 could read the checkpoint.
    - ``shard``: rows ``[r m / N, (r + 1) m / N)`` of a global batch of ``m`` rows go to process ``r``.
    - ``average``, the step's hook: the gradient (and the layers' new state, batch-norm statistics)
      weighted by each process's rows, summed by ONE ``Allreduce`` of ONE flat buffer (kept from step
      to step); its last element carries ``n_r``, so uneven slices average exactly.
    - ``total``: the epoch's metric sums and example counts, summed (one small Allreduce per epoch).
    - only process 0 prints progress, evaluates the validation data (the others receive its numbers)
      and runs the callbacks' ``after_epoch`` (checkpoints, logs); all run ``on_epoch_end``, on equal
      histories, so early stopping and learning-rate changes agree.
    - ``stop_all``: a process whose training raises prints its rank and error and calls ``MPI_Abort``,
      which ends every process of the launch at once (no process is left waiting in an Allreduce).

    >>> dp = DataParallel()                                    # no launcher here: one process of one
    >>> dp.size, dp.average({"w": np.ones(2, np.float32)}, np.zeros((3, 1)))["w"]
    (1, array([1., 1.], dtype=float32))
    """

    def __init__(self, comm=None):
        self.comm = world() if comm is None else comm
        self.rank = 0 if self.comm is None else self.comm.Get_rank()
        self.size = 1 if self.comm is None else self.comm.Get_size()
        self.is_main = self.rank == 0
        self.salt = ("rank", self.rank) if self.size > 1 else ()
        self._buffers = None                                   # (2, P + 1): send and receive, reused every step

    def start(self, state, data=None):
        """Process 0's ``state`` on every process; checks first that each batch can feed every process."""
        n, batch_size = getattr(data, "n", None), getattr(data, "batch_size", None)
        if n is not None and self.size > 1:
            last = n % batch_size or batch_size
            if min(batch_size, n) < self.size or last < self.size:
                raise ValueError(f"train: data parallel over {self.size} processes needs at least {self.size} rows "
                                 f"in every batch, but batch_size={batch_size} over {n} examples leaves a last "
                                 f"batch of {min(last, n)}; change batch_size or drop a few examples")
        if self.size == 1:
            return state
        return self.comm.bcast(state, root=0)

    def attach(self, step_fn):
        """A copy of ``step_fn`` that averages its gradients across processes (``step_fn.replica = self``)."""
        if not hasattr(step_fn, "replica"):
            raise TypeError(f"train: strategy='data_parallel' needs a step made by axon.training.step(...), "
                            f"got a {type(step_fn).__name__}")
        local = copy.copy(step_fn)
        local.replica = self
        return local

    def shard(self, x, y):
        """Process ``rank``'s rows of a global batch of ``m`` rows: ``[rank m // size, (rank + 1) m // size)``."""
        if self.size == 1:
            return x, y
        m = _rows(x)
        if m < self.size:
            raise ValueError(f"train: a batch of {m} rows cannot feed {self.size} processes (data parallel)")
        lo, hi = self.rank * m // self.size, (self.rank + 1) * m // self.size
        return _slice(x, lo, hi), _slice(y, lo, hi)

    def local_key(self, key: int) -> int:
        """This process's random key for a step (its own dropout masks), derived from the step's ``key``."""
        return key if self.size == 1 else split(key, self.size)[self.rank]

    def average(self, tree, x):
        """``sum_r n_r tree_r / sum_r n_r`` over the processes, ``n_r`` the rows of process r's batch ``x``.

        All leaves travel in one buffer, in one ``Allreduce``; the buffer is kept for the next step.
        """
        if self.size == 1:
            return tree
        leaves = tree_leaves(tree)
        sizes = [np.size(a) for a in leaves]
        dtype = np.result_type(*{np.asarray(a).dtype for a in leaves}) if leaves else np.dtype(np.float32)
        dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)     # integer state averages as floats
        if self._buffers is None or self._buffers[0].size != sum(sizes) + 1 or self._buffers[0].dtype != dtype:
            self._buffers = np.empty((2, sum(sizes) + 1), dtype)         # (send, receive) x (P + 1,)
        send, total = self._buffers
        n, lo = _rows(x), 0
        for a, k in zip(leaves, sizes):
            np.multiply(np.ravel(a), n, out=send[lo:lo + k])             # n_r g_r, flattened into place
            lo += k
        send[-1] = n
        self.comm.Allreduce(send, total)                                 # (P + 1,): sum_r n_r g_r, then sum_r n_r
        out, lo = [], 0
        for a, k in zip(leaves, sizes):                                  # new arrays: the buffers are reused
            g = total[lo:lo + k] / total[-1]                             # (k,) the weighted mean
            out.append(g.reshape(np.shape(a)).astype(np.asarray(a).dtype, copy=False))
            lo += k
        values = iter(out)
        return tree_map(lambda _: next(values), tree)

    def total(self, sums: dict, count):
        """The metric sums and the example count, each summed over every process (one Allreduce)."""
        if self.size == 1:
            return sums, count
        keys = list(sums)                                      # the same metrics, in the same order, everywhere
        send = np.array([sums[k] for k in keys] + [count], np.float64)  # (metrics + 1,)
        total = np.empty_like(send)
        self.comm.Allreduce(send, total)                       # mpi4py's default op is MPI.SUM
        return {k: float(v) for k, v in zip(keys, total[:-1])}, int(total[-1])

    def from_main(self, fn, *args):
        """``fn(*args)`` computed on process 0 only; every process gets its result."""
        if self.size == 1:
            return fn(*args)
        return self.comm.bcast(fn(*args) if self.is_main else None, root=0)

    def stop_all(self, error: BaseException) -> None:
        """Print which process failed and why, then end every process of the launch (``MPI_Abort``)."""
        if self.size == 1:
            return
        what = "was interrupted" if isinstance(error, KeyboardInterrupt) else f"failed: {type(error).__name__}: {error}"
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        print(f"{tb}axon.distributed: rank {self.rank} of {self.size} {what}; stopping all {self.size} processes "
              f"(resume from the last checkpoint, with any number of processes)", file=sys.stderr, flush=True)
        time.sleep(0.5)                                        # time for mpiexec to pass the message on: the abort
        self.comm.Abort(1)                                     # kills every process, ours too, at once


def get_strategy(strategy) -> SingleProcess:
    """The strategy object for ``train(..., strategy=...)``: None, ``"data_parallel"``, or an object.

    >>> type(get_strategy(None)).__name__, get_strategy("data_parallel").size
    ('SingleProcess', 1)
    """
    if strategy is None:
        return SingleProcess()
    if isinstance(strategy, str):
        if strategy == "data_parallel":
            return DataParallel()
        raise ValueError(f"train: strategy must be None, 'data_parallel' or a strategy object, got {strategy!r}")
    hooks = ("start", "attach", "shard", "total", "from_main", "stop_all")
    missing = [h for h in hooks if not callable(getattr(strategy, h, None))]
    missing += [a for a in ("is_main", "salt") if not hasattr(strategy, a)]
    if missing:
        raise TypeError(f"train: a strategy object needs the methods {list(hooks)} and the attributes is_main "
                        f"and salt (see axon.distributed.SingleProcess); {type(strategy).__name__} lacks {missing}")
    return strategy
