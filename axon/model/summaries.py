"""Inspecting a model: the summary table and a Mermaid/Graphviz description of the graph.

>>> import axon
>>> model = axon.input((None, 784)).dense(128).dense(10, activation="softmax")
>>> print(axon.summary(model))
+---------------------+-----------+--------------+------------+
| Layer               | Inputs    | Output shape | Parameters |
+---------------------+-----------+--------------+------------+
| input (input)       | []        | (None, 784)  | 0          |
| dense_0 (dense)     | [input]   | (None, 128)  | 100,480    |
| dense_1 (dense)     | [dense_0] | (None, 10)   | 1,290      |
| softmax_0 (softmax) | [dense_1] | (None, 10)   | 0          |
+---------------------+-----------+--------------+------------+
Total parameters: 101,770 (397.54 KB)
"""
from __future__ import annotations

import numpy as np

from .graph import Axon, _infer_shape

__all__ = ["summary", "summary_table", "as_graph", "count_params"]


def count_params(model: Axon) -> dict:
    """Parameter counts over the whole model: ``{"total", "trainable", "state", "frozen", "bytes"}`` (float32).

    >>> import axon
    >>> model = axon.input((None, 4)).dense(3).batch_norm()     # 4*3 + 3, then gamma, beta + mean, var
    >>> axon.count_params(model)
    {'total': 27, 'trainable': 21, 'state': 6, 'frozen': 0, 'bytes': 108}
    """
    counts = {"total": 0, "trainable": 0, "state": 0, "frozen": 0}
    for node in model.nodes():
        for spec in node.params.values():
            n = int(np.prod(spec.shape))
            kind = "state" if spec.kind == "state" else "frozen" if spec.frozen else "trainable"
            counts[kind] += n
            counts["total"] += n
    counts["bytes"] = 4 * counts["total"]
    return counts


def _shapes_for(model: Axon, input_shapes) -> dict:
    """Output shape of every node, re-inferred for concrete ``input_shapes`` when given."""
    nodes = model.nodes()
    if input_shapes is None:
        return {n.id: n.shape for n in nodes}
    names = model.names()
    inputs = model.inputs()
    if not isinstance(input_shapes, dict):
        input_shapes = {names[inputs[0].id]: tuple(input_shapes)} if len(inputs) == 1 else \
            dict(zip((names[n.id] for n in inputs), input_shapes))
    shapes = {}
    for node in nodes:
        if node.op == "input":
            shapes[node.id] = tuple(input_shapes.get(names[node.id], node.shape))
        elif node.op == "container":
            shapes[node.id] = node.shape
        else:
            in_shapes = [shapes[p.id] for p in node.parents]
            shapes[node.id] = _infer_shape(node.op, node.fn, in_shapes, dict(node.params), dict(node.opts),
                                           node.uses, lambda: ", ".join(f"{names[p.id]} {shapes[p.id]}"
                                                                        for p in node.parents))
    return shapes


def summary_table(model: Axon, input_shapes=None) -> str:
    """The table ``print(model)`` shows: layer (name and op), inputs, output shape, parameter count.

    A last line says how many parameters are state or frozen, when some are.

    >>> import axon
    >>> from axon.model.summaries import summary_table
    >>> model = axon.input((None, 4)).dense(3).batch_norm()
    >>> print(summary_table(model))                              # the same as print(model)
    +---------------------------+-----------+--------------+------------+
    | Layer                     | Inputs    | Output shape | Parameters |
    +---------------------------+-----------+--------------+------------+
    | input (input)             | []        | (None, 4)    | 0          |
    | dense_0 (dense)           | [input]   | (None, 3)    | 15         |
    | batch_norm_0 (batch_norm) | [dense_0] | (None, 3)    | 12         |
    +---------------------------+-----------+--------------+------------+
    Total parameters: 27 (0.11 KB)
    Trainable: 21, state: 6, frozen: 0
    """
    names = model.names()
    shapes = _shapes_for(model, input_shapes)
    rows = []
    for node in model.nodes():
        n = sum(int(np.prod(s.shape)) for s in node.params.values())
        rows.append((f"{names[node.id]} ({node.op})", "[" + ", ".join(names[p.id] for p in node.parents) + "]",
                     str(shapes[node.id]), f"{n:,}"))
    header = ("Layer", "Inputs", "Output shape", "Parameters")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r):
        return "|" + "|".join(f" {c:<{w}} " for c, w in zip(r, widths)) + "|"
    c = count_params(model)
    footer = [f"Total parameters: {c['total']:,} ({c['bytes'] / 1024:,.2f} KB)"]
    if c["trainable"] != c["total"]:                           # say what training will not update
        footer.append(f"Trainable: {c['trainable']:,}, state: {c['state']:,}, frozen: {c['frozen']:,}")
    return "\n".join([line, fmt(header), line, *map(fmt, rows), line, *footer])


def summary(model: Axon, input_shapes=None) -> str:
    """The summary table as a string (``print`` it); ``input_shapes`` re-infers shapes for concrete inputs.

    >>> import axon
    >>> model = axon.input((None, 4)).dense(3, activation="relu")
    >>> print(axon.summary(model, input_shapes=(32, 4)))         # a batch of 32
    +-----------------+-----------+--------------+------------+
    | Layer           | Inputs    | Output shape | Parameters |
    +-----------------+-----------+--------------+------------+
    | input (input)   | []        | (32, 4)      | 0          |
    | dense_0 (dense) | [input]   | (32, 3)      | 15         |
    | relu_0 (relu)   | [dense_0] | (32, 3)      | 0          |
    +-----------------+-----------+--------------+------------+
    Total parameters: 15 (0.06 KB)
    """
    return summary_table(model, input_shapes)


def as_graph(model: Axon, format: str = "mermaid") -> str:
    """The model's DAG as Mermaid (``flowchart``) or Graphviz (``dot``) text, for docs and notebooks.

    >>> import axon
    >>> print(axon.as_graph(axon.input((None, 4)).dense(3)))
    flowchart TD
        n0["input (input)<br/>(None, 4)"]
        n1["dense_0 (dense)<br/>(None, 3)"]
        n0 --> n1
    >>> axon.as_graph(axon.input((None, 4)).dense(3), format="dot").splitlines()[0]
    'digraph model {'
    """
    names = model.names()
    nodes = model.nodes()
    index = {n.id: i for i, n in enumerate(nodes)}             # n0, n1, ... in graph order: stable text
    if format == "mermaid":
        lines = ["flowchart TD"]
        lines += [f'    n{index[n.id]}["{names[n.id]} ({n.op})<br/>{n.shape}"]' for n in nodes]
        lines += [f"    n{index[p.id]} --> n{index[n.id]}" for n in nodes for p in n.parents]
    elif format == "dot":
        lines = ["digraph model {", "    node [shape=box];"]
        lines += [f'    n{index[n.id]} [label="{names[n.id]} ({n.op})\\n{n.shape}"];' for n in nodes]
        lines += [f"    n{index[p.id]} -> n{index[n.id]};" for n in nodes for p in n.parents]
        lines.append("}")
    else:
        raise ValueError(f"as_graph: format must be 'mermaid' or 'dot', got {format!r}")
    return "\n".join(lines)
