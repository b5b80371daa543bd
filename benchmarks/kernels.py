"""Each axon kernel, forward and forward+backward, against plain numpy and PyTorch CPU on the same shapes.

Prints one row per kernel: times in milliseconds (median of ``--repeat`` runs, or the minimum with
``--stat min``, steadier on a busy machine) and the ratios axon/numpy and axon/torch (below 1: axon
is faster). All three use the same number of threads (``--threads``, default: all cores). Runs are
interleaved (axon, numpy, torch, axon, ...) so a busy machine slows all three alike.

    python benchmarks/kernels.py                   # every kernel
    python benchmarks/kernels.py --only conv       # the rows whose name contains "conv"
    python benchmarks/kernels.py --threads 1 --stat min
    python benchmarks/kernels.py --threads 1 --clock cpu  # CPU time: steady even on a busy machine
    python benchmarks/kernels.py --stat min --markdown tutorials/data/kernels.md   # also as a Markdown table

"numpy" is the straightforward vectorised numpy version (im2col by ``sliding_window_view`` and
``tensordot`` for conv, reshape-and-max for pooling, and so on), with its backward written by hand.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

F32 = np.float32


# ---- plain numpy versions: forward and forward+backward --------------------------------------------------
def np_matmul(a, b, dy=None):
    y = a @ b
    if dy is None:
        return y
    return y, dy @ b.T, a.T @ dy


def np_conv2d_same(x, w, dy=None):
    """3x3 'same' convolution, channels-last, by im2col (sliding_window_view) and tensordot."""
    N, H, W, C = x.shape
    KH, KW, _, CO = w.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = sliding_window_view(xp, (KH, KW), axis=(1, 2))                    # (N, H, W, C, KH, KW)
    y = np.tensordot(cols, w, axes=([4, 5, 3], [0, 1, 2]))                    # (N, H, W, CO)
    if dy is None:
        return y
    dw = np.tensordot(cols, dy, axes=([0, 1, 2], [0, 1, 2])).transpose(1, 2, 0, 3)   # (KH, KW, C, CO)
    dcols = np.tensordot(dy, w, axes=([3], [3]))                             # (N, H, W, KH, KW, C)
    dxp = np.zeros_like(xp)
    for i in range(KH):
        for j in range(KW):
            dxp[:, i:i + H, j:j + W] += dcols[:, :, :, i, j]
    return y, dxp[:, 1:-1, 1:-1], dw


def np_maxpool2(x, dy=None):
    N, H, W, C = x.shape
    win = x.reshape(N, H // 2, 2, W // 2, 2, C)
    y = win.max(axis=(2, 4))
    if dy is None:
        return y
    mask = win == y[:, :, None, :, None]
    return y, (mask * dy[:, :, None, :, None]).reshape(x.shape)


def np_xent(x, labels, dy=None):
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    loss = (np.log(s) + m)[:, 0] - x[np.arange(len(x)), labels]
    if dy is None:
        return loss
    dx = e / s
    dx[np.arange(len(x)), labels] -= 1
    return loss, dx * dy[:, None]


def np_bias_relu(x, b, dy=None):
    y = np.maximum(x + b, 0)
    if dy is None:
        return y
    dx = dy * (y > 0)
    return y, dx, dx.reshape(-1, x.shape[-1]).sum(0)


def np_batch_norm(x, g, b, dy=None, eps=1e-5):
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axes), x.var(axes)
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * inv
    y = xhat * g + b
    if dy is None:
        return y
    M = x.size // x.shape[-1]
    db, dg = dy.sum(axes), (dy * xhat).sum(axes)
    return y, g * inv / M * (M * dy - db - xhat * dg), dg, db


def np_adam(p, g, m, v, t=5, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    p -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


# ---- the benchmark table ---------------------------------------------------------------------------------
def cases(rng):
    """(name, axon forward, axon forward+backward, numpy forward+backward, torch forward, torch fwd+bwd) per row."""
    from axon.autograd import Tensor
    from axon import kernels as K
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        torch = None

    def t(a, grad=True):
        return torch.tensor(a, requires_grad=grad) if torch else None

    def leaf(a):
        return Tensor(a, requires_grad=True)

    def axon_pair(fwd, inputs, dy):
        """Forward alone (no graph) and forward + backward with upstream gradient dy."""
        def forward():
            fwd(*inputs)

        def both():
            fwd(*[leaf(a) for a in inputs]).backward(dy)
        return forward, both

    def torch_pair(fwd, inputs, dy, grads=None):
        """PyTorch's forward alone and forward + backward; (None, None) without PyTorch (fwd is not called)."""
        if torch is None:
            return None, None
        grads = grads or [True] * len(inputs)
        dyt = torch.tensor(dy)
        plain = [torch.tensor(a) for a in inputs]

        def forward():
            with torch.no_grad():
                fwd(*plain)

        ts = [t(a, g) for a, g in zip(inputs, grads)]

        def both():
            for x in ts:
                x.grad = None
            fwd(*ts).backward(dyt)
        return forward, both

    rows = []
    for m, k, n in [(128, 784, 128), (1024, 1024, 1024)]:
        a, b = rng.standard_normal((m, k), dtype=F32), rng.standard_normal((k, n), dtype=F32)
        dy = rng.standard_normal((m, n), dtype=F32)
        rows.append((f"matmul {m}x{k} @ {k}x{n}", *axon_pair(K.matmul, (a, b), dy),
                     lambda a=a, b=b, dy=dy: np_matmul(a, b, dy),
                     *torch_pair(torch.matmul if torch else None, (a, b), dy)))
    if os.environ.get("AXON_BENCH_LOOP"):
        a, b = rng.standard_normal((128, 784), dtype=F32), rng.standard_normal((784, 128), dtype=F32)
        dy = rng.standard_normal((128, 128), dtype=F32)
        rows.append(("matmul_loop 128x784 @ 784x128", *axon_pair(K.matmul_loop, (a, b), dy),
                     lambda: np_matmul(a, b, dy), *torch_pair(torch.matmul if torch else None, (a, b), dy)))

    same = ((1, 1), (1, 1))
    for (H, C, CO) in [(28, 1, 32), (14, 32, 64)]:
        x = rng.standard_normal((128, H, H, C), dtype=F32)
        w = (rng.standard_normal((3, 3, C, CO)) * 0.1).astype(F32)
        dy = rng.standard_normal((128, H, H, CO), dtype=F32)
        first = C == 1                                                        # the input layer: no dx needed
        fwd = lambda x, w: K.conv(x, w, (1, 1), same, (1, 1))                 # noqa: E731

        def ours_both(x=x, w=w, dy=dy, first=first):
            K.conv(x if first else leaf(x), leaf(w), (1, 1), same, (1, 1)).backward(dy)

        def ours_fwd(x=x, w=w):
            fwd(x, w)
        xt_in, wt_in, dyt = np.moveaxis(x, -1, 1).copy(), np.ascontiguousarray(w.transpose(3, 2, 0, 1)), \
            np.moveaxis(dy, -1, 1).copy()
        rows.append((f"conv2d 128x{H}x{H}x{C} -> {CO} (3x3){' [no dx]' if first else ''}", ours_fwd, ours_both,
                     lambda x=x, w=w, dy=dy: np_conv2d_same(x, w, dy),
                     *torch_pair(lambda x, w: TF.conv2d(x, w, padding=1), (xt_in, wt_in), dyt,
                                 grads=[not first, True])))

    x = rng.standard_normal((128, 28, 28, 32), dtype=F32)
    dy = rng.standard_normal((128, 14, 14, 32), dtype=F32)
    pool = lambda x: K.max_pool(x, (2, 2), (2, 2), ((0, 0), (0, 0)))          # noqa: E731
    rows.append(("max_pool 2x2 128x28x28x32", *axon_pair(pool, (x,), dy), lambda: np_maxpool2(x, dy),
                 *torch_pair(lambda x: TF.max_pool2d(x, 2), (np.moveaxis(x, -1, 1).copy(),),
                             np.moveaxis(dy, -1, 1).copy())))

    b = rng.standard_normal(32, dtype=F32)
    rows.append(("bias_relu 128x28x28x32", *axon_pair(K.bias_relu, (x, b), x), lambda: np_bias_relu(x, b, x),
                 *torch_pair(lambda x, b: torch.relu(x + b), (x, b), x)))

    logits = rng.standard_normal((128, 10), dtype=F32)
    labels = rng.integers(0, 10, 128)
    dl = np.full(128, 1 / 128, F32)
    rows.append(("softmax_cross_entropy 128x10", *axon_pair(lambda z: K.softmax_cross_entropy(z, labels), (logits,), dl),
                 lambda: np_xent(logits, labels, dl),
                 *torch_pair(lambda z: TF.cross_entropy(z, torch.tensor(labels), reduction="none"), (logits,), dl)))

    xb = rng.standard_normal((128, 14, 14, 64), dtype=F32)
    g, bb = np.ones(64, F32), np.zeros(64, F32)
    rows.append(("batch_norm_train 128x14x14x64",
                 *axon_pair(lambda x, g, b: K.batch_norm_train(x, g, b, 1e-5)[0], (xb, g, bb), xb),
                 lambda: np_batch_norm(xb, g, bb, xb),
                 *torch_pair(lambda x, g, b: TF.batch_norm(x, None, None, g, b, training=True),
                             (np.moveaxis(xb, -1, 1).copy(), g, bb), np.moveaxis(xb, -1, 1).copy())))

    n = 7 * 7 * 64 * 128
    p, gr = rng.standard_normal(n, dtype=F32), rng.standard_normal(n, dtype=F32)
    m, v = np.zeros(n, F32), np.zeros(n, F32)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    adam = lambda: K.adam_update(p, gr, m, v, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, step=5)  # noqa
    torch_adam = None
    if torch:
        pt = torch.tensor(p.copy(), requires_grad=True)
        pt.grad = torch.tensor(gr)
        opt = torch.optim.Adam([pt], lr=1e-3)
        torch_adam = opt.step
    rows.append((f"adam_update {n} params (in place)", adam, adam, lambda: np_adam(p2, gr, m2, v2), torch_adam,
                 torch_adam))
    return rows


def measure(fns, repeat, stat, clock=time.perf_counter):
    """Interleave the functions ``repeat`` times; return one summary time (ms) per function."""
    times = [[] for _ in fns]
    for f in fns:
        if f is not None:
            f()                                                                 # compile, warm caches
    for _ in range(repeat):
        for i, f in enumerate(fns):
            if f is not None:
                t = clock()
                f()
                times[i].append(clock() - t)
    pick = min if stat == "min" else statistics.median
    return [1e3 * pick(ts) if ts else float("nan") for ts in times]


def set_threads(n, include_torch: bool = True):
    """``n`` threads for numba, the BLAS libraries (and PyTorch, if installed and ``include_torch``); axon's
    kernels call single-threaded BLAS from numba's threads (one pool). ``mnist_epoch.py`` shares this."""
    import numba
    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)                                                    # both BLAS libraries and OpenMP
    except ImportError:
        pass
    if include_torch:
        try:
            import torch
            torch.set_num_threads(n)
        except ImportError:
            pass
    from axon.kernels import threads
    threads.use_single_threaded_blas()                                          # axon's kernels: one pool


def machine_line(threads: int, load: float) -> str:
    """One line about the machine a table was measured on: CPU, cores, threads, load, versions, date."""
    import datetime
    import platform

    import numba
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import torch
        torch_version = f", PyTorch {torch.__version__}"
    except ImportError:
        torch_version = ""
    return (f"{cpu}, {os.cpu_count()} cores, {threads} thread{'s' if threads > 1 else ''}, load average {load:.1f}; "
            f"numpy {np.__version__}, numba {numba.__version__}{torch_version}; "
            f"{datetime.date.today().isoformat()}")


def write_lines(path, lines) -> None:
    """Write ``lines`` to the text file ``path``, one per line, making its folder if needed (shared)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def write_markdown(path, args, load, results):
    """The table as Markdown: a line about the machine and the settings, then one row per kernel."""
    lines = [f"Measured on {machine_line(args.threads, load)}. {args.stat.capitalize()} of {args.repeat} interleaved "
             f"runs, {args.clock} clock; times in ms; ratios of forward+backward, below 1: axon is faster.",
             "",
             "| kernel | axon fwd | axon f+b | numpy f+b | torch fwd | torch f+b | axon/numpy | axon/torch |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for name, (af, ab, nb, tf, tb) in results:
        cell = name.replace("[", "\\[").replace("]", "\\]")                     # "[no dx]" is text, not a link
        lines.append(f"| {cell} | {af:.3f} | {ab:.3f} | {nb:.3f} | {tf:.3f} | {tb:.3f} | {ab / nb:.2f} | "
                     f"{ab / tb:.2f} |")
    write_lines(path, lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--stat", choices=["median", "min"], default="median")
    parser.add_argument("--only", default="", help="only the rows whose name contains this text")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this thread's CPU time, immune to other processes (needs --threads 1)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table to PATH as Markdown")
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures the calling thread only: use it with --threads 1")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    set_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = [r for r in cases(rng) if args.only in r[0]]
    load = os.getloadavg()[0]                                                   # before our own runs add to it
    print(f"threads {args.threads}, {args.clock} clock, {args.stat} of {args.repeat} interleaved runs, load average "
          f"{load:.1f}; times in ms")
    print(f"{'kernel':44s} {'axon fwd':>9s} {'axon f+b':>9s} {'numpy f+b':>9s} {'torch fwd':>9s} {'torch f+b':>9s}"
          f" {'ax/np':>6s} {'ax/torch':>8s}")
    results = []
    for name, a_fwd, a_both, n_both, t_fwd, t_both in rows:
        af, ab, nb, tf, tb = measure([a_fwd, a_both, n_both, t_fwd, t_both], args.repeat, args.stat, clock)
        print(f"{name:44s} {af:9.3f} {ab:9.3f} {nb:9.3f} {tf:9.3f} {tb:9.3f} {ab / nb:6.2f} {ab / tb:8.2f}")
        results.append((name, (af, ab, nb, tf, tb)))
    if args.markdown:
        write_markdown(args.markdown, args, load, results)
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
