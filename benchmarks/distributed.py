"""Data parallel on MPI: the bytes one step sends, the measured Allreduce, and what that means at scale.

    python benchmarks/distributed.py                  # N = 1, 2 and 4 (4 oversubscribed on a 2-core machine)
    python benchmarks/distributed.py --sizes 1 2 --repeat 100
    python benchmarks/distributed.py --step-ms 1.7 45    # estimates from idle step times (chapter 6's epochs)

For the parameter counts of the MNIST MLP (784-128-10) and CNN (chapter 6), it starts
``mpiexec -n N`` processes (loopback and shared memory only) that time, over ``--repeat`` rounds,

- ``allreduce``: one ``Allreduce`` of the step's flat float32 buffer (every gradient and the row count);
- ``average``: the whole hook a data-parallel step runs, ``DataParallel.average``: pack, Allreduce,
  divide, unpack into the gradient tree;

and prints, per process and step, the bytes of that buffer and the bytes a ring Allreduce sends,
``2 (N - 1) / N x bytes``. It also times one training step of each model at batch 128 in this
process (or takes ``--step-ms MLP CNN``, times from an idle machine), and from the ring formula

    t_step(N) = t_compute / N + 2 (N - 1) / N x bytes / bandwidth + 2 (N - 1) x latency

estimates step time and speed-up for 8 and 64 machines on 10 and 100 Gbit/s (the same global batch of
128 split N ways, and 128 rows per machine); section 9.6 of ``tutorials/09_distributed.md`` explains
the table. Each configuration runs in processes of its own; on a shared machine, compare within a run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("mlp", "cnn")
LATENCY_S = 25e-6          # per ring step between machines: a typical TCP round over 10-100 Gbit/s Ethernet


def _model_params(kind: str) -> dict:
    from axon.examples import mnist as example
    return example.build_model(kind).init(seed=0)


def _child(repeat: int) -> None:
    """Run by every process under mpiexec: time the Allreduce and the hook; rank 0 prints one JSON line."""
    from mpi4py import MPI

    from axon.distributed import DataParallel
    from axon.tree import tree_leaves
    comm = MPI.COMM_WORLD
    dp = DataParallel(comm)
    out = {"size": comm.Get_size()}
    for kind in MODELS:
        grads = _model_params(kind)                            # the gradient tree has the params' shapes
        p = sum(a.size for a in tree_leaves(grads))
        send = np.ones(p + 1, np.float32)                      # (P + 1,) as DataParallel packs it
        total = np.empty_like(send)
        x = np.zeros((64, 1), np.float32)                      # 64 rows: the weight n_r
        times = {"allreduce": [], "average": []}
        for r in range(repeat + 5):                            # 5 warm-up rounds
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(send, total)
            t1 = time.perf_counter()
            dp.average(grads, x)
            t2 = time.perf_counter()
            if r >= 5:
                times["allreduce"].append(t1 - t0)
                times["average"].append(t2 - t1)
        mine = {k: statistics.median(v) for k, v in times.items()}
        slowest = comm.reduce(mine, op=lambda a, b: {k: max(a[k], b[k]) for k in a}, root=0)
        out[kind] = {"params": p, "bytes": send.nbytes, **(slowest or {})}
    if comm.Get_rank() == 0:
        print(json.dumps(out), flush=True)


def _launch(n: int, repeat: int) -> dict:
    mpiexec = Path(sys.executable).with_name("mpiexec")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_LAUNCHER": "fork", "HYDRA_IFACE": "lo",
           "UCX_TLS": "self,sm", "NUMBA_NUM_THREADS": "1"}
    cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(n), sys.executable, __file__,
           "--child", "--repeat", str(repeat)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"mpiexec -n {n} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _step_seconds(kind: str, steps: int) -> float:
    """Median seconds of one training step (forward, backward, Adam) at batch 128 in this process."""
    import axon
    from axon.examples import mnist as example
    model = example.build_model(kind)
    step = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adamw(0.005))
    state = step.init(seed=0)
    rng = np.random.default_rng(0)
    shape = (128, 784) if kind == "mlp" else (128, 28, 28, 1)
    x = rng.random(shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 128)]
    times = []
    for i in range(steps + 2):                                 # 2 warm-up steps (numba compiles or loads)
        t0 = time.perf_counter()
        state, _ = step.step(state, x, y)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ring_seconds(n: int, nbytes: int, gbit_per_s: float, latency_s: float = LATENCY_S) -> float:
    """A ring Allreduce of ``nbytes`` over ``n`` machines: ``2 (n-1)/n x bytes / bandwidth + 2 (n-1) x latency``."""
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / (gbit_per_s * 1e9 / 8) + 2 * (n - 1) * latency_s


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4], help="numbers of processes (default 1 2 4)")
    p.add_argument("--repeat", type=int, default=200, help="timed rounds per measurement (default 200)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per model (default 10)")
    p.add_argument("--step-ms", type=float, nargs=2, metavar=("MLP", "CNN"), default=None,
                   help="one step's milliseconds at batch 128 for the estimates, instead of measuring them here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args.repeat)

    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; processes on one machine, "
          f"shared memory (N > cores is oversubscribed)")
    runs = [_launch(n, args.repeat) for n in args.sizes]
    print(f"{'model':5} {'params':>8} {'buffer':>10} {'N':>3} {'ring sends/proc':>16} "
          f"{'allreduce ms':>13} {'average ms':>11}")
    for kind in MODELS:
        for run in runs:
            m, n = run[kind], run["size"]
            ring = 2 * (n - 1) / n * m["bytes"]
            print(f"{kind:5} {m['params']:8,} {m['bytes']:10,} {n:3} {ring:16,.0f} "
                  f"{1e3 * m['allreduce']:13.3f} {1e3 * m['average']:11.3f}")

    print(f"\n# estimates: step = compute/N + ring Allreduce (latency {LATENCY_S * 1e6:.0f} us per ring step); "
          f"'fixed' splits one batch of 128, 'per machine' gives each machine 128 rows")
    print(f"{'model':5} {'step 1 ms':>9} {'N':>3} {'Gbit/s':>6} {'comm ms':>8} {'fixed: step ms':>15} "
          f"{'speed-up':>8} {'per machine: speed-up':>22}")
    for i, kind in enumerate(MODELS):
        t1 = args.step_ms[i] / 1e3 if args.step_ms else _step_seconds(kind, args.steps)
        nbytes = runs[0][kind]["bytes"]
        for n in (8, 64):
            for bw in (10, 100):
                comm = ring_seconds(n, nbytes, bw)
                fixed = t1 / n + comm
                per_machine = n * t1 / (t1 + comm)            # n times the examples in the time of one step + comm
                print(f"{kind:5} {1e3 * t1:9.2f} {n:3} {bw:6} {1e3 * comm:8.3f} {1e3 * fixed:15.3f} "
                      f"{t1 / fixed:8.1f} {per_machine:22.1f}")


if __name__ == "__main__":
    main()
