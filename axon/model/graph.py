"""A model is data: a small graph of immutable nodes, built by chaining.

Each ``Axon`` node records its op, its parent nodes, the specs of its parameters, its options and its
output shape, inferred when the node is built. The output node *is* the model: everything it depends
on is reachable through ``parents``.

>>> import axon
>>> model = axon.input((None, 784)).dense(128).dense(10, activation="softmax")
>>> [(n.op, n.shape) for n in model.nodes()]
[('input', (None, 784)), ('dense', (None, 128)), ('dense', (None, 10)), ('softmax', (None, 10))]
"""
from __future__ import annotations

import contextlib
import contextvars
import itertools
import numbers
from collections import Counter
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, NamedTuple

import numpy as np

from ..autograd import Tensor, no_grad

__all__ = ["Axon", "ParamSpec", "param", "input", "layer", "nx", "item", "constant", "container", "freeze",
           "unfreeze"]

_ids = itertools.count()
_GIVEN_SHAPE = contextvars.ContextVar("axon_given_shape", default=None)   # (shape,) while rebuilding a saved node
_INFERRING = contextvars.ContextVar("axon_inferring", default=False)      # True while a layer runs on zeros


class ParamSpec(NamedTuple):
    """What a layer's parameter is: its shape, how to initialize it, and whether training updates it.

    ``kind`` is ``"param"`` (trained) or ``"state"`` (updated by the layer itself, e.g. batch-norm
    running statistics); ``frozen`` params are kept fixed by the training step.

    >>> import axon
    >>> axon.param((3, 2))
    ParamSpec(shape=(3, 2), initializer='glorot_uniform', kind='param', frozen=False)
    >>> axon.input((None, 4)).batch_norm().params["mean"].kind
    'state'
    """
    shape: tuple
    initializer: object = "glorot_uniform"
    kind: str = "param"
    frozen: bool = False


def param(shape, initializer="glorot_uniform", kind="param") -> ParamSpec:
    """A parameter spec for ``axon.layer``: ``axon.param((784, 10), initializer="zeros")``.

    >>> import axon
    >>> axon.param((784, 10), initializer="zeros")
    ParamSpec(shape=(784, 10), initializer='zeros', kind='param', frozen=False)
    """
    if kind not in ("param", "state"):
        raise ValueError(f"param: kind must be 'param' or 'state', got {kind!r}")
    return ParamSpec(tuple(int(n) for n in shape), initializer, kind)


@dataclass(frozen=True, eq=False)
class Axon:
    """One node of a model graph (and, as the output node, the model itself).

    ``fn(*inputs, **params, **opts)`` computes the node from its parents' values and its params;
    when ``uses`` contains ``"training"`` or ``"key"`` those are passed too, and a node with
    ``"state"`` params returns ``(y, new_state)`` while training.

    Methods: the graph walks below; every builder (``x.dense(128)``, listed ``Axon.dense = dense`` at the
    end of ``builders.py``); the run functions and graph tools (``model.init()``, in ``model/__init__.py``).

    >>> import axon
    >>> model = axon.input((None, 3)).dense(2)
    >>> model
    Axon(op='dense', name=None, shape=(None, 2))
    >>> [n.op for n in model.nodes()], list(model.names().values())
    (['input', 'dense'], ['input', 'dense_0'])
    """
    id: int
    name: str | None
    op: str
    parents: tuple
    params: MappingProxyType
    opts: MappingProxyType
    shape: object
    fn: Callable | None = field(default=None, repr=False)
    uses: frozenset = frozenset()

    # -- the graph ----------------------------------------------------------------------------------
    def nodes(self) -> list["Axon"]:
        """Every node this one depends on, itself last, each after its parents (iterative DFS)."""
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
            elif node.id not in visited:
                visited.add(node.id)
                stack.append((node, True))
                stack.extend((p, False) for p in reversed(node.parents) if p.id not in visited)
        return order

    def names(self) -> dict[int, str]:
        """``{node id: unique name}``: user-given names, else ``op_k`` counted per op in graph order."""
        nodes = self.nodes()
        given = [n.name for n in nodes if n.name is not None]
        dupes = sorted(g for g, k in Counter(given).items() if k > 1)
        if dupes:
            raise ValueError(f"layer names must be unique within a model; repeated: {dupes}")
        counts, taken, names = {}, set(given), {}
        for node in nodes:
            name = node.name
            while name is None or (node.name is None and name in taken):
                k = counts.get(node.op, 0)
                counts[node.op] = k + 1
                name = f"{node.op}_{k}"
            taken.add(name)
            names[node.id] = name
        return names

    def inputs(self) -> list["Axon"]:
        """The model's input nodes, in graph order."""
        return [n for n in self.nodes() if n.op == "input"]

    def map_nodes(self, fn) -> "Axon":
        """A new graph with ``fn(node)`` applied to every node (parents rewired to the new nodes)."""
        new = {}
        for node in self.nodes():
            parents = tuple(new[p.id] for p in node.parents)
            new[node.id] = fn(replace(node, parents=parents))
        return new[self.id]

    def __repr__(self):
        return f"Axon(op={self.op!r}, name={self.name!r}, shape={self.shape})"

    def __str__(self):
        from .summaries import summary_table
        return summary_table(self)

    def __getitem__(self, index) -> "Axon":
        """Part ``index`` of a tuple-valued node (a key of a dict-valued one), as a node of its own.

        An LSTM's carry is one node holding ``(c, h)``; ``carry[1]`` is h, and ``c, h = carry`` unpacks
        it, as Axon's ``{seq, {cell, hidden}}``. A node of one value cannot be indexed (a TypeError).

        >>> import axon
        >>> seq, carry = axon.input((None, 6, 3)).lstm(5)
        >>> c, h = carry
        >>> h.shape, carry[1].op, h.dense(2).shape             # the hidden state feeds a classifier
        ((None, 5), 'item', (None, 2))
        """
        return item(self, index)

    # combinators as operators: a + b, a - b, a * b
    def __add__(self, other): return _combine("add", [self, other])
    def __sub__(self, other): return _combine("subtract", [self, other])
    def __mul__(self, other): return _combine("multiply", [self, other])


# ---- building nodes ------------------------------------------------------------------------------------
def _zeros(shape, fill):
    if shape and isinstance(shape[0], tuple):                 # a tuple-valued node: (seq, carry), say
        return tuple(_zeros(s, fill) for s in shape)
    return np.zeros(tuple(fill if n is None else n for n in shape), dtype=np.float32)


def _infer_shape(op, fn, in_shapes, params, opts, uses, describe):
    """Output shape by running ``fn`` on zeros, twice: axes that follow the batch size come out None.

    ``describe()`` names the inputs for the error message when the layer does not fit them.
    """
    ps = {k: np.zeros(spec.shape, np.float32) for k, spec in params.items()}
    extra = {k: v for k, v in (("training", False), ("key", 0)) if k in uses}
    outs = []
    for fill in (1, 2):                                        # only the batch size changes between runs
        xs = [_zeros(shape, fill) for shape in in_shapes]
        token = _INFERRING.set(True)
        try:
            with no_grad():
                y = fn(*xs, **ps, **opts, **extra)
        except (ValueError, IndexError) as e:                  # a shape mismatch: say which layer and inputs
            raise ValueError(f"{op} layer cannot be applied to {describe()}: {e}") from e
        except TypeError as e:                                 # a wrong type of option or input, likewise
            raise TypeError(f"{op} layer cannot be applied to {describe()}: {e}") from e
        # anything else (an ImportError, a bug in a custom layer) propagates with its own message
        finally:
            _INFERRING.reset(token)
        outs.append(_shape_of(y))
    return _merge_shapes(op, *outs)


def inferring_shapes() -> bool:
    """True while a layer runs on float32 zeros to find its output shape (a mask's value is then zeros too).

    >>> import axon
    >>> seen = []
    >>> _ = axon.nx(axon.input((None, 2)), lambda t: seen.append(inferring_shapes()) or t)
    >>> seen, inferring_shapes()
    ([True, True], False)
    """
    return _INFERRING.get()


def _shape_of(y):
    """The shape of a layer's output; a tuple of shapes for a tuple of outputs (a recurrent layer's (y, carry))."""
    if isinstance(y, (tuple, list)):
        return tuple(_shape_of(v) for v in y)
    return np.shape(y.data if isinstance(y, Tensor) else y)


def _merge_shapes(op, one, two):
    """The two runs' shapes, with None on the axes that followed the batch size (nested like the outputs)."""
    if one and isinstance(one[0], tuple):
        return tuple(_merge_shapes(op, a, b) for a, b in zip(one, two))
    if len(one) != len(two):
        raise ValueError(f"{op}: output rank depends on the batch size ({one} vs {two})")
    return tuple(None if a != b else a for a, b in zip(one, two))


def _describe(parents) -> str:
    """``'dense_0' (None, 128), 'dense_1' (None, 10)``: the parents' names (as one graph) and shapes."""
    if not parents:
        return "no inputs"
    names = _pending(parents).names()
    return ", ".join(f"'{names[p.id]}' {p.shape}" for p in parents)


def _pending(parents) -> Axon:
    """A placeholder node joining ``parents``, to name them (and check names) as one graph."""
    return Axon(-1, "<pending>", "pending", tuple(parents), MappingProxyType({}), MappingProxyType({}), None)


def _node(op, parents, fn, params=None, opts=None, name=None, uses=(), shape=None) -> Axon:
    """Make a node: check the parents, infer the output shape, freeze the record."""
    parents = tuple(parents)
    for p in parents:
        if not isinstance(p, Axon):
            raise TypeError(f"{op}: inputs must be model nodes (axon.input(...), a layer), got {type(p).__name__}")
    params = dict(params or {})
    opts = dict(opts or {})
    uses = frozenset(uses)
    given = _GIVEN_SHAPE.get()
    if shape is None and given is not None:
        shape = given[0]                                       # rebuilding a saved model: run no layer code
    if shape is None:
        shape = _infer_shape(op, fn, [p.shape for p in parents], params, opts, uses, lambda: _describe(parents))
    node = Axon(next(_ids), name, op, parents, MappingProxyType(params), MappingProxyType(opts), shape, fn, uses)
    node.names()                                              # a repeated name fails here, at the line that built it
    return node


@contextlib.contextmanager
def given_shape(shape):
    """Inside this block, nodes take ``shape`` as their output shape instead of running their layer on zeros.

    ``axon.load`` rebuilds each saved node through its builder in such a block, with the shape the
    file records, so loading never runs a layer (a file cannot make it compute or allocate).

    >>> import axon
    >>> with given_shape((None, 7)):                        # the recorded shape is taken as it is
    ...     axon.input((None, 4)).dense(3).shape
    (None, 7)
    """
    token = _GIVEN_SHAPE.set((shape,))
    try:
        yield
    finally:
        _GIVEN_SHAPE.reset(token)


def input(shape, name="input", optional=False) -> Axon:
    """A model input; ``None`` marks the batch axis (or any axis whose size varies).

    ``optional=True`` (Axon's ``optional: true``): the input may be left out when the model runs;
    the layers that depend on it then give None, unless ``axon.optional``/``axon.or_else`` handle it.

    >>> input((None, 28, 28, 1)).shape
    (None, 28, 28, 1)
    """
    shape = _input_shape(shape)
    opts = {"shape": shape, "optional": True} if optional else {"shape": shape}
    return _node("input", [], None, opts=opts, name=name, shape=shape)


def _input_shape(shape) -> tuple:
    """``shape`` as a tuple of ints >= 0 and Nones, else a TypeError/ValueError naming it."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"input: shape must be a tuple of ints (None for the batch axis), got {shape!r}")
    shape = tuple(shape)
    for n in shape:
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral)):
            raise TypeError(f"input: shape must be a tuple of ints (None for the batch axis), got {shape!r}")
        if n is not None and n < 0:
            raise ValueError(f"input: shape sizes must be >= 0, got {shape!r}")
    return tuple(None if n is None else int(n) for n in shape)


def constant(value, name=None) -> Axon:
    """A node that always outputs ``value`` (an array), e.g. a fixed mask or positional table.

    A list becomes float32; an array keeps its dtype.

    >>> import axon, numpy as np
    >>> x = axon.input((None, 2))
    >>> model = x + axon.constant([10.0, 20.0])              # (None, 2) + (2,) broadcasts
    >>> axon.predict(model, {}, np.array([[1.0, 2.0]], np.float32))
    array([[11., 22.]], dtype=float32)
    """
    value = np.asarray(value, dtype=np.float32) if not isinstance(value, np.ndarray) else value
    return _node("constant", [], lambda value: Tensor._wrap(value), opts={"value": value}, name=name,
                 shape=value.shape)


def layer(fn, inputs, params=None, name=None, op_name="custom", **opts) -> Axon:
    """A custom layer with trainable parameters: ``fn(*inputs, **params, **opts)``.

    >>> import axon
    >>> x = axon.input((None, 3))
    >>> y = axon.layer(lambda x, w: x @ w, [x], params={"w": axon.param((3, 2))}, name="proj")
    >>> y.shape
    (None, 2)
    """
    inputs = [inputs] if isinstance(inputs, Axon) else list(inputs)
    specs = {}
    for k, spec in (params or {}).items():
        if not isinstance(spec, ParamSpec):
            raise TypeError(f"layer: params['{k}'] must be axon.param(shape, initializer), got {type(spec).__name__}")
        specs[k] = spec
    return _node(op_name, inputs, fn, specs, opts, name)


def nx(x, fn, name=None, op_name="nx") -> Axon:
    """Wrap any function of tensors without parameters as a layer: ``axon.nx(x, lambda t: t * 2)``.

    >>> import axon, numpy as np
    >>> model = axon.nx(axon.input((None, 2)), lambda t: t * 2)
    >>> model.op, axon.predict(model, {}, np.array([[1.0, -3.0]], np.float32))
    ('nx', array([[ 2., -6.]], dtype=float32))
    """
    inputs = [x] if isinstance(x, Axon) else list(x)
    return _node(op_name, inputs, fn, name=name)


def _part(y, index):
    return y[index]


def item(x: Axon, index, name=None) -> Axon:
    """The node ``x[index]``: part ``index`` of a tuple-valued node (an int), or a key of a dict-valued one.

    >>> import axon
    >>> pair = axon.container((axon.input((None, 2), name="a"), axon.input((None, 3), name="b")))
    >>> item(pair, 1).shape, item(pair, -2).shape
    ((None, 3), (None, 2))
    >>> item(axon.input((None, 2)), 0)
    Traceback (most recent call last):
    ...
    TypeError: item: only a node holding several values (a tuple such as an LSTM's carry (c, h), a container) ...
    """
    shape = x.shape
    if isinstance(shape, dict):
        if index not in shape:
            raise KeyError(f"item: {x.op!r} holds the keys {list(shape)}, got {index!r}")
    elif shape and isinstance(shape[0], (tuple, dict)):         # a tuple of values (each a shape, or nested)
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"item: index must be an int for a tuple of {len(shape)} values, got {index!r}")
        if not -len(shape) <= index < len(shape):
            raise IndexError(f"item: index {index} is out of range for {x.op!r}, a tuple of {len(shape)} values")
        index = int(index) % len(shape)
    else:
        raise TypeError(f"item: only a node holding several values (a tuple such as an LSTM's carry (c, h), a "
                        f"container) can be indexed; {x.op!r} has one value of shape {shape}")
    return _node("item", [x], _part, opts={"index": index}, name=name)


def container(outputs, name=None) -> Axon:
    """Several outputs as one model: ``axon.container({"logits": a, "aux": b})`` (a dict, list or tuple).

    >>> import axon, numpy as np
    >>> h = axon.input((None, 4)).dense(3)
    >>> model = axon.container({"logits": h, "probs": h.softmax()})
    >>> out = axon.predict(model, axon.init(model), np.ones((2, 4), np.float32))
    >>> {k: v.shape for k, v in out.items()}
    {'logits': (2, 3), 'probs': (2, 3)}
    """
    if isinstance(outputs, dict):
        keys, nodes = list(outputs), list(outputs.values())
        shape = {k: n.shape for k, n in outputs.items()}
    else:
        keys, nodes = None, list(outputs)
        shape = tuple(n.shape for n in nodes)
    return _node("container", nodes, _Pack(keys, type(outputs)), name=name, shape=shape)


class _Pack:
    """The container's function: pack its inputs into the dict/list/tuple the user gave."""
    def __init__(self, keys, kind):
        self.keys, self.kind = keys, kind

    def __call__(self, *xs):
        if self.keys is not None:
            return dict(zip(self.keys, xs))
        return self.kind(xs)                                   # a list or a tuple


def _combine(op, nodes):
    from .builders import add, multiply, subtract
    return {"add": add, "subtract": subtract, "multiply": multiply}[op](nodes)


def _set_frozen(model: Axon, layers, frozen: bool) -> Axon:
    names = model.names()
    wanted = None if layers is None else set(layers)
    if wanted is not None:
        unknown = wanted - set(names.values())
        if unknown:
            raise ValueError(f"freeze: no layers named {sorted(unknown)}; the model has {sorted(names.values())}")

    def fn(node):
        if not node.params or (wanted is not None and names[node.id] not in wanted):
            return node
        specs = {k: s._replace(frozen=frozen) if s.kind == "param" else s for k, s in node.params.items()}
        return replace(node, params=MappingProxyType(specs))
    return model.map_nodes(fn)


def freeze(model: Axon, layers=None) -> Axon:
    """A copy of ``model`` whose params in ``layers`` (names; all when None) are not trained.

    >>> import axon
    >>> model = axon.input((None, 4)).dense(3, name="body").dense(2, name="head")
    >>> frozen = axon.freeze(model, ["body"])               # fine-tune the head only
    >>> axon.count_params(frozen)
    {'total': 23, 'trainable': 8, 'state': 0, 'frozen': 15, 'bytes': 92}
    """
    return _set_frozen(model, layers, True)


def unfreeze(model: Axon, layers=None) -> Axon:
    """A copy of ``model`` whose params in ``layers`` (all when None) are trained again.

    >>> import axon
    >>> frozen = axon.freeze(axon.input((None, 4)).dense(3, name="body").dense(2, name="head"))
    >>> axon.count_params(frozen)["trainable"], axon.count_params(axon.unfreeze(frozen, ["body"]))["trainable"]
    (0, 15)
    """
    return _set_frozen(model, layers, False)
