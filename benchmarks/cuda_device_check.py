"""The one prepared script for a machine with an NVIDIA GPU: the CUDA tests on the device, then the benchmarks.

    python benchmarks/cuda_device_check.py                    # tests, matmul, MNIST epochs (about 5 minutes)
    python benchmarks/cuda_device_check.py --quick            # fewer steps and sizes

Runs, each in a process of its own with a time limit, printing their output as they finish:

1. ``python -m pytest tests/test_cuda.py`` without the simulator (every kernel compiled for the real device:
   the whole primitive table, CTC and the fused LSTM/GRU sequences with their backwards, dropout masks
   drawn on the device, the next batch copied ahead of its step; every failure reported, not just the first);
2. ``benchmarks/cuda_matmul.py`` (axon's tile shapes against cuBLAS, TFLOP/s);
3. ``benchmarks/cuda_mnist_epoch.py`` (MLP and CNN epochs against PyTorch on the same GPU, and against axon's
   CPU backend on the same machine: the "cpu/cuda" column).

On the lent H200 machines numba-cuda 0.30.4 needs numpy 2.4.x (the image's numpy 2.5 removed ``np.row_stack``,
which numba-cuda registers): carry a numpy 2.4.6 wheel and put it first on ``PYTHONPATH`` (see the
project's GPU notes). axon's CUDA backend says so in its error when the test kernel fails to compile.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(title, cmd, timeout):
    print(f"\n=== {title}: {' '.join(cmd)}", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        out, rc = r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    print(out[-6000:], flush=True)
    print(f"=== {title}: exit {rc} after {time.perf_counter() - t0:.1f} s", flush=True)
    return rc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    py = sys.executable
    codes = [
        run("CUDA tests on the device", [py, "-m", "pytest", "tests/test_cuda.py", "-q", "-p", "no:cacheprovider",
                                         "-rf"], 420),
        run("matmul", [py, "benchmarks/cuda_matmul.py", "--sizes", *(["1024", "4096"] if args.quick else
                                                                      ["1024", "2048", "4096"]),
                       "--repeat", "5" if args.quick else "10"], 180),
        run("MNIST epochs", [py, "benchmarks/cuda_mnist_epoch.py", "--steps", "100" if args.quick else "469",
                             "--rounds", "2" if args.quick else "3"], 420),
    ]
    sys.exit(0 if all(c == 0 for c in codes) else 1)


if __name__ == "__main__":
    main()
