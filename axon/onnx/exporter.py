"""Export an axon model and its params to an ONNX file: ``export(model, params, path, opset=OPSET)``.

Each layer becomes one ONNX op where ONNX has it (``Gemm``, ``Conv``, ``MaxPool``,
``BatchNormalization``, ``Relu``, ...) and a short composition where it does not (``silu`` is
``x * Sigmoid(x)``, ``group_norm`` a reshape and two ``ReduceMean``). Every layer's output tensor is
named after the layer (``dense_0``), its params after their place in the params
(``dense_0.kernel``), so a file reads like the model's summary.

**Layout.** axon is channels-last, ONNX's ``Conv`` and pools are channels-first. The exporter keeps,
for every value, the ONNX tensors that hold it and the axis order of each (``perm``: tensor axis
``j`` holds axon axis ``perm[j]``). A layer that needs channels first asks for that order and gets a
``Transpose`` only the first time; element-wise layers keep whatever order their input has; a layer
whose meaning depends on the order of elements (``flatten``, ``dense``, the graph outputs) asks for
axon's. So a CNN exports as ``Transpose, Conv, Relu, MaxPool, Conv, Relu, MaxPool, Transpose,
Flatten, Gemm, ...``: one transpose each way, and the file takes and returns axon's layout.

``lstm`` and ``gru`` become ONNX's ``LSTM`` and ``GRU`` (their gates reordered), ``bidirectional``
their two runs with a ``Slice`` reversing the sequence. Layers ONNX cannot express (``axon.nx``/
``axon.layer`` functions of your own, an input dilation together with strides, attention, ``conv_lstm``,
a recurrent layer with a mask) make ``export`` raise one ValueError that lists all of them.

>>> import os, tempfile, onnx, axon, axon.onnx
>>> model = axon.input((None, 4)).dense(3, activation="relu")
>>> path = os.path.join(tempfile.mkdtemp(), "mlp.onnx")
>>> axon.onnx.export(model, axon.init(model), path)
>>> [n.op_type for n in onnx.load(path).graph.node]
['Gemm', 'Relu']
"""
from __future__ import annotations

import inspect

import numpy as np

from .. import __version__
from ..functional import activations as A
from ..functional.layers.convolution import _geometry as _conv_geometry, _separable_steps, conv_transpose_padding
from ..functional.layers.pooling import _adaptive_geometry, _window_geometry
from ..functional.layers.shape import _pad_pairs, _resize_size
from ..functional.layers._utils import channel_axis, spatial_tuple
from ..model.graph import Axon
from ..serialization import atomic_write
from ..tree import tree_leaves
from ._require import Unsupported, require_onnx

__all__ = ["export", "OPSET", "MIN_OPSET"]

OPSET = 18                     # the default: onnxruntime and PyTorch read it
MIN_OPSET = 17                 # LayerNormalization, and the ops below, are all there from 17 on


# ---- values and the graph being built ------------------------------------------------------------
def _identity(rank: int) -> tuple:
    return tuple(range(rank))


def _channels_first(rank: int) -> tuple:
    """The order of axon's (N, *spatial, C) in ONNX's (N, C, *spatial): (0, r - 1, 1, ..., r - 2)."""
    return (0, rank - 1, *range(1, rank - 1))


def _without(perm: tuple, stored_axes) -> tuple:
    """``perm`` after the tensor axes ``stored_axes`` are reduced away (axon axes renumbered)."""
    kept = [a for j, a in enumerate(perm) if j not in set(stored_axes)]
    order = sorted(kept)
    return tuple(order.index(a) for a in kept)


class _Value:
    """One axon value in the ONNX graph: ``views`` maps an axis order (``perm``) to the tensor holding it.

    The first view is where the value was computed; others are transposes made on request, once.
    """
    __slots__ = ("rank", "views")

    def __init__(self, rank: int, name: str, perm: tuple | None = None):
        self.rank = rank
        self.views = {_identity(rank) if perm is None else tuple(perm): name}

    @property
    def perm(self) -> tuple:
        return next(iter(self.views))

    @property
    def name(self) -> str:
        return next(iter(self.views.values()))


class _Graph:
    """The ONNX nodes and initializers emitted so far, with unique names and a few shared helpers."""

    def __init__(self, onnx, opset: int, dtype):
        self.onnx, self.opset, self.dtype = onnx, opset, np.dtype(dtype)
        self.nodes: list = []                  # [op_type, inputs, outputs, node name, attributes]
        self.initializers: dict = {}           # name -> array
        self.taken: set = set()                # tensor names
        self.node_names: set = set()
        self.layer = ""                        # the layer being emitted (prefix of its names)
        self._consts: dict = {}

    def fresh(self, base: str, taken: set | None = None) -> str:
        taken = self.taken if taken is None else taken
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    def param(self, value, pname: str) -> str:
        """A layer's parameter as an initializer named ``layer.pname`` (in the model's float dtype)."""
        name = self.fresh(f"{self.layer}.{pname}")
        self.initializers[name] = np.ascontiguousarray(value, dtype=self.dtype)
        return name

    def const(self, value) -> str:
        """A constant operand (shared between the layers that use the same one)."""
        value = np.asarray(value)
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._consts:
            name = self.fresh(f"{self.layer}/const")
            self.initializers[name] = value
            self._consts[key] = name
        return self._consts[key]

    def scalar(self, v) -> str:
        return self.const(np.asarray(v, self.dtype))

    def ints(self, v) -> str:
        return self.const(np.asarray(v, np.int64))

    def op(self, op_type: str, inputs, n_out: int = 1, **attrs):
        outs = [self.fresh(f"{self.layer}/{op_type}") for _ in range(n_out)]
        self.nodes.append([op_type, list(inputs), outs, self.fresh(f"{self.layer}/{op_type}", self.node_names), attrs])
        return outs[0] if n_out == 1 else outs

    def layout(self, v: _Value, perm: tuple) -> str:
        """The tensor holding ``v`` in axis order ``perm``: a Transpose the first time it is asked for."""
        perm = tuple(perm)
        if perm not in v.views:
            src_perm, src = v.perm, v.name
            v.views[perm] = self.op("Transpose", [src], perm=[src_perm.index(a) for a in perm])
        return v.views[perm]

    def reduce(self, op_type: str, x: str, axes, keepdims: bool) -> str:
        """A Reduce* op over tensor axes ``axes`` (the axes are an input from opset 18, ReduceSum from 13)."""
        axes = [int(a) for a in axes]
        if self.opset >= 18 or op_type == "ReduceSum":
            return self.op(op_type, [x, self.ints(axes)], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=axes, keepdims=int(keepdims))

    def rename(self, old: str, new: str, start: int = 0) -> None:
        """Call tensor ``old`` ``new`` in every node from ``start`` on."""
        for node in self.nodes[start:]:
            node[1] = [new if t == old else t for t in node[1]]
            node[2] = [new if t == old else t for t in node[2]]

    def produced(self, tensor: str, start: int = 0) -> bool:
        return any(tensor in node[2] for node in self.nodes[start:])


# ---- dense, embedding, bilinear ------------------------------------------------------------------
def _dense(g, node, xs, p):
    x = xs[0]
    name = g.layout(x, _identity(x.rank))
    bias = [g.param(p["bias"], "bias")] if "bias" in p else []
    if x.rank == 2:
        return _Value(2, g.op("Gemm", [name, g.param(p["kernel"], "kernel")] + bias))
    y = g.op("MatMul", [name, g.param(p["kernel"], "kernel")])           # (N, T, in) @ (in, out)
    return _Value(x.rank, g.op("Add", [y] + bias) if bias else y)


def _embedding(g, node, xs, p):
    x = xs[0]
    idx = g.op("Cast", [g.layout(x, _identity(x.rank))], to=g.onnx.TensorProto.INT64)
    return _Value(x.rank + 1, g.op("Gather", [g.param(p["kernel"], "kernel"), idx], axis=0))   # (*idx, dim)


def _bilinear(g, node, xs, p):
    a, b = (g.layout(x, _identity(x.rank)) for x in xs)
    y = g.op("Einsum", [a, g.param(p["kernel"], "kernel"), b], equation="...i,oij,...j->...o")
    return _Value(xs[0].rank, g.op("Add", [y, g.param(p["bias"], "bias")]) if "bias" in p else y)


# ---- convolutions ------------------------------------------------------------------------------------
def _layout_of(node) -> tuple:
    """The axis order that puts the node's channels at axis 1 (ONNX's layout for conv, pools, norms)."""
    rank = len(node.parents[0].shape)
    return _identity(rank) if node.opts.get("channels", "last") == "first" else _channels_first(rank)


def _geometry(node, shape, kernel_shape, **options):
    """``conv._geometry`` for this node: (strides, pads, input dilation, kernel dilation, groups, shape)."""
    try:
        return _conv_geometry(node.op, shape, kernel_shape, channels=node.opts.get("channels", "last"),
                                     **options)
    except TypeError as e:                                     # a spatial size of None
        raise Unsupported(f"the spatial sizes of the input must be known, got shape {shape}") from e


def _emit_conv(g, x, kernel, bias, strides, pads, in_dil, k_dil, groups, perm, names=("kernel", "bias")):
    """One convolution (kernel (*k, C_in // groups, C_out)) on ``x`` in ONNX's channels-first layout."""
    n = kernel.ndim - 2
    k = list(kernel.shape[:n])
    name = g.layout(x, perm)
    b = [g.param(bias, names[1])] if bias is not None else []
    if all(d == 1 for d in in_dil):
        w = kernel.transpose(n + 1, n, *range(n))              # (*k, I/g, O) -> (O, I/g, *k)
        y = g.op("Conv", [name, g.param(w, names[0])] + b, kernel_shape=k, strides=list(strides),
                 pads=[lo for lo, _ in pads] + [hi for _, hi in pads], dilations=list(k_dil), group=groups)
        return _Value(x.rank, y, perm)
    if any(s != 1 for s in strides):
        raise Unsupported("input_dilation together with strides > 1 (ONNX has no such convolution)")
    # A convolution of the input with d - 1 zeros between positions is ONNX's ConvTranspose (stride d)
    # of the flipped kernel, cropped by (K - 1) kd - lo at the start and (K - 1) kd - hi at the end.
    full = [(kk - 1) * d for kk, d in zip(k, k_dil)]
    begin = [f - lo for f, (lo, _) in zip(full, pads)]
    end = [f - hi for f, (_, hi) in zip(full, pads)]
    extra = [max(-e, 0) for e in end]                           # an output longer than the full one: output_padding
    if min(begin) < 0 or any(q >= max(s, d) for q, s, d in zip(extra, in_dil, k_dil)):
        raise Unsupported(f"padding {pads} does not fit ONNX's ConvTranspose for kernel size {tuple(k)}")
    ci, co = kernel.shape[n], kernel.shape[n + 1]
    w = kernel[(slice(None, None, -1),) * n].reshape((*k, ci, groups, co // groups))   # (*k, I/g, G, O/g), flipped
    w = w.transpose(n + 1, n, n + 2, *range(n)).reshape((groups * ci, co // groups, *k))   # (G I/g, O/g, *k)
    attrs = dict(kernel_shape=k, strides=list(in_dil), dilations=list(k_dil), group=groups,
                 pads=begin + [max(e, 0) for e in end])
    if any(extra):
        attrs["output_padding"] = extra
    return _Value(x.rank, g.op("ConvTranspose", [name, g.param(w, names[0])] + b, **attrs), perm)


def _conv(g, node, xs, p):
    o = node.opts
    strides, pads, in_dil, k_dil, groups, _ = _geometry(
        node, node.parents[0].shape, p["kernel"].shape, strides=o["strides"], padding=o["padding"],
        input_dilation=o["input_dilation"], kernel_dilation=o["kernel_dilation"],
        feature_group_size=o["feature_group_size"])
    return _emit_conv(g, xs[0], p["kernel"], p.get("bias"), strides, pads, in_dil, k_dil, groups, _layout_of(node))


def _depthwise_conv(g, node, xs, p):
    o, shape = node.opts, node.parents[0].shape
    c_in = shape[channel_axis(len(shape), o["channels"])]
    strides, pads, in_dil, k_dil, groups, _ = _geometry(
        node, shape, p["kernel"].shape, strides=o["strides"], padding=o["padding"],
        input_dilation=o["input_dilation"], kernel_dilation=o["kernel_dilation"], feature_group_size=c_in)
    return _emit_conv(g, xs[0], p["kernel"], p.get("bias"), strides, pads, in_dil, k_dil, groups, _layout_of(node))


def _conv_transpose(g, node, xs, p):
    o, kernel = node.opts, p["kernel"]
    n = kernel.ndim - 2
    pads = conv_transpose_padding(kernel.shape[:n], o["strides"], o["padding"], o["kernel_dilation"])
    strides = spatial_tuple("conv_transpose", "strides", o["strides"], n)
    k_dil = spatial_tuple("conv_transpose", "kernel_dilation", o["kernel_dilation"], n)
    return _emit_conv(g, xs[0], kernel, p.get("bias"), (1,) * n, pads, strides, k_dil, 1, _layout_of(node))


def _separable(g, node, xs, p):
    o, shape = node.opts, tuple(node.parents[0].shape)
    n = len(shape) - 2
    kernels = [p[f"kernel_{i + 1}"] for i in range(n)]
    try:
        steps, _ = _separable_steps(node.op, n, shape, [k.shape for k in kernels], o["strides"],
                                                o["padding"], o["input_dilation"], o["kernel_dilation"],
                                                o["channels"])
    except TypeError as e:
        raise Unsupported(f"the spatial sizes of the input must be known, got shape {shape}") from e
    x = xs[0]
    for i, (kernel, step) in enumerate(zip(kernels, steps)):   # one depthwise convolution per spatial axis
        strides, pads, in_dil, k_dil, groups, shape = _geometry(node, shape, kernel.shape, **step)
        x = _emit_conv(g, x, kernel, p.get(f"bias_{i + 1}"), strides, pads, in_dil, k_dil, groups,
                       _layout_of(node), names=(f"kernel_{i + 1}", f"bias_{i + 1}"))
    return x


# ---- pooling -------------------------------------------------------------------------------------------
def _window(node) -> dict:
    """The ONNX attributes of a windowed pool: kernel_shape, strides, pads."""
    o = node.opts
    try:
        window, strides, pads, _ = _window_geometry(node.op, node.parents[0].shape, o["kernel_size"],
                                                                o["strides"], o["padding"], o["channels"])
    except TypeError as e:
        raise Unsupported(f"the spatial sizes of the input must be known, got shape {node.parents[0].shape}") from e
    if o.get("window_dilations", 1) not in (1, (1,) * len(window), [1] * len(window)):
        raise Unsupported(f"{node.op} with window_dilations={o['window_dilations']!r} (only 1 is exported)")
    if any(lo >= k or hi >= k for (lo, hi), k in zip(pads, window)):
        raise Unsupported(f"{node.op} with padding {pads} as large as the window {tuple(window)}")
    return dict(kernel_shape=list(window), strides=list(strides),
                pads=[lo for lo, _ in pads] + [hi for _, hi in pads])


def _max_pool(g, node, xs, p):
    perm = _layout_of(node)
    return _Value(xs[0].rank, g.op("MaxPool", [g.layout(xs[0], perm)], **_window(node)), perm)


def _avg_pool(g, node, xs, p):
    perm = _layout_of(node)
    y = g.op("AveragePool", [g.layout(xs[0], perm)], **_window(node),
             count_include_pad=int(node.opts.get("count_include_pad", True)))
    return _Value(xs[0].rank, y, perm)


def _is_even(norm) -> bool:
    return float(norm).is_integer() and int(norm) % 2 == 0


def _lp_pool(g, node, xs, p):
    """LpPool for an even ``norm`` (ONNX's takes |x|, the same then); else (sum of x^p)^(1/p) composed."""
    perm, attrs, norm = _layout_of(node), _window(node), node.opts["norm"]
    x = g.layout(xs[0], perm)
    if _is_even(norm):
        return _Value(xs[0].rank, g.op("LpPool", [x], p=int(norm), **attrs), perm)
    mean = g.op("AveragePool", [g.op("Pow", [x, g.scalar(norm)])], count_include_pad=1, **attrs)
    total = g.op("Mul", [mean, g.scalar(np.prod(attrs["kernel_shape"]))])
    return _Value(xs[0].rank, g.op("Pow", [total, g.scalar(1.0 / norm)]), perm)


def _adaptive(g, node, xs, p):
    """Adaptive pools. Input sizes that the output sizes divide: one pool with window = stride = n / o;
    else, per axis, a Slice and a Reduce per bin (PyTorch's bins), joined by Concat (boxes are products of
    intervals, so reducing axis by axis is the same as reducing each box)."""
    o, x = node.opts, xs[0]
    shape = node.parents[0].shape
    try:
        size, _ = _adaptive_geometry(node.op, shape, o["output_size"], o["channels"])
        c = channel_axis(len(shape), o["channels"])
        axes = [a for a in range(1, len(shape)) if a != c]
        sizes = [int(shape[a]) for a in axes]
    except TypeError as e:
        raise Unsupported(f"the spatial sizes of the input must be known, got shape {shape}") from e
    kind = node.op.split("_")[1]                               # max, avg or lp
    norm = o.get("norm", 2)
    if all(n % s == 0 for n, s in zip(sizes, size)) and (kind != "lp" or _is_even(norm)):
        window = [n // s for n, s in zip(sizes, size)]
        attrs = dict(kernel_shape=window, strides=window, pads=[0] * (2 * len(window)))
        perm = _layout_of(node)
        op_type = {"max": "MaxPool", "avg": "AveragePool", "lp": "LpPool"}[kind]
        if kind == "lp":
            attrs["p"] = int(norm)
        return _Value(x.rank, g.op(op_type, [g.layout(x, perm)], **attrs), perm)
    name, perm = x.name, x.perm
    if kind == "lp":
        name = g.op("Pow", [name, g.scalar(norm)])
    reduce = {"max": "ReduceMax", "avg": "ReduceMean", "lp": "ReduceSum"}[kind]
    for a, n, s in zip(axes, sizes, size):
        if n == s:
            continue
        j = perm.index(a)                                      # the tensor axis holding axon axis a
        bins = [g.reduce(reduce, g.op("Slice", [name, g.ints([i * n // s]), g.ints([-(-(i + 1) * n // s)]),
                                                g.ints([j])]), [j], True) for i in range(s)]
        name = g.op("Concat", bins, axis=j)
    if kind == "lp":
        name = g.op("Pow", [name, g.scalar(1.0 / norm)])
    return _Value(x.rank, name, perm)


def _global(g, node, xs, p):
    """Global pools: one reduction over the spatial axes, in whatever axis order the input is held."""
    x, o = xs[0], node.opts
    c = channel_axis(x.rank, o["channels"])
    axes = [x.perm.index(a) for a in range(1, x.rank) if a != c]
    keep = bool(o["keep_axes"])
    if node.op == "global_lp_pool" and o["norm"] != 2:
        total = g.reduce("ReduceSum", g.op("Pow", [x.name, g.scalar(o["norm"])]), axes, keep)
        y = g.op("Pow", [total, g.scalar(1.0 / o["norm"])])
    else:
        op_type = {"global_max_pool": "ReduceMax", "global_avg_pool": "ReduceMean", "global_lp_pool": "ReduceL2"}
        y = g.reduce(op_type[node.op], x.name, axes, keep)
    return _Value(x.rank if keep else x.rank - len(axes), y, x.perm if keep else _without(x.perm, axes))


# ---- normalization ----------------------------------------------------------------------------------
def _batch_norm(g, node, xs, p):
    perm = _layout_of(node)                                    # channels at axis 1 (a no-op for (N, C))
    ins = [g.layout(xs[0], perm)] + [g.param(p[k], k) for k in ("gamma", "beta", "mean", "var")]
    y = g.op("BatchNormalization", ins, epsilon=float(node.opts["epsilon"]),
             momentum=float(1 - node.opts["momentum"]))        # ONNX's momentum weighs the running value
    return _Value(xs[0].rank, y, perm)


def _instance_norm(g, node, xs, p):
    perm = _layout_of(node)
    ins = [g.layout(xs[0], perm), g.param(p["gamma"], "gamma"), g.param(p["beta"], "beta")]
    return _Value(xs[0].rank, g.op("InstanceNormalization", ins, epsilon=float(node.opts["epsilon"])), perm)


def _channels_at_end(g, node, x: _Value):
    """``x`` in an axis order with the node's channel axis last: as it is, if it is so already."""
    c = channel_axis(x.rank, node.opts.get("channels", "last"))
    perm = x.perm if x.perm[-1] == c else tuple(a for a in range(x.rank) if a != c) + (c,)
    return g.layout(x, perm), perm


def _layer_norm(g, node, xs, p):
    x, axis = xs[0], node.opts.get("axis")
    if axis is None:
        name, perm, first = *_channels_at_end(g, node, x), -1
    else:                                                      # trailing axes (from an imported LayerNormalization)
        axes = sorted(a % x.rank for a in ((axis,) if isinstance(axis, int) else axis))
        if axes != list(range(axes[0], x.rank)):
            raise Unsupported(f"layer_norm over axes {tuple(axes)}, not the trailing ones")
        perm, first = _identity(x.rank), axes[0]
        name = g.layout(x, perm)
    ins = [name, g.param(p["gamma"], "gamma")] + ([g.param(p["beta"], "beta")] if "beta" in p else [])
    return _Value(x.rank, g.op("LayerNormalization", ins, axis=first, epsilon=float(node.opts["epsilon"])), perm)


def _group_norm(g, node, xs, p):
    """(N, ..., C) -> (N, -1, G, C/G); standardize over axes 1 and 3; back to the input's shape; scale, shift."""
    x, o = xs[0], node.opts
    name, perm = _channels_at_end(g, node, x)
    c, groups = int(p["gamma"].shape[0]), int(o["num_groups"])
    xg = g.op("Reshape", [name, g.ints([0, -1, groups, c // groups])])
    d = g.op("Sub", [xg, g.reduce("ReduceMean", xg, [1, 3], True)])
    var = g.reduce("ReduceMean", g.op("Mul", [d, d]), [1, 3], True)
    y = g.op("Div", [d, g.op("Sqrt", [g.op("Add", [var, g.scalar(o["epsilon"])])])])
    y = g.op("Reshape", [y, g.op("Shape", [name])])
    y = g.op("Add", [g.op("Mul", [y, g.param(p["gamma"], "gamma")]), g.param(p["beta"], "beta")])
    return _Value(x.rank, y, perm)


def _rms_norm(g, node, xs, p):
    x = xs[0]
    name, perm = _channels_at_end(g, node, x)
    ms = g.reduce("ReduceMean", g.op("Mul", [name, name]), [x.rank - 1], True)
    y = g.op("Div", [name, g.op("Sqrt", [g.op("Add", [ms, g.scalar(node.opts["epsilon"])])])])
    shift = node.opts.get("shift", 0.0)                        # the scale is shift + gamma
    gamma = p["gamma"] if not shift else (np.asarray(p["gamma"]) + shift).astype(np.asarray(p["gamma"]).dtype)
    return _Value(x.rank, g.op("Mul", [y, g.param(gamma, "gamma")]), perm)


# ---- activations ------------------------------------------------------------------------------------
def _gelu(g, x, a):
    tanh = a["approximate"] in (True, "tanh")
    if g.opset >= 20:
        return g.op("Gelu", [x], approximate="tanh" if tanh else "none")
    if tanh:                                                   # x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Mul", [g.op("Add", [x, g.op("Mul", [cube, g.scalar(0.044715)])]),
                             g.scalar(np.sqrt(2 / np.pi))])
        phi = g.op("Add", [g.op("Tanh", [inner]), g.scalar(1)])
    else:                                                      # x/2 (1 + erf(x / sqrt 2))
        phi = g.op("Add", [g.op("Erf", [g.op("Mul", [x, g.scalar(np.sqrt(0.5))])]), g.scalar(1)])
    return g.op("Mul", [g.op("Mul", [x, phi]), g.scalar(0.5)])


def _mish(g, x, a):
    if g.opset >= 18:
        return g.op("Mish", [x])
    return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])])


# element-wise: (graph, input tensor, the activation's arguments with defaults) -> output tensor
_ELEMENTWISE = {
    "relu": lambda g, x, a: g.op("Relu", [x]),
    "relu6": lambda g, x, a: g.op("Clip", [x, g.scalar(0), g.scalar(6)]),
    "hard_tanh": lambda g, x, a: g.op("Clip", [x, g.scalar(-1), g.scalar(1)]),
    "sigmoid": lambda g, x, a: g.op("Sigmoid", [x]),
    "tanh": lambda g, x, a: g.op("Tanh", [x]),
    "exp": lambda g, x, a: g.op("Exp", [x]),
    "erf": lambda g, x, a: g.op("Erf", [x]),
    "softplus": lambda g, x, a: g.op("Softplus", [x]),
    "softsign": lambda g, x, a: g.op("Softsign", [x]),
    "elu": lambda g, x, a: g.op("Elu", [x], alpha=float(a["alpha"])),
    "celu": lambda g, x, a: g.op("Celu", [x], alpha=float(a["alpha"])),
    "selu": lambda g, x, a: g.op("Selu", [x], alpha=float(a["alpha"]), gamma=float(a["gamma"])),
    "leaky_relu": lambda g, x, a: g.op("LeakyRelu", [x], alpha=float(a["alpha"])),
    "hard_sigmoid": lambda g, x, a: g.op("HardSigmoid", [x], alpha=float(a["alpha"]), beta=float(a["beta"])),
    "hard_silu": lambda g, x, a: g.op("Mul", [x, g.op("HardSigmoid", [x], alpha=float(a["alpha"]),
                                                       beta=float(a["beta"]))]),
    "silu": lambda g, x, a: g.op("Mul", [x, g.op("Sigmoid", [x])]),
    "log_sigmoid": lambda g, x, a: g.op("Neg", [g.op("Softplus", [g.op("Neg", [x])])]),
    "log1p": lambda g, x, a: g.op("Log", [g.op("Add", [x, g.scalar(1)])]),
    "expm1": lambda g, x, a: g.op("Sub", [g.op("Exp", [x]), g.scalar(1)]),
    "gelu": _gelu,
    "mish": _mish,
}


def _arguments(node) -> dict:
    """The activation's keyword arguments, defaults filled in from its signature."""
    bound = inspect.signature(getattr(A, node.op)).bind_partial(None, **node.opts)
    bound.apply_defaults()
    return dict(bound.arguments)


def _activation(g, node, xs, p):
    x, a = xs[0], _arguments(node)
    if node.op == "linear":
        return x
    if node.op in _ELEMENTWISE:                                # keeps the input's axis order
        return _Value(x.rank, _ELEMENTWISE[node.op](g, x.name, a), x.perm)
    axes = a["axis"] if isinstance(a["axis"], (tuple, list)) else (a["axis"],)
    stored = [x.perm.index(ax % x.rank) for ax in axes]
    if node.op == "log_sumexp":
        keep = bool(a["keepdims"])
        y = g.reduce("ReduceLogSumExp", x.name, stored, keep)
        return _Value(x.rank if keep else x.rank - len(stored), y, x.perm if keep else _without(x.perm, stored))
    if len(stored) != 1:
        raise Unsupported(f"{node.op} over several axes {tuple(axes)} (ONNX's takes one)")
    op_type = {"softmax": "Softmax", "log_softmax": "LogSoftmax"}[node.op]
    return _Value(x.rank, g.op(op_type, [x.name], axis=stored[0]), x.perm)


# ---- shape and combinators ----------------------------------------------------------------------------
def _flatten(g, node, xs, p):
    return _Value(2, g.op("Flatten", [g.layout(xs[0], _identity(xs[0].rank))], axis=1))


def _reshape(g, node, xs, p):
    shape = tuple(node.opts["shape"])
    y = g.op("Reshape", [g.layout(xs[0], _identity(xs[0].rank)), g.ints([0, *shape])])   # 0: keep the batch size
    return _Value(len(shape) + 1, y)


def _transpose(g, node, xs, p):
    """No op at all: the same tensors, each now holding the new axis order (a later layer may transpose)."""
    x = xs[0]
    q = (0,) + tuple(a + 1 for a in node.opts["permutation"])   # out axis i is in axis q[i]
    inverse = [q.index(a) for a in range(x.rank)]
    out = _Value(x.rank, x.name, tuple(inverse[a] for a in x.perm))
    out.views = {tuple(inverse[a] for a in perm): name for perm, name in x.views.items()}
    return out


def _pad(g, node, xs, p):
    x, o = xs[0], node.opts
    pairs = _pad_pairs(node.parents[0].shape, o["padding"], o["channels"])
    c = channel_axis(x.rank, o["channels"])
    spatial = iter(pairs)
    width = [(0, 0) if a in (0, c) else next(spatial) for a in range(x.rank)]   # per axon axis
    pads = [width[a][0] for a in x.perm] + [width[a][1] for a in x.perm]          # in the tensor's order
    return _Value(x.rank, g.op("Pad", [x.name, g.ints(pads), g.scalar(o["value"])], mode="constant"), x.perm)


def _resize(g, node, xs, p):
    x, o = xs[0], node.opts
    if g.opset < 18:
        raise Unsupported(f"resize needs opset >= 18 (Resize's axes), got {g.opset}")
    size = _resize_size(node.parents[0].shape, o["size"], o["method"], o["channels"])
    if o["method"] not in ("nearest", "bilinear", "linear", "trilinear") or o.get("antialias", False):
        raise Unsupported(f"resize with method {o['method']!r}, antialias={o.get('antialias', False)} "
                          f"(only nearest and linear without antialiasing are exported)")
    c = channel_axis(x.rank, o["channels"])
    axes = [x.perm.index(a) for a in range(1, x.rank) if a != c]
    order = sorted(range(len(axes)), key=lambda i: axes[i])    # Resize wants its axes in increasing order
    attrs = dict(axes=[axes[i] for i in order], coordinate_transformation_mode="half_pixel")
    if o["method"] == "nearest":                               # floor((i + 1/2) n_in / n_out), as axon
        attrs.update(mode="nearest", nearest_mode="round_prefer_ceil")
    else:
        attrs.update(mode="linear")
    y = g.op("Resize", [x.name, "", "", g.ints([size[i] for i in order])], **attrs)
    return _Value(x.rank, y, x.perm)


def _same_order(g, xs):
    """The inputs' tensors in one shared axis order (theirs, when they agree), and that order."""
    perms = {x.perm for x in xs}
    if len(perms) == 1 and len({x.rank for x in xs}) == 1:
        return [x.name for x in xs], xs[0].perm
    rank = max(x.rank for x in xs)
    return [g.layout(x, _identity(x.rank)) for x in xs], _identity(rank)


def _combine(op_type):
    def emit(g, node, xs, p):
        names, perm = _same_order(g, xs)
        y = names[0]
        for other in names[1:]:
            y = g.op(op_type, [y, other])
        return _Value(len(perm), y, perm)
    return emit


def _concatenate(g, node, xs, p):
    names, perm = _same_order(g, xs)
    return _Value(len(perm), g.op("Concat", names, axis=perm.index(node.opts["axis"] % len(perm))), perm)


# ---- recurrent layers -----------------------------------------------------------------------------
# ONNX's LSTM and GRU take X (T, B, F) and give Y (T, 1, B, H), Y_h and Y_c (1, B, H): the sequence
# stays time-major (perm (1, 0, 2)) until a layer asks for axon's order. W (1, gH, F), R (1, gH, H)
# and B (1, 2gH) hold the gates in ONNX's order: axon's i, f, g, o are ONNX's i, o, f, c (LSTM), and
# its r, z, n are ONNX's z, r, h (GRU; linear_before_reset=1 is PyTorch's formula, axon's).
_TIME_MAJOR = (1, 0, 2)
_ONNX_GATES = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}         # ONNX's gate k is axon's gate _ONNX_GATES[op][k]


def _gates(w, order) -> np.ndarray:
    """(..., gH) in axon's gate order -> (gH, ...) in ONNX's: blocks reordered, then transposed."""
    blocks = np.split(np.asarray(w), len(order), axis=-1)
    return np.concatenate([blocks[k] for k in order], axis=-1).T


def _recurrent(g, node, xs, p):
    """lstm and gru as ONNX's LSTM and GRU; the node's value is the tuple (seq, carry)."""
    o, op = node.opts, node.op
    if o["has_mask"]:
        raise Unsupported("a mask (ONNX's recurrent ops take sequence lengths, which a mask with gaps or "
                          "with padding in front, as bidirectional's reversed run has, does not give)")
    H, order = int(o["units"]), _ONNX_GATES[op]
    w = g.param(_gates(p["kernel_input"], order)[None], "kernel_input")        # (F, gH) -> (1, gH, F)
    r = g.param(_gates(p["kernel_hidden"], order)[None], "kernel_hidden")      # (H, gH) -> (1, gH, H)
    zeros = np.zeros(len(order) * H)
    biases = (p.get("bias", zeros), zeros) if op == "lstm" else (p.get("bias_input", zeros), p.get("bias_hidden", zeros))
    b = g.param(np.concatenate([_gates(v, order) for v in biases])[None], "bias") \
        if any(k.startswith("bias") for k in p) else ""                        # (1, 2gH)
    initial = []
    if o["has_carry"]:                                         # a carry (B, H), or (c, h), of another layer
        carry = xs[-1] if op == "lstm" else (xs[-1],)
        if op == "lstm" and not isinstance(carry, tuple):
            raise Unsupported("an LSTM carry that is not another LSTM's (c, h)")
        initial = [g.op("Unsqueeze", [g.layout(c, _identity(2)), g.ints([0])]) for c in carry]   # (B, H) -> (1, B, H)
        if op == "lstm":
            initial = initial[::-1]                            # axon's (c, h) -> ONNX's initial_h, initial_c
    x = g.layout(xs[0], _TIME_MAJOR)                           # (B, T, F) -> (T, B, F)
    attrs = dict(hidden_size=H, direction="reverse" if o["reverse"] else "forward")
    if op == "gru":
        attrs["linear_before_reset"] = 1
    outs = g.op(op.upper(), [x, w, r, b, "", *initial], n_out=3 if op == "lstm" else 2, **attrs)
    seq = _Value(3, g.op("Squeeze", [outs[0], g.ints([1])]), _TIME_MAJOR)    # (T, 1, B, H) -> (T, B, H)
    last = [_Value(2, g.op("Squeeze", [y, g.ints([0])])) for y in outs[1:]]  # (1, B, H) -> (B, H)
    return seq, (last[1], last[0]) if op == "lstm" else last[0]


def _pick(g, node, xs, p):
    """A recurrent layer's seq or carry, or a part of a tuple (``carry[1]``, an LSTM's h): no op, the part."""
    return xs[0][node.opts["index"]]


def _reverse(g, node, xs, p):
    """bidirectional's reversed run: a Slice with step -1 along the step axis."""
    x = xs[0]
    axis = x.perm.index(node.opts["axis"])
    y = g.op("Slice", [x.name, g.ints([-1]), g.ints([np.iinfo(np.int64).min]), g.ints([axis]), g.ints([-1])])
    return _Value(x.rank, y, x.perm)


def _constant(g, node, xs, p):
    value = np.asarray(node.opts["value"])
    if value.dtype.kind == "f":
        value = value.astype(g.dtype)
    name = g.fresh(g.layer)
    g.initializers[name] = value
    return _Value(value.ndim, name)


_EXPORTERS = {
    "dense": _dense, "embedding": _embedding, "bilinear": _bilinear,
    "conv": _conv, "depthwise_conv": _depthwise_conv, "conv_transpose": _conv_transpose,
    "separable_conv2d": _separable, "separable_conv3d": _separable,
    "max_pool": _max_pool, "avg_pool": _avg_pool, "lp_pool": _lp_pool,
    "adaptive_max_pool": _adaptive, "adaptive_avg_pool": _adaptive, "adaptive_lp_pool": _adaptive,
    "global_max_pool": _global, "global_avg_pool": _global, "global_lp_pool": _global,
    "batch_norm": _batch_norm, "instance_norm": _instance_norm, "layer_norm": _layer_norm,
    "group_norm": _group_norm, "rms_norm": _rms_norm,
    "dropout": lambda g, node, xs, p: xs[0], "alpha_dropout": lambda g, node, xs, p: xs[0],
    "feature_alpha_dropout": lambda g, node, xs, p: xs[0], "spatial_dropout": lambda g, node, xs, p: xs[0],
    "flatten": _flatten, "reshape": _reshape, "transpose": _transpose, "pad": _pad, "resize": _resize,
    "add": _combine("Add"), "subtract": _combine("Sub"), "multiply": _combine("Mul"), "concatenate": _concatenate,
    "constant": _constant, "lstm": _recurrent, "gru": _recurrent, "seq": _pick, "carry": _pick, "item": _pick,
    "reverse": _reverse,
    **{name: _activation for name in A.__all__ if name != "get"},
}


def _translation(node):
    """The exporter of ``node``, or None when its op is not axon's own layer of that name.

    ``axon.layer``/``axon.nx`` nodes take any name (``op_name=``), so the name alone is not trusted: the
    node's function must come from axon itself (a builder, or the activation of that name).
    """
    fn = _EXPORTERS.get(node.op)
    if fn is _activation:
        return fn if node.fn is getattr(A, node.op) else None
    module = getattr(node.fn, "__module__", None) or ""
    return fn if module.startswith("axon.") else None


# ---- export -------------------------------------------------------------------------------------------
def _placeholder(shape):
    """A stand-in for the value of a layer that was not translated: a tuple of them for a tuple of shapes."""
    if isinstance(shape, tuple) and shape and all(isinstance(s, tuple) for s in shape):
        return tuple(_placeholder(s) for s in shape)
    return _Value(len(shape) if isinstance(shape, tuple) else 0, "?")


def _float_dtype(params) -> np.dtype:
    kinds = {np.asarray(v).dtype for v in tree_leaves(params) if np.asarray(v).dtype.kind == "f"}
    if len(kinds) > 1:
        raise ValueError(f"export: params mix float dtypes {sorted(str(k) for k in kinds)}; cast them to one")
    return kinds.pop() if kinds else np.dtype(np.float32)


def _layer_params(node, name, params) -> dict:
    """The layer's params as arrays, checked against the node's specs (keys and shapes)."""
    if not node.params:
        return {}
    layer = params.get(name) if isinstance(params, dict) else None
    if not isinstance(layer, dict) or layer.keys() != node.params.keys():
        got = sorted(layer) if isinstance(layer, dict) else None
        raise ValueError(f"export: params for layer '{name}' have keys {got}, expected {sorted(node.params)}")
    out = {}
    for k, spec in node.params.items():
        value = np.asarray(layer[k])
        if value.shape != tuple(spec.shape):
            raise ValueError(f"export: params['{name}']['{k}'] has shape {value.shape}, expected {tuple(spec.shape)}")
        out[k] = value
    return out


def _value_info(onnx, name, shape, dtype):
    dims = [("N" if i == 0 else f"d{i}") if n is None else int(n) for i, n in enumerate(shape)]
    return onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), dims)


def export(model: Axon, params: dict, path, opset: int = OPSET) -> None:
    """Write ``model`` with ``params`` to ``path`` as an ONNX model (inference: dropout off, running stats).

    The file's inputs are the model's inputs (by name, axon's channels-last layout, batch size free);
    its output is ``output`` (a container's: its keys, or ``output_0``, ``output_1``, ...). Raises
    ValueError listing every layer ONNX cannot express, before anything is written; the file is
    written atomically.

    >>> import os, tempfile, numpy as np, onnx, axon, axon.onnx
    >>> model = axon.input((None, 8, 8, 1)).conv(4, kernel_size=3, activation="relu").max_pool(2).flatten()
    >>> path = os.path.join(tempfile.mkdtemp(), "cnn.onnx")
    >>> axon.onnx.export(model, axon.init(model), path)
    >>> [n.op_type for n in onnx.load(path).graph.node]     # one transpose in, one out
    ['Transpose', 'Conv', 'Relu', 'MaxPool', 'Transpose', 'Flatten']
    >>> axon.onnx.export(axon.nx(model, lambda t: t * 2), axon.init(model), path)
    Traceback (most recent call last):
    ...
    ValueError: export: 1 layer has no ONNX form: 'nx_0' (op 'nx': a function of your own, not an axon layer)
    """
    onnx = require_onnx()
    if not isinstance(model, Axon):
        raise TypeError(f"export: model must be an axon model (axon.input(...)...), got {type(model).__name__}")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"export: opset must be an int from {MIN_OPSET} to {onnx.defs.onnx_opset_version()}, "
                         f"got {opset!r}")
    nodes, names = model.nodes(), model.names()
    layer_params = {n.id: _layer_params(n, names[n.id], params) for n in nodes}
    g = _Graph(onnx, opset, _float_dtype(params))
    consumers = {n.id: [c for c in nodes if n in c.parents] for n in nodes}

    inputs, values, problems = [], {}, []
    for node in model.inputs():                                # graph inputs keep their layer names
        name = g.fresh(names[node.id])
        as_indices = bool(consumers[node.id]) and all(c.op == "embedding" for c in consumers[node.id])
        inputs.append(_value_info(onnx, name, node.shape, np.int64 if as_indices else g.dtype))
        values[node.id] = _Value(len(node.shape), name)
    outputs = model.parents if model.op == "container" else (model,)
    keys = (list(model.fn.keys) if model.fn.keys is not None else [f"output_{i}" for i in range(len(outputs))]) \
        if model.op == "container" else ["output"]
    keys = [g.fresh(str(k)) for k in keys]                     # reserved before any layer takes the name

    for node in nodes:
        if node.op == "input" or node is model and node.op == "container":
            continue
        name = names[node.id]
        fn = _translation(node)
        if fn is None:
            why = "a function of your own, not an axon layer" if node.op in _EXPORTERS or node.op in ("nx", "custom") \
                else "no ONNX translation"
            problems.append(f"'{name}' (op '{node.op}': {why})")
        else:
            ready = all(values.get(q.id) is not None for q in node.parents)
            # after a layer that failed, translate into a scratch graph: only to find this one's problems too
            target = g if ready else _Graph(onnx, opset, g.dtype)
            xs = [values[q.id] if ready else _placeholder(q.shape) for q in node.parents]
            target.layer, start = name, len(target.nodes)
            try:
                value = fn(target, node, xs, layer_params[node.id])
            except Unsupported as e:
                problems.append(f"'{name}' (op '{node.op}': {e})")
                continue
            if not ready:
                continue
            if isinstance(value, _Value) and g.produced(value.name, start):   # the result is named after the layer
                new = g.fresh(name)
                g.rename(value.name, new, start)
                value.views = {value.perm: new}
            values[node.id] = value
    if problems:
        raise ValueError(f"export: {len(problems)} layer{'s' if len(problems) > 1 else ''} "
                         f"{'have' if len(problems) > 1 else 'has'} no ONNX form: " + "; ".join(problems))

    tuples = [f"'{names[n.id]}' (op '{n.op}')" for n in outputs if not isinstance(values[n.id], _Value)]
    if tuples:
        raise ValueError(f"export: the model outputs {', '.join(tuples)} are tuples (an LSTM's carry (c, h)); "
                         f"ONNX outputs are tensors: output a layer of one tensor instead (carry[1] is an LSTM's h)")

    g.layer, used = "output", set()
    for key, node in zip(keys, outputs):
        v = values[node.id]
        tensor = g.layout(v, _identity(v.rank))
        if g.produced(tensor) and tensor not in used:
            g.rename(tensor, key)
            for other in values.values():                      # every value held in that tensor: now in key
                if isinstance(other, _Value):
                    other.views = {p: key if t == tensor else t for p, t in other.views.items()}
            tensor = key
        else:                                                  # an input, a constant, or an output twice
            g.nodes.append(["Identity", [tensor], [key], g.fresh("output/Identity", g.node_names), {}])
        used.add(tensor)
    out_infos = [_value_info(onnx, key, node.shape, g.dtype) for key, node in zip(keys, outputs)]

    h = onnx.helper
    graph = h.make_graph([h.make_node(op, ins, outs, name=nm, **attrs) for op, ins, outs, nm, attrs in g.nodes],
                         "axon", inputs, out_infos,
                         initializer=[onnx.numpy_helper.from_array(a, k) for k, a in g.initializers.items()])
    opsets = [h.make_opsetid("", opset)]
    proto = h.make_model(graph, opset_imports=opsets, producer_name="axon", producer_version=__version__,
                         ir_version=h.find_min_ir_version_for(opsets))
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
