"""Load an ONNX file as an axon model: ``model, params = load(path)``.

Each ONNX node becomes the axon layer that computes the same thing (``Conv`` -> ``conv``, ``Gemm`` ->
``dense``, ``BatchNormalization`` -> ``batch_norm``, ``MatMul`` then ``Add`` of a bias -> one
``dense``), with the node's weights as the layer's params. The model takes its inputs **in the file's
layout**: for a channels-first (NCHW) file, such as PyTorch's, the convolutions, pools and
normalizations are axon's layers with ``channels="first"``, which move the channels last for their
kernels and back. The batch axis is left free (``None``) even when the file fixes it.

The file is only parsed (a protobuf, read with the ``onnx`` package): nothing in it is run, no file it
names is opened (weights stored as external data are refused), and a file that is not a valid model
raises ValueError naming it. Nodes that have no axon form are listed all at once, in one ValueError.

``LSTM`` and ``GRU`` become one layer each (``onnx_lstm``, ``onnx_gru``) running ``axon.layers.lstm`` or
``gru`` per direction, in the file's layout (time-major unless ``layout=1``), with the gates reordered
into axon's (ONNX's i, o, f, c are axon's i, f, g, o; z, r, h are r, z, n; only ``linear_before_reset=1``,
PyTorch's formula, is axon's GRU). The transposes, squeezes and reversals around them that move or drop
the time and direction axes load as layers over whole tensors (``onnx_transpose``, ...), batch axis included.

Small computations on constants are folded while loading (``Shape`` of a known shape, ``Gather``,
``Unsqueeze``, ``Concat``: what ``x.view(x.size(0), -1)`` exports as), so they need no layer.

>>> import os, tempfile, numpy as np, axon, axon.onnx
>>> model = axon.input((None, 4)).dense(3, activation="relu")
>>> params = axon.init(model)
>>> path = os.path.join(tempfile.mkdtemp(), "mlp.onnx")
>>> axon.onnx.export(model, params, path)
>>> loaded, loaded_params = axon.onnx.load(path)
>>> [n.op for n in loaded.nodes()], sorted(loaded_params["dense_0"])
(['input', 'dense', 'relu'], ['bias', 'kernel'])
"""
from __future__ import annotations

import os

import numpy as np

from .. import model as M
from .. import layers as L
from ..autograd import stack
from ..functional.layers import avg_pool as _avg_pool_fn, layer_norm as _layer_norm_fn
from ..functional.layers._utils import resolve_padding
from ..model.graph import Axon
from ._require import Unsupported, require_onnx
from .exporter import _ONNX_GATES

__all__ = ["load"]


# ---- reading the file -----------------------------------------------------------------------------------
def _read(onnx, path):
    """The ModelProto in ``path``, or a ValueError that names the file and what is wrong with it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"load: cannot read the ONNX file {path!r}: {e.strerror or e}") from e
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:                                     # protobuf's DecodeError, and what a bad file raises
        raise ValueError(f"load: {path!r} is not an ONNX model (the protobuf does not parse: {e})") from e
    if not proto.HasField("graph") or not proto.graph.output:
        raise ValueError(f"load: {path!r} is not an ONNX model (it has no graph with outputs)")
    return proto


def _attributes(onnx, node) -> dict:
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        out[a.name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return out


class _Context:
    """What the translation of one file has so far: tensor name -> axon node or numpy constant."""

    def __init__(self, onnx, proto, path):
        self.onnx, self.path, self.graph = onnx, path, proto.graph
        self.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=1)
        self.env: dict = {}
        self.params: dict = {}                                 # axon node id -> {param name: array}
        self.alias: dict = {}                                  # a tensor whose node was folded into another
        self.names: set = set()
        self.consumers: dict = {}
        for node in self.graph.node:
            for t in node.input:
                self.consumers.setdefault(t, []).append(node)
        self.outputs = {o.name for o in self.graph.output}
        self.float = np.dtype(np.float32)
        self.batch = None                                      # the batch size the file fixes, if it does
        self.failed: set = set()                               # tensors of nodes that could not be translated

    def array(self, tensor):
        if tensor.data_location == self.onnx.TensorProto.EXTERNAL:
            raise ValueError(f"load: {self.path!r}: tensor {tensor.name!r} is stored in an external file; "
                             f"axon loads self-contained ONNX files only (nothing else is opened)")
        try:
            return self.onnx.numpy_helper.to_array(tensor)
        except Exception as e:
            raise ValueError(f"load: {self.path!r}: tensor {tensor.name!r} cannot be read: {e}") from e

    def used(self, tensor: str) -> bool:
        return bool(tensor) and (tensor in self.outputs or bool(self.consumers.get(tensor)))

    def layer_name(self, node):
        """The axon name of a layer with params: the ONNX node's name, less its "/Op" tail, when usable."""
        name = node.name.strip("/")
        if name.endswith("/" + node.op_type):
            name = name[: -len(node.op_type) - 1]
        if not name or name.isdigit() or name in self.names:
            return None
        self.names.add(name)
        return name

    def with_params(self, y: Axon, **arrays) -> Axon:
        """Record ``arrays`` as the params of layer ``y`` (checked against its specs)."""
        arrays = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
        specs = {k: tuple(s.shape) for k, s in y.params.items()}
        got = {k: v.shape for k, v in arrays.items()}
        if specs != got:
            raise Unsupported(f"weights of shapes {got} do not fit the layer's {specs}")
        self.params[y.id] = {k: v.astype(self.float) if v.dtype.kind == "f" else v for k, v in arrays.items()}
        return y


def _const(v, what="weight"):
    if not isinstance(v, np.ndarray):
        raise Unsupported(f"its {what} must be a constant (an initializer), got a computed value")
    return v


def _node_input(v, what="input"):
    if not isinstance(v, Axon):
        raise Unsupported(f"its {what} must be computed from the model's inputs, got a constant")
    return v


def _spatial(x: Axon) -> list:
    """The spatial sizes of a channels-first value (None where unknown)."""
    return list(x.shape[2:])


def _pairs(ctx, a, n, sizes, windows, strides):
    """Padding from ``auto_pad``/``pads``: "valid", "same" (ONNX's SAME_UPPER is axon's same) or pairs."""
    auto = a.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return "valid"
    if auto == "SAME_UPPER":
        return "same"
    if auto == "SAME_LOWER":                                   # the odd one at the start
        if any(s is None for s in sizes):
            raise Unsupported("auto_pad SAME_LOWER needs known spatial sizes")
        return tuple((hi, lo) for lo, hi in resolve_padding("onnx", "same", sizes, windows, strides))
    pads = list(a.get("pads", [0] * (2 * n)))
    return tuple((int(pads[i]), int(pads[i + n])) for i in range(n))


# ---- convolutions --------------------------------------------------------------------------------------
def _conv(ctx, node, ins, a):
    x, w = _node_input(ins[0]), _const(ins[1])
    b = _const(ins[2], "bias") if len(ins) > 2 and ins[2] is not None else None
    n = w.ndim - 2
    strides, dil = tuple(a.get("strides", [1] * n)), tuple(a.get("dilations", [1] * n))
    windows = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], dil)]
    padding = _pairs(ctx, a, n, _spatial(x), windows, strides)
    kernel = w.transpose(*range(2, n + 2), 1, 0)              # (O, I/g, *k) -> (*k, I/g, O)
    y = M.conv(x, w.shape[0], kernel_size=tuple(w.shape[2:]), strides=strides, padding=padding,
               kernel_dilation=dil, feature_group_size=int(a.get("group", 1)), channels="first",
               use_bias=b is not None, name=ctx.layer_name(node))
    return ctx.with_params(y, kernel=kernel, bias=b)


def _conv_transpose(ctx, node, ins, a):
    """ConvTranspose(stride s) is axon's convolution of the input dilated by s with the flipped kernel,
    padded by (K - 1) d - pad_begin before and (K - 1) d - pad_end + output_padding after."""
    x, w = _node_input(ins[0]), _const(ins[1])
    b = _const(ins[2], "bias") if len(ins) > 2 and ins[2] is not None else None
    n, groups = w.ndim - 2, int(a.get("group", 1))
    if "output_shape" in a or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise Unsupported("output_shape and auto_pad SAME are not supported; give pads")
    k = w.shape[2:]
    strides, dil = tuple(a.get("strides", [1] * n)), tuple(a.get("dilations", [1] * n))
    pads = [0] * (2 * n) if a.get("auto_pad") == "VALID" else list(a.get("pads", [0] * (2 * n)))
    extra = list(a.get("output_padding", [0] * n))
    full = [(kk - 1) * d for kk, d in zip(k, dil)]
    padding = tuple((f - pads[i], f - pads[i + n] + extra[i]) for i, f in enumerate(full))
    if any(p < 0 for pair in padding for p in pair):
        raise Unsupported(f"pads {pads} larger than the dilated kernel")
    flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * n]
    c_in, c_out = w.shape[0], w.shape[1] * groups
    name = ctx.layer_name(node)
    if groups == 1:
        y = M.conv_transpose(x, c_out, kernel_size=k, strides=strides, padding=padding, kernel_dilation=dil,
                             channels="first", use_bias=b is not None, name=name)
        return ctx.with_params(y, kernel=flipped.transpose(*range(2, n + 2), 0, 1), bias=b)   # (*k, C_in, C_out)
    wg = flipped.reshape((groups, c_in // groups, c_out // groups, *k))                    # (G, I/G, O/G, *k)
    kernel = wg.transpose(*range(3, n + 3), 1, 0, 2).reshape((*k, c_in // groups, c_out))  # (*k, I/G, G O/G)
    y = M.conv(x, c_out, kernel_size=k, padding=padding, input_dilation=strides, kernel_dilation=dil,
               feature_group_size=groups, channels="first", use_bias=b is not None, name=name)
    return ctx.with_params(y, kernel=kernel, bias=b)


# ---- pooling -------------------------------------------------------------------------------------------
def _window(ctx, a, x):
    """(kernel_size, strides, padding pairs, padding added for ceil_mode) of an ONNX pool."""
    k = tuple(a["kernel_shape"])
    n = len(k)
    if any(d != 1 for d in a.get("dilations", [1] * n)):
        raise Unsupported("dilated pooling has no axon form")
    strides = tuple(a.get("strides", [1] * n))
    sizes = _spatial(x)
    pads = _pairs(ctx, a, n, sizes, k, strides)
    if isinstance(pads, str):
        pads = resolve_padding("onnx", pads, sizes, k, strides) if None not in sizes else pads
    added = 0
    if a.get("ceil_mode", 0) and not isinstance(pads, str):    # ceil: windows may run past the end
        if None in sizes:
            raise Unsupported("ceil_mode needs known spatial sizes")
        new = []
        for size, kk, s, (lo, hi) in zip(sizes, k, strides, pads):
            out = -(-(size + lo + hi - kk) // s) + 1
            if (out - 1) * s >= size + lo:                     # the last window must start inside
                out -= 1
            grow = max((out - 1) * s + kk - (size + lo + hi), 0)
            added += grow
            new.append((lo, hi + grow))
        pads = tuple(new)
    return k, strides, pads, added


def _max_pool(ctx, node, ins, a):
    x = _node_input(ins[0])
    if len(node.output) > 1 and ctx.used(node.output[1]):
        raise Unsupported("its Indices output has no axon form")
    k, strides, pads, _ = _window(ctx, a, x)
    return M.max_pool(x, kernel_size=k, strides=strides, padding=pads, channels="first")


def _avg_pool(ctx, node, ins, a):
    x = _node_input(ins[0])
    k, strides, pads, added = _window(ctx, a, x)
    include = bool(a.get("count_include_pad", 0))
    padded = not isinstance(pads, str) and any(p for pair in pads for p in pair)
    if added and include:
        raise Unsupported("ceil_mode with count_include_pad=1 has no axon form")
    if include or not padded:                                  # padding counted, or none to count
        return M.avg_pool(x, kernel_size=k, strides=strides, padding=pads, channels="first")
    return M.layer(_avg_pool_fn, [x], op_name="avg_pool", kernel_size=k, strides=strides, padding=pads,
                   count_include_pad=False, channels="first")


def _even_p(a):
    p = int(a.get("p", 2))
    if p % 2:
        raise Unsupported(f"p={p}: ONNX's LpPool takes |x|, axon's lp_pool does not (the same for even p)")
    return p


def _lp_pool(ctx, node, ins, a):
    x = _node_input(ins[0])
    k, strides, pads, _ = _window(ctx, a, x)
    return M.lp_pool(x, norm=_even_p(a), kernel_size=k, strides=strides, padding=pads, channels="first")


def _global(op):
    def handle(ctx, node, ins, a):
        x = _node_input(ins[0])
        if op == "global_lp_pool":
            return M.global_lp_pool(x, norm=_even_p(a), keep_axes=True, channels="first")
        return getattr(M, op)(x, keep_axes=True, channels="first")
    return handle


def _reduce(ctx, node, ins, a):
    """ReduceMean/Max/L2 over the spatial axes are the global pools; ReduceLogSumExp is log_sumexp."""
    x = _node_input(ins[0])
    axes = a.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:
        axes = _const(ins[1], "axes").tolist()
    if axes is None:
        raise Unsupported("a reduction over every axis (the batch too) has no axon form")
    r, keep = len(x.shape), bool(a.get("keepdims", 1))
    axes = sorted(int(ax) % r for ax in axes)
    if node.op_type == "ReduceLogSumExp":
        if len(axes) != 1 or axes[0] == 0:
            raise Unsupported(f"ReduceLogSumExp over axes {axes}: axon's log_sumexp takes one non-batch axis")
        return M.log_sumexp(x, axis=axes[0], keepdims=keep)
    op = {"ReduceMean": "global_avg_pool", "ReduceMax": "global_max_pool", "ReduceL2": "global_lp_pool"}[node.op_type]
    for channels, spatial in (("first", list(range(2, r))), ("last", list(range(1, r - 1)))):
        if axes == spatial and 3 <= r <= 5:
            return getattr(M, op)(x, keep_axes=keep, channels=channels)
    raise Unsupported(f"{node.op_type} over axes {axes}: only the spatial axes of a rank 3-5 input map to a pool")


# ---- normalization ---------------------------------------------------------------------------------
def _batch_norm(ctx, node, ins, a):
    x = _node_input(ins[0])
    if a.get("training_mode", 0) or any(ctx.used(t) for t in node.output[1:]):
        raise Unsupported("training mode (batch statistics) has no axon form at inference")
    gamma, beta, mean, var = (_const(v) for v in ins[1:5])
    y = M.batch_norm(x, momentum=1 - float(a.get("momentum", 0.9)), epsilon=float(a.get("epsilon", 1e-5)),
                     channels="first", name=ctx.layer_name(node))
    return ctx.with_params(y, gamma=gamma, beta=beta, mean=mean, var=var)


def _instance_norm(ctx, node, ins, a):
    x, gamma, beta = _node_input(ins[0]), _const(ins[1]), _const(ins[2])
    y = M.instance_norm(x, epsilon=float(a.get("epsilon", 1e-5)), channels="first", name=ctx.layer_name(node))
    return ctx.with_params(y, gamma=gamma, beta=beta)


def _layer_norm(ctx, node, ins, a):
    x, gamma = _node_input(ins[0]), _const(ins[1])
    if any(ctx.used(t) for t in node.output[1:]):
        raise Unsupported("its Mean and InvStdDev outputs have no axon form")
    beta = _const(ins[2]) if len(ins) > 2 and ins[2] is not None else np.zeros_like(gamma)
    r = len(x.shape)
    axis, eps, name = int(a.get("axis", -1)) % r, float(a.get("epsilon", 1e-5)), ctx.layer_name(node)
    if axis == r - 1:
        return ctx.with_params(M.layer_norm(x, epsilon=eps, name=name), gamma=gamma, beta=beta)
    specs = {"gamma": M.param(gamma.shape, "ones"), "beta": M.param(gamma.shape, "zeros")}
    y = M.layer(_layer_norm_fn, [x], params=specs, name=name, op_name="layer_norm", axis=tuple(range(axis, r)),
                epsilon=eps)
    return ctx.with_params(y, gamma=gamma, beta=beta)


def _group_norm(ctx, node, ins, a):
    x, gamma, beta = _node_input(ins[0]), _const(ins[1]), _const(ins[2])
    groups, c = int(a["num_groups"]), x.shape[1]
    if gamma.shape == (groups,) and groups != c:               # opset 18: one scale per group
        gamma, beta = np.repeat(gamma, c // groups), np.repeat(beta, c // groups)
    y = M.group_norm(x, num_groups=groups, epsilon=float(a.get("epsilon", 1e-5)), channels="first",
                     name=ctx.layer_name(node))
    return ctx.with_params(y, gamma=gamma, beta=beta)


# ---- linear ----------------------------------------------------------------------------------------
def _gemm(ctx, node, ins, a):
    x, w = _node_input(ins[0]), _const(ins[1])
    if a.get("transA", 0) or len(x.shape) != 2:
        raise Unsupported("only Gemm(x, W) on (batch, features) with a constant W maps to dense")
    kernel = float(a.get("alpha", 1.0)) * (w.T if a.get("transB", 0) else w)   # (in, out)
    bias = None
    if len(ins) > 2 and ins[2] is not None:
        c = _const(ins[2], "bias")
        if c.size not in (1, kernel.shape[1]):
            raise Unsupported(f"a bias of shape {c.shape} is not one per output")
        bias = float(a.get("beta", 1.0)) * np.broadcast_to(c.reshape(-1), (kernel.shape[1],))
    y = M.dense(x, kernel.shape[1], use_bias=bias is not None, name=ctx.layer_name(node))
    return ctx.with_params(y, kernel=kernel, bias=bias)


def _matmul(ctx, node, ins, a):
    """MatMul by a constant is dense; an Add of a bias right after (its only use) becomes the dense's bias."""
    x, w = _node_input(ins[0]), _const(ins[1])
    if w.ndim != 2 or len(x.shape) not in (2, 3):
        raise Unsupported("only (batch, [steps,] features) @ a constant matrix maps to dense")
    bias, users = None, ctx.consumers.get(node.output[0], [])
    if len(users) == 1 and users[0].op_type == "Add" and node.output[0] not in ctx.outputs:
        add = users[0]
        other = [t for t in add.input if t != node.output[0]]
        c = ctx.env.get(other[0]) if len(other) == 1 else None
        if isinstance(c, np.ndarray) and c.dtype.kind == "f" and c.reshape(-1).shape == (w.shape[1],) \
                and c.ndim <= 1 + (len(x.shape) == 2):
            bias = c.reshape(-1)
    y = M.dense(x, w.shape[1], use_bias=bias is not None, name=ctx.layer_name(node))
    if bias is not None:
        ctx.alias[add.output[0]] = node.output[0]             # the Add is done: its output is the dense's
    return ctx.with_params(y, kernel=w, bias=bias)


def _gather(ctx, node, ins, a):
    data, idx, axis = ins[0], ins[1], int(a.get("axis", 0))
    if isinstance(data, np.ndarray) and isinstance(idx, np.ndarray):
        return np.asarray(np.take(data, idx.astype(np.int64), axis=axis), dtype=data.dtype)
    if isinstance(data, np.ndarray) and data.ndim == 2 and axis == 0 and data.dtype.kind == "f":
        y = M.embedding(_node_input(idx), data.shape[0], data.shape[1], name=ctx.layer_name(node))
        return ctx.with_params(y, kernel=data)
    raise Unsupported("only Gather of rows of a constant table (an embedding) maps to axon")


def _einsum(ctx, node, ins, a):
    if a.get("equation", "").replace(" ", "") != "...i,oij,...j->...o" or len(ins) != 3:
        raise Unsupported(f"equation {a.get('equation')!r}: only bilinear's ...i,oij,...j->...o maps to axon")
    x1, w, x2 = _node_input(ins[0]), _const(ins[1]), _node_input(ins[2])
    bias = None
    users = ctx.consumers.get(node.output[0], [])
    if len(users) == 1 and users[0].op_type == "Add" and node.output[0] not in ctx.outputs:
        other = [t for t in users[0].input if t != node.output[0]]
        c = ctx.env.get(other[0]) if len(other) == 1 else None
        if isinstance(c, np.ndarray) and c.shape == (w.shape[0],):
            bias, ctx.alias[users[0].output[0]] = c, node.output[0]
    y = M.bilinear(x1, x2, w.shape[0], use_bias=bias is not None, name=ctx.layer_name(node))
    return ctx.with_params(y, kernel=w, bias=bias)


# ---- element-wise -------------------------------------------------------------------------------------
def _binary(op_type):
    fold = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op_type]

    def handle(ctx, node, ins, a):
        x, y = ins
        if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
            return fold(x, y)
        kind = op_type
        if kind == "Div":
            if not isinstance(y, np.ndarray):
                raise Unsupported("division by a computed value has no axon layer")
            kind, y = "Mul", (1 / y).astype(y.dtype)
        nodes = [v if isinstance(v, Axon) else M.constant(_numeric(v)) for v in (x, y)]
        return {"Add": M.add, "Sub": M.subtract, "Mul": M.multiply}[kind](nodes)
    return handle


def _numeric(v):
    if v.dtype == object:
        raise Unsupported("arithmetic on a shape with unknown sizes")
    return v


def _activation(name, **fixed):
    """An ONNX activation: the axon one of ``name``; ``fixed`` maps axon options to (attribute, default)."""
    def handle(ctx, node, ins, a):
        opts = {k: (a.get(attr, default) if isinstance(attr, str) else attr) for k, (attr, default) in fixed.items()}
        return M.activation(_node_input(ins[0]), name, **opts)
    return handle


def _gelu(ctx, node, ins, a):
    return M.gelu(_node_input(ins[0]), approximate=a.get("approximate", "none") == "tanh")


def _softmax(name):
    def handle(ctx, node, ins, a):
        x = _node_input(ins[0])
        r = len(x.shape)
        axis = int(a.get("axis", -1 if ctx.opset >= 13 else 1)) % r
        if ctx.opset < 13 and axis != r - 1:
            raise Unsupported(f"{node.op_type} before opset 13 over axes {axis}.. (flattened) has no axon form")
        return M.activation(x, name, axis=axis)
    return handle


def _clip(ctx, node, ins, a):
    x = _node_input(ins[0])
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("min")
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else a.get("max")
    lo = None if lo is None else float(_const(np.asarray(lo), "min"))
    hi = None if hi is None or not np.isfinite(hi) else float(_const(np.asarray(hi), "max"))
    named = {(0.0, 6.0): "relu6", (-1.0, 1.0): "hard_tanh", (0.0, None): "relu"}
    if (lo, hi) not in named:
        raise Unsupported(f"Clip({lo}, {hi}): only (0, 6), (-1, 1) and (0, inf) are axon activations")
    return M.activation(x, named[(lo, hi)])


def _neg(ctx, node, ins, a):
    x = ins[0]
    if isinstance(x, np.ndarray):
        return -_numeric(x)
    return M.multiply([x, M.constant(np.asarray(-1, ctx.float))])


# ---- shape ------------------------------------------------------------------------------------------
def _flatten(ctx, node, ins, a):
    x = ins[0]
    axis = int(a.get("axis", 1))
    if isinstance(x, np.ndarray):
        return x.reshape(int(np.prod(x.shape[:axis])), -1)
    if axis % max(len(x.shape), 1) != 1:
        raise Unsupported(f"Flatten at axis {axis}: only axis 1 keeps the batch axis")
    return M.flatten(x)


def _reshape(ctx, node, ins, a):
    x, target = ins[0], _const(ins[1], "shape")
    if isinstance(x, np.ndarray):
        return _numeric(x).reshape([int(t) if t is not None else -1 for t in target])
    if a.get("allowzero", 0):
        raise Unsupported("allowzero=1")
    target = [None if t is None else int(t) for t in target.tolist()]
    first, rest = target[0], target[1:]
    if not (first in (0, -1, None) or (first == ctx.batch and first is not None)) or (first == -1 and -1 in rest):
        raise Unsupported(f"shape {target}: the first axis must stay the batch axis")
    rest = [x.shape[i + 1] if t == 0 and i + 1 < len(x.shape) else t for i, t in enumerate(rest)]
    if any(t is None for t in rest):
        raise Unsupported(f"shape {target}: sizes that depend on the input")
    return M.reshape(x, tuple(rest))


def _transpose(ctx, node, ins, a):
    x = ins[0]
    rank = x.ndim if isinstance(x, np.ndarray) else len(x.shape)
    perm = list(a.get("perm", range(rank - 1, -1, -1)))
    if isinstance(x, np.ndarray):
        return x.transpose(perm)
    if perm[0] != 0:                                           # (T, B, F) <-> (B, T, F) around a recurrent op
        return _whole("transpose", lambda x, perm: L.transpose(x, perm), x, perm=tuple(int(p) for p in perm))
    return M.transpose(x, tuple(p - 1 for p in perm[1:]))


def _pad(ctx, node, ins, a):
    x = _node_input(ins[0])
    r = len(x.shape)
    if a.get("mode", "constant") != "constant":
        raise Unsupported(f"mode {a.get('mode')!r}: only constant padding is an axon layer")
    pads = a.get("pads") if ctx.opset < 11 else _const(ins[1], "pads").tolist()
    value = a.get("value", 0.0) if ctx.opset < 11 else (
        float(_const(ins[2], "value")) if len(ins) > 2 and ins[2] is not None else 0.0)
    axes = _const(ins[3], "axes").tolist() if len(ins) > 3 and ins[3] is not None else list(range(r))
    width = [[0, 0] for _ in range(r)]
    for i, ax in enumerate(axes):
        width[int(ax) % r] = [int(pads[i]), int(pads[i + len(axes)])]
    if any(p < 0 for pair in width for p in pair) or width[0] != [0, 0] or not 3 <= r <= 5:
        raise Unsupported(f"pads {pads}: axon pads the spatial axes of a rank 3-5 input, by non-negative amounts")
    if width[1] == [0, 0]:
        return M.pad(x, [tuple(p) for p in width[2:]], value=value, channels="first")
    if width[-1] == [0, 0]:
        return M.pad(x, [tuple(p) for p in width[1:-1]], value=value, channels="last")
    raise Unsupported(f"pads {pads} pad both the channel and the spatial axes")


def _resize(ctx, node, ins, a):
    x = _node_input(ins[0])
    r = len(x.shape)
    axes = [int(ax) % r for ax in a.get("axes", range(r))]
    shape = [x.shape[ax] for ax in axes]
    sizes = ins[3] if len(ins) > 3 and ins[3] is not None and ins[3].size else None
    if sizes is None:
        scales = _const(ins[2], "scales") if len(ins) > 2 and ins[2] is not None else None
        if scales is None or any(n is None and s != 1 for n, s in zip(shape, scales.tolist())):
            raise Unsupported("Resize needs sizes, or scales and known sizes")
        sizes = [n if s == 1 else int(np.floor(n * s)) for n, s in zip(shape, scales.tolist())]
    sizes = [None if s is None else int(s) for s in np.asarray(sizes).tolist()]
    kept = [ax for ax, n, s in zip(axes, shape, sizes) if n != s]
    shape, sizes = [x.shape[ax] for ax in kept], [s for ax, s in zip(axes, sizes) if ax in kept]
    mode, where = a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "half_pixel")
    if 0 in kept:
        raise Unsupported("Resize of the batch axis")
    if mode == "nearest":
        upscale = all(s % n == 0 for n, s in zip(shape, sizes))
        ok = (where == "half_pixel" and a.get("nearest_mode") == "round_prefer_ceil") or \
            (where == "asymmetric" and a.get("nearest_mode", "round_prefer_floor") == "floor" and upscale)
        method = "nearest"
    else:
        ok = mode == "linear" and (where == "half_pixel"               # PyTorch's differs for outputs of size 1
                                   or (where == "pytorch_half_pixel" and min(sizes, default=2) > 1))
        method = "bilinear"
    if not ok or a.get("antialias", 0):
        raise Unsupported(f"mode {mode!r} with {where!r} has no axon form (axon samples at pixel centres)")
    full = dict(zip(kept, sizes))
    for channels, spatial in (("first", list(range(2, r))), ("last", list(range(1, r - 1)))):
        if set(kept) <= set(spatial) and 3 <= r <= 5:
            return M.resize(x, tuple(full.get(ax, x.shape[ax]) for ax in spatial), method=method, channels=channels)
    raise Unsupported(f"Resize of axes {kept}")


def _concat(ctx, node, ins, a):
    axis = int(a["axis"])
    if all(isinstance(v, np.ndarray) for v in ins):
        return np.concatenate(ins, axis=axis)
    if not all(isinstance(v, Axon) for v in ins):
        raise Unsupported("a Concat of computed values and constants has no axon form")
    axis %= len(ins[0].shape)
    if axis == 0:
        raise Unsupported("a Concat along the batch axis has no axon form")
    return M.concatenate(list(ins), axis=axis) if len(ins) > 1 else ins[0]


def _cast(ctx, node, ins, a):
    x, to = ins[0], ctx.onnx.helper.tensor_dtype_to_np_dtype(a["to"])
    if isinstance(x, np.ndarray):
        if x.dtype == object and None in x.tolist():
            raise Unsupported("a shape with unknown sizes cast to numbers")
        return x.astype(to)
    users = ctx.consumers.get(node.output[0], [])
    if to.kind in "iu" and users and all(u.op_type == "Gather" and u.input[1] == node.output[0] for u in users):
        return x                                               # indices: embedding takes them as they are
    if to == ctx.float:
        return x
    raise Unsupported(f"a cast to {to} of a computed value has no axon form")


def _shape(ctx, node, ins, a):
    x = ins[0]
    shape = list(x.shape)
    start, end = int(a.get("start", 0)), a.get("end")
    return np.array(shape[start:None if end is None else int(end)], dtype=object if isinstance(x, Axon) else np.int64)


def _expand(ctx, node, ins, a):
    """A constant broadcast to a shape; with sizes unknown until run time (PyTorch's zero initial states of
    an LSTM, from the input's Shape) only zeros that a recurrent op reads, which it takes as no state."""
    x, shape = _const(ins[0]), _const(ins[1], "shape")
    if all(v is not None for v in shape.tolist()):
        return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(v) for v in shape))).copy()
    if x.any() or any(c.op_type not in ("LSTM", "GRU") for c in ctx.consumers.get(node.output[0], [])):
        raise Unsupported("an Expand to a shape known only at run time (other than zero states of LSTM/GRU)")
    return np.zeros((1,) * len(shape), x.dtype)                # zeros: what the recurrent op starts from anyway


def _axes(ctx, ins, a):
    if "axes" in a:
        return list(a["axes"])
    return _const(ins[1], "axes").tolist() if len(ins) > 1 and ins[1] is not None else None


def _unsqueezed(shape, axes):
    """``shape`` with a unit axis at each of ``axes`` (positions in the result, as ONNX's Unsqueeze)."""
    shape = list(shape)
    for ax in sorted(int(v) % (len(shape) + len(axes)) for v in axes):
        shape.insert(ax, 1)
    return tuple(shape)


def _unsqueeze(ctx, node, ins, a):
    x, axes = ins[0], _axes(ctx, ins, a)
    if isinstance(x, Axon):                                    # a recurrent op's initial state: (B, H) -> (1, B, H)
        return _whole("unsqueeze", lambda x, axes: L.reshape(x, _unsqueezed(x.shape, axes)), x, axes=tuple(axes))
    return np.reshape(x, _unsqueezed(x.shape, axes))


def _squeezed(shape, axes):
    drop = {int(v) % len(shape) for v in axes} if axes is not None else {i for i, n in enumerate(shape) if n == 1}
    return tuple(n for i, n in enumerate(shape) if i not in drop)


def _squeeze(ctx, node, ins, a):
    x, axes = ins[0], _axes(ctx, ins, a)
    if isinstance(x, Axon):                                    # a direction axis: (T, 1, B, H) -> (T, B, H)
        if axes is None:
            raise Unsupported("a Squeeze of a computed value needs its axes")
        return _whole("squeeze", lambda x, axes: L.reshape(x, _squeezed(x.shape, axes)), x, axes=tuple(axes))
    return np.reshape(x, _squeezed(x.shape, axes))


_BIG = 1 << 31                                                 # Slice bounds past any axis: "to the end"


def _slice(ctx, node, ins, a):
    starts, ends = _const(ins[1]).tolist(), _const(ins[2]).tolist()
    axes = _const(ins[3]).tolist() if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
    steps = _const(ins[4]).tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    if isinstance(ins[0], Axon) and len(axes) == 1 and steps == [-1] and (starts[0] == -1 or starts[0] >= _BIG) \
            and ends[0] <= -_BIG:                              # one whole axis reversed (a backward run)
        index = [slice(None)] * len(ins[0].shape)
        index[int(axes[0])] = slice(None, None, -1)
        return _whole("reverse", lambda x, index: x[index], ins[0], index=tuple(index))
    x = _const(ins[0], "input (only constants are sliced, or one whole axis reversed)")
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _constant(ctx, node, ins, a):
    if "value" in a:
        return ctx.array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype)
    raise Unsupported(f"a Constant with {sorted(a)} has no value axon reads")


def _identity(ctx, node, ins, a):
    if node.op_type == "Dropout" and len(node.output) > 1 and ctx.used(node.output[1]):
        raise Unsupported("its mask output has no axon form")
    return ins[0]


# ---- recurrent ops ------------------------------------------------------------------------------------
def _whole(op, fn, x, **opts):
    """A layer over whole tensors (the batch axis too): the file's axes, which may put time or a direction first."""
    return M.layer(fn, [x], op_name=f"onnx_{op}", **opts)


_DEFAULT_ACTIVATIONS = {"lstm": ("sigmoid", "tanh", "tanh"), "gru": ("sigmoid", "tanh")}


def _axon_gates(w, order) -> np.ndarray:
    """(gH, ...) in ONNX's gate order -> (..., gH) in axon's: transposed, then the blocks reordered."""
    blocks = np.split(np.asarray(w).T, len(order), axis=-1)    # ONNX's block k is axon's gate order[k]
    return np.concatenate([blocks[order.index(j)] for j in range(len(order))], axis=-1)


def _recurrent_call(x, *carry, op, layout, directions, has_c, **params):
    """ONNX's LSTM/GRU outputs (Y, Y_h[, Y_c]) from X, in the file's layout, one axon layer run per direction."""
    xb = x if layout else L.transpose(x, (1, 0, 2))           # (T, B, F) -> (B, T, F)
    # an initial state's direction d: (B, H). In layout 0 its leading axis is a graph input's first (free) axis,
    # which axon takes for the batch: a state of one direction there serves each direction.
    pick = (lambda s, d: s[:, d]) if layout else (lambda s, d: s[d if s.shape[0] > 1 else 0])
    zeros = np.zeros((xb.shape[0], params["kernel_hidden"].shape[1]), xb.dtype)
    ys, hs, cs = [], [], []
    for d, reverse in enumerate(directions):
        p = {k: v[d] for k, v in params.items()}
        h0 = pick(carry[0], d) if carry else zeros
        if op == "lstm":
            c0 = pick(carry[1], d) if has_c else zeros
            y, (c, h) = L.lstm(xb, (c0, h0), p["kernel_input"], p["kernel_hidden"], p["bias"], reverse=reverse)
            cs.append(c)
        else:
            y, h = L.gru(xb, h0, p["kernel_input"], p["kernel_hidden"], p["bias_input"], p["bias_hidden"],
                         reverse=reverse)
        ys.append(y if layout else L.transpose(y, (1, 0, 2)))  # (B, T, H), or (T, B, H)
        hs.append(h)
    last = [stack(v, axis=layout) for v in (hs, cs) if v]    # (nd, B, H), or (B, nd, H)
    return (stack(ys, axis=1 + layout), *last)               # (T, nd, B, H), or (B, T, nd, H)


def _recurrent(ctx, node, ins, a):
    """LSTM and GRU (forward, reverse, bidirectional; layout 0 or 1) as one layer; its outputs picked from it."""
    op = node.op_type.lower()
    order = _ONNX_GATES[op]
    ins = ins + [None] * (8 - len(ins))
    x, w, r = _node_input(ins[0]), _const(ins[1]), _const(ins[2])
    nd, gH = w.shape[:2]
    H = gH // len(order)
    direction = a.get("direction", "forward")
    directions = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}.get(direction)
    if directions is None or len(directions) != nd:
        raise Unsupported(f"direction {direction!r} with weights for {nd} direction(s)")
    acts = tuple(v.decode() if isinstance(v, bytes) else v for v in a.get("activations", ()))
    if acts and tuple(v.lower() for v in acts) != _DEFAULT_ACTIVATIONS[op] * nd:
        raise Unsupported(f"activations {list(acts)} (axon's cells use {list(_DEFAULT_ACTIVATIONS[op])})")
    if "clip" in a or a.get("input_forget", 0):
        raise Unsupported("clip and input_forget have no axon form")
    if op == "gru" and not a.get("linear_before_reset", 0):
        raise Unsupported("linear_before_reset=0 (axon's GRU is PyTorch's, linear_before_reset=1)")
    if ins[4] is not None:
        raise Unsupported("sequence_lens (pad the sequences and give the axon layer a mask instead)")
    if op == "lstm" and ins[7] is not None:
        raise Unsupported("peepholes (input P) have no axon form")
    b = _const(ins[3], "bias") if ins[3] is not None else np.zeros((nd, 2 * gH), w.dtype)
    carry = []
    for v, what in ((ins[5], "initial_h"), (ins[6] if op == "lstm" else None, "initial_c")):
        if isinstance(v, np.ndarray) and v.any():
            raise Unsupported(f"a constant nonzero {what} (give it as a computed value)")
        carry.append(v if isinstance(v, Axon) else None)
    if carry[1] is not None and carry[0] is None:
        raise Unsupported("initial_c without initial_h")
    inputs = [x] + [c for c in carry if c is not None]
    arrays = {"kernel_input": np.stack([_axon_gates(w[d], order) for d in range(nd)]),          # (nd, F, gH)
              "kernel_hidden": np.stack([_axon_gates(r[d], order) for d in range(nd)])}         # (nd, H, gH)
    bw, br = (np.stack([_axon_gates(v[d], order) for d in range(nd)]) for v in (b[:, :gH], b[:, gH:]))
    if op == "lstm":
        arrays["bias"] = bw + br                                 # (nd, 4H): axon's LSTM adds the two
    else:
        arrays["bias_input"], arrays["bias_hidden"] = bw, br
    specs = {k: M.param(v.shape, "zeros") for k, v in arrays.items()}
    y = M.layer(_recurrent_call, inputs, params=specs, name=ctx.layer_name(node), op_name=f"onnx_{op}", op=op,
                layout=int(a.get("layout", 0)), directions=directions, has_c=carry[1] is not None)
    y = ctx.with_params(y, **arrays)
    return tuple(_whole("output", lambda y, index: y[index], y, index=i) if ctx.used(t) else None
                 for i, t in enumerate(node.output))


_IMPORTERS = {
    "Conv": _conv, "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool, "AveragePool": _avg_pool, "LpPool": _lp_pool,
    "GlobalAveragePool": _global("global_avg_pool"), "GlobalMaxPool": _global("global_max_pool"),
    "GlobalLpPool": _global("global_lp_pool"),
    "ReduceMean": _reduce, "ReduceMax": _reduce, "ReduceL2": _reduce, "ReduceLogSumExp": _reduce,
    "BatchNormalization": _batch_norm, "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm, "GroupNormalization": _group_norm,
    "Gemm": _gemm, "MatMul": _matmul, "Gather": _gather, "Einsum": _einsum,
    "Add": _binary("Add"), "Sub": _binary("Sub"), "Mul": _binary("Mul"), "Div": _binary("Div"), "Neg": _neg,
    "Relu": _activation("relu"), "Sigmoid": _activation("sigmoid"), "Tanh": _activation("tanh"),
    "Exp": _activation("exp"), "Erf": _activation("erf"), "Softplus": _activation("softplus"),
    "Softsign": _activation("softsign"), "Mish": _activation("mish"),
    "Elu": _activation("elu", alpha=("alpha", 1.0)), "Celu": _activation("celu", alpha=("alpha", 1.0)),
    "Selu": _activation("selu", alpha=("alpha", 1.67326319217681884765625),
                        gamma=("gamma", 1.05070102214813232421875)),
    "LeakyRelu": _activation("leaky_relu", alpha=("alpha", 0.01)),
    "HardSigmoid": _activation("hard_sigmoid", alpha=("alpha", 0.2), beta=("beta", 0.5)),
    "HardSwish": _activation("hard_silu", alpha=(1 / 6, None), beta=(0.5, None)),
    "Gelu": _gelu, "Softmax": _softmax("softmax"), "LogSoftmax": _softmax("log_softmax"), "Clip": _clip,
    "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose, "Pad": _pad, "Resize": _resize,
    "Concat": _concat, "Cast": _cast, "Shape": _shape, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze,
    "Slice": _slice, "Constant": _constant, "Identity": _identity, "Dropout": _identity,
    "LSTM": _recurrent, "GRU": _recurrent, "Expand": _expand,
}


# ---- load -------------------------------------------------------------------------------------------
def load(path):
    """``(model, params)`` from the ONNX file at ``path``; the model takes inputs in the file's layout.

    Raises ValueError naming the file when it cannot be read or parsed, and one ValueError listing
    every node that has no axon form.

    >>> import os, tempfile, numpy as np, axon, axon.onnx
    >>> model = axon.input((None, 6, 6, 2)).conv(3, kernel_size=3).batch_norm().relu().global_avg_pool()
    >>> params = axon.init(model, seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "cnn.onnx")
    >>> axon.onnx.export(model, params, path)
    >>> loaded, loaded_params = axon.onnx.load(path)
    >>> [n.op for n in loaded.nodes()]                       # the exporter's transposes come back as layers
    ['input', 'transpose', 'conv', 'batch_norm', 'relu', 'global_avg_pool']
    >>> x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype(np.float32)
    >>> np.allclose(axon.predict(loaded, loaded_params, x), axon.predict(model, params, x), atol=1e-6)
    True
    >>> open(path, "w").write("not a model")
    11
    >>> axon.onnx.load(path)                                 # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: load: '...cnn.onnx' is not an ONNX model (...)
    """
    onnx = require_onnx()
    path = os.fspath(path)
    proto = _read(onnx, path)
    try:
        return _translate(_Context(onnx, proto, path))
    except ValueError as e:
        if repr(path) in str(e):
            raise
        raise ValueError(f"load: {path!r}: {e}") from e
    except Exception as e:                                     # whatever a malformed graph trips over
        raise ValueError(f"load: {path!r} is not a model axon can read ({type(e).__name__}: {e})") from e


def _translate(ctx):
    """The model and params of the file in ``ctx``: inputs, then each node in the file's (topological) order."""
    onnx, path, graph = ctx.onnx, ctx.path, ctx.graph
    for t in graph.initializer:
        ctx.env[t.name] = ctx.array(t)
    if len(graph.sparse_initializer):
        raise ValueError(f"load: {path!r}: sparse initializers are not supported")
    for v in graph.input:
        if v.name in ctx.env:
            continue
        t = v.type.tensor_type
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
        except Exception as e:
            raise ValueError(f"load: {path!r}: input {v.name!r} has an unknown element type {t.elem_type}") from e
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
        if dims and dims[0] is not None:
            ctx.batch = dims[0]
        if dtype.kind == "f":
            ctx.float = dtype
        ctx.env[v.name] = M.input((None, *dims[1:]) if dims else (), name=v.name)
        ctx.names.add(v.name)

    problems = []
    for node in graph.node:
        label = f"'{node.name or (node.output[0] if node.output else '?')}' ({node.op_type})"
        handle = _IMPORTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if handle is None:
            problems.append(f"{label}: no axon layer for this op")
            ctx.failed.update(node.output)
            continue
        if all(o in ctx.alias for o in node.output if o):      # folded into the layer before it
            continue
        ins = [ctx.env.get(ctx.alias.get(t, t)) if t else None for t in node.input]
        missing = [t for t, v in zip(node.input, ins) if t and v is None]
        if missing:
            if any(t not in ctx.failed for t in missing):
                problems.append(f"{label}: input {missing[0]!r} is not defined before it")
            ctx.failed.update(node.output)
            continue
        try:
            y = handle(ctx, node, ins, _attributes(onnx, node))
        except Unsupported as e:
            problems.append(f"{label}: {e}")
            ctx.failed.update(node.output)
            continue
        except Exception as e:                                 # an axon builder refused, a malformed node
            problems.append(f"{label}: {e}" if isinstance(e, (ValueError, TypeError)) else
                            f"{label}: malformed ({type(e).__name__}: {e})")
            ctx.failed.update(node.output)
            continue
        if isinstance(y, tuple):                               # several outputs (a recurrent op's Y, Y_h, Y_c)
            ctx.env.update((t, v) for t, v in zip(node.output, y) if t and v is not None)
        elif node.output:
            ctx.env[node.output[0]] = y
    if problems:
        raise ValueError(f"load: {path!r}: {len(problems)} node{'s' if len(problems) > 1 else ''} "
                         f"{'have' if len(problems) > 1 else 'has'} no axon form: " + "; ".join(problems))

    outputs = {}
    for o in graph.output:
        y = ctx.env.get(ctx.alias.get(o.name, o.name))
        if not isinstance(y, Axon):
            raise ValueError(f"load: {path!r}: output {o.name!r} is "
                             f"{'a constant' if y is not None else 'never computed'}; axon needs it computed")
        outputs[o.name] = y
    model = next(iter(outputs.values())) if len(outputs) == 1 else M.container(outputs)
    names = model.names()
    params = {names[n.id]: ctx.params[n.id] for n in model.nodes() if n.id in ctx.params}
    return model, params

