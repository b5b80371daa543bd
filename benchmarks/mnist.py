"""Full MNIST runs: axon's MLP and CNN against the same models in PyTorch (CPU), side by side.

    python benchmarks/mnist.py                       # both models, default epochs, torch too if installed
    python benchmarks/mnist.py --model mlp --command # also time `python -m axon.examples.mnist` end to end
    python benchmarks/mnist.py --model cnn --epochs 2 --no-torch

For each model it prints the seconds per epoch (first epoch, which includes numba compilation when the
cache is cold, and the median of the others), the test accuracy, and the ratio axon / torch. The
targets (2-core CI machine): MLP >= 98.0% test accuracy with the whole command under 60 s; CNN >= 99.2%
with each epoch no slower than PyTorch's. Timings on a shared machine vary by 10-30%: compare the
two frameworks from the same run, never across runs.

PyTorch runs in this process, after axon was imported. That favours PyTorch: axon's allocator settings
(``axon.kernels.workspace.keep_freed_memory``) apply to the whole process, and measured here they cut
PyTorch's CNN step from 64-73 ms to 48 ms. So the ratio axon / torch printed here is conservative;
``benchmarks/mnist_epoch.py`` runs PyTorch in a process of its own, as its users run it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def run_axon(kind: str, epochs: int, lr: float, batch_size: int, seed: int, shift: int) -> dict:
    """Train with axon exactly as the example does; time every epoch."""
    import axon
    from axon.examples import mnist as example

    (x, y), (x_val, y_val), (x_test, y_test) = example.load_data(kind)
    model = example.build_model(kind)
    optimizer = example.make_optimizer(lr, epochs * -(-len(x) // batch_size))
    step = axon.training.step(model, "categorical_cross_entropy", optimizer, metrics=["accuracy"])
    marks = [time.perf_counter()]

    def clock(state):
        marks.append(time.perf_counter())                        # validation included, as in the example
    state = axon.training.train(step, x, y, epochs=epochs, batch_size=batch_size, seed=seed,
                                validation_data=(x_val, y_val), callbacks=[clock], verbose=0,
                                augment=(lambda xb, rng: example.random_shift(xb, rng, shift)) if shift else None)
    test = axon.training.evaluate(model, state.params, x_test, y_test, metrics=["accuracy"], batch_size=1000)
    return {"epochs": np.diff(marks).tolist(), "test_accuracy": test["accuracy"]}


def run_torch(kind: str, epochs: int, lr: float, batch_size: int, seed: int, shift: int, threads: int) -> dict:
    """The same model, optimizer (AdamW, cosine decay), batches, augmentation and validation in PyTorch."""
    import torch
    from torch import nn
    from axon.examples import mnist as example

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    (x, y), (x_val, y_val), (x_test, y_test) = example.load_data(kind)
    to_nchw = (lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))) if kind == "cnn" \
        else torch.from_numpy
    x, x_val, x_test = to_nchw(x), to_nchw(x_val), to_nchw(x_test)
    y, y_val, y_test = (torch.from_numpy(a.argmax(1)) for a in (y, y_val, y_test))
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    else:
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
    for m in model.modules():                                        # glorot-uniform weights, zero biases (as axon)
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    steps = epochs * -(-len(x) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = np.random.default_rng(seed)

    def accuracy(xs, ys):
        model.eval()
        with torch.no_grad():
            return sum((model(xs[i:i + 1000]).argmax(1) == ys[i:i + 1000]).sum().item()
                       for i in range(0, len(xs), 1000)) / len(xs)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.from_numpy(gen.permutation(len(x)))
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            xb = x[idx]
            if shift:                                                # the example's shifts, on the same arrays
                xb = torch.from_numpy(example.random_shift(xb.numpy(), gen, shift))
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        accuracy(x_val, y_val)
        times.append(time.perf_counter() - start)
    return {"epochs": times, "test_accuracy": accuracy(x_test, y_test)}


def time_command(args: list[str]) -> float:
    """Wall seconds of ``python -m axon.examples.mnist ARGS`` in a fresh process (start-up included)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "axon.examples.mnist", "--verbose", "0", *args], check=True)
    return time.perf_counter() - start


def _summary(times: list[float]) -> tuple[float, float]:
    """(first epoch, median of the rest or the first if only one)."""
    return times[0], statistics.median(times[1:]) if len(times) > 1 else times[0]


def main(argv=None) -> None:
    from axon.examples.mnist import DEFAULTS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["mlp", "cnn", "both"], default="both")
    p.add_argument("--epochs", type=int, default=None, help="default: the example's per-model default")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (axon sets its own)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch runs")
    p.add_argument("--command", action="store_true", help="also time `python -m axon.examples.mnist` (MLP)")
    args = p.parse_args(argv)
    try:
        import torch  # noqa: F401
        have_torch = not args.no_torch
    except ImportError:
        have_torch = False
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start")
    rows = []
    for kind in (["mlp", "cnn"] if args.model == "both" else [args.model]):
        epochs = args.epochs or DEFAULTS[kind]["epochs"]
        lr, shift = DEFAULTS[kind]["lr"], DEFAULTS[kind]["augment"]
        print(f"\n== {kind}: {epochs} epochs, batch {args.batch_size}, adamw {lr} (cosine), shifts of up to "
              f"{shift} pixel ==", flush=True)
        ax = run_axon(kind, epochs, lr, args.batch_size, args.seed, shift)
        first, med = _summary(ax["epochs"])
        print(f"axon : epoch 1 {first:6.2f} s, then median {med:6.2f} s; test accuracy {100 * ax['test_accuracy']:.2f}%",
              flush=True)
        row = {"model": kind, "axon_epoch": med, "axon_acc": ax["test_accuracy"]}
        if have_torch:
            th = run_torch(kind, epochs, lr, args.batch_size, args.seed, shift, args.threads)
            t_first, t_med = _summary(th["epochs"])
            print(f"torch: epoch 1 {t_first:6.2f} s, then median {t_med:6.2f} s; test accuracy "
                  f"{100 * th['test_accuracy']:.2f}%", flush=True)
            row.update(torch_epoch=t_med, torch_acc=th["test_accuracy"], ratio=med / t_med)
        rows.append(row)
    if args.command:
        seconds = time_command([])
        print(f"\n`python -m axon.examples.mnist` (MLP, defaults): {seconds:.1f} s in all (target < 60 s)")
    print("\n| model | axon s/epoch | torch s/epoch | axon/torch | axon test acc | torch test acc |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['axon_epoch']:.2f} | {r.get('torch_epoch', float('nan')):.2f} | "
              f"{r.get('ratio', float('nan')):.2f} | {100 * r['axon_acc']:.2f}% | "
              f"{100 * r.get('torch_acc', float('nan')):.2f}% |")


if __name__ == "__main__":
    main()
