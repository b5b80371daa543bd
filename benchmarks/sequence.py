"""Milliseconds per forward+backward of sequence layers: axon against PyTorch CPU, side by side.

Three cases, batch 32, float32, the gradient of ``sum(y * dy)`` w.r.t. the input and every weight:

- LSTM: T 64, F 64, H 128 (axon: ``axon.layers.lstm``, the fused kernel; torch: ``nn.LSTM``)
- multi-head attention: T 128, width 128, 4 heads, self-attention (``nn.MultiheadAttention``)
- a pre-norm transformer block: T 128, width 128, 4 heads, MLP 512 with GELU

axon's side is compiled by ``axon.jit`` (traced once, replayed with its fusion passes: what
``axon.training.step`` does by default) and, in a second column, eager (the Python graph each call).
PyTorch runs eagerly, in a process of its own that never imports axon (as ``mnist_epoch.py``
explains); both get the same thread count. Each side is timed ``--repeat`` times after a warm-up; the median (or
``--stat min``) is reported, with the ratio axon / torch (below 1: axon is faster).

    python benchmarks/sequence.py
    python benchmarks/sequence.py --threads 1 --repeat 20 --stat min
    python benchmarks/sequence.py --threads 1 --clock cpu        # on a shared machine: CPU time
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

B, T_LSTM, F, H = 32, 64, 64, 128
T_ATT, E, HEADS, MLP = 128, 128, 4, 512


def measure(fn, repeat, stat, clock="wall"):
    """Milliseconds per call of ``fn``: the median (or min) of ``repeat`` calls after a warm-up.

    ``clock="cpu"`` counts the process's CPU time instead of the wall clock: with one thread, immune to
    other processes taking turns on the cores.
    """
    now = time.process_time if clock == "cpu" else time.perf_counter
    fn()                                                                         # warm-up (compiles kernels)
    times = []
    for _ in range(repeat):
        t0 = now()
        fn()
        times.append(now() - t0)
    return 1000 * (min(times) if stat == "min" else statistics.median(times))


# ---- axon ----------------------------------------------------------------------------------------------
def axon_cases(rng, compiled=True):
    import axon
    from axon import layers as L
    from axon.autograd import Tensor, value_and_grad

    def f32(*shape, scale=0.1):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    x_l, dy_l = f32(B, T_LSTM, F, scale=1), f32(B, T_LSTM, H, scale=1)
    p_l = {"w": f32(F, 4 * H), "u": f32(H, 4 * H), "b": f32(4 * H)}
    zeros = np.zeros((B, H), np.float32)

    def lstm_loss(p, x):
        y, _ = L.lstm(x, (zeros, zeros), p["w"], p["u"], p["b"])
        return (y * dy_l).sum()

    x_a, dy_a = f32(B, T_ATT, E, scale=1), f32(B, T_ATT, E, scale=1)
    p_a = {k: f32(E, E) for k in ("wq", "wk", "wv", "wo")} | {k: f32(E) for k in ("bq", "bk", "bv", "bo")}

    def mha(p, x):
        return L.multi_head_attention(x, x, x, p["wq"], p["wk"], p["wv"], p["wo"], HEADS, p["bq"], p["bk"],
                                      p["bv"], p["bo"])

    def mha_loss(p, x):
        return (mha(p, x) * dy_a).sum()

    p_t = dict(p_a, g1=np.ones(E, np.float32), be1=np.zeros(E, np.float32), g2=np.ones(E, np.float32),
               be2=np.zeros(E, np.float32), w1=f32(E, MLP), b1=f32(MLP), w2=f32(MLP, E), b2=f32(E))

    def block_loss(p, x):
        from axon import activations as A
        h = x + mha(p, L.layer_norm(x, p["g1"], p["be1"]))
        m = L.dense(A.gelu(L.dense(L.layer_norm(h, p["g2"], p["be2"]), p["w1"], p["b1"])), p["w2"], p["b2"])
        return ((h + m) * dy_a).sum()

    def run(loss, p, x):
        g = value_and_grad(loss, argnums=(0, 1))
        if compiled:
            g = axon.jit(g)                                    # traced in measure()'s warm-up call
            return lambda: g(p, x)
        return lambda: g(p, Tensor(x))
    return {"lstm": run(lstm_loss, p_l, x_l), "mha": run(mha_loss, p_a, x_a), "block": run(block_loss, p_t, x_a)}


# ---- torch (in its own process) ------------------------------------------------------------------------
def torch_cases(rng):
    import torch
    nn = torch.nn

    def run(module, x, dy, fwd):
        xt = torch.tensor(x, requires_grad=True)
        dyt = torch.tensor(dy)

        def step():
            for p in module.parameters():
                p.grad = None
            xt.grad = None
            (fwd(module, xt) * dyt).sum().backward()
        return step

    x_l, dy_l = rng.standard_normal((B, T_LSTM, F)).astype(np.float32), rng.standard_normal((B, T_LSTM, H)).astype(np.float32)
    x_a, dy_a = rng.standard_normal((B, T_ATT, E)).astype(np.float32), rng.standard_normal((B, T_ATT, E)).astype(np.float32)
    lstm = nn.LSTM(F, H, batch_first=True)
    mha = nn.MultiheadAttention(E, HEADS, batch_first=True)
    block = nn.TransformerEncoderLayer(E, HEADS, MLP, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    return {"lstm": run(lstm, x_l, dy_l, lambda m, x: m(x)[0]),
            "mha": run(mha, x_a, dy_a, lambda m, x: m(x, x, x, need_weights=False)[0]),
            "block": run(block, x_a, dy_a, lambda m, x: m(x))}


def set_threads(n, torch_side):
    if torch_side:
        import torch
        torch.set_num_threads(n)
    else:
        import numba
        numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass


def worker(args):
    set_threads(args.threads, torch_side=True)
    cases = torch_cases(np.random.default_rng(0))
    print(json.dumps({k: measure(fn, args.repeat, args.stat, args.clock) for k, fn in cases.items()}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--stat", choices=("median", "min"), default="median")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the process's CPU time (use with --threads 1 on a shared machine)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu measures one thread's work: use it with --threads 1")
    if args.torch_worker:
        return worker(args)
    set_threads(args.threads, torch_side=False)
    ours = {k: measure(fn, args.repeat, args.stat, args.clock) for k, fn in axon_cases(np.random.default_rng(0)).items()}
    eager = {k: measure(fn, args.repeat, args.stat, args.clock)
             for k, fn in axon_cases(np.random.default_rng(0), compiled=False).items()}
    try:
        import importlib.util
        has_torch = importlib.util.find_spec("torch") is not None
    except ImportError:
        has_torch = False
    theirs = {}
    if has_torch:
        out = subprocess.run([sys.executable, __file__, "--torch-worker", "--threads", str(args.threads),
                              "--repeat", str(args.repeat), "--stat", args.stat, "--clock", args.clock],
                             capture_output=True, text=True,
                             check=True)
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
    names = {"lstm": f"LSTM B{B} T{T_LSTM} F{F} H{H}", "mha": f"MHA B{B} T{T_ATT} E{E} {HEADS} heads",
             "block": f"transformer block B{B} T{T_ATT} E{E} MLP {MLP}"}
    print(f"forward+backward, ms ({args.stat} of {args.repeat}, {args.threads} threads, {args.clock} clock, "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"{'case':<40} {'axon':>9} {'eager':>9} {'torch':>9} {'axon/torch':>11} {'eager/torch':>12}")
    for k, label in names.items():
        t = theirs.get(k)
        ratio = f"{ours[k] / t:.2f}" if t else "-"
        eager_ratio = f"{eager[k] / t:.2f}" if t else "-"
        print(f"{label:<40} {ours[k]:9.2f} {eager[k]:9.2f} {t if t else float('nan'):9.2f} {ratio:>11} "
              f"{eager_ratio:>12}")


if __name__ == "__main__":
    main()
