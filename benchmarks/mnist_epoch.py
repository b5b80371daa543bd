"""Seconds per MNIST epoch: axon's kernels against the same models in PyTorch, side by side.

Two models, batch 128, Adam (lr 1e-3), 469 steps per epoch (60,000 images):

- MLP: 784 -> 128 (relu) -> 10
- CNN: conv 3x3 32 (same) -> relu -> maxpool 2 -> conv 3x3 64 (same) -> relu -> maxpool 2 -> dense 128 (relu) -> dense 10

axon runs three ways: through its public API (the model graph, ``axon.training.step``, ``axon.optimizers.adam``:
what users get) eagerly (``compile=False``: the Python graph every step) and compiled (the default: the
whole step traced once per batch shape by ``axon.jit`` and replayed; with ``donate=True``, as a training
loop that keeps only the newest state passes, so Adam updates the params in place as ``optim.Adam`` does), and written with ``axon.kernels``
and ``axon.autograd`` directly (one visible training step function per model: forward, ``value_and_grad``,
the fused in-place Adam update), which shows the floor the kernels set and, by difference, the framework's
overhead. The PyTorch side is the usual
``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.Adam`` in PyTorch's own (N, C, H, W) layout.

Both get the same thread count (numba, PyTorch and the BLAS libraries; default: all cores). PyTorch runs
in a process of its own that never imports axon: importing axon changes process-wide settings (the
memory allocator's, see ``axon.kernels.workspace``), which measurably changed PyTorch's speed when both
shared a process, so a separate process is PyTorch as its users run it. The runs alternate (axon,
torch, axon, torch, ...) so a busy machine slows both alike; the script reports the median run
(``--stat min``: the fastest, closer to an idle machine's speed when others share the cores).

    python benchmarks/mnist_epoch.py                        # both models, a full epoch each, 3 rounds
    python benchmarks/mnist_epoch.py --model cnn --steps 50 # a subset, extrapolated to 469 steps
    python benchmarks/mnist_epoch.py --breakdown            # axon's forward / backward / update times
    python benchmarks/mnist_epoch.py --data mnist           # the real images instead of random ones
    python benchmarks/mnist_epoch.py --steps 20 --rounds 10 --stat min   # on a shared machine
    python benchmarks/mnist_epoch.py --steps 100 --rounds 5 --stat min --markdown tutorials/data/mnist_epoch.md

Besides seconds per epoch it prints the fastest and the median single step of each side: on a machine
that other processes share, the fastest step is the best estimate of the speed on an idle one.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from kernels import machine_line, set_threads, write_lines                   # benchmarks/kernels.py, beside us

STEPS_PER_EPOCH = 469
BATCH = 128


# ---- axon: parameters, and one training step per model ------------------------------------------------
def glorot(rng, shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def init_mlp(rng):
    return {"w1": glorot(rng, (784, 128), 784, 128), "b1": np.zeros(128, np.float32),
            "w2": glorot(rng, (128, 10), 128, 10), "b2": np.zeros(10, np.float32)}


def init_cnn(rng):
    return {"k1": glorot(rng, (3, 3, 1, 32), 9, 9 * 32), "c1": np.zeros(32, np.float32),
            "k2": glorot(rng, (3, 3, 32, 64), 9 * 32, 9 * 64), "c2": np.zeros(64, np.float32),
            "w3": glorot(rng, (7 * 7 * 64, 128), 3136, 128), "b3": np.zeros(128, np.float32),
            "w4": glorot(rng, (128, 10), 128, 10), "b4": np.zeros(10, np.float32)}


def mlp_loss(p, x, y):
    from axon import kernels as K
    h = K.bias_relu(K.matmul(x.reshape(-1, 784), p["w1"]), p["b1"])          # (N, 784) -> (N, 128)
    logits = K.matmul(h, p["w2"]) + p["b2"]                                    # (N, 10)
    return K.softmax_cross_entropy(logits, y).mean()


SAME, VALID = ((1, 1), (1, 1)), ((0, 0), (0, 0))


def cnn_loss(p, x, y):
    from axon import kernels as K
    h = K.bias_relu(K.conv(x, p["k1"], (1, 1), SAME, (1, 1)), p["c1"])       # (N, 28, 28, 1) -> (N, 28, 28, 32)
    h = K.max_pool(h, (2, 2), (2, 2), VALID)                                   # -> (N, 14, 14, 32)
    h = K.bias_relu(K.conv(h, p["k2"], (1, 1), SAME, (1, 1)), p["c2"])       # -> (N, 14, 14, 64)
    h = K.max_pool(h, (2, 2), (2, 2), VALID)                                   # -> (N, 7, 7, 64)
    h = K.bias_relu(K.matmul(h.reshape(h.shape[0], -1), p["w3"]), p["b3"])   # -> (N, 3136) -> (N, 128)
    logits = K.matmul(h, p["w4"]) + p["b4"]                                    # -> (N, 10)
    return K.softmax_cross_entropy(logits, y).mean()


class AxonTrainer:
    """Parameters, Adam moments and the step counter; ``step(x, y)`` is one training step."""

    def __init__(self, model, seed=0):
        from axon.autograd import value_and_grad
        rng = np.random.default_rng(seed)
        self.params = init_mlp(rng) if model == "mlp" else init_cnn(rng)
        self.m = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.t = 0
        self.loss_and_grads = value_and_grad(mlp_loss if model == "mlp" else cnn_loss)
        self.times = {"forward+backward": [], "adam": []}

    def step(self, x, y, breakdown=False):
        from axon.kernels import adam_update
        t0 = time.perf_counter()
        loss, grads = self.loss_and_grads(self.params, x, y)                 # forward + backward
        t1 = time.perf_counter()
        self.t += 1
        for k, p in self.params.items():                                       # the fused, in-place update
            adam_update(p, grads[k], self.m[k], self.v[k], lr=1e-3, b1=0.9, b2=0.999, eps=1e-8,
                        weight_decay=0.0, step=self.t)
        if breakdown:
            self.times["forward+backward"].append(t1 - t0)
            self.times["adam"].append(time.perf_counter() - t1)
        return float(loss)


class ApiTrainer:
    """The same models through axon's public API: the model graph, ``axon.training.step`` and ``adam``.

    This is what a user's ``python -m axon.examples.mnist`` runs; the difference to ``AxonTrainer`` is
    the framework's own overhead (graph walk, params trees, the optimizer's functional update).
    """

    def __init__(self, model, seed=0, compile=True, donate=False):
        import axon
        x = axon.input((None, 28, 28, 1))
        if model == "mlp":
            net = x.flatten().dense(128, activation="relu").dense(10)
        else:
            net = (x.conv(32, kernel_size=3, padding="same", activation="relu").max_pool(kernel_size=2)
                   .conv(64, kernel_size=3, padding="same", activation="relu").max_pool(kernel_size=2)
                   .flatten().dense(128, activation="relu").dense(10))
        loss = lambda y, logits: axon.losses.sparse_categorical_cross_entropy(y, logits, from_logits=True,
                                                                             reduction="mean")
        init, self.train_step = axon.training.step(net, loss, axon.optimizers.adam(1e-3), compile=compile,
                                                   donate=donate)
        self.state = init(seed=seed)

    def step(self, x, y):
        self.state, metrics = self.train_step(self.state, x, y)
        return metrics["loss"]


# ---- PyTorch: the same models ---------------------------------------------------------------------------
class TorchTrainer:
    def __init__(self, model, seed=0):
        import torch
        from torch import nn
        torch.manual_seed(seed)
        if model == "mlp":
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        else:
            self.net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                     nn.Linear(7 * 7 * 64, 128), nn.ReLU(), nn.Linear(128, 10))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.loss = nn.CrossEntropyLoss()

    def step(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.net(x), y)
        loss.backward()
        self.opt.step()
        return loss.item()


# ---- data and timing ------------------------------------------------------------------------------------
def make_data(args):
    """``args.steps * BATCH`` images (N, 28, 28, 1) float32 and int labels: random (seeded) or MNIST."""
    n = args.steps * BATCH
    if args.data == "mnist":
        from axon.datasets import mnist
        images, onehot = mnist.load("train")
        take = np.arange(n) % len(images)
        return images[take].reshape(-1, 28, 28, 1), onehot[take].argmax(1)
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)


def split(x, y):
    return [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]


def run_epoch(trainer, data, step_times, **kw):
    """Run ``trainer`` over ``data``; return the seconds it took, and append every step's to ``step_times``."""
    start = time.perf_counter()
    for x, y in data:
        t = time.perf_counter()
        trainer.step(x, y, **kw)
        step_times.append(time.perf_counter() - t)
    return time.perf_counter() - start


class TorchProcess:
    """PyTorch in a child process that never imports axon; ``epoch()`` runs one timed pass over the data."""

    def __init__(self, model, threads, x, y):
        with tempfile.TemporaryDirectory() as tmpdir:                           # removed once the worker has read it
            path = os.path.join(tmpdir, "data.npz")
            np.savez(path, x=np.ascontiguousarray(np.moveaxis(x, -1, 1)), y=y.astype(np.int64))  # (n, 1, 28, 28)
            self.proc = subprocess.Popen([sys.executable, __file__, "--torch-worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
            self._send({"model": model, "threads": threads, "data": path})    # answers once the data is loaded

    def _send(self, msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the PyTorch worker process died")
        return json.loads(line)

    def epoch(self, step_times):
        out = self._send({"run": True})
        step_times.extend(out["steps"])
        return out["total"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def torch_worker():
    """The child: read JSON commands on stdin, answer on stdout (set-up, then one line per timed epoch)."""
    import torch
    setup = json.loads(sys.stdin.readline())
    torch.set_num_threads(setup["threads"])
    with np.load(setup["data"]) as data:
        xt, yt = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    batches = [(xt[i:i + BATCH], yt[i:i + BATCH]) for i in range(0, len(xt), BATCH)]
    trainer = TorchTrainer(setup["model"])
    trainer.step(*batches[0])                                                 # warm up
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        steps = []
        total = run_epoch(trainer, batches, steps)
        print(json.dumps({"total": total, "steps": steps}), flush=True)


def write_markdown(path, args, load, results):
    """The table as Markdown: a line about the machine and the settings, then one row per model.

    ``results``: ``(model, api, compiled, kernels, torch, api_step, compiled_step, torch_step)``: seconds
    per epoch (the eager API, the compiled API, the kernels, PyTorch), then the fastest single step of
    the eager API, the compiled API and PyTorch in seconds (the torch entries None without PyTorch).
    """
    ms = lambda s: f"{s:.2f} s ({1e3 * s / STEPS_PER_EPOCH:.1f} ms/step)"    # noqa: E731
    lines = [f"Measured on {machine_line(args.threads, load)}. Batch {BATCH}, Adam, {args.data} data; "
             f"{args.steps} steps per run, scaled to an epoch of {STEPS_PER_EPOCH} steps; {args.stat} of "
             f"{args.rounds} alternating rounds; PyTorch in a process of its own.",
             "",
             "| model | axon API eager | axon API compiled | axon kernels | PyTorch | eager/torch | compiled/torch "
             "| kernels/torch | fastest step: eager, compiled, torch |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for model, api, jit_s, ours, torch_s, api_step, jit_step, torch_step in results:
        theirs = ((ms(torch_s), f"{api / torch_s:.2f}", f"{jit_s / torch_s:.2f}", f"{ours / torch_s:.2f}",
                   f"{1e3 * api_step:.1f}, {1e3 * jit_step:.1f}, {1e3 * torch_step:.1f} ms") if torch_s else
                  ("-", "-", "-", "-", f"{1e3 * api_step:.1f}, {1e3 * jit_step:.1f} ms, -"))
        lines.append(f"| {model.upper()} | {ms(api)} | {ms(jit_s)} | {ms(ours)} | " + " | ".join(theirs) + " |")
    write_lines(path, lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["mlp", "cnn", "both"], default="both")
    parser.add_argument("--steps", type=int, default=STEPS_PER_EPOCH, help="steps per timed run (469 = 1 epoch)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating axon/torch runs")
    parser.add_argument("--stat", choices=["median", "min"], default="median",
                        help="report the median run, or the fastest (steadier on a shared machine)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--data", choices=["random", "mnist"], default="random")
    parser.add_argument("--breakdown", action="store_true", help="also time axon's step phases")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table to PATH as Markdown")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        return torch_worker()
    if not args.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch is not installed: timing axon alone")
            args.no_torch = True
    t_import = time.perf_counter()
    import axon.kernels  # noqa: F401
    t_import = time.perf_counter() - t_import
    set_threads(args.threads, include_torch=False)                            # PyTorch sets its own, in its process
    x, y = make_data(args)
    axon_data = split(x, y)
    load = os.getloadavg()[0]                                                 # before our own runs add to it
    print(f"threads: {args.threads}, batch {BATCH}, {args.steps} steps per run, {args.stat} of {args.rounds} rounds, "
          f"{args.data} data; load average {load:.1f}; import axon.kernels {t_import:.2f} s")
    scale = STEPS_PER_EPOCH / args.steps
    results = []
    for model in (["mlp", "cnn"] if args.model == "both" else [args.model]):
        ours = AxonTrainer(model)
        t = time.perf_counter()
        ours.step(*axon_data[0])
        first = time.perf_counter() - t                                       # compile or load from cache
        api = ApiTrainer(model, compile=False)
        api.step(*axon_data[0])
        compiled = ApiTrainer(model, compile=True, donate=True)
        t = time.perf_counter()
        compiled.step(*axon_data[0])
        first_jit = time.perf_counter() - t                                   # the trace (an eager step, recorded)
        compiled.step(*axon_data[-1])                                         # the last batch's shape, traced too
        theirs = TorchProcess(model, args.threads, x, y) if not args.no_torch else None
        a_times, p_times, j_times, t_times, a_steps, p_steps, j_steps, t_steps = [], [], [], [], [], [], [], []
        for _ in range(args.rounds):                                         # interleaved: load hits all alike
            p_times.append(run_epoch(api, axon_data, p_steps))
            j_times.append(run_epoch(compiled, axon_data, j_steps))
            a_times.append(run_epoch(ours, axon_data, a_steps, breakdown=args.breakdown))
            if theirs:
                t_times.append(theirs.epoch(t_steps))
        pick = min if args.stat == "min" else statistics.median
        a, p, j = pick(a_times) * scale, pick(p_times) * scale, pick(j_times) * scale
        line = (f"{model.upper()}: axon API eager {p:6.2f} s/epoch ({1e3 * p / STEPS_PER_EPOCH:6.2f} ms/step) | "
                f"compiled {j:6.2f} s/epoch ({1e3 * j / STEPS_PER_EPOCH:6.2f} ms/step) | axon kernels {a:6.2f} s/epoch")
        if theirs:
            tt = pick(t_times) * scale
            line += (f" | torch {tt:6.2f} s/epoch ({1e3 * tt / STEPS_PER_EPOCH:6.2f} ms/step) | "
                     f"eager/torch {p / tt:.2f}x, compiled/torch {j / tt:.2f}x, kernels/torch {a / tt:.2f}x")
        results.append((model, p, j, a, pick(t_times) * scale if theirs else None, min(p_steps), min(j_steps),
                        min(t_steps) if theirs else None))
        print(line + f"   [first axon step {first:.2f} s, first compiled step (the trace) {first_jit:.2f} s; "
              + "runs: eager " + " ".join(f"{x * scale:.2f}" for x in p_times)
              + " compiled " + " ".join(f"{x * scale:.2f}" for x in j_times)
              + " kernels " + " ".join(f"{x * scale:.2f}" for x in a_times)
              + (" torch " + " ".join(f"{x * scale:.2f}" for x in t_times) if theirs else "") + "]")
        steps = (f"    one step, fastest / median: axon API eager {1e3 * min(p_steps):.2f} / "
                 f"{1e3 * statistics.median(p_steps):.2f} ms, compiled {1e3 * min(j_steps):.2f} / "
                 f"{1e3 * statistics.median(j_steps):.2f} ms")
        if theirs:
            steps += (f", torch {1e3 * min(t_steps):.2f} / {1e3 * statistics.median(t_steps):.2f} ms"
                      f" (API/torch {min(p_steps) / min(t_steps):.2f}x / "
                      f"{statistics.median(p_steps) / statistics.median(t_steps):.2f}x; compiled/torch "
                      f"{min(j_steps) / min(t_steps):.2f}x / "
                      f"{statistics.median(j_steps) / statistics.median(t_steps):.2f}x)")
            theirs.close()
        print(steps)
        if args.breakdown:
            for phase, ts in ours.times.items():
                print(f"    axon kernels {phase:17s} {1e3 * pick(ts):7.2f} ms/step ({args.stat})")
    if args.markdown:
        write_markdown(args.markdown, args, load, results)
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
