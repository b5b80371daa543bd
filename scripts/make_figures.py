"""Draw the tutorials' figures into tutorials/img/ (they are checked in, so the site shows them).

    python scripts/make_figures.py                  # every figure
    python scripts/make_figures.py tanh_derivatives # just the ones named
    python scripts/make_figures.py --out /tmp/img   # somewhere else (the tests do this)

Each figure is a function below, registered with ``@figure``: it gets a matplotlib module and returns
a Figure, which is saved as ``NAME.png``. The numbers in a figure come from axon itself, so a figure
is also a small demonstration of the API it illustrates. Figures still to come, as their APIs land:
training curves of the MNIST MLP and CNN, a grid of misclassified digits, the first conv layer's filters.
"""
from __future__ import annotations

import argparse
import sys
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
    grads = backprop(loss, Tensor(1.0), keep=order, retain_graph=True)  # {id(t): d loss / d t}

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
