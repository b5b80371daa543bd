"""See the graph a Tensor was made by: one line per Tensor as text, or boxes and arrows as an SVG string.

The Tensors are listed in the order of the engine's own topological sort (``engine.toposort``: each
after its inputs), the order ``backward()`` walks in reverse. Only Tensors that need a gradient are in
the graph; a constant input (data, labels, ``3.0``) is drawn as ``const`` with its shape.

>>> from axon.autograd import Tensor, tanh
>>> x, w = Tensor(2.0, requires_grad=True), Tensor(-0.5, requires_grad=True)
>>> print(draw_graph(tanh(w * x + 1.0), names={"x": x, "w": w}))
x = leaf () float32
w = leaf () float32
%2 = mul(w, x) -> () float32
%3 = add(%2, const()) -> () float32
%4 = tanh(%3) -> () float32
"""
from __future__ import annotations

from html import escape

from .engine import toposort

__all__ = ["draw_graph"]

_BOX_W, _BOX_H, _GAP_X, _GAP_Y = 150, 34, 50, 16       # SVG geometry, in pixels


def _shape(t) -> str:
    return str(tuple(int(n) for n in t.shape))                 # (), (2,), (2, 3)


def _labels(order: list, names: dict | None) -> dict:
    """{id(t): label}: the caller's name for a Tensor, else ``%i`` by its place in the sort."""
    given = {id(t): name for name, t in (names or {}).items()}
    return {id(t): given.get(id(t), f"%{i}") for i, t in enumerate(order)}


def _inputs(t, labels: dict) -> list:
    """The labels of t's inputs: graph Tensors by label, the others as ``const(shape)``."""
    return [labels[id(p)] if id(p) in labels else "const" + _shape(p) for p in t.grad_fn.parents]


def _svg(order: list, labels: dict) -> str:
    """Columns left to right: leaves first, each operation one column right of its deepest input."""
    column, xy, rows, boxes, lines = {}, {}, {}, [], []     # by id(t): column, top-left corner
    for t in order:
        parents = [p for p in (t.grad_fn.parents if t.grad_fn is not None else ()) if id(p) in labels]
        column[id(t)] = 1 + max((column[id(p)] for p in parents), default=-1)
        row = rows[column[id(t)]] = rows.get(column[id(t)], -1) + 1
        x, y = column[id(t)] * (_BOX_W + _GAP_X) + 10, row * (_BOX_H + _GAP_Y) + 10
        xy[id(t)] = x, y
        for p in parents:                                      # an arrow from each input's right edge
            px, py = xy[id(p)]
            lines.append(f'<line x1="{px + _BOX_W}" y1="{py + _BOX_H // 2}" x2="{x}" y2="{y + _BOX_H // 2}" '
                         f'stroke="#555" marker-end="url(#arrow)"/>')
        what = "leaf" if t.grad_fn is None else t.grad_fn.prim.name
        fill = "#e8f0fe" if t.grad_fn is None else "#fff4e0"
        boxes.append(f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6" fill="{fill}" '
                     f'stroke="#555"/><text x="{x + _BOX_W // 2}" y="{y + 21}" text-anchor="middle" '
                     f'font-family="monospace" font-size="12">{escape(f"{labels[id(t)]} = {what} {_shape(t)}")}'
                     f'</text>')
    width = (max(column[id(t)] for t in order) + 1) * (_BOX_W + _GAP_X) - _GAP_X + 20
    height = (max(rows.values()) + 1) * (_BOX_H + _GAP_Y) - _GAP_Y + 20
    arrow = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            + arrow + "".join(lines) + "".join(boxes) + "</svg>")


def draw_graph(root, names: dict | None = None, format: str = "text") -> str:
    """The graph that made ``root``, inputs first: as text (one line per Tensor) or as an SVG string.

    ``names`` maps a name to a Tensor of the graph (``{"x": x}``) to label it; the others are
    ``%i``, their place in the topological sort. ``format="svg"`` gives a drawing (no graphviz needed)
    that a browser or a notebook (``IPython.display.SVG``) shows: leaves on the left, each operation
    one column right of its deepest input.

    >>> from axon.autograd import Tensor
    >>> v = Tensor([1.0, 2.0], requires_grad=True)
    >>> print(draw_graph((v * v).sum()))
    %0 = leaf (2,) float32
    %1 = mul(%0, %0) -> (2,) float32
    %2 = sum(%1) -> () float32
    >>> draw_graph((v * v).sum(), format="svg").startswith("<svg")
    True
    """
    from .tensor import Tensor

    if not isinstance(root, Tensor):
        raise TypeError(f"draw_graph: root must be a Tensor, got {type(root).__name__}")
    if format not in ("text", "svg"):
        raise ValueError(f"draw_graph: format must be 'text' or 'svg', got {format!r}")
    order = toposort(root)
    labels = _labels(order, names)
    if format == "svg":
        return _svg(order, labels)
    lines = []
    for t in order:
        if t.grad_fn is None:
            lines.append(f"{labels[id(t)]} = leaf {_shape(t)} {t.dtype}")
        else:
            args = ", ".join(_inputs(t, labels))
            lines.append(f"{labels[id(t)]} = {t.grad_fn.prim.name}({args}) -> {_shape(t)} {t.dtype}")
    return "\n".join(lines)
