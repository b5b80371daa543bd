"""Draw the tutorials' figures into tutorials/img/ (they are checked in, so the site shows them).

    python scripts/make_figures.py                  # every figure
    python scripts/make_figures.py tanh_derivatives # just the ones named
    python scripts/make_figures.py --out /tmp/img   # somewhere else (the tests do this)

Each figure is a function below, registered with ``@figure``: it gets a matplotlib module and returns
a Figure, which is saved as ``NAME.png``. The numbers in a figure come from axon itself, so a figure
is also a small demonstration of the API it illustrates.

The MNIST figures of chapter 6 train the example's networks as ``python -m axon.examples.mnist`` does
(the MLP for its default 20 epochs, about a minute on 2 cores; the CNN for 3 epochs, 1 to 4 minutes
depending on the machine's other work), once per run of this script, shared by the figures that use
them. With ``AXON_TUTORIAL_QUICK=1``, which the tests set, they train on a small subset in seconds.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["FIGURES", "figure", "main"]

IMG = Path(__file__).resolve().parents[1] / "tutorials" / "img"
FIGURES: dict = {}


def figure(fn):
    """Register ``fn(plt) -> Figure`` under its name; the name is the PNG's file name."""
    FIGURES[fn.__name__] = fn
    return fn


@figure
def tanh_derivatives(plt):
    """tanh and its first two derivatives, from axon's nested ``grad`` (chapter 1, section 1.9).

    ``grad(f)`` of ``f(x) = sum(tanh(x))`` is tanh'(x) at every point at once (each element only
    touches its own term of the sum); taking ``grad`` of the sum of that gives tanh''(x).
    """
    from axon.autograd import grad, tanh

    x = np.linspace(-4.0, 4.0, 401)                            # (401,) float64
    d1 = grad(lambda x: tanh(x).sum())                         # x -> tanh'(x), elementwise
    d2 = grad(lambda x: d1(x).sum())                           # x -> tanh''(x), elementwise
    curves = [(np.tanh(x), "tanh(x)", "-"), (d1(x), "tanh'(x) = 1 - tanh²(x)", "--"),
              (d2(x), "tanh''(x) = -2 tanh(x) (1 - tanh²(x))", ":")]

    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    for y, label, style in curves:
        ax.plot(x, y, style, linewidth=2, label=label)
    ax.axhline(0, color="0.7", linewidth=0.8)
    ax.axvline(0, color="0.7", linewidth=0.8)
    ax.set_xlabel("x")
    ax.set_title("tanh and two derivatives, computed by grad(grad(...))")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)   # beside the plot
    fig.tight_layout()
    return fig


@figure
def computation_graph(plt):
    """The graph axon records for ``loss = tanh(w * x + b)``, with values and gradients (chapter 1).

    Everything drawn comes from the recorded graph: ``toposort`` lists the Tensors inputs-first,
    each ``_node.parents`` gives the arrows, and ``backprop`` (asked to keep every Tensor) gives the
    gradient of the loss with respect to each of them.
    """
    from axon.autograd import Tensor, backprop, tanh, toposort

    x = Tensor(2.0, requires_grad=True)
    w = Tensor(-0.5, requires_grad=True)
    b = Tensor(0.5, requires_grad=True)
    loss = tanh(w * x + b)
    order = toposort(loss)                                     # inputs first, loss last
    grads = {id(t): g for t, g in backprop(loss, Tensor(1.0), keep=order, retain_graph=True)}  # d loss / d t

    # Leaves in the left column, top to bottom; each operation one column right of its deepest input,
    # at the mean height of its inputs.
    leaf_names = {id(x): "x", id(w): "w", id(b): "b"}
    leaf_rows = {id(x): 0, id(w): -1, id(b): -2}
    pos = {}
    for t in order:
        if t._node is None:
            pos[id(t)] = (0, leaf_rows[id(t)])
        else:
            parents = [pos[id(p)] for p in t._node.parents]
            pos[id(t)] = (1 + max(c for c, _ in parents), sum(r for _, r in parents) / len(parents))

    fig, ax = plt.subplots(figsize=(7.5, 3.0), dpi=110)
    for t in order:
        cx, cy = pos[id(t)]
        for p in (t._node.parents if t._node is not None else ()):
            px, py = pos[id(p)]
            ax.annotate("", xy=(cx - 0.3, cy), xytext=(px + 0.3, py),
                        arrowprops=dict(arrowstyle="->", color="0.35", linewidth=1.2))
        is_leaf = t._node is None
        name = leaf_names[id(t)] if is_leaf else t._node.prim.name
        text = f"{name}\nvalue {float(t.data):.4g}\ngrad {float(grads[id(t)].data):.4g}"
        ax.text(cx, cy, text, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.45", facecolor="#e8f0fe" if is_leaf else "#fff4e0",
                          edgecolor="#4a6fa5" if is_leaf else "#c77d00"))
    ax.set_xlim(-0.5, max(c for c, _ in pos.values()) + 0.5)
    ax.set_ylim(-2.5, 0.5)
    ax.axis("off")
    ax.set_title("loss = tanh(w * x + b): leaves (blue), recorded operations (orange);\n"
                 "values flow left to right, gradients d loss / d node flow back", fontsize=10)
    fig.tight_layout()
    return fig


@figure
def im2col(plt):
    """Convolution as one matrix product: a 4x4 image's 3x3 windows as the rows of a matrix (chapter 2).

    The image holds 0..15; filter 0 sums its window, filter 1 picks the window's centre, so every
    number can be checked by eye. The product is checked against ``axon.kernels.conv``.
    """
    from matplotlib.patches import FancyArrowPatch, Rectangle

    from axon import kernels

    x = np.arange(16.0, dtype=np.float32).reshape(1, 4, 4, 1)         # (N, H, W, C_in)
    w = np.zeros((3, 3, 1, 2), np.float32)                              # (KH, KW, C_in, C_out)
    w[:, :, 0, 0] = 1                                                   # filter 0: the sum of the window
    w[1, 1, 0, 1] = 1                                                   # filter 1: the window's centre
    starts = [(i, j) for i in range(2) for j in range(2)]               # the 2x2 output positions
    cols = np.stack([x[0, i:i + 3, j:j + 3, :].ravel() for i, j in starts])   # (4, 9): one window per row
    y = cols @ w.reshape(9, 2)                                          # (4, 9) @ (9, 2) -> (4, 2)
    assert np.array_equal(y, kernels.conv(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1)).numpy().reshape(4, 2))

    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]               # one per output position
    fig, ax = plt.subplots(figsize=(10, 4.9), dpi=110)                  # the drawing's own aspect ratio

    def grid(x0, y0, values, fill=None):
        """Draw a matrix with its top-left corner at (x0, y0), one unit per cell."""
        for r in range(values.shape[0]):
            for c in range(values.shape[1]):
                ax.add_patch(Rectangle((x0 + c, y0 - r - 1), 1, 1, facecolor=fill(r) if fill else "white",
                                       edgecolor="0.6", linewidth=0.8))
                ax.text(x0 + c + 0.5, y0 - r - 0.5, f"{values[r, c]:g}", ha="center", va="center", fontsize=9)

    grid(0, 4, x[0, :, :, 0])                                           # the image, windows outlined
    for k, (i, j) in enumerate(starts):
        d = 0.06 * (k - 1.5)                                            # offset a little, so all four show
        ax.add_patch(Rectangle((j + 0.1 + d, 1 - i + 0.1 + d), 2.8, 2.8, fill=False, edgecolor=colors[k],
                               linewidth=2))
    ax.text(2, 4.45, "image x (4 x 4, one channel):\nfour 3 x 3 windows", ha="center", va="bottom", fontsize=9)
    ax.add_patch(FancyArrowPatch((4.3, 2), (5.7, 2), arrowstyle="-|>", mutation_scale=15, color="0.3"))
    ax.text(5, 2.25, "im2col", ha="center", va="bottom", fontsize=9)
    grid(6, 3, cols, fill=lambda r: colors[r] + "33")                  # row r: window r, flattened
    ax.text(10.5, 3.45, "cols (4 x 9): one window per row", ha="center", va="bottom", fontsize=9)
    ax.text(15.6, 1, "@", ha="center", va="center", fontsize=16)
    grid(16.2, 5.5, w.reshape(9, 2))
    ax.text(17.2, 5.95, "W (9 x 2):\nsum, centre", ha="center", va="bottom", fontsize=9)
    ax.text(18.9, 1, "=", ha="center", va="center", fontsize=16)
    grid(19.6, 3, y, fill=lambda r: colors[r] + "33")
    ax.text(20.6, 3.45, "y (4 x 2)", ha="center", va="bottom", fontsize=9)
    ax.set_xlim(-0.3, 21.8)
    ax.set_ylim(-3.8, 7.0)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1)
    return fig


@figure
def activations(plt):
    """Six activations and their derivatives, the derivatives from axon's ``grad`` (chapter 3).

    As in ``tanh_derivatives``: ``grad`` of ``x -> sum(f(x))`` is f'(x) at every point at once,
    because each element of the sum depends only on its own x.
    """
    from axon import activations as A
    from axon.autograd import grad

    x = np.linspace(-4.0, 4.0, 801)                            # (801,) float64; no point lands on 0 exactly
    names = ["relu", "sigmoid", "tanh", "softplus", "gelu", "silu"]
    styles = ["-", "--", "-.", ":", "-", "--"]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110, sharex=True)
    for name, style in zip(names, styles):
        f = A.get(name)
        df = grad(lambda x, f=f: f(x).sum())                   # x -> f'(x), elementwise
        left.plot(x, f(x).numpy(), style, linewidth=1.8, label=name)
        right.plot(x, df(x), style, linewidth=1.8, label=name)
    for ax, title in ((left, "f(x)"), (right, "f'(x), computed by axon.grad")):
        ax.axhline(0, color="0.7", linewidth=0.8)
        ax.axvline(0, color="0.7", linewidth=0.8)
        ax.set_xlabel("x")
        ax.set_title(title)
    left.set_ylim(-1.5, 4.0)
    right.set_ylim(-0.2, 1.2)
    right.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)   # beside the plots
    fig.tight_layout()
    return fig


def _rosenbrock(w):
    """(1 - x)² + 100 (y - x²)², minimum 0 at (1, 1): the valley of chapter 5."""
    x, y = w[0], w[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


@figure
def optimizer_paths(plt):
    """Gradient descent, momentum and Adam on the Rosenbrock valley, 1,000 steps each (chapter 5).

    The same optimizers and settings as the chapter's sections 5.1, 5.3 and 5.4, run through the loop
    every optimizer shares: ``updates, state = opt.update(grads, state, w)``, ``w = apply_updates(w, updates)``.
    """
    from axon.autograd import grad
    from axon.optimizers import adam, sgd
    from axon.updates import apply_updates

    def run(opt, steps=1000):
        w = np.array([-1.2, 1.0])
        state = opt.init(w)
        path = [w]
        for _ in range(steps):
            updates, state = opt.update(grad(_rosenbrock)(w), state, w)
            w = apply_updates(w, updates)
            path.append(w)
        return np.array(path)                                  # (steps + 1, 2)

    runs = [("gradient descent, lr 1e-3", run(sgd(1e-3)), "#1f77b4"),
            ("momentum 0.9, lr 1e-3", run(sgd(1e-3, momentum=0.9)), "#d62728"),
            ("Adam, lr 0.1", run(adam(0.1, fused=False)), "#2ca02c")]
    x, y = np.meshgrid(np.linspace(-1.6, 1.6, 400), np.linspace(-0.6, 1.8, 400))   # (400, 400) each
    z = _rosenbrock(np.stack([x, y]))                          # (400, 400)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110)
    left.contour(x, y, np.log10(z + 1e-2), levels=np.linspace(-1, 3, 17), colors="0.75", linewidths=0.7)
    for z_order, (label, path, color) in zip((4, 2, 3), runs):   # gradient descent's short path on top
        left.plot(path[:, 0], path[:, 1], "-", color=color, linewidth=1.2, zorder=z_order)
        left.plot(*path[-1], "o", color=color, markersize=7, markeredgecolor="k", zorder=5)   # after 1,000 steps
        right.semilogy(np.arange(len(path)), _rosenbrock(path.T), color=color, linewidth=1.5, label=label)
    left.plot(-1.2, 1.0, "ks", markersize=5)
    left.annotate("start", (-1.2, 1.0), xytext=(-1.45, 1.3), fontsize=9)
    left.plot(1.0, 1.0, "k*", markersize=11)
    left.annotate("minimum", (1.0, 1.0), xytext=(0.95, 1.3), fontsize=9)
    left.set_xlabel("x")
    left.set_ylabel("y")
    left.set_title("paths on the contours of the Rosenbrock function (dots: after 1,000 steps)", fontsize=10)
    right.set_xlabel("step")
    right.set_ylabel("loss")
    right.set_title("loss, on a log scale", fontsize=10)
    right.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


@figure
def schedules(plt):
    """Six learning-rate schedules from ``axon.schedules`` over 1,000 steps (chapter 5, section 5.10)."""
    from axon import schedules as S

    steps = np.arange(1000)
    panels = [("exponential_decay(1e-3, 0.5,\n    transition_steps=250, staircase=True)",
               S.exponential_decay(1e-3, 0.5, transition_steps=250, staircase=True)),
              ("piecewise_constant([500, 800],\n    [1e-3, 3e-4, 1e-4])", S.piecewise_constant([500, 800], [1e-3, 3e-4, 1e-4])),
              ("cosine_decay(1e-3, decay_steps=1000)", S.cosine_decay(1e-3, decay_steps=1000)),
              ("warmup_cosine_decay(0.0, 1e-3,\n    warmup_steps=100, decay_steps=1000)",
               S.warmup_cosine_decay(0.0, 1e-3, warmup_steps=100, decay_steps=1000)),
              ("one_cycle(1000, 1e-3)", S.one_cycle(1000, 1e-3)),
              ("join_schedules(\n  [linear_decay(0.0, 1e-3, 100), constant(1e-3),\n   linear_decay(1e-3, 0.0, 300)], [100, 700])",
               S.join_schedules([S.linear_decay(0.0, 1e-3, 100), S.constant(1e-3), S.linear_decay(1e-3, 0.0, 300)],
                                [100, 700]))]
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.6), dpi=110, sharex=True, sharey=True)
    for ax, (title, schedule) in zip(axes.ravel(), panels):
        ax.plot(steps, [schedule(s) for s in steps], linewidth=2)
        ax.set_title(title, fontsize=7, family="monospace", loc="left")
        ax.set_ylim(-0.05e-3, 1.1e-3)
        ax.grid(color="0.9")
    for ax in axes[1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("learning rate")
    fig.tight_layout()
    return fig


# ---- chapter 6: MNIST ---------------------------------------------------------------------------------
def _quick() -> bool:
    """Whether to train the MNIST figures' models on a small subset (the tests set AXON_TUTORIAL_QUICK=1)."""
    return os.environ.get("AXON_TUTORIAL_QUICK") == "1"


@functools.lru_cache(maxsize=None)
def _mnist_run(kind: str, epochs: int, quick: bool) -> dict:
    """Train the example's ``kind`` model ("mlp" or "cnn") as ``python -m axon.examples.mnist`` does.

    Cached, so the figures that show one run train it once. Returns the example's results (the final
    ``TrainState`` under "state", the model, the test accuracy) plus the test images and labels.
    """
    from axon.examples import mnist as example

    limit = ["--limit", "2000" if kind == "mlp" else "600"] if quick else []
    results = example.main(["--model", kind, "--epochs", str(1 if quick else epochs), "--verbose", "0", *limit])
    _, _, (x_test, y_test) = example.load_data(kind, int(limit[1]) if quick else None)
    return {**results, "x_test": x_test, "labels": y_test.argmax(axis=1)}   # labels (N,) 0-9


@functools.lru_cache(maxsize=None)
def _mnist_cnn(quick: bool) -> dict:
    """The CNN of chapter 6 after 3 epochs (the example's default is 5), and its test predictions."""
    run = _mnist_run("cnn", 3, quick)
    x, model, params = run["x_test"], run["model"], run["state"].params
    predicted = np.concatenate([model.predict(params, x[i:i + 1000]).argmax(axis=1)   # in batches:
                                for i in range(0, len(x), 1000)])                     # im2col is big
    return {**run, "predicted": predicted}                     # predicted: (N,) 0-9


@figure
def mnist_digits(plt):
    """The first 40 MNIST training images with their labels (chapter 6, section 6.1)."""
    from axon.datasets import mnist

    x, y = mnist.load("train", flatten=False, one_hot=False)   # (60000, 28, 28, 1), (60000,)
    fig, axes = plt.subplots(4, 10, figsize=(9, 4.2), dpi=110)
    for i, ax in enumerate(axes.ravel()):
        ax.imshow(x[i, :, :, 0], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(str(y[i]), fontsize=10)
        ax.axis("off")
    fig.suptitle("mnist.load('train'): the first 40 images and their labels", fontsize=10)
    fig.tight_layout()
    return fig


@figure
def mnist_curves(plt):
    """``plot_history`` of the MLP's full run: 20 epochs, the example's defaults (chapter 6, section 6.7).

    ``plot_history`` writes a PNG itself; its pixels are put, one for one, on a figure of the same
    size, which ``main`` then saves like every other figure.
    """
    from axon.training import plot_history

    run = _mnist_run("mlp", 20, _quick())
    title = (f"python -m axon.examples.mnist: the MLP, {run['state'].epoch} epochs, "
             f"test accuracy {100 * run['test_accuracy']:.2f}%")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "curves.png")
        plot_history(run["state"].history, path, title=title)
        pixels = plt.imread(path)                              # (H, W, 4) floats in [0, 1]
    dpi = 100                                                  # plot_history's own resolution
    fig = plt.figure(figsize=(pixels.shape[1] / dpi, pixels.shape[0] / dpi), dpi=dpi)
    fig.figimage(pixels)
    return fig


@figure
def mnist_conv_filters(plt):
    """The 32 filters of the CNN's first convolution and their responses to one test digit (section 6.8).

    The responses are the output of the model's first relu, ``relu_0``: the sub-graph that ends
    there is a model of its own, run with the trained params.
    """
    run = _mnist_cnn(_quick())
    model, params = run["model"], run["state"].params
    kernel = params["conv_0"]["kernel"]                        # (3, 3, 1, 32)
    digit = run["x_test"][:1]                                  # (1, 28, 28, 1), a 7
    relu_0 = model.nodes()[2]
    responses = relu_0.predict(params, digit)[0]               # (26, 26, 32)

    fig = plt.figure(figsize=(11, 3.0), dpi=110)
    left, right = fig.subfigures(1, 2, width_ratios=[1.2, 10])
    ax = left.subplots()
    ax.imshow(digit[0, :, :, 0], cmap="gray_r")
    ax.set_title(f"the input:\na test digit ({run['labels'][0]})", fontsize=9)
    ax.axis("off")
    axes = right.subplots(4, 16, gridspec_kw={"wspace": 0.08, "hspace": 0.08})   # filter above its response
    for c in range(32):
        row, col = 2 * (c // 16), c % 16
        w = kernel[:, :, 0, c]                                 # (3, 3)
        limit = float(np.abs(w).max())
        axes[row, col].imshow(w, cmap="RdBu_r", vmin=-limit, vmax=limit)   # each filter on its own scale
        axes[row + 1, col].imshow(responses[:, :, c], cmap="magma")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for row, label in enumerate(["filter", "response", "filter", "response"]):
        axes[row, 0].set_ylabel(label, fontsize=8)
    right.suptitle("the 32 filters of conv_0 (3 x 3; red: positive weights, blue: negative) and, below each, "
                   "its response relu(conv), 26 x 26", fontsize=9)
    return fig


@figure
def mnist_confusion(plt):
    """The CNN's confusion matrix on the test images, errors only (chapter 6, section 6.9)."""
    run = _mnist_cnn(_quick())
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (run["labels"], run["predicted"]), 1)  # row: true digit, column: predicted
    errors = confusion.astype(float)
    np.fill_diagonal(errors, np.nan)                           # the diagonal is drawn as text only

    fig, ax = plt.subplots(figsize=(5.8, 5.0), dpi=110)
    image = ax.imshow(errors, cmap="Reds", vmin=0)
    for i in range(10):
        for j in range(10):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                        color="0.55" if i == j else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    wrong = int((run["predicted"] != run["labels"]).sum())
    ax.set_title(f"CNN, {run['state'].epoch} epochs: {wrong} errors in {len(run['labels']):,} test images\n"
                 "(grey: correct answers, on the diagonal)", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="errors")
    fig.tight_layout()
    return fig


@figure
def mnist_misclassified(plt):
    """Test digits the CNN gets wrong, with the predicted and the true label (chapter 6, section 6.9)."""
    run = _mnist_cnn(_quick())
    wrong = np.flatnonzero(run["predicted"] != run["labels"])[:32]   # the first (up to) 32 mistakes
    fig, axes = plt.subplots(4, 8, figsize=(9, 5.2), dpi=110)
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(run["x_test"][i, :, :, 0], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"said {run['predicted'][i]}, is {run['labels'][i]}", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"The first {len(wrong)} test images the CNN ({run['state'].epoch} epochs) gets wrong",
                 fontsize=10)
    fig.tight_layout()
    return fig


def main(argv=None) -> list:
    """Draw the figures named in ``argv`` (all by default); return the paths written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"figures to draw (default: all of {sorted(FIGURES)})")
    parser.add_argument("--out", type=Path, default=IMG, help="folder for the PNG files (default: tutorials/img)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; known: {sorted(FIGURES)}")

    import matplotlib
    matplotlib.use("Agg")                                      # files only, no window
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in args.names or FIGURES:
        fig = FIGURES[name](plt)
        path = args.out / f"{name}.png"
        fig.savefig(path, metadata={"Software": None})         # no version stamp: reruns give the same bytes
        plt.close(fig)
        written.append(path)
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
