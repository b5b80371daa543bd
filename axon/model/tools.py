"""Graph tools from Elixir Axon: layers that act on the graph (``block``, ``bias``, ``stack_columns``,
``cond``, ``attach_hook``) and functions that read or rewrite a built model (``get_op_counts``, ``set_options``,
``set_parameters``, ``pop_node``, ``rewrite_nodes``), and ``infer_shape``, the output shape of a layer
function found as the builders find it.

A model is immutable: every tool returns new nodes and leaves the old ones as they were.

>>> import axon
>>> model = axon.input((None, 4)).dense(3, activation="relu").dense(2)
>>> get_op_counts(model)
{'input': 1, 'dense': 2, 'relu': 1}
>>> gelu = rewrite_nodes(model, lambda node: (lambda inputs, output: inputs[0].gelu()) if node.op == "relu" else None)
>>> get_op_counts(gelu)
{'input': 1, 'dense': 2, 'gelu': 1}
"""
from __future__ import annotations

import inspect
from dataclasses import replace

import numpy as np

from ..autograd import apply, primitive
from ..autograd import stack as tstack
from ..autograd import reshape as treshape
from .graph import Axon, ParamSpec, _ids, _infer_shape, _node, _Pack, input as _input, param

__all__ = ["block", "bias", "stack_columns", "split_layer", "cond", "optional", "or_else", "attach_hook", "get_op_counts", "infer_shape", "set_options",
           "set_parameters",
           "pop_node", "rewrite_nodes"]


# ---- layers -------------------------------------------------------------------------------------------------
def _block_params(**params):
    return params                                              # the shared weights, as one node's value


class _BlockCall:
    """One call of a block: the inner model run on this call's inputs with the block's one set of params."""

    def __init__(self, inner, layers):
        self.inner, self.layers = inner, layers                # layers: [(layer, param)] of the inner model

    def __call__(self, shared, *xs, training=False, key=None):
        from .run import apply
        params: dict = {}
        for layer, pname in self.layers:
            params.setdefault(layer, {})[pname] = shared[f"{layer}/{pname}"]
        y, _ = apply(self.inner, params, xs[0] if len(xs) == 1 else list(xs), training=training, key=key)
        return y


class Block:
    """A function of model nodes whose every call shares one set of weights (see ``block``).

    >>> import axon
    >>> twice = Block(lambda x: x.dense(4, name="d"))
    >>> x = axon.input((None, 4))
    >>> axon.count_params(twice(twice(x)))["total"]             # one 4x4 kernel and bias, used twice
    20
    """

    def __init__(self, fn, name=None):
        if not callable(fn):
            raise TypeError(f"block: fn must build a model from nodes, got {type(fn).__name__}")
        self.fn, self.name = fn, name
        self.inner = self.weights = self.call = None
        self.in_shapes: tuple = ()

    def _build(self, shapes):
        self.in_shapes = shapes
        placeholders = [_input(s, name=f"block_input_{i}") for i, s in enumerate(shapes)]
        inner = self.fn(*placeholders)
        if not isinstance(inner, Axon):
            raise TypeError(f"block: fn must return a model node, got {type(inner).__name__}")
        names = inner.names()
        specs, layers = {}, []
        for node in inner.nodes():
            for pname, spec in node.params.items():
                if spec.kind == "state":
                    raise ValueError(f"block: layer {names[node.id]} keeps state ({pname}); blocks take params only")
                specs[f"{names[node.id]}/{pname}"] = spec
                layers.append((names[node.id], pname))
        self.inner, self.call = inner, _BlockCall(inner, layers)
        self.weights = _node("block", [], _block_params, specs, name=self.name,
                             shape={k: spec.shape for k, spec in specs.items()})

    def __call__(self, *inputs) -> Axon:
        for x in inputs:
            if not isinstance(x, Axon):
                raise TypeError(f"block: inputs must be model nodes, got {type(x).__name__}")
        shapes = tuple(x.shape for x in inputs)
        if self.inner is None:
            self._build(shapes)
        elif shapes != self.in_shapes:
            raise ValueError(f"block: every call takes inputs of the first call's shapes {list(self.in_shapes)}, "
                             f"got {list(shapes)}")
        return _node("block_call", [self.weights, *inputs], self.call, uses=("training", "key"),
                     shape=self.inner.shape)


def block(fn, name=None) -> Block:
    """``fn`` (nodes -> node) as a block: every call builds the same layers with the same weights.

    As Axon's ``block``: the first call builds ``fn`` on inputs of its shapes; the weights live once,
    in a ``block`` node (``params[name]``, keys ``"layer/param"``), and every call reads them, so a
    gradient step moves all calls together (a siamese encoder, a tied layer).

    >>> import axon, numpy as np
    >>> encode = block(lambda x: x.dense(2, name="proj"), name="encoder")
    >>> a, b = axon.input((None, 3), name="a"), axon.input((None, 3), name="b")
    >>> model = encode(a) - encode(b)                           # one set of weights, used twice
    >>> params = axon.init(model)
    >>> list(params), sorted(params["encoder"])
    (['encoder'], ['proj/bias', 'proj/kernel'])
    >>> x = np.ones((1, 3), np.float32)
    >>> axon.predict(model, params, {"a": x, "b": x})          # the same input through the same weights
    array([[0., 0.]], dtype=float32)
    """
    return Block(fn, name)


def _add_bias(x, bias):
    return x + bias


def bias(x: Axon, bias_initializer="zeros", name=None) -> Axon:
    """A learned bias over the last axis: ``y = x + b`` (Axon's ``bias`` layer).

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2)).bias(bias_initializer="ones")
    >>> axon.predict(model, axon.init(model), np.array([[1.0, 2.0]], np.float32))
    array([[2., 3.]], dtype=float32)
    """
    if x.shape is None or not isinstance(x.shape, tuple) or len(x.shape) < 1 or x.shape[-1] is None:
        raise ValueError(f"bias: the input's last axis must have a known size, got shape {x.shape}")
    return _node("bias", [x], _add_bias, {"bias": param((x.shape[-1],), bias_initializer)}, name=name)


def _stack_columns(*columns):
    cols = [treshape(c, (c.shape[0],)) if c.ndim == 2 else c for c in columns]    # (N, 1) -> (N,)
    return tstack(cols, axis=-1)                                                   # n x (N,) -> (N, n)


def stack_columns(columns, ignore=(), name=None) -> Axon:
    """Columns (one value per example) side by side: ``n`` nodes of shape (N,) or (N, 1) -> (N, n).

    ``columns``: a dict ``{name: node}`` (a data frame's columns, say, each an ``axon.input``), a
    container of them, or a list; ``ignore`` names columns of a dict to leave out. As Axon's
    ``stack_columns``, whose input is one container of columns.

    >>> import axon, numpy as np
    >>> cols = {"age": axon.input((None,), name="age"), "height": axon.input((None,), name="height")}
    >>> model = stack_columns(cols)
    >>> model.shape, axon.predict(model, {}, {"age": np.float32([30, 40]), "height": np.float32([1.7, 1.8])})
    ((None, 2), array([[30. ,  1.7],
           [40. ,  1.8]], dtype=float32))
    """
    if isinstance(columns, Axon) and columns.op == "container" and isinstance(columns.fn, _Pack):
        columns = dict(zip(columns.fn.keys, columns.parents)) if columns.fn.keys is not None else list(columns.parents)
    if isinstance(columns, dict):
        unknown = set(ignore) - set(columns)
        if unknown:
            raise ValueError(f"stack_columns: ignore names {sorted(unknown)} that are not columns; "
                             f"the columns are {list(columns)}")
        nodes = [n for k, n in columns.items() if k not in set(ignore)]
    elif ignore:
        raise ValueError("stack_columns: ignore= needs the columns as a dict {name: node}")
    else:
        nodes = list(columns)
    if not nodes:
        raise ValueError("stack_columns: no columns to stack")
    for n in nodes:
        if not isinstance(n, Axon):
            raise TypeError(f"stack_columns: each column must be a model node, got {type(n).__name__}")
        if not (isinstance(n.shape, tuple) and (len(n.shape) == 1 or (len(n.shape) == 2 and n.shape[1] == 1))):
            raise ValueError(f"stack_columns: each column must have shape (N,) or (N, 1), got {n.shape}")
    return _node("stack_columns", nodes, _stack_columns, name=name)


class _Slice:
    """One piece of ``split_layer``: ``x[..., lo:hi, ...]`` along ``axis``."""

    def __init__(self, axis, lo, hi):
        self.axis, self.lo, self.hi = axis, lo, hi

    def __call__(self, x):
        return x[(slice(None),) * self.axis + (slice(self.lo, self.hi),)]


def split_layer(x: Axon, splits, axis=-1, name=None) -> tuple:
    """``x`` cut along ``axis`` into ``splits`` equal pieces (an int) or pieces of the given sizes (a list).

    Axon's layer-level ``split`` (in axon, ``split`` is taken by the split of params into trainable
    and the rest). Returns a tuple of nodes; ``name`` names them ``name_0``, ``name_1``, ...

    >>> import axon, numpy as np
    >>> a, b = split_layer(axon.input((None, 6)), [2, 4])
    >>> a.shape, b.shape
    ((None, 2), (None, 4))
    >>> axon.predict(axon.container([a, b]), {}, np.arange(6, dtype=np.float32)[None])
    [array([[0., 1.]], dtype=float32), array([[2., 3., 4., 5.]], dtype=float32)]
    """
    if not isinstance(x, Axon) or not isinstance(x.shape, tuple):
        raise TypeError(f"split_layer: x must be a model node with one output, got {type(x).__name__}")
    rank = len(x.shape)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -rank <= axis < rank or axis % rank == 0:
        raise ValueError(f"split_layer: axis must be a non-batch axis of the input's {rank} axes, got {axis!r}")
    axis = int(axis) % rank
    size = x.shape[axis]
    if size is None:
        raise ValueError(f"split_layer: axis {axis} of the input has no fixed size (shape {x.shape})")
    if isinstance(splits, (int, np.integer)) and not isinstance(splits, bool):
        if splits < 1 or size % splits:
            raise ValueError(f"split_layer: {size} (axis {axis} of {x.shape}) cannot be cut into {splits} equal pieces")
        sizes = [size // int(splits)] * int(splits)
    else:
        sizes = [int(n) for n in splits]
        if any(n < 1 for n in sizes) or sum(sizes) != size:
            raise ValueError(f"split_layer: sizes {sizes} must be positive and add up to {size} "
                             f"(axis {axis} of {x.shape})")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return tuple(_node("split", [x], _Slice(axis, int(lo), int(hi)), name=None if name is None else f"{name}_{i}")
                 for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])))


class _Cond:
    """The cond node's function: ``on_true`` if ``predicate(x)`` else ``on_false`` (both were computed)."""

    def __init__(self, predicate):
        self.predicate = predicate

    def __call__(self, x, on_true, on_false):
        chosen = np.asarray(self.predicate(x))                 # the decision is made on the host
        if chosen.size != 1:
            raise ValueError(f"cond: the predicate must give one boolean, got shape {chosen.shape}")
        return on_true if bool(chosen.reshape(())) else on_false


def cond(x: Axon, predicate, on_true: Axon, on_false: Axon, name=None) -> Axon:
    """``on_true`` where ``predicate(value of x)`` holds, else ``on_false`` (Axon's ``cond``).

    Both branches are computed; the gradient flows into the chosen one only. The branches must
    have the same shape.

    >>> import axon, numpy as np
    >>> x = axon.input((None, 2))
    >>> model = cond(x, lambda v: v.numpy().mean() > 0, x.relu(), axon.nx(x, lambda t: -t))
    >>> axon.predict(model, {}, np.float32([[1, -3]])), axon.predict(model, {}, np.float32([[3, -1]]))
    (array([[-1.,  3.]], dtype=float32), array([[3., 0.]], dtype=float32))
    """
    if not callable(predicate):
        raise TypeError(f"cond: predicate must be a function of the input's value, got {type(predicate).__name__}")
    for what, n in (("x", x), ("on_true", on_true), ("on_false", on_false)):
        if not isinstance(n, Axon):
            raise TypeError(f"cond: {what} must be a model node, got {type(n).__name__}")
    if on_true.shape != on_false.shape:
        raise ValueError(f"cond: the branches must have the same shape, got on_true {on_true.shape} "
                         f"and on_false {on_false.shape}")
    return _node("cond", [x, on_true, on_false], _Cond(predicate), name=name, shape=on_true.shape)


def _pass(x):
    return x


def optional(x: Axon, name=None) -> Axon:
    """``x``, whose value may be None (a left-out optional input), handed as such to the next layer.

    Without it, a layer that depends on a missing optional input gives None itself; after it, the
    layer receives None and decides (a custom layer, or ``or_else``). As Axon's ``optional``.

    >>> import axon, numpy as np
    >>> mask = axon.input((None, 2), name="mask", optional=True)
    >>> ones = axon.nx(optional(mask), lambda m: np.float32([-1]) if m is None else m.sum(-1))   # None or the mask
    >>> axon.predict(ones, {}, {"mask": np.ones((1, 2), np.float32)}), axon.predict(ones, {}, {})
    (array([2.], dtype=float32), array([-1.], dtype=float32))
    >>> axon.predict(mask.relu(), {}, {}) is None                  # not handled: what follows is None too
    True
    """
    if not isinstance(x, Axon):
        raise TypeError(f"optional: x must be a model node, got {type(x).__name__}")
    return _node("optional", [x], _pass, name=name, shape=x.shape)


def _first_present(x, default):
    return default if x is None else x


def or_else(x: Axon, default: Axon, name=None) -> Axon:
    """``x``'s value, or ``default``'s when ``x`` is None (a left-out optional input); Axon's ``or_else``.

    >>> import axon, numpy as np
    >>> x = axon.input((None, 2), name="x")
    >>> scale = axon.input((None, 2), name="scale", optional=True)
    >>> model = x * or_else(scale, axon.constant(np.ones((1, 2), np.float32)))
    >>> axon.predict(model, {}, {"x": np.float32([[1, 2]])})                       # no scale: times 1
    array([[1., 2.]], dtype=float32)
    >>> axon.predict(model, {}, {"x": np.float32([[1, 2]]), "scale": np.float32([[3, 3]])})
    array([[3., 6.]], dtype=float32)
    """
    for what, n in (("x", x), ("default", default)):
        if not isinstance(n, Axon):
            raise TypeError(f"or_else: {what} must be a model node, got {type(n).__name__}")
    shape = x.shape
    if isinstance(shape, tuple) and isinstance(default.shape, tuple) and (
            len(shape) != len(default.shape) or any(a is not None and b is not None and a != b
                                                    for a, b in zip(shape, default.shape))):
        raise ValueError(f"or_else: default's shape {default.shape} does not match x's {x.shape}")
    x = x if x.op == "optional" else optional(x)
    return _node("or_else", [x, default], _first_present, name=name, shape=shape)


# ---- hooks --------------------------------------------------------------------------------------------------
def _hook_vjp(dy, y, x, fn):
    fn(dy)                                                     # the gradient arriving at the hooked node
    return (dy,)


_backward_hook = primitive("model.backward_hook", lambda x, fn: x, _hook_vjp)


class _Hooked:
    """A node's function, with ``hook`` called on its value (forward) or on its gradient (backward)."""

    def __init__(self, inner, hook, on, mode, takes_training, stateful):
        self.inner, self.hook, self.on, self.mode = inner, hook, on, mode
        self.takes_training, self.stateful = takes_training, stateful

    def __call__(self, *xs, training=False, **kw):
        if self.takes_training:
            kw["training"] = training
        out = self.inner(*xs, **kw)
        if self.mode != "both" and (self.mode == "train") != bool(training):
            return out
        y, state = out if training and self.stateful else (out, None)    # stateful layers: (y, new_state)
        if self.on in ("forward", "all"):
            self.hook(y)
        if self.on in ("backward", "all") and getattr(y, "requires_grad", False):
            y = apply(_backward_hook, y, fn=self.hook)
        return y if state is None else (y, state)


def attach_hook(x: Axon, fn, on="forward", mode="both") -> Axon:
    """A copy of node ``x`` that calls ``fn`` with its value (``on="forward"``), with the gradient
    flowing back into it (``"backward"``) or both (``"all"``), in training, inference or ``"both"``
    modes (Axon's ``attach_hook``). Chain on from the returned node.

    >>> import axon, numpy as np
    >>> seen = []
    >>> h = axon.input((None, 2)).dense(1, name="d").attach_hook(lambda v: seen.append(v.shape))
    >>> _ = axon.predict(h, axon.init(h), np.ones((3, 2), np.float32))
    >>> seen
    [(3, 1)]
    """
    if on not in ("forward", "backward", "all"):
        raise ValueError(f"attach_hook: on must be 'forward', 'backward' or 'all', got {on!r}")
    if mode not in ("both", "train", "inference"):
        raise ValueError(f"attach_hook: mode must be 'both', 'train' or 'inference', got {mode!r}")
    if not callable(fn):
        raise TypeError(f"attach_hook: fn must be a function of the node's value, got {type(fn).__name__}")
    if x.op == "input" or x.fn is None:
        raise ValueError("attach_hook: hook a layer, not an input (hook the first layer after it)")
    stateful = any(spec.kind == "state" for spec in x.params.values())
    hooked = _Hooked(x.fn, fn, on, mode, "training" in x.uses, stateful)
    # no fused relu: the hook sees the layer's own output
    return replace(x, id=next(_ids), fn=hooked, uses=(x.uses - {"relu_epilogue"}) | {"training"})


# ---- reading and rewriting a model -------------------------------------------------------------------------
def infer_shape(fn, *input_shapes, params=None, **opts) -> tuple:
    """The output shape of the layer function ``fn`` on inputs of ``input_shapes`` (None: any batch size).

    Found as every builder finds its node's shape: ``fn`` runs on zeros twice, with a batch of 1 and a
    batch of 2 for each None, and an axis that changes with the batch size comes out None. ``params``
    maps each parameter's name to its shape; ``opts`` are the layer's settings. Try a custom layer
    with it before it goes into a model; a layer that does not fit its inputs raises the builder's error.

    >>> import axon
    >>> infer_shape(axon.layers.dense, (None, 784), params={"kernel": (784, 128), "bias": (128,)})
    (None, 128)
    >>> infer_shape(axon.layers.conv, (None, 28, 28, 1), params={"kernel": (3, 3, 1, 8)}, padding="valid")
    (None, 26, 26, 8)
    """
    if not callable(fn):
        raise TypeError(f"infer_shape: fn must be a layer function, got {type(fn).__name__}")
    specs = {name: ParamSpec(tuple(int(n) for n in shape)) for name, shape in (params or {}).items()}
    takes = inspect.signature(fn).parameters
    uses = frozenset(k for k in ("training", "key") if k in takes)            # dropout, batch norm, ...
    op = getattr(fn, "__name__", type(fn).__name__)
    return _infer_shape(op, fn, [tuple(s) for s in input_shapes], specs, opts, uses,
                        lambda: ", ".join(str(tuple(s)) for s in input_shapes))


def get_op_counts(model: Axon) -> dict:
    """How many nodes of each op the model has, in graph order (Axon's ``get_op_counts``).

    >>> import axon
    >>> get_op_counts(axon.input((None, 3)).dense(4, activation="relu").dropout().dense(1))
    {'input': 1, 'dense': 2, 'relu': 1, 'dropout': 1}
    """
    counts: dict = {}
    for node in model.nodes():
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts


def _rebuilt(node: Axon, parents, params=None, opts=None) -> Axon:
    """``node`` on new parents (or with new params/opts), its shape inferred again."""
    if node.op == "input":
        return node
    params = dict(node.params) if params is None else params
    opts = dict(node.opts) if opts is None else opts
    shape = None
    if node.op == "container" and isinstance(node.fn, _Pack):
        shape = ({k: p.shape for k, p in zip(node.fn.keys, parents)} if node.fn.keys is not None
                 else tuple(p.shape for p in parents))
    elif node.op == "constant":
        shape = node.shape
    return _node(node.op, parents, node.fn, params, opts, node.name, node.uses, shape=shape)


def set_options(node: Axon, **opts) -> Axon:
    """A copy of ``node`` with some options changed, its shape inferred again (Axon's ``set_options``).

    >>> import axon
    >>> pooled = axon.input((None, 8, 8, 1)).max_pool(kernel_size=2)
    >>> set_options(pooled, kernel_size=4).shape
    (None, 2, 2, 1)
    """
    unknown = set(opts) - set(node.opts)
    if unknown:
        raise ValueError(f"set_options: {node.op} has no options {sorted(unknown)}; its options are {sorted(node.opts)}")
    return _rebuilt(node, node.parents, opts={**node.opts, **opts})


def set_parameters(node: Axon, params: dict) -> Axon:
    """A copy of ``node`` with some parameter specs replaced (``axon.param(...)``; Axon's ``set_parameters``).

    >>> import axon
    >>> d = axon.input((None, 3)).dense(2)
    >>> zeros = set_parameters(d, {"kernel": axon.param((3, 2), "zeros")})
    >>> float(abs(axon.init(zeros)["dense_0"]["kernel"]).sum())
    0.0
    """
    unknown = set(params) - set(node.params)
    if unknown:
        raise ValueError(f"set_parameters: {node.op} has no params {sorted(unknown)}; its params are {sorted(node.params)}")
    for k, spec in params.items():
        if not isinstance(spec, ParamSpec):
            raise TypeError(f"set_parameters: params['{k}'] must be axon.param(shape, initializer), got {type(spec).__name__}")
    return _rebuilt(node, node.parents, params={**node.params, **params})


def pop_node(model: Axon) -> tuple:
    """``(last, rest)``: the model's output node and the model without it, its one parent (Axon's ``pop_node``).

    >>> import axon
    >>> last, rest = pop_node(axon.input((None, 3)).dense(2, activation="softmax"))
    >>> last.op, rest.op, rest.shape
    ('softmax', 'dense', (None, 2))
    """
    if len(model.parents) != 1:
        raise ValueError(f"pop_node: the output node ({model.op}) must have exactly one parent, "
                         f"it has {len(model.parents)}")
    return model, model.parents[0]


def rewrite_nodes(model: Axon, fn) -> Axon:
    """A new model in which ``fn(node)`` may replace nodes (Axon's ``rewrite_nodes``).

    ``fn`` gets every node in graph order and returns None (keep it) or a rewriter
    ``rewriter(inputs, output) -> node``: ``inputs`` are the node's (rewritten) parents, ``output`` the
    node itself rebuilt on them, so a rewriter can replace it (``inputs[0].gelu()``) or wrap it
    (``output + inputs[0]``, a residual connection). Nodes below a rewritten one are rebuilt.

    >>> import axon
    >>> model = axon.input((None, 4)).dense(4, name="d").relu()
    >>> residual = rewrite_nodes(model, lambda n: (lambda inputs, output: output + inputs[0]) if n.op == "dense" else None)
    >>> [n.op for n in residual.nodes()]
    ['input', 'dense', 'add', 'relu']
    """
    if not callable(fn):
        raise TypeError(f"rewrite_nodes: fn must be a function of a node, got {type(fn).__name__}")
    new = {}
    for node in model.nodes():
        parents = [new[p.id] for p in node.parents]
        same = all(a is b for a, b in zip(parents, node.parents))
        rebuilt = node if same else _rebuilt(node, parents)
        rewriter = fn(node)
        if rewriter is None:
            new[node.id] = rebuilt
            continue
        out = rewriter(parents, rebuilt)
        if not isinstance(out, Axon):
            raise TypeError(f"rewrite_nodes: the rewriter of {node.op} returned a {type(out).__name__}, not a node")
        new[node.id] = out
    return new[model.id]
