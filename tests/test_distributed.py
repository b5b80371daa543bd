"""Data-parallel training (axon.distributed): in this process with a stand-in communicator, and for real
under ``mpiexec -n 2`` (loopback and shared memory only; skipped without mpi4py or mpiexec).

The rule the real runs check: N processes, each taking 1/N of every batch of ``batch_size`` rows, end
with the params of one process with the same ``batch_size`` and seed (float rounding apart), for a
model without dropout (each process draws its own masks, so those runs are equally good, not equal).
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import axon
from axon import distributed
from axon.distributed import DataParallel, SingleProcess, get_strategy
from axon.training import checkpoint, load_checkpoint, train
from axon.tree import tree_flatten_with_path

ROOT = Path(__file__).resolve().parents[1]


# ---- the case every run trains: tiny, uneven slices (15 rows -> 7 + 8), a short last batch (6 -> 3 + 3) --
def _case():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((66, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)]
    model = axon.input((None, 5)).dense(8, activation="relu").dense(3, activation="softmax")   # no dropout
    step = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adam(0.02), metrics=["accuracy"])
    return step, x, y, (x[:20], y[:20])


def _fit(state=None, epochs=1, validation=True, **kwargs):
    step, x, y, val = _case()
    return train(step, x, y, epochs=epochs, batch_size=15, seed=None if state else 3, state=state,
                 validation_data=val if validation else None, verbose=0, **kwargs)


def _child(mode, folder):
    """What each process of ``mpiexec -n 2`` runs (see ``_mpiexec``)."""
    folder = Path(folder)
    if mode == "train":                   # one epoch from scratch, checkpointed; then resume a one-process run
        _fit(strategy="data_parallel", callbacks=[checkpoint(folder / "parallel.npz")])
        state = _fit(load_checkpoint(folder / "single.npz"), epochs=2, strategy="data_parallel")
        if distributed.is_main():
            axon.serialization.save(folder / "resumed.npz", state)
        # with dropout, batch norm and augmentation the processes draw differently, yet stay in step
        _, x, y, _ = _case()
        model = axon.input((None, 5)).dense(8).batch_norm().relu().dropout(rate=0.3).dense(3, activation="softmax")
        step = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adamw(0.01))
        state = train(step, x, y, epochs=2, batch_size=15, verbose=0, strategy="data_parallel",
                      augment=lambda xb, rng: xb + 0.1 * rng.standard_normal(xb.shape, dtype=np.float32))
        flat = np.concatenate([np.ravel(a) for a in axon.tree.tree_leaves(state.params)])   # (P,) with bn stats
        everyone = distributed.world().gather(flat, root=0)
        if distributed.is_main():
            np.save(folder / "in_step.npy", np.array([np.array_equal(everyone[0], f) for f in everyone]))
    elif mode == "fail":                  # rank 1 raises at its third step; rank 0 is then in an Allreduce
        calls = []

        def objective(p, x, y):
            calls.append(1)
            if distributed.rank() == 1 and len(calls) == 3:
                raise RuntimeError("bad batch on purpose")
            return ((x @ p["w"] - y) ** 2).mean()
        step = axon.training.step(({"w": np.zeros((5, 1), np.float32)}, objective), axon.optimizers.sgd(0.1),
                                  compile=False)                     # its side effect must run every step
        x = np.ones((64, 5), np.float32)
        train(step, x, x[:, :1], epochs=1000, batch_size=8, verbose=0, strategy="data_parallel")


def _mpiexec():
    """The mpiexec next to this Python (the mpich wheel's), else the one on PATH; None if neither."""
    local = Path(sys.executable).with_name("mpiexec")
    return str(local) if local.exists() else shutil.which("mpiexec")


def _run_parallel(mode, folder, timeout=180, args=None):
    """``mpiexec -n 2`` on this machine: ``_child(mode, folder)`` in each process, or ``python *args``."""
    pytest.importorskip("mpi4py")
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install 'axon[distributed]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "HYDRA_LAUNCHER": "fork",       # MPICH's hydra starts both processes here, no ssh
           "HYDRA_IFACE": "lo",            # and talks to them over loopback
           "UCX_TLS": "self,sm",           # the processes exchange data through shared memory only
           "NUMBA_NUM_THREADS": "1"}       # two processes on a small machine: one thread each
    args = args or ["-c", f"import test_distributed as t; t._child({mode!r}, {str(folder)!r})"]
    return subprocess.run([mpiexec, "-n", "2", sys.executable, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=folder)


def _params(tree):
    return dict(tree_flatten_with_path(tree))


def _assert_close(a, b):
    a, b = _params(a), _params(b)
    assert a.keys() == b.keys()
    for k in a:
        assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, k
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)


# ---- under mpiexec -n 2 --------------------------------------------------------------------------------
def test_two_processes_match_one_and_checkpoints_resume_with_any_number(tmp_path):
    """And with dropout, batch norm and augmentation, the two processes' params stay identical."""
    single = _fit(callbacks=[checkpoint(tmp_path / "single.npz")])   # one process, one epoch
    two_epochs = _fit(single, epochs=2)
    (tmp_path / "single.best.npz").unlink()
    done = _run_parallel("train", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in_step.npy", "parallel.best.npz", "parallel.npz",
                                                          "resumed.npz", "single.npz"]   # written once, by rank 0
    parallel = load_checkpoint(tmp_path / "parallel.npz")
    assert (parallel.epoch, parallel.step) == (single.epoch, single.step) == (1, 5)   # 66 rows / 15: 5 steps
    _assert_close(parallel.params, single.params)
    _assert_close(parallel.opt_state, single.opt_state)
    for k, v in single.history.items():                        # metrics summed over both processes' rows
        np.testing.assert_allclose(parallel.history[k], v, rtol=1e-5, err_msg=k)
    _assert_close(load_checkpoint(tmp_path / "resumed.npz").params, two_epochs.params)   # 1 process, then 2
    _assert_close(_fit(parallel, epochs=2).params, two_epochs.params)                   # 2 processes, then 1
    assert np.load(tmp_path / "in_step.npy").tolist() == [True, True]   # params equal, bit for bit, on both


def test_a_failing_process_stops_the_others_with_its_rank_and_error(tmp_path):
    done = _run_parallel("fail", tmp_path, timeout=120)        # a hang would hit the timeout
    assert done.returncode != 0, done.stdout + done.stderr
    assert "rank 1 of 2 failed: RuntimeError: bad batch on purpose" in done.stderr, done.stdout + done.stderr
    assert "Traceback" in done.stderr


def test_the_mnist_example_runs_on_two_processes(tmp_path):
    done = _run_parallel(None, tmp_path, args=["-m", "axon.examples.mnist", "--distributed", "--limit", "400",
                                               "--epochs", "1", "--augment", "0", "--verbose", "0",
                                               "--save", str(tmp_path / "mnist.npz")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("Test accuracy:") == 1, done.stdout           # only rank 0 reports
    state = load_checkpoint(tmp_path / "mnist.npz")
    assert (state.epoch, state.step) == (1, 3)                 # 360 images in batches of 128, as for one process


# ---- in this process: the hooks, with a stand-in communicator ------------------------------------------
class _Mirror:
    """A stand-in for rank 0 of 2 whose partner sends exactly what it sends; counts the Allreduce calls."""

    def __init__(self):
        self.calls, self.buffers = [], []

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def Allreduce(self, send, receive):
        self.calls.append(send.size)
        self.buffers.append(send.__array_interface__["data"][0])   # where the buffer lives
        receive[...] = send + send

    def bcast(self, obj, root=0):
        return obj

    def Abort(self, code):
        raise SystemExit(code)


def test_one_allreduce_of_one_reused_buffer_per_step():
    comm = _Mirror()
    state = _fit(epochs=2, strategy=DataParallel(comm))
    params = sum(a.size for a in _params(state.params).values())
    steps, epochs = 2 * 5, 2
    assert len(comm.calls) == steps + epochs                   # one per step (all gradients), one per epoch (metrics)
    assert comm.calls.count(params + 1) == steps               # every parameter and the row count, in one buffer
    assert len({b for b, n in zip(comm.buffers, comm.calls) if n == params + 1}) == 1   # the same buffer each step
    assert state.step == 10


def test_average_weights_each_process_by_its_rows():
    comm = _Mirror()                                           # both "processes" send n_r g_r: the mean is g
    dp = DataParallel(comm)
    g = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1.5], np.float64)}
    out = dp.average(g, np.zeros((7, 2)))
    np.testing.assert_allclose(out["w"], g["w"])
    assert out["w"].dtype == np.float32 and out["b"].dtype == np.float64 and out["w"].shape == (2, 3)
    assert out["w"] is not g["w"] and not np.shares_memory(out["w"], dp._buffers)   # safe to keep
    assert comm.calls == [6 + 1 + 1]


def test_shards_split_a_batch_into_nearly_equal_consecutive_slices():
    class Rank(_Mirror):
        def __init__(self, r, n):
            super().__init__()
            self.r, self.n = r, n

        def Get_rank(self):
            return self.r

        def Get_size(self):
            return self.n
    x, y = np.arange(15)[:, None], np.arange(15)
    parts = [DataParallel(Rank(r, 4)).shard(x, y) for r in range(4)]
    np.testing.assert_array_equal(np.concatenate([p[0][:, 0] for p in parts]), np.arange(15))
    assert [len(p[1]) for p in parts] == [3, 4, 4, 4]
    with pytest.raises(ValueError, match="a batch of 3 rows cannot feed 4 processes"):
        DataParallel(Rank(0, 4)).shard(x[:3], y[:3])
    step, xs, ys, _ = _case()
    with pytest.raises(ValueError, match="last batch of 6"):  # found before training, not after an epoch
        train(step, xs, ys, batch_size=15, verbose=0, strategy=DataParallel(Rank(0, 8)))


def test_only_process_0_writes_checkpoints(tmp_path):
    class Second(_Mirror):
        def Get_rank(self):
            return 1
    _fit(strategy=DataParallel(Second()), callbacks=[checkpoint(tmp_path / "ckpt.npz")], validation=False)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_aborts_every_process(capsys):
    class Broken(_Mirror):
        def Allreduce(self, send, receive):
            raise RuntimeError("link down")
    with pytest.raises(SystemExit):
        _fit(strategy=DataParallel(Broken()))
    assert "rank 0 of 2 failed: RuntimeError: link down" in capsys.readouterr().err


# ---- one process, no MPI ------------------------------------------------------------------------------
def test_without_a_launcher_data_parallel_is_the_single_process_run(monkeypatch):
    for var in distributed._LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    assert (distributed.rank(), distributed.size(), distributed.world()) == (0, 1, None)
    a, b = _fit(epochs=2), _fit(epochs=2, strategy="data_parallel")
    for k, v in _params(a.params).items():
        np.testing.assert_array_equal(_params(b.params)[k], v)
    assert a.history == b.history


def test_started_by_mpiexec_without_mpi4py_is_an_error(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setitem(sys.modules, "mpi4py", None)          # as if it were not installed
    with pytest.raises(ImportError, match="mpi4py is not installed"):
        distributed.world()
    monkeypatch.setenv("PMI_SIZE", "1")                       # mpiexec -n 1: one process, fine
    assert distributed.world() is None


def test_bad_strategies():
    assert isinstance(get_strategy(None), SingleProcess)
    with pytest.raises(ValueError, match="strategy must be None, 'data_parallel'"):
        get_strategy("model_parallel")
    with pytest.raises(TypeError, match="lacks"):
        get_strategy(object())
    step, x, y, _ = _case()
    with pytest.raises(TypeError, match="needs a step made by axon.training.step"):
        train((step.init, lambda state, x, y: (state, {})), x, y, strategy=DataParallel(_Mirror()))


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py is not installed")
def test_mpi4py_is_only_imported_under_a_launcher():
    code = "import axon, axon.distributed as d, sys; d.size(); print('mpi4py.MPI' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k not in distributed._LAUNCHER_VARS}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_average_packs_a_deep_model_in_one_buffer():
    comm = _Mirror()
    grads = {f"dense_{i}": {"kernel": np.full((3, 2), i, np.float32), "bias": np.full(2, -i, np.float32)}
             for i in range(40)}                               # 80 arrays: more than numpy takes as arguments
    out = DataParallel(comm).average(grads, np.zeros((5, 1)))
    assert comm.calls == [40 * 8 + 1]
    np.testing.assert_array_equal(out["dense_39"]["bias"], grads["dense_39"]["bias"])
