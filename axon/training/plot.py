"""Plot training curves: one panel per metric, training and validation side by side.

Needs matplotlib (``pip install 'axon[plot]'``); without it, ``plot_history`` raises an ImportError
that says so. It draws on its own ``Figure`` (no pyplot, no global state), so it works headless and
never changes the caller's matplotlib backend.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = plot_history({"loss": [0.9, 0.5, 0.4], "val_loss": [0.8, 0.6, 0.55]}, f"{tmp}/curves.png")
...     path.name, path.read_bytes()[1:4]
('curves.png', b'PNG')
"""
from __future__ import annotations

import os
import pathlib

from ..serialization import atomic_write

__all__ = ["plot_history"]


def _panels(history: dict) -> list[str]:
    """Metric names without the ``val_`` prefix, in first-seen order: one panel each."""
    names = []
    for key in history:
        base = key[4:] if key.startswith("val_") else key
        if base not in names:
            names.append(base)
    return names


def plot_history(history, path, title: str | None = None) -> pathlib.Path:
    """Write a PNG of the curves in ``history`` (a ``TrainState`` or its ``history`` dict) to ``path``.

    Each metric gets a panel with its training curve and, if present, its ``val_`` curve, against the
    epoch number. Returns the file written, as a ``pathlib.Path`` (whether ``path`` was a ``str`` or a
    path-like), so the call can be chained or printed.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = plot_history({"loss": [1.0, 0.6], "accuracy": [0.5, 0.8]}, f"{tmp}/run.png", title="demo")
    ...     out.name, out.stat().st_size > 0
    ('run.png', True)
    """
    if hasattr(history, "history") and not isinstance(history, dict):
        history = history.history
    if not isinstance(history, dict) or not history:
        raise ValueError(f"plot_history: expects a non-empty history dict such as state.history, "
                         f"got {type(history).__name__} {history!r:.60}")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError("plot_history needs matplotlib, which is not installed: "
                          "pip install 'axon[plot]' (or pip install matplotlib)") from None
    panels = _panels(history)
    fig = Figure(figsize=(4.5 * len(panels), 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key, label, style in ((name, "train", "-o"), (f"val_{name}", "validation", "--s")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), [float(v) for v in values], style, label=label, markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))     # never a half-written picture
    return pathlib.Path(os.fsdecode(path))
