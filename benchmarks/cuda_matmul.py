"""axon's tiled CUDA matmul against PyTorch (cuBLAS) on the same GPU, float32, side by side.

    python benchmarks/cuda_matmul.py                 # sizes 1024, 2048, 4096
    python benchmarks/cuda_matmul.py --sizes 4096 --repeat 20

Each tile shape of axon's kernel is timed (``(BM, BN, BK, TM, TN)``: the block's tile of C, the depth of a
slab, the outputs per thread), after one warm-up call that compiles it; the median of ``--repeat`` runs,
synchronised with the device, gives TFLOP/s = 2 n^3 / time. PyTorch runs in a process of its own with
TF32 off (true fp32, as axon), so neither framework's start-up or memory pool disturbs the other.
The issue's target on an H200 at 4096^2: >= 10 TFLOP/s (a plain 16x16 tile reaches 7.8; cuBLAS 51).
Needs a GPU (it refuses to run on numba's simulator, whose timings mean nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

TILES = [(64, 64, 16, 4, 4), (128, 128, 8, 8, 8), (64, 64, 8, 4, 4), (128, 64, 8, 8, 4)]


def time_axon(n: int, repeat: int) -> dict:
    from numba import cuda

    from axon.cuda import SIMULATOR
    from axon.cuda._runtime import from_host
    from axon.cuda.matmul import matmul
    if SIMULATOR:
        raise SystemExit("cuda_matmul: numba's simulator is on (NUMBA_ENABLE_CUDASIM=1): timings would mean nothing")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    da, db = from_host(a), from_host(b)
    out = {}
    for tiles in TILES:
        c = matmul(da, db, tiles=tiles)                              # compile and warm up
        cuda.synchronize()
        if n <= 2048:                                                # check the values once (float32 rounding)
            err = float(np.abs(c.copy_to_host() - a @ b).max() / np.abs(a @ b).max())
        else:
            err = float("nan")
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            matmul(da, db, tiles=tiles)
            cuda.synchronize()
            times.append(time.perf_counter() - t0)
        out[str(tiles)] = {"seconds": statistics.median(times), "rel_err": err}
    return out


def time_torch(n: int, repeat: int) -> dict:
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    a @ b
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--worker", choices=["axon", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:                                                  # one framework, in this process
        run = time_axon if args.worker == "axon" else time_torch
        print(json.dumps({n: run(n, args.repeat) for n in args.sizes}))
        return
    results = {}
    for worker in ("axon", "torch"):
        r = subprocess.run([sys.executable, __file__, "--worker", worker, "--repeat", str(args.repeat),
                            "--sizes", *map(str, args.sizes)], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if r.returncode:
            print(f"{worker}: failed\n{r.stderr[-2000:]}", file=sys.stderr)
            continue
        results[worker] = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"{'n':>6} {'kernel':>24} {'ms':>9} {'TFLOP/s':>8} {'vs torch':>9} {'rel err':>9}")
    for n in args.sizes:
        flops = 2.0 * n ** 3
        torch_s = results.get("torch", {}).get(str(n), {}).get("seconds")
        for name, r in results.get("axon", {}).get(str(n), {}).items():
            ratio = f"{r['seconds'] / torch_s:8.2f}x" if torch_s else "       -"
            print(f"{n:>6} {'axon ' + name:>24} {r['seconds'] * 1e3:9.3f} {flops / r['seconds'] / 1e12:8.2f} "
                  f"{ratio} {r['rel_err']:9.1e}")
        if torch_s:
            print(f"{n:>6} {'torch (cuBLAS, no TF32)':>24} {torch_s * 1e3:9.3f} {flops / torch_s / 1e12:8.2f} "
                  f"{1.0:8.2f}x")


if __name__ == "__main__":
    main()
