"""A model graph as records of plain data (op, options, param specs, shape, name), and back.

``axon.save`` writes these records as JSON; ``axon.load`` rebuilds the graph from them. A record names
no code: its op is one of axon's builders (``dense``, ``conv``, ``relu``, ...), rebuilt by calling
that builder, or the record carries ``"fn"``, a name the program registered with ``axon.register``.
Rebuilding runs no layer: each node takes the output shape the record gives
(``graph.given_shape``), so a file cannot make loading compute or allocate.

Before writing, ``to_records`` rebuilds every node the same way and checks the copy is the node
(the same op, options, params, parents and the same code), so what is saved is what loads.

>>> import axon
>>> model = axon.input((None, 4)).dense(3, activation="relu")
>>> records = to_records(model, encode=lambda value, path: value)      # encode: how options are written
>>> [(r["op"], r["layer"], r["parents"]) for r in records]
[('input', 'input', []), ('dense', 'dense_0', [0]), ('relu', 'relu_0', [1])]
>>> back = from_records(records, decode=lambda node, path: node)
>>> [(n.op, n.shape) for n in back.nodes()] == [(n.op, n.shape) for n in model.nodes()]
True
"""
from __future__ import annotations

import types
from dataclasses import replace
from types import MappingProxyType

import numpy as np

from .. import registry
from . import builders
from .graph import Axon, ParamSpec, _node, _Pack, constant, container, given_shape, input, item

__all__ = ["to_records", "from_records", "MAX_NODES"]

MAX_NODES = 10_000                     # a saved graph with more nodes is refused
_COMBINATORS = ("add", "subtract", "multiply", "concatenate")
_PACK_KINDS = {"dict": dict, "list": list, "tuple": tuple}
_RECURRENT = ("lstm", "gru", "conv_lstm")   # one node whose value is (seq, carry), picked out by the nodes below
_PICKS = {"seq": 0, "carry": 1}
# builders that make no node of their own op: an activation's node is named after its function, and
# bidirectional and transformer_block are made of other builders' nodes (and "reverse", below)
_NO_NODE = ("activation", "bidirectional", "transformer_block")


# ---- rebuilding one node through axon's own builders ---------------------------------------------
def _builder_args(op, parents, opts, shapes) -> tuple[list, dict]:
    """The builder's arguments that rebuild a node: its ``opts``, plus what its param ``shapes`` tell
    (units, kernel size) for the layers whose builder takes those instead of recording them."""
    kw = dict(opts)
    kernel = shapes.get("kernel") or shapes.get("kernel_1")
    if op in _COMBINATORS:
        return [list(parents)], kw
    if op == "pad":
        return [parents[0], kw.pop("padding")], kw
    if op in _RECURRENT or op == "multi_head_attention":      # parents: x, then the optional inputs in order
        rest = list(parents[1:])
        optional = ("context", "mask") if op == "multi_head_attention" else ("mask", "carry")
        for arg in optional:
            kw[arg] = rest.pop(0) if kw.pop(f"has_{arg}") else None
        if rest:
            raise ValueError(f"{op} has {len(rest)} more inputs than its options say")
        if op == "multi_head_attention":                       # query_kernel (E, heads * head_size)
            kw.update(head_size=shapes["query_kernel"][-1] // kw["num_heads"], use_bias="query_bias" in shapes)
        else:
            kw.update(use_bias="bias" in shapes or "bias_input" in shapes)
        return [parents[0]], kw
    if op == "dense":                                          # kernel (in, units)
        kw.update(units=kernel[-1], use_bias="bias" in shapes)
    elif op in ("conv", "conv_transpose"):                     # kernel (*kernel_size, in, units)
        kw.update(units=kernel[-1], kernel_size=tuple(kernel[:-2]), use_bias="bias" in shapes)
    elif op == "bilinear":                                     # kernel (units, in1, in2)
        kw.update(units=kernel[0], use_bias="bias" in shapes)
    elif op == "embedding":                                    # kernel (vocab_size, embedding_size)
        kw.update(vocab_size=kernel[0], embedding_size=kernel[1])
    elif op == "depthwise_conv":                               # kernel (*kernel_size, 1, in * multiplier)
        c = builders._channels(parents[0], kw.get("channels", "last"), op)
        kw.update(channel_multiplier=kernel[-1] // c, kernel_size=tuple(kernel[:-2]), use_bias="bias" in shapes)
    elif op.startswith("separable_conv"):                      # kernel_i: k_i along spatial axis i, 1 elsewhere
        c = builders._channels(parents[0], kw.get("channels", "last"), op)
        kernel_size = tuple(shapes[f"kernel_{i + 1}"][i] for i in range(len(kernel) - 2))
        kw.update(channel_multiplier=kernel[-1] // c, kernel_size=kernel_size, use_bias="bias_1" in shapes)
    return list(parents), kw


def _rebuild(op, parents, opts, shapes, name, shape, pack=None) -> Axon:
    """The node axon's builder for ``op`` makes from these parts, its output shape taken as ``shape``."""
    with given_shape(shape):
        if op == "input":
            return input(opts["shape"], name=name, optional=bool(opts.get("optional", False)))
        if op == "constant":
            return constant(opts["value"], name=name)
        if op == "container":
            keys, kind = pack["keys"], _PACK_KINDS[pack["kind"]]
            return container(dict(zip(keys, parents)) if kind is dict else kind(parents), name=name)
        if op in _PICKS:
            if len(parents) != 1 or parents[0].op not in _RECURRENT:
                raise ValueError(f"'{op}' picks from one recurrent layer ({', '.join(_RECURRENT)})")
            return builders._pick(parents[0], _PICKS[op], op, name=name)
        if op == "item":                                       # x[index]: a part of a tuple-valued node (carry[1])
            if len(parents) != 1:
                raise ValueError(f"'item' picks from one node, got {len(parents)}")
            try:
                return item(parents[0], opts["index"], name=name)
            except (IndexError, KeyError) as e:                # (x[i]'s own errors; a file's are ValueErrors)
                raise ValueError(str(e)) from None
        if op == "reverse":                                    # bidirectional's backward run reads its input reversed
            return builders._reverse(*parents, opts["axis"], name=name)
        if op not in builders.__all__ or op in _NO_NODE:
            raise ValueError(f"'{op}' is not one of axon's layers")
        args, kw = _builder_args(op, parents, opts, shapes)
        node = vars(builders)[op](*args, name=name, **kw)
        return node[0].parents[0] if op in _RECURRENT else node   # the (seq, carry) node, not its pickers


def _same(a, b, depth=0) -> bool:
    """Whether ``a`` and ``b`` are the same value, or functions with the same code and the same captured values."""
    if a is b:
        return True
    if depth > 8 or type(a) is not type(b):
        return False
    if isinstance(a, types.FunctionType):
        cells = lambda f: tuple(c.cell_contents for c in f.__closure__ or ())  # noqa: E731
        try:
            return (a.__code__ is b.__code__ and _same(a.__defaults__, b.__defaults__, depth + 1)
                    and _same(a.__kwdefaults__, b.__kwdefaults__, depth + 1) and _same(cells(a), cells(b), depth + 1))
        except ValueError:                                     # an empty closure cell
            return False
    if isinstance(a, _Pack):
        return a.keys == b.keys and a.kind is b.kind
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, depth + 1) for x, y in zip(a, b))
    if isinstance(a, (dict, MappingProxyType)):
        return list(a) == list(b) and all(_same(a[k], b[k], depth + 1) for k in a)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    try:
        return bool(a == b)
    except Exception:                                          # an object without a plain ==
        return False


def _pack_of(fn) -> dict | None:
    """A container's ``{"keys": [...] or None, "kind": "dict" | "list" | "tuple"}``, from its ``_Pack``."""
    if not isinstance(fn, _Pack):
        return None
    if fn.keys is not None:
        return {"keys": list(fn.keys), "kind": "dict"}
    kind = next((k for k, t in _PACK_KINDS.items() if fn.kind is t), None)
    return None if kind is None else {"keys": None, "kind": kind}


def _is_builtin(node: Axon) -> bool:
    """Whether axon's builder for ``node.op`` rebuilds ``node`` exactly (so it can be saved as plain data)."""
    shapes = {k: spec.shape for k, spec in node.params.items()}
    try:
        copy = _rebuild(node.op, node.parents, dict(node.opts), shapes, node.name, node.shape, _pack_of(node.fn))
    except Exception:                                          # the builder does not take these parts
        return False
    return (copy.op == node.op and copy.parents == node.parents and copy.uses == node.uses
            and _same(dict(copy.opts), dict(node.opts))
            and {k: (s.shape, s.kind) for k, s in copy.params.items()} == {k: (s.shape, s.kind) for k, s in node.params.items()}
            and _same(copy.fn, node.fn))


# ---- to records ------------------------------------------------------------------------------------
def _fn_name(fn, what: str) -> str:
    """The registered name of ``fn``; unregistered, a TypeError saying how to register it."""
    name = registry.name_of(fn)
    if name is None:
        label = getattr(fn, "__name__", type(fn).__name__)
        hint = label if label.isidentifier() and label != "<lambda>" else "my_fn"
        raise TypeError(f"save: {what} is the function {label!r}, which axon cannot name in a file. Register it "
                        f"under a name of your choice, axon.register({hint!r}, fn), before saving, and again "
                        f"in the program that loads the file (loading never imports code)")
    return name


def _initializer_record(init, where: str, encode) -> dict:
    if isinstance(init, (str, np.ndarray)):
        return {"initializer": encode(init, where)}
    if callable(init):
        return {"initializer_fn": _fn_name(init, f"the initializer of '{where}'")}
    raise TypeError(f"save: the initializer of '{where}' is a {type(init).__name__}; expected a name, an "
                    f"array or a registered function")


def to_records(model: Axon, encode) -> list[dict]:
    """The model's nodes as records, parents first; ``encode(value, path)`` writes options and shapes.

    Raises TypeError for a node whose function is neither axon's builder's nor registered.

    >>> import axon
    >>> records = to_records(axon.input((None, 2)).dense(1, name="out"), encode=lambda value, path: value)
    >>> records[1]["params"]["kernel"]
    {'shape': [2, 1], 'kind': 'param', 'frozen': False, 'initializer': 'glorot_uniform'}
    """
    nodes, names = model.nodes(), model.names()
    index = {n.id: i for i, n in enumerate(nodes)}
    records = []
    for node in nodes:
        layer = names[node.id]
        rec = {"op": node.op, "name": node.name, "layer": layer, "parents": [index[p.id] for p in node.parents],
               "opts": encode(dict(node.opts), f"{layer}.opts"), "shape": encode(node.shape, f"{layer}.shape"),
               "params": {}}
        for k, spec in node.params.items():
            rec["params"][k] = {"shape": [int(n) for n in spec.shape], "kind": spec.kind, "frozen": bool(spec.frozen),
                                **_initializer_record(spec.initializer, f"{layer}.{k}", encode)}
        if node.op == "container" and _pack_of(node.fn) is not None:
            rec["pack"] = _pack_of(node.fn)
        if not _is_builtin(node):
            if node.op in builders.__all__ and registry.name_of(node.fn) is None:
                raise TypeError(f"save: layer '{layer}' (op '{node.op}') does not rebuild from its options and "
                                f"param shapes through axon's {node.op} builder. If it is one of axon's layers, "
                                f"axon.model.records._builder_args must learn its builder's arguments; if it "
                                f"computes with a function of yours, register that: axon.register(name, fn)")
            rec["fn"] = _fn_name(node.fn, f"the function of layer '{layer}' (op '{node.op}')")
            rec["uses"] = sorted(node.uses)
        records.append(rec)
    return records


# ---- from records ----------------------------------------------------------------------------------
def _expect(cond, msg) -> None:
    if not cond:
        raise ValueError(msg)


def _is_int(v) -> bool:
    return type(v) is int


def _spec(rec, where: str, decode) -> ParamSpec:
    _expect(isinstance(rec, dict), f"param '{where}' is not a record")
    shape = rec.get("shape")
    _expect(isinstance(shape, list) and len(shape) <= 32 and all(_is_int(n) and n >= 0 for n in shape),
            f"param '{where}' has a bad shape {shape!r:.60}")
    _expect(rec.get("kind") in ("param", "state") and isinstance(rec.get("frozen"), bool),
            f"param '{where}' has a bad kind or frozen flag")
    if "initializer_fn" in rec:
        init = registry.lookup(rec["initializer_fn"])
        _expect(init is not None, f"the initializer of '{where}' is the function {rec['initializer_fn']!r:.60}, "
                                  f"which is not registered in this program: call axon.register(name, fn) "
                                  f"before axon.load")
    else:
        init = decode(rec.get("initializer"), f"{where}.initializer")
        _expect(isinstance(init, (str, np.ndarray)), f"the initializer of '{where}' is neither a name nor an array")
    return ParamSpec(tuple(shape), init, rec["kind"], rec["frozen"])


def _node_from(rec, i: int, built: list, decode) -> Axon:
    _expect(isinstance(rec, dict), f"node {i} is not a record")
    op, name, layer = rec.get("op"), rec.get("name"), rec.get("layer")
    _expect(isinstance(op, str) and isinstance(layer, str) and (name is None or isinstance(name, str)),
            f"node {i} has a bad op, name or layer")
    parents = rec.get("parents")
    _expect(isinstance(parents, list) and all(_is_int(j) and 0 <= j < i for j in parents),
            f"layer '{layer}' has bad parents {parents!r:.60} (each must be an earlier node)")
    params = rec.get("params")
    _expect(isinstance(params, dict), f"layer '{layer}' has no params record")
    specs = {k: _spec(v, f"{layer}.{k}", decode) for k, v in params.items()}
    opts = decode(rec.get("opts"), f"{layer}.opts")
    _expect(isinstance(opts, dict) and all(isinstance(k, str) for k in opts), f"layer '{layer}' has bad options")
    shape = decode(rec.get("shape"), f"{layer}.shape")
    _expect(isinstance(shape, (tuple, dict)), f"layer '{layer}' has no output shape")   # None would run the layer
    parents = [built[j] for j in parents]
    if "fn" in rec:
        fn = registry.lookup(rec["fn"])
        _expect(fn is not None, f"layer '{layer}' (op '{op}') computes with the function {rec['fn']!r:.60}, which "
                                f"is not registered in this program: call axon.register({rec['fn']!r:.60}, fn) "
                                f"before axon.load (loading never imports code)")
        uses = rec.get("uses", [])
        _expect(isinstance(uses, list) and all(isinstance(u, str) for u in uses), f"layer '{layer}' has bad uses")
        with given_shape(shape):
            return _node(op, parents, fn, specs, opts, name, uses)
    pack = rec.get("pack")
    if op == "container":
        _expect(isinstance(pack, dict) and pack.get("kind") in _PACK_KINDS
                and (pack.get("keys") is None or isinstance(pack["keys"], list)), f"layer '{layer}' has a bad pack")
    try:
        node = _rebuild(op, parents, opts, {k: s.shape for k, s in specs.items()}, name, shape, pack)
    except Exception as e:                                     # the builder refuses these parts
        raise ValueError(f"layer '{layer}' (op '{op}') cannot be rebuilt: {type(e).__name__}: {e}") from None
    _expect(node.op == op and node.parents == tuple(parents),
            f"layer '{layer}' (op '{op}') rebuilt as another node (op '{node.op}')")
    got = {k: (s.shape, s.kind) for k, s in node.params.items()}
    want = {k: (s.shape, s.kind) for k, s in specs.items()}
    _expect(got == want, f"layer '{layer}' (op '{op}') rebuilt with params {got}, but the file records {want}")
    return replace(node, params=MappingProxyType(specs))      # the saved initializers and frozen flags


def from_records(records, decode) -> Axon:
    """The model ``to_records`` described; ``decode(node, path)`` reads options and shapes back.

    Raises ValueError naming the first record that does not make a node.

    >>> import axon
    >>> model = from_records(to_records(axon.input((None, 2)).dense(1), lambda v, p: v), lambda v, p: v)
    >>> model.op, model.shape
    ('dense', (None, 1))
    """
    _expect(isinstance(records, list) and 0 < len(records) <= MAX_NODES,
            f"the model graph must be a list of 1 to {MAX_NODES} nodes")
    built = []
    for i, rec in enumerate(records):
        built.append(_node_from(rec, i, built, decode))
    model = built[-1]
    names = model.names()
    _expect([names.get(n.id) for n in built] == [r["layer"] for r in records],
            "the layer names of the file do not match its graph (a node unreachable from the output, or renamed)")
    return model
