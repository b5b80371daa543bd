"""Seconds per MNIST epoch on one GPU: axon's CUDA backend against PyTorch on the same GPU and axon's CPU backend.

The models, batch size and optimizer of ``benchmarks/mnist_epoch.py`` (batch 128, Adam lr 1e-3, 469 steps):

- MLP: 784 -> 128 (relu) -> 10
- CNN: conv 3x3 32 (same) -> relu -> maxpool 2 -> conv 3x3 64 (same) -> relu -> maxpool 2 -> dense 128 (relu) -> dense 10

axon runs through its public API with ``device="cuda"`` (``axon.training.train``: params, Adam's moments and
every batch on the device; the loss comes back once per step). PyTorch runs in a process of its own (its
``nn.Sequential`` models of ``mnist_epoch.py`` moved to the GPU, the batches already there), and so does
axon on the CPU (the same call with ``device="cpu"``, all the machine's cores). Each side first runs a few
steps to compile its kernels, then the timed epochs; the median is reported, and the last column is how
many times faster axon's CUDA epoch is than its CPU epoch, from the same run.

    python benchmarks/cuda_mnist_epoch.py                    # both models, 3 epochs each (1 on the CPU)
    python benchmarks/cuda_mnist_epoch.py --model cnn --steps 100 --rounds 2
    python benchmarks/cuda_mnist_epoch.py --cpu-rounds 0     # without axon's CPU column

The issue's targets on an H200: CNN epoch <= 1.5x PyTorch's (0.75 s), MLP epoch <= 1.0x PyTorch's (0.52 s),
and the CNN >= 8x faster than axon on the CPU (the last column). Needs a GPU.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist_epoch import BATCH, STEPS_PER_EPOCH, TorchTrainer  # noqa: E402  (the same models and settings)


def axon_model(name):
    import axon
    if name == "mlp":
        return axon.input((None, 784)).dense(128, activation="relu").dense(10, activation="softmax")
    return (axon.input((None, 28, 28, 1)).conv(32, kernel_size=3, padding="same", activation="relu")
            .max_pool(kernel_size=2).conv(64, kernel_size=3, padding="same", activation="relu")
            .max_pool(kernel_size=2).flatten().dense(128, activation="relu").dense(10, activation="softmax"))


def data(name, steps, seed=0):
    rng = np.random.default_rng(seed)
    n = steps * BATCH
    x = rng.random((n, 784) if name == "mlp" else (n, 28, 28, 1), dtype=np.float32)
    return x, rng.integers(0, 10, n)


def time_axon(name, steps, rounds, device="cuda"):
    """Seconds per pass over the data with axon on ``device`` ("cuda", or "cpu" for the CPU column)."""
    import axon
    if device == "cuda":
        from axon.cuda import SIMULATOR
        if SIMULATOR:
            raise SystemExit("cuda_mnist_epoch: numba's simulator is on: timings would mean nothing")
    x, labels = data(name, steps)
    y = np.eye(10, dtype=np.float32)[labels]
    step = axon.training.step(axon_model(name), "categorical_cross_entropy", axon.optimizers.adam(1e-3))
    axon.training.train(step, x[:3 * BATCH], y[:3 * BATCH], batch_size=BATCH, verbose=0, device=device)  # compile
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        axon.training.train(step, x, y, batch_size=BATCH, shuffle=False, verbose=0, device=device)
        times.append(time.perf_counter() - t0)
    return times


def time_torch(name, steps, rounds):
    import torch
    x, labels = data(name, steps)
    xt = torch.from_numpy(x.reshape(-1, 1, 28, 28) if name == "cnn" else x).cuda()
    yt = torch.from_numpy(labels).cuda()
    trainer = TorchTrainer(name)
    trainer.net.cuda()
    trainer.opt = torch.optim.Adam(trainer.net.parameters(), lr=1e-3)
    batches = [(xt[i:i + BATCH], yt[i:i + BATCH]) for i in range(0, len(xt), BATCH)]
    for b in batches[:3]:
        trainer.step(*b)                                           # warm up (cuDNN picks its algorithms)
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for b in batches:
            trainer.step(*b)                                       # .item(): the loss comes back every step
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "cnn", "both"], default="both")
    parser.add_argument("--steps", type=int, default=STEPS_PER_EPOCH, help="steps per timed run (469 = 1 epoch)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu-rounds", type=int, default=1, help="axon CPU epochs per model (0: no CPU column)")
    parser.add_argument("--worker", choices=["axon", "torch", "axon-cpu"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = ["mlp", "cnn"] if args.model == "both" else [args.model]
    if args.worker:
        run = {"axon": time_axon, "torch": time_torch,
               "axon-cpu": functools.partial(time_axon, device="cpu")}[args.worker]
        print(json.dumps({m: run(m, args.steps, args.rounds) for m in models}))
        return
    results = {}
    workers = [("axon", args.rounds), ("torch", args.rounds)]
    if args.cpu_rounds:
        workers.append(("axon-cpu", args.cpu_rounds))
    for worker, rounds in workers:
        r = subprocess.run([sys.executable, __file__, "--worker", worker, "--model", args.model, "--steps",
                            str(args.steps), "--rounds", str(rounds)], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if r.returncode:
            print(f"{worker}: failed\n{r.stderr[-3000:]}", file=sys.stderr)
            continue
        results[worker] = json.loads(r.stdout.strip().splitlines()[-1])
    scale = STEPS_PER_EPOCH / args.steps

    def epoch(worker, m):
        return statistics.median(results[worker][m]) * scale if worker in results else float("nan")
    print(f"{'model':>6} {'axon cuda s/epoch':>18} {'torch cuda s/epoch':>19} {'axon/torch':>11} "
          f"{'axon cpu s/epoch':>17} {'cpu/cuda':>9}")
    for m in models:
        a, t, c = epoch("axon", m), epoch("torch", m), epoch("axon-cpu", m)
        print(f"{m:>6} {a:18.3f} {t:19.3f} {a / t:10.2f}x {c:17.3f} {c / a:8.1f}x")


if __name__ == "__main__":
    main()
