"""axon.draw_graph: the recorded graph as text and as SVG, walked in the engine's topological order."""
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import axon
from axon.autograd import Tensor, tanh, toposort
from axon.autograd import draw


def _graph(seed=0):
    rng = np.random.default_rng(seed)
    W = Tensor(rng.standard_normal((2, 3)).astype(np.float32), requires_grad=True)
    v = Tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    y = tanh(W @ v).sum() + (v * v).sum() * 0.5                 # v used twice, a constant 0.5
    return W, v, y


def test_text_one_line_per_tensor_in_toposort_order():
    W, v, y = _graph()
    order = toposort(y)
    lines = axon.draw_graph(y, names={"W": W, "v": v}).split("\n")
    assert len(lines) == len(order)
    labels = [line.split(" = ")[0] for line in lines]
    assert labels[-1] == f"%{len(order) - 1}"                   # the root is last
    for t, label, line in zip(order, labels, lines):
        if t.is_leaf:
            assert line == f"{label} = leaf {tuple(t.shape)} float32"
        else:
            op, args = line.split(" = ")[1].split(" -> ")[0].rstrip(")").split("(", 1)
            assert op == t.grad_fn.prim.name
            for p, arg in zip(t.grad_fn.parents, args.split(", ")):
                if p.requires_grad:                             # an earlier line, by its label
                    assert arg == labels[[id(q) for q in order].index(id(p))]
                    assert labels.index(arg) < labels.index(label)
                else:
                    assert arg.startswith("const(")
    assert {"W", "v"} <= set(labels)


def test_text_exact_small_graph():
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor(np.ones((3, 2), np.float32))                     # a constant, broadcast against x
    assert axon.draw_graph((x * c).sum(), names={"x": x}) == (
        "x = leaf (2,) float32\n"
        "%1 = mul(x, const(3, 2)) -> (3, 2) float32\n"
        "%2 = sum(%1) -> () float32")
    assert axon.draw_graph(x) == "%0 = leaf (2,) float32"     # a leaf alone


def test_uses_the_engines_toposort(monkeypatch):
    W, v, y = _graph()
    calls = []
    monkeypatch.setattr(draw, "toposort", lambda root: calls.append(root) or toposort(root))
    draw.draw_graph(y)
    draw.draw_graph(y, format="svg")
    assert calls == [y, y]


def test_svg_boxes_and_arrows():
    W, v, y = _graph()
    order = toposort(y)
    root = ET.fromstring(axon.draw_graph(y, names={"W": W}, format="svg"))
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert len(list(root.iter(f"{ns}rect"))) == len(texts) == len(order)
    assert "W = leaf (2, 3)" in texts and texts[-1] == f"%{len(order) - 1} = add ()"
    edges = sum(p.requires_grad for t in order if not t.is_leaf for p in t.grad_fn.parents)
    assert len(list(root.iter(f"{ns}line"))) == edges
    for line in root.iter(f"{ns}line"):                         # arrows point right: inputs come first
        assert float(line.get("x2")) > float(line.get("x1"))


def test_long_chain_and_errors():
    x = Tensor(1.0, requires_grad=True)
    h = x
    for _ in range(10_000):                                     # no recursion limit
        h = h + 1.0
    assert len(axon.draw_graph(h).split("\n")) == 10_001
    with pytest.raises(TypeError, match="root must be a Tensor"):
        axon.draw_graph(np.ones(2))
    with pytest.raises(ValueError, match="format must be 'text' or 'svg', got 'png'"):
        axon.draw_graph(h, format="png")
    y = (x * x).sum()
    y.backward()                                                # frees the graph
    with pytest.raises(RuntimeError, match="freed"):
        axon.draw_graph(y)
