"""PyTorch in a process where axon has run: is PyTorch as fast after axon as before it?

    python benchmarks/torch_after_axon.py                 # torch with 1 thread (where the effect showed)
    python benchmarks/torch_after_axon.py --threads 2

Runs PyTorch MLP steps (784-256-10, AdamW, batch 64), then axon's same MLP for ``--axon-steps`` steps,
then PyTorch again, all in this process, and prints each PyTorch phase's wall time, the process's CPU
time (every thread of it) and the ratio after / before. CPU time is the steadier number on a shared
machine: a thread spinning beside PyTorch shows up there even when other processes slow the wall clock.
(Before ``axon.kernels.threads.start_workers`` this printed CPU ratios of 17-32 with 1 thread, measured.)
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def torch_steps(steps: int, batch: int = 64) -> None:
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(batch * 20, 784), torch.randint(0, 10, (batch * 20,))
    loss_fn = nn.CrossEntropyLoss()
    for i in range(steps):
        lo = (i % 20) * batch
        opt.zero_grad()
        loss_fn(model(x[lo:lo + batch]), y[lo:lo + batch]).backward()
        opt.step()


def axon_steps(steps: int, batch: int = 64) -> None:
    import axon
    model = axon.input((None, 784)).dense(256, activation="relu").dense(10, activation="softmax")
    s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adamw(1e-3))
    r = np.random.default_rng(0)
    x = r.standard_normal((batch * steps, 784)).astype(np.float32)          # (N, 784)
    y = np.eye(10, dtype=np.float32)[r.integers(0, 10, batch * steps)]      # (N, 10) one-hot
    axon.training.train(s, x, y, epochs=1, batch_size=batch, verbose=0)


def timed(fn, *args) -> tuple:
    wall, cpu = time.perf_counter(), os.times()
    fn(*args)
    end = os.times()
    return time.perf_counter() - wall, (end.user + end.system) - (cpu.user + cpu.system)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--steps", type=int, default=200, help="PyTorch steps per phase")
    p.add_argument("--axon-steps", type=int, default=100, help="axon steps in between")
    args = p.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    timed(torch_steps, 20)                                                  # warm-up
    before = timed(torch_steps, args.steps)
    axon_steps(args.axon_steps)
    after = timed(torch_steps, args.steps)
    print(f"torch ({args.threads} thread{'s' * (args.threads > 1)}), {args.steps} steps:")
    print(f"  before axon: wall {before[0]:6.2f} s, CPU {before[1]:6.2f} s")
    print(f"  after axon:  wall {after[0]:6.2f} s, CPU {after[1]:6.2f} s")
    print(f"  after / before: wall {after[0] / before[0]:.2f}x, CPU {after[1] / before[1]:.2f}x")


if __name__ == "__main__":
    main()
