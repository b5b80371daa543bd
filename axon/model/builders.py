"""Builders: one per functional layer, each a module function and a chainable method.

``axon.dense(x, 128, activation="relu")`` and ``x.dense(128, activation="relu")`` are the same call.
A builder only declares the layer: its op, its parameter specs (shapes from the input's shape) and
its options; the graph module infers the output shape by running the functional layer on zeros.

>>> import axon
>>> model = axon.input((None, 28, 28, 1)).conv(8, kernel_size=3, activation="relu").max_pool(kernel_size=2)
>>> model.flatten().dense(10).shape
(None, 10)
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Tensor, as_tensor
from ..backend import is_host
from ..functional import activations as A
from ..functional import layers as L
from ..functional.layers._utils import check_int
from ..functional.layers.dropouts import _check_rate
from ..kernels._common import on_backend_of
from .graph import Axon, _node, inferring_shapes, param

# Builders that become methods of every node (x.dense(...)); the module functions take the node first.
__all__ = [
    "dense", "bilinear", "embedding",
    "conv", "conv_transpose", "depthwise_conv", "separable_conv2d", "separable_conv3d",
    "max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool", "adaptive_lp_pool",
    "global_max_pool", "global_avg_pool", "global_lp_pool", "blur_pool",
    "batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm",
    "dropout", "alpha_dropout", "feature_alpha_dropout", "spatial_dropout",
    "flatten", "reshape", "transpose", "pad", "resize",
    "add", "subtract", "multiply", "concatenate", "activation",
    "lstm", "gru", "conv_lstm", "bidirectional", "mask", "multi_head_attention", "transformer_block",
]


# ---- shared pieces ---------------------------------------------------------------------------------
def _layer(op, inputs, fn, params=None, opts=None, name=None, uses=(), activation=None) -> Axon:
    """One layer node, then its activation as a node of its own (as in Axon's summary)."""
    node = _node(op, inputs if isinstance(inputs, (list, tuple)) else [inputs], fn, params, opts, name, uses)
    return node if activation is None else _activation_node(node, activation)


def _channels(x: Axon, channels: str, layer: str) -> int:
    """The number of input channels (last axis, or axis 1 with channels="first")."""
    if channels not in ("last", "first"):
        raise ValueError(f"{layer}: channels must be 'last' or 'first', got {channels!r}")
    if len(x.shape) < 2:
        raise ValueError(f"{layer}: expects an input with a channel axis, got shape {x.shape}")
    c = x.shape[-1] if channels == "last" else x.shape[1]
    if c is None:
        raise ValueError(f"{layer}: the channel axis of the input must have a known size, got shape {x.shape}")
    if c == 0:
        raise ValueError(f"{layer}: the input has no channels, got shape {x.shape}")
    return c


def _tuple(v, n) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _with_bias(params, use_bias, units, bias_initializer):
    if use_bias:
        params["bias"] = param((units,), bias_initializer)
    return params


def _biased(fn):
    """Adapt ``fn(x, kernel, bias)`` for layers built with or without a bias param.

    With ``relu_epilogue=True`` (set by ``run.apply`` when a relu node is this layer's only consumer)
    the bias add and the relu run as one fused kernel, ``kernels.bias_relu``: one pass over the
    activation each way instead of four (add, relu, the relu's mask, the bias gradient's sum).
    """
    def call(*xs, kernel, bias=None, relu_epilogue=False, **opts):
        if relu_epilogue:
            return kernels.bias_relu(fn(*xs, kernel, None, **opts), bias)
        return fn(*xs, kernel, bias, **opts)
    call.__name__ = getattr(fn, "__name__", "layer")
    return call


def _fusable(use_bias, channels="last"):
    """``uses`` of a dense/conv node: a following relu can be fused into its bias add (channels-last only)."""
    return ("relu_epilogue",) if use_bias and channels == "last" else ()


# ---- linear ----------------------------------------------------------------------------------------
def dense(x, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
          bias_initializer="zeros", name=None) -> Axon:
    """Fully connected layer: ``y = x @ kernel + bias`` on the last axis (kernel (in, units)).

    Inputs of rank 2 or 3 (``(batch, features)`` or ``(batch, steps, features)``); flatten images first.

    An ``activation`` becomes a node of its own after the dense one (as in Axon's summary).

    >>> import axon
    >>> model = axon.input((None, 4)).dense(3, activation="relu")
    >>> model.shape, [n.op for n in model.nodes()]
    ((None, 3), ['input', 'dense', 'relu'])
    >>> axon.input((None, 5, 4)).dense(3).shape            # (batch, steps, features): per step
    (None, 5, 3)
    """
    if len(x.shape) > 3:
        raise ValueError(f"dense expects (batch, features) or (batch, steps, features); the input "
                         f"'{x.names()[x.id]}' has shape {x.shape}: flatten it first (x.flatten())")
    units = check_int("dense", "units", units)
    if x.shape[-1] is None:
        raise ValueError(f"dense: the last axis of the input '{x.names()[x.id]}' must have a known size "
                         f"(the kernel is (features, units)), got shape {x.shape}")
    params = _with_bias({"kernel": param((x.shape[-1], units), kernel_initializer)}, use_bias, units,
                        bias_initializer)
    return _layer("dense", x, _biased(L.dense), params, name=name, uses=_fusable(use_bias), activation=activation)


def bilinear(x1, x2, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
             bias_initializer="zeros", name=None) -> Axon:
    """Bilinear layer: ``y_o = x1 W_o x2 + b_o`` with kernel (units, in1, in2).

    >>> import axon
    >>> a, b = axon.input((None, 3), name="a"), axon.input((None, 5), name="b")
    >>> model = axon.bilinear(a, b, 2)                      # or a.bilinear(b, 2)
    >>> model.shape, model.params["kernel"].shape
    ((None, 2), (2, 3, 5))
    """
    params = _with_bias({"kernel": param((units, x1.shape[-1], x2.shape[-1]), kernel_initializer)},
                        use_bias, units, bias_initializer)
    return _layer("bilinear", [x1, x2], _biased(L.bilinear), params, name=name, activation=activation)


def embedding(x, vocab_size, embedding_size, kernel_initializer="uniform", name=None) -> Axon:
    """Look up rows of a (vocab_size, embedding_size) table for integer inputs.

    >>> import axon
    >>> axon.input((None, 6)).embedding(100, 8).shape      # 6 token ids -> 6 vectors of 8
    (None, 6, 8)
    """
    shape = (check_int("embedding", "vocab_size", vocab_size), check_int("embedding", "embedding_size", embedding_size))
    params = {"kernel": param(shape, kernel_initializer)}
    return _layer("embedding", x, lambda x, kernel: L.embedding(_indices(x), kernel), params, name=name)


def _indices(x):
    """Integer indices from an input node's value (inputs are fed as arrays of any numeric dtype).

    Floats must hold whole numbers (a 0.7 is an error, not index 0); checked where the indices are on the host.

    >>> _indices(np.array([[1.0, 3.0]], np.float32))
    Tensor([[1, 3]], dtype=int64)
    """
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x) if is_host(x) else x)
    if x.dtype.kind == "f" and x.device == "cpu":
        values = x.numpy()
        if not np.isfinite(values).all():
            raise ValueError("embedding: indices must be finite integers, the input holds NaN or inf")
        if (values != np.round(values)).any():
            bad = values[values != np.round(values)].ravel()[0]
            raise TypeError(f"embedding: indices must be integers, the input holds {bad} (dtype {values.dtype})")
    elif x.dtype.kind not in "iubf":
        raise TypeError(f"embedding: indices must be integers, got dtype {x.dtype}")
    return x if x.dtype == np.int64 else x.astype(np.int64)


# ---- convolutions ----------------------------------------------------------------------------------
def conv(x, units, kernel_size=1, strides=1, padding="valid", input_dilation=1, kernel_dilation=1,
         feature_group_size=1, channels="last", activation=None, use_bias=True,
         kernel_initializer="glorot_uniform", bias_initializer="zeros", name=None) -> Axon:
    """Convolution over 1, 2 or 3 spatial axes (by input rank); kernel (*kernel_size, in // groups, units).

    >>> import axon
    >>> x = axon.input((None, 8, 8, 3))
    >>> x.conv(16, kernel_size=3).shape                     # "valid": 8 - 3 + 1 = 6
    (None, 6, 6, 16)
    >>> x.conv(16, kernel_size=3, strides=2, padding="same").shape
    (None, 4, 4, 16)
    """
    c = _channels(x, channels, "conv")
    k = _tuple(kernel_size, len(x.shape) - 2)
    units = check_int("conv", "units", units)
    feature_group_size = check_int("conv", "feature_group_size", feature_group_size)
    if c % feature_group_size:
        raise ValueError(f"conv: input channels {c} are not divisible by feature_group_size {feature_group_size}")
    params = _with_bias({"kernel": param(k + (c // feature_group_size, units), kernel_initializer)},
                        use_bias, units, bias_initializer)
    opts = dict(strides=strides, padding=padding, input_dilation=input_dilation, kernel_dilation=kernel_dilation,
                feature_group_size=feature_group_size, channels=channels)
    return _layer("conv", x, _biased(L.conv), params, opts, name, uses=_fusable(use_bias, channels),
                  activation=activation)


def conv_transpose(x, units, kernel_size=1, strides=1, padding="valid", kernel_dilation=1, channels="last",
                   activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                   bias_initializer="zeros", name=None) -> Axon:
    """Transposed convolution, as Axon's and JAX's: upsamples by ``strides``; kernel (*kernel_size, in, units).

    The input, ``strides - 1`` zeros between its positions, convolved with the kernel *not flipped*; so
    it matches conv's input gradient (and PyTorch's ``conv_transpose2d``) only with the kernel flipped
    along its spatial axes (``axon.layers.conv_transpose`` gives the translation).

    >>> import axon
    >>> axon.input((None, 4, 4, 8)).conv_transpose(3, kernel_size=2, strides=2).shape   # upsamples x2
    (None, 8, 8, 3)
    """
    c = _channels(x, channels, "conv_transpose")
    k = _tuple(kernel_size, len(x.shape) - 2)
    params = _with_bias({"kernel": param(k + (c, units), kernel_initializer)}, use_bias, units, bias_initializer)
    opts = dict(strides=strides, padding=padding, kernel_dilation=kernel_dilation, channels=channels)
    return _layer("conv_transpose", x, _biased(L.conv_transpose), params, opts, name, activation=activation)


def depthwise_conv(x, channel_multiplier, kernel_size=1, strides=1, padding="valid", input_dilation=1,
                   kernel_dilation=1, channels="last", activation=None, use_bias=True,
                   kernel_initializer="glorot_uniform", bias_initializer="zeros", name=None) -> Axon:
    """Each input channel convolved with its own ``channel_multiplier`` filters; kernel (*k, 1, in * mult).

    >>> import axon
    >>> model = axon.input((None, 8, 8, 3)).depthwise_conv(2, kernel_size=3, padding="same")
    >>> model.shape, model.params["kernel"].shape          # 3 channels x 2 filters each
    ((None, 8, 8, 6), (3, 3, 1, 6))
    """
    c = _channels(x, channels, "depthwise_conv")
    k = _tuple(kernel_size, len(x.shape) - 2)
    units = c * channel_multiplier
    params = _with_bias({"kernel": param(k + (1, units), kernel_initializer)}, use_bias, units, bias_initializer)
    opts = dict(strides=strides, padding=padding, input_dilation=input_dilation, kernel_dilation=kernel_dilation,
                channels=channels)
    return _layer("depthwise_conv", x, _biased(L.depthwise_conv), params, opts, name, activation=activation)


def _separable(op, fn, x, n, channel_multiplier, kernel_size, strides, padding, input_dilation,
               kernel_dilation, channels, activation, use_bias, kernel_initializer, bias_initializer, name):
    """separable_conv2d/3d: one depthwise kernel per spatial axis, (k_i along axis i, 1 elsewhere)."""
    c = _channels(x, channels, op)
    if len(x.shape) != n + 2:
        raise ValueError(f"{op} expects a rank-{n + 2} input (batch, {n} spatial axes, channels), "
                         f"got shape {x.shape}")
    k = _tuple(kernel_size, n)
    units = c * channel_multiplier
    params = {}
    for i in range(n):
        shape = tuple(k[i] if j == i else 1 for j in range(n)) + (1, units)   # depthwise along axis i
        params[f"kernel_{i + 1}"] = param(shape, kernel_initializer)
        if use_bias:
            params[f"bias_{i + 1}"] = param((units,), bias_initializer)
    opts = dict(strides=strides, padding=padding, input_dilation=input_dilation, kernel_dilation=kernel_dilation,
                channels=channels)

    def call(x, **p):
        kernels = [p.pop(f"kernel_{i + 1}") for i in range(n)]
        biases = [p.pop(f"bias_{i + 1}", None) for i in range(n)]
        return fn(x, *[v for pair in zip(kernels, biases) for v in pair], **p)
    return _layer(op, x, call, params, opts, name, activation=activation)


def separable_conv2d(x, channel_multiplier, kernel_size=1, strides=1, padding="valid", input_dilation=1,
                     kernel_dilation=1, channels="last", activation=None, use_bias=True,
                     kernel_initializer="glorot_uniform", bias_initializer="zeros", name=None) -> Axon:
    """Depthwise separable 2D convolution: a depthwise conv along each spatial axis in turn.

    >>> import axon
    >>> model = axon.input((None, 8, 8, 3)).separable_conv2d(2, kernel_size=3)
    >>> model.shape, model.params["kernel_1"].shape, model.params["kernel_2"].shape
    ((None, 6, 6, 6), (3, 1, 1, 6), (1, 3, 1, 6))
    """
    return _separable("separable_conv2d", L.separable_conv2d, x, 2, channel_multiplier, kernel_size, strides,
                      padding, input_dilation, kernel_dilation, channels, activation, use_bias,
                      kernel_initializer, bias_initializer, name)


def separable_conv3d(x, channel_multiplier, kernel_size=1, strides=1, padding="valid", input_dilation=1,
                     kernel_dilation=1, channels="last", activation=None, use_bias=True,
                     kernel_initializer="glorot_uniform", bias_initializer="zeros", name=None) -> Axon:
    """Depthwise separable 3D convolution: a depthwise conv along each spatial axis in turn.

    >>> import axon
    >>> model = axon.input((None, 6, 6, 6, 2)).separable_conv3d(1, kernel_size=3, padding="same")
    >>> model.shape, sorted(model.params)
    ((None, 6, 6, 6, 2), ['bias_1', 'bias_2', 'bias_3', 'kernel_1', 'kernel_2', 'kernel_3'])
    """
    return _separable("separable_conv3d", L.separable_conv3d, x, 3, channel_multiplier, kernel_size, strides,
                      padding, input_dilation, kernel_dilation, channels, activation, use_bias,
                      kernel_initializer, bias_initializer, name)


# ---- pooling ---------------------------------------------------------------------------------------
def _pool(op, fn, x, name, **opts) -> Axon:
    return _layer(op, x, fn, opts=opts, name=name)


def max_pool(x, kernel_size=1, strides=None, padding="valid", channels="last", name=None, window_dilations=1) -> Axon:
    """Max over windows; ``strides`` defaults to the window size (as in Axon); ``window_dilations`` spaces the taps.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 4, 4, 1)).max_pool(kernel_size=2)
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)    # rows 0..3, 4..7, 8..11, 12..15
    >>> axon.predict(model, {}, x)[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    return _pool("max_pool", L.max_pool, x, name, kernel_size=kernel_size, strides=strides, padding=padding,
                 channels=channels, window_dilations=window_dilations)


def avg_pool(x, kernel_size=1, strides=None, padding="valid", channels="last", name=None, window_dilations=1) -> Axon:
    """Average over windows; ``strides`` defaults to the window size; ``window_dilations`` spaces the taps.

    >>> import axon
    >>> x = axon.input((None, 8, 8, 3))
    >>> x.avg_pool(kernel_size=2).shape, x.avg_pool(kernel_size=3, strides=1, padding="same").shape
    ((None, 4, 4, 3), (None, 8, 8, 3))
    """
    return _pool("avg_pool", L.avg_pool, x, name, kernel_size=kernel_size, strides=strides, padding=padding,
                 channels=channels, window_dilations=window_dilations)


def lp_pool(x, norm=2, kernel_size=1, strides=None, padding="valid", channels="last", name=None,
            window_dilations=1) -> Axon:
    """Power-average pooling: ``(sum over the window of x^p)^(1/p)``; ``window_dilations`` spaces the taps.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2, 2, 1)).lp_pool(norm=2, kernel_size=2)
    >>> axon.predict(model, {}, np.full((1, 2, 2, 1), 3.0, np.float32)).ravel()   # sqrt(4 * 3^2)
    array([6.], dtype=float32)
    """
    return _pool("lp_pool", L.lp_pool, x, name, norm=norm, kernel_size=kernel_size, strides=strides,
                 padding=padding, channels=channels, window_dilations=window_dilations)


def adaptive_max_pool(x, output_size, channels="last", name=None) -> Axon:
    """Max pooling to a fixed output size, whatever the input size.

    >>> import axon
    >>> axon.input((None, 7, 5, 3)).adaptive_max_pool((2, 2)).shape
    (None, 2, 2, 3)
    """
    return _pool("adaptive_max_pool", L.adaptive_max_pool, x, name, output_size=output_size, channels=channels)


def adaptive_avg_pool(x, output_size, channels="last", name=None) -> Axon:
    """Average pooling to a fixed output size.

    >>> import axon
    >>> axon.input((None, 9, 6, 3)).adaptive_avg_pool((3, 2)).shape
    (None, 3, 2, 3)
    """
    return _pool("adaptive_avg_pool", L.adaptive_avg_pool, x, name, output_size=output_size, channels=channels)


def adaptive_lp_pool(x, output_size, norm=2, channels="last", name=None) -> Axon:
    """Power-average pooling to a fixed output size.

    >>> import axon
    >>> axon.input((None, 8, 8, 3)).adaptive_lp_pool((2, 2), norm=3).shape
    (None, 2, 2, 3)
    """
    return _pool("adaptive_lp_pool", L.adaptive_lp_pool, x, name, output_size=output_size, norm=norm,
                 channels=channels)


def global_max_pool(x, keep_axes=False, channels="last", name=None) -> Axon:
    """Max over every spatial axis: (N, *spatial, C) -> (N, C).

    >>> import axon
    >>> x = axon.input((None, 8, 8, 3))
    >>> x.global_max_pool().shape, x.global_max_pool(keep_axes=True).shape
    ((None, 3), (None, 1, 1, 3))
    """
    return _pool("global_max_pool", L.global_max_pool, x, name, keep_axes=keep_axes, channels=channels)


def global_avg_pool(x, keep_axes=False, channels="last", name=None) -> Axon:
    """Mean over every spatial axis: (N, *spatial, C) -> (N, C).

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2, 2, 1)).global_avg_pool()
    >>> axon.predict(model, {}, np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1))   # (0+1+2+3) / 4
    array([[1.5]], dtype=float32)
    """
    return _pool("global_avg_pool", L.global_avg_pool, x, name, keep_axes=keep_axes, channels=channels)


def global_lp_pool(x, norm=2, keep_axes=False, channels="last", name=None) -> Axon:
    """Power-average over every spatial axis.

    >>> import axon
    >>> axon.input((None, 10, 4)).global_lp_pool(norm=2).shape     # 1 spatial axis of 10
    (None, 4)
    """
    return _pool("global_lp_pool", L.global_lp_pool, x, name, norm=norm, keep_axes=keep_axes, channels=channels)


def blur_pool(x, channels="last", name=None) -> Axon:
    """Blur each channel with a 3x3 binomial filter (same size), as Axon's ``blur_pool``.

    >>> import axon
    >>> axon.input((None, 8, 8, 3)).blur_pool().shape
    (None, 8, 8, 3)
    """
    return _pool("blur_pool", L.blur_pool, x, name, channels=channels)


# ---- normalization ---------------------------------------------------------------------------------
def _norm_params(c, gamma_initializer="ones", beta_initializer="zeros", beta=True):
    params = {"gamma": param((c,), gamma_initializer)}
    if beta:
        params["beta"] = param((c,), beta_initializer)
    return params


def _batch_norm_call(x, gamma, beta, mean, var, training, momentum, epsilon, channels):
    """Inference: normalize with the running statistics; training: batch statistics plus new state."""
    if not training:
        return L.batch_norm(x, gamma, beta, mean, var, training=False, momentum=momentum, epsilon=epsilon,
                            channels=channels)
    y, new_mean, new_var = L.batch_norm(x, gamma, beta, mean, var, training=True, momentum=momentum,
                                        epsilon=epsilon, channels=channels)
    return y, {"mean": new_mean, "var": new_var}


def batch_norm(x, momentum=0.1, epsilon=1e-5, channels="last", gamma_initializer="ones",
               beta_initializer="zeros", name=None) -> Axon:
    """Batch normalization with running mean/var kept as layer state (updated while training).

    ``gamma``/``beta`` are trained; ``mean``/``var`` are state, returned by ``axon.apply(..., training=True)``.

    >>> import axon
    >>> model = axon.input((None, 4, 4, 8)).batch_norm()
    >>> {k: (spec.shape, spec.kind) for k, spec in model.params.items()}
    {'gamma': ((8,), 'param'), 'beta': ((8,), 'param'), 'mean': ((8,), 'state'), 'var': ((8,), 'state')}
    """
    c = _channels(x, channels, "batch_norm")
    params = _norm_params(c, gamma_initializer, beta_initializer)
    params["mean"] = param((c,), "zeros", kind="state")
    params["var"] = param((c,), "ones", kind="state")
    return _layer("batch_norm", x, _batch_norm_call, params,
                  dict(momentum=momentum, epsilon=epsilon, channels=channels), name, uses=("training",))


def layer_norm(x, epsilon=1e-5, channels="last", gamma_initializer="ones", beta_initializer="zeros",
               name=None) -> Axon:
    """Normalize each example over its channel axis, then scale and shift.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).layer_norm()
    >>> params = axon.init(model)                           # gamma = 1, beta = 0
    >>> axon.predict(model, params, np.array([[1.0, 2.0, 3.0]], np.float32)).round(4)   # (x - 2) / std
    array([[-1.2247,  0.    ,  1.2247]], dtype=float32)
    """
    c = _channels(x, channels, "layer_norm")
    return _layer("layer_norm", x, L.layer_norm, _norm_params(c, gamma_initializer, beta_initializer),
                  dict(epsilon=epsilon, channels=channels), name)


def group_norm(x, num_groups, epsilon=1e-5, channels="last", gamma_initializer="ones",
               beta_initializer="zeros", name=None) -> Axon:
    """Normalize each example over groups of channels (and the spatial axes).

    >>> import axon
    >>> model = axon.input((None, 4, 4, 6)).group_norm(num_groups=3)    # 3 groups of 2 channels
    >>> model.shape, model.params["gamma"].shape
    ((None, 4, 4, 6), (6,))
    """
    c = _channels(x, channels, "group_norm")
    return _layer("group_norm", x, L.group_norm, _norm_params(c, gamma_initializer, beta_initializer),
                  dict(num_groups=num_groups, epsilon=epsilon, channels=channels), name)


def instance_norm(x, epsilon=1e-5, channels="last", gamma_initializer="ones", beta_initializer="zeros",
                  name=None) -> Axon:
    """Normalize each example and channel over the spatial axes.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2, 2, 1)).instance_norm()
    >>> x = np.array([0.0, 2.0, 4.0, 6.0], np.float32).reshape(1, 2, 2, 1)   # mean 3, std sqrt(5)
    >>> axon.predict(model, axon.init(model), x).ravel().round(4)
    array([-1.3416, -0.4472,  0.4472,  1.3416], dtype=float32)
    """
    c = _channels(x, channels, "instance_norm")
    return _layer("instance_norm", x, L.instance_norm, _norm_params(c, gamma_initializer, beta_initializer),
                  dict(epsilon=epsilon, channels=channels), name)


def rms_norm(x, epsilon=1e-6, channels="last", gamma_initializer="ones", name=None, shift=0.0,
             upcast="normalization") -> Axon:
    """Scale by the root mean square over the channel axis (no centering), times ``shift + gamma``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2)).rms_norm()
    >>> axon.predict(model, axon.init(model), np.array([[3.0, 4.0]], np.float32)).round(4)  # / sqrt(12.5)
    array([[0.8485, 1.1314]], dtype=float32)
    """
    c = _channels(x, channels, "rms_norm")
    return _layer("rms_norm", x, L.rms_norm, _norm_params(c, gamma_initializer, beta=False),
                  dict(epsilon=epsilon, channels=channels, shift=shift, upcast=upcast), name)


# ---- dropout ---------------------------------------------------------------------------------------
def _dropout(op, fn, x, rate, name, **opts):
    rate = _check_rate(op, rate)
    return _layer(op, x, fn, opts=dict(rate=rate, **opts), name=name, uses=("training", "key"))


def dropout(x, rate=0.5, name=None) -> Axon:
    """Zero each unit with probability ``rate`` while training, scaling the rest by 1 / (1 - rate).

    >>> import axon, numpy as np
    >>> model, x = axon.input((None, 8)).dropout(rate=0.5), np.ones((1, 8), np.float32)
    >>> axon.apply(model, {}, x, training=True, key=0)[0]   # the mask comes from key
    Tensor([[0., 0., 0., 2., 2., 0., 2., 2.]], dtype=float32)
    >>> axon.predict(model, {}, x)                          # inference: the identity
    array([[1., 1., 1., 1., 1., 1., 1., 1.]], dtype=float32)
    """
    return _dropout("dropout", L.dropout, x, rate, name)


def alpha_dropout(x, rate=0.5, name=None) -> Axon:
    """Dropout that keeps SELU's self-normalizing mean and variance.

    Dropped units are set to SELU's negative saturation value and every unit is rescaled, so
    the mean and variance of a SELU network stay the same.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 6)).alpha_dropout(rate=0.5)
    >>> y, _ = axon.apply(model, {}, np.ones((1, 6), np.float32), training=True, key=0)
    >>> y.numpy().round(4)
    array([[ 1.6656, -0.7792,  1.6656,  1.6656, -0.7792, -0.7792]], dtype=float32)
    """
    return _dropout("alpha_dropout", L.alpha_dropout, x, rate, name)


def feature_alpha_dropout(x, rate=0.5, channels="last", name=None) -> Axon:
    """Alpha dropout of whole channels.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2, 2, 4)).feature_alpha_dropout(rate=0.5)
    >>> y, _ = axon.apply(model, {}, np.ones((1, 2, 2, 4), np.float32), training=True, key=0)
    >>> y.numpy()[0, 0, 0].round(4)                         # one value per channel, the same at every pixel
    array([-0.7792, -0.7792,  1.6656, -0.7792], dtype=float32)
    """
    return _dropout("feature_alpha_dropout", L.feature_alpha_dropout, x, rate, name, channels=channels)


def spatial_dropout(x, rate=0.5, channels="last", name=None) -> Axon:
    """Dropout of whole feature maps (channels).

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2, 2, 4)).spatial_dropout(rate=0.5)
    >>> y, _ = axon.apply(model, {}, np.ones((1, 2, 2, 4), np.float32), training=True, key=0)
    >>> y.numpy()[0].reshape(4, 4)                          # (pixels, channels): channels 2, 3 dropped
    array([[2., 2., 0., 0.],
           [2., 2., 0., 0.],
           [2., 2., 0., 0.],
           [2., 2., 0., 0.]], dtype=float32)
    """
    return _dropout("spatial_dropout", L.spatial_dropout, x, rate, name, channels=channels)


# ---- shape -----------------------------------------------------------------------------------------
def flatten(x, name=None) -> Axon:
    """Keep the batch axis, flatten the rest: (N, H, W, C) -> (N, H*W*C).

    >>> import axon
    >>> axon.input((None, 4, 4, 3)).flatten().shape
    (None, 48)
    """
    return _layer("flatten", x, L.flatten, name=name)


def reshape(x, shape, name=None) -> Axon:
    """Reshape every example to ``shape`` (the batch axis is kept): ``x.reshape((28, 28, 1))``.

    >>> import axon
    >>> axon.input((None, 784)).reshape((28, 28, 1)).shape
    (None, 28, 28, 1)
    """
    shape = tuple(shape)
    return _layer("reshape", x, lambda x, shape: L.reshape(x, (x.shape[0],) + shape), opts={"shape": shape},
                  name=name)


def transpose(x, permutation, name=None) -> Axon:
    """Permute the axes after the batch axis: ``x.transpose((2, 0, 1))`` on (N, H, W, C) gives (N, C, H, W).

    >>> import axon
    >>> axon.input((None, 4, 5, 3)).transpose((2, 0, 1)).shape
    (None, 3, 4, 5)
    """
    permutation = tuple(permutation)
    return _layer("transpose", x, lambda x, permutation: L.transpose(x, (0,) + tuple(p + 1 for p in permutation)),
                  opts={"permutation": permutation}, name=name)


def pad(x, config, value=0.0, channels="last", name=None) -> Axon:
    """Pad the spatial axes: ``config`` is one (before, after) pair per spatial axis (as in Axon).

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2, 3)).pad([(1, 2)], value=9.0)     # 1 spatial axis: 1 before, 2 after
    >>> model.shape, axon.predict(model, {}, np.zeros((1, 2, 3), np.float32))[0, :, 0]
    ((None, 5, 3), array([9., 0., 0., 9., 9.], dtype=float32))
    """
    config = tuple(tuple(p) for p in config)
    return _layer("pad", x, L.pad, opts={"padding": config, "value": value, "channels": channels}, name=name)


def resize(x, size, method="nearest", channels="last", name=None, antialias=False) -> Axon:
    """Resize the spatial axes to ``size``: "nearest", "bilinear", "bicubic", "lanczos3" or "lanczos5" (see ``axon.layers.resize``).

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2, 2, 1)).resize((4, 4))             # nearest: each pixel twice
    >>> x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32).reshape(1, 2, 2, 1)
    >>> axon.predict(model, {}, x)[0, :, :, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]], dtype=float32)
    """
    return _layer("resize", x, L.resize, opts=dict(size=size, method=method, channels=channels, antialias=antialias),
                  name=name)


# ---- combinators -----------------------------------------------------------------------------------
def _combinator(op, nodes, others, fn, name, **opts):
    """``op([a, b, ...])`` or ``op(a, b, ...)`` (Axon's ``add(input, x)``): at least two layers."""
    if isinstance(nodes, Axon):
        nodes = [nodes, *others]
    elif others:
        raise TypeError(f"{op}: give the layers as one list, {op}([a, b]), or one by one, {op}(a, b), not both")
    else:
        nodes = list(nodes)
    if len(nodes) < 2:
        raise ValueError(f"{op} needs at least two layers, got {len(nodes)}")
    return _layer(op, nodes, fn, opts=opts, name=name)     # shapes that do not fit: the error names them all


def _fold(f):
    def call(*xs):
        y = xs[0]
        for x in xs[1:]:
            y = f(y, x)
        return y
    return call


def add(nodes, *others, name=None) -> Axon:
    """Elementwise sum of layers with broadcast-compatible shapes (residual connections): ``a + b``.

    >>> import axon, numpy as np
    >>> x = axon.input((None, 2))
    >>> model = axon.add([x, x.relu()])                    # the same as x + x.relu(), or axon.add(x, x.relu())
    >>> axon.predict(model, {}, np.array([[-1.0, 2.0]], np.float32))
    array([[-1.,  4.]], dtype=float32)
    """
    return _combinator("add", nodes, others, _fold(lambda a, b: a + b), name)


def subtract(nodes, *others, name=None) -> Axon:
    """Elementwise difference, left to right: ``a - b``.

    >>> import axon, numpy as np
    >>> x = axon.input((None, 2))
    >>> model = axon.subtract([x, x.relu()])               # x - relu(x) = min(x, 0)
    >>> axon.predict(model, {}, np.array([[-1.0, 2.0]], np.float32))
    array([[-1.,  0.]], dtype=float32)
    """
    return _combinator("subtract", nodes, others, _fold(lambda a, b: a - b), name)


def multiply(nodes, *others, name=None) -> Axon:
    """Elementwise product: ``a * b``.

    >>> import axon, numpy as np
    >>> x = axon.input((None, 2))
    >>> model = axon.multiply([x, x.sigmoid()])            # a gate: x * sigmoid(x) is silu
    >>> axon.predict(model, {}, np.array([[-1.0, 2.0]], np.float32)).round(4)
    array([[-0.2689,  1.7616]], dtype=float32)
    """
    return _combinator("multiply", nodes, others, _fold(lambda a, b: a * b), name)


def concatenate(nodes, *others, axis=-1, name=None) -> Axon:
    """Join layers along ``axis`` (default: the channel/feature axis).

    The layers come as a list or one by one: ``concatenate([a, b])``, ``concatenate(a, b)``, ``a.concatenate(b, c)``.

    >>> import axon
    >>> a, b = axon.input((None, 3), name="a"), axon.input((None, 5), name="b")
    >>> axon.concatenate([a, b]).shape, a.concatenate(b).shape
    ((None, 8), (None, 8))
    """
    return _combinator("concatenate", nodes, others, lambda *xs, axis: L.concatenate(list(xs), axis=axis), name,
                       axis=axis)


# ---- sequences -------------------------------------------------------------------------------------
# A recurrent layer is one node whose value is the tuple (seq, carry); ``x.lstm(...)`` returns two
# small nodes that pick them out, as Axon's {seq, carry}. A node has one value (a Tensor or a tuple of
# them), so a layer with two results is a tuple-valued node, and the summary counts its params once.
def _pick(rnn, index, op, name=None):
    return _node(op, [rnn], lambda y, index: y[index], opts={"index": index}, name=name)


def _mask_value(m):
    """A mask node's value; while shapes are inferred (every input float zeros), the boolean mask it stands for."""
    return m != 0 if inferring_shapes() else m


def _recurrent_call(layer_fn, n_carry):
    """``fn(x, [mask], [carry], **params, **opts)`` of a recurrent node: a zero carry unless one is given."""
    def call(x, *rest, has_mask, has_carry, units, **opts):
        mask = _mask_value(rest[0]) if has_mask else None
        if has_carry:
            carry = rest[-1]
        else:
            zeros = on_backend_of(x, np.zeros(x.shape[:1] + _carry_shape(x, opts, units), x.dtype))   # x's device
            carry = (zeros,) * n_carry if n_carry > 1 else zeros
        return layer_fn(x, carry, mask=mask, **opts)
    return call


def _carry_shape(x, opts, units):
    """The carry's shape after the batch axis: (units,), or (*spatial', units) for a ConvLSTM, where spatial' is
    what the input convolution makes of one step (B, *spatial, C), any padding (``conv_output_shape``)."""
    if "strides" not in opts:
        return (units,)
    step = x.shape[:1] + x.shape[2:]                                     # (B, T, *spatial, C) -> (B, *spatial, C)
    kernel = tuple(opts["kernel_size"]) + (x.shape[-1], units)          # (*k, C, units): the carry's channels
    return L.conv_output_shape(step, kernel, opts["strides"], opts["padding"])[1:]


def _recurrent(op, x, fn, params, opts, carry, mask, name):
    inputs = [x] + ([mask] if mask is not None else []) + ([carry] if carry is not None else [])
    opts = dict(opts, has_mask=mask is not None, has_carry=carry is not None)
    rnn = _node(op, inputs, fn, params, opts, name)
    return _pick(rnn, 0, "seq"), _pick(rnn, 1, "carry")


def _lstm_layer(x, carry, kernel_input, kernel_hidden, bias=None, mask=None, reverse=False, unroll="fused"):
    return L.lstm(x, carry, kernel_input, kernel_hidden, bias, mask=mask, reverse=reverse, unroll=unroll)


def lstm(x, units, carry=None, mask=None, reverse=False, unroll="fused", use_bias=True,
         kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
         name=None) -> tuple:
    """An LSTM over (batch, steps, features): returns ``(seq, carry)``, nodes of (None, T, units) and (c, h).

    ``c, h = carry`` (or ``carry[1]``) gives the cell and the hidden state as nodes of their own, as
    Axon's ``{seq, {cell, hidden}}``. ``carry``: a node holding an initial ``(c, h)`` (another LSTM's
    carry: an encoder-decoder), else zeros; ``mask``: a (batch, steps) node, True on real steps
    (``x.mask(...)``). Params: kernel_input (F, 4 units), kernel_hidden (units, 4 units), bias
    (4 units,); gates i, f, g, o (see ``axon.layers.lstm``).

    >>> import axon
    >>> seq, carry = axon.input((None, 10, 3)).lstm(8)
    >>> seq.shape, carry.shape, carry[1].shape              # carry[1]: h, the last step's output
    ((None, 10, 8), ((None, 8), (None, 8)), (None, 8))
    >>> axon.count_params(seq)["total"]                     # 3*32 + 8*32 + 32
    384
    """
    params = _with_bias({"kernel_input": param((x.shape[-1], 4 * units), kernel_initializer),
                         "kernel_hidden": param((units, 4 * units), recurrent_initializer)},
                        use_bias, 4 * units, bias_initializer)
    return _recurrent("lstm", x, _recurrent_call(_lstm_layer, 2), params,
                      dict(units=units, reverse=reverse, unroll=unroll), carry, mask, name)


def _gru_layer(x, h, kernel_input, kernel_hidden, bias_input=None, bias_hidden=None, mask=None, reverse=False,
               unroll="fused"):
    return L.gru(x, h, kernel_input, kernel_hidden, bias_input, bias_hidden, mask=mask, reverse=reverse,
                 unroll=unroll)


def gru(x, units, carry=None, mask=None, reverse=False, unroll="fused", use_bias=True,
        kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
        name=None) -> tuple:
    """A GRU over (batch, steps, features): returns ``(seq, carry)``, nodes of (None, T, units) and (None, units).

    Params: kernel_input (F, 3 units), kernel_hidden (units, 3 units), bias_input and bias_hidden
    (3 units,) (PyTorch's two biases; see ``axon.layers.gru``).

    >>> import axon
    >>> seq, h = axon.input((None, 10, 3)).gru(8)
    >>> seq.shape, h.shape, axon.count_params(h)["total"]   # 3*24 + 8*24 + 2*24
    ((None, 10, 8), (None, 8), 312)
    """
    params = {"kernel_input": param((x.shape[-1], 3 * units), kernel_initializer),
              "kernel_hidden": param((units, 3 * units), recurrent_initializer)}
    if use_bias:
        params.update(bias_input=param((3 * units,), bias_initializer), bias_hidden=param((3 * units,), bias_initializer))
    return _recurrent("gru", x, _recurrent_call(_gru_layer, 1), params,
                      dict(units=units, reverse=reverse, unroll=unroll), carry, mask, name)


def _conv_lstm_layer(x, carry, kernel_input, kernel_hidden, bias=None, mask=None, reverse=False, strides=1,
                     padding="same", kernel_size=None, unroll="static"):
    return L.conv_lstm(x, carry, kernel_input, kernel_hidden, bias, strides=strides, padding=padding, mask=mask,
                       reverse=reverse, unroll=unroll)


def conv_lstm(x, units, kernel_size=3, strides=1, padding="same", carry=None, mask=None, reverse=False,
              unroll="static", use_bias=True, kernel_initializer="glorot_uniform",
              recurrent_initializer="glorot_uniform", bias_initializer="zeros", name=None) -> tuple:
    """A ConvLSTM over (batch, steps, *spatial, channels): returns ``(seq, carry)`` nodes.

    Params: kernel_input (*kernel_size, C, 4 units), kernel_hidden (*kernel_size, units, 4 units),
    bias (4 units,); the hidden-to-hidden convolution is "same" (see ``axon.layers.conv_lstm_cell``).

    >>> import axon
    >>> seq, carry = axon.input((None, 5, 8, 8, 1)).conv_lstm(4, kernel_size=3)
    >>> seq.shape, axon.count_params(seq)["total"]          # 9*1*16 + 9*4*16 + 16
    ((None, 5, 8, 8, 4), 736)
    """
    k = _tuple(kernel_size, len(x.shape) - 3)
    params = _with_bias({"kernel_input": param(k + (x.shape[-1], 4 * units), kernel_initializer),
                         "kernel_hidden": param(k + (units, 4 * units), recurrent_initializer)},
                        use_bias, 4 * units, bias_initializer)
    opts = dict(units=units, kernel_size=k, strides=strides, padding=padding, reverse=reverse, unroll=unroll)
    return _recurrent("conv_lstm", x, _recurrent_call(_conv_lstm_layer, 2), params, opts, carry, mask, name)


def _reverse(x, axis, name=None) -> Axon:
    axis = check_int("bidirectional", "axis", axis)
    if axis >= len(x.shape):
        raise ValueError(f"bidirectional: axis must be a step axis of the input, 1 to {len(x.shape) - 1}, got {axis} "
                         f"for shape {x.shape}")
    return _node("reverse", [x], lambda x, axis: x[(slice(None),) * axis + (slice(None, None, -1),)],
                 opts={"axis": axis}, name=name)


def bidirectional(x, forward_fn, merge="concatenate", axis=1, mask=None, name=None):
    """Run ``forward_fn`` on the sequence and on it reversed along ``axis``, and merge the two (as Axon's).

    ``forward_fn(node)`` builds a layer (e.g. ``lambda s: s.lstm(32)``); a ``(seq, carry)`` result gives
    ``(merged seq, (forward carry, backward carry))``. The backward run's outputs are reversed back, so
    step t of both sits at t. ``merge``: ``"concatenate"`` (on the last axis), ``"add"``,
    ``"multiply"`` or a function of two nodes. The two runs have their own params.

    Padded sequences: give the (batch, steps) ``mask`` node (True on real steps, ``tokens.mask(0)``) and
    a ``forward_fn(seq, mask)`` that passes it on (``lambda s, m: s.lstm(32, mask=m)``). The backward run
    gets the mask reversed with its input: the padding, at the end of a sequence, comes first there, a
    masked layer keeps its zero carry through it, and so starts at the sequence's last real step, as
    ``reverse=True`` with the same mask (and PyTorch's packed ``bidirectional=True``). A mask that
    ``forward_fn`` takes from elsewhere (a closure) would not be reversed: that is a ValueError.

    >>> import axon, numpy as np
    >>> x = axon.input((None, 10, 3))
    >>> seq, (fw, bw) = axon.bidirectional(x, lambda s: s.gru(8))
    >>> seq.shape, fw.shape
    ((None, 10, 16), (None, 8))
    >>> tokens = axon.input((None, 4), name="tokens")
    >>> seq, _ = axon.bidirectional(tokens.embedding(9, 3), lambda s, m: s.gru(2, mask=m), mask=tokens.mask(0))
    >>> y = axon.predict(seq, axon.init(seq), np.array([[5, 7, 0, 0]]))
    >>> bool((y[0, 2:] == 0).all() and (y[0, :2] != 0).all())   # padding: 0 in both halves
    True
    """
    join = {"concatenate": lambda a, b: concatenate([a, b], axis=-1, name=name),
            "add": lambda a, b: add([a, b], name=name),
            "multiply": lambda a, b: multiply([a, b], name=name)}.get(merge, merge)
    if not callable(join):
        raise ValueError(f"bidirectional: merge must be 'concatenate', 'add', 'multiply' or a function, got {merge!r}")
    if mask is None:
        x_r = _reverse(x, axis)
        fw, bw = forward_fn(x), forward_fn(x_r)
        reversed_nodes = (x_r,)
    else:
        x_r, mask_r = _reverse(x, axis), _reverse(mask, axis)
        fw, bw = forward_fn(x, mask), forward_fn(x_r, mask_r)
        reversed_nodes = (x_r, mask_r)
    _check_masks_reversed(bw, reversed_nodes)
    if isinstance(fw, tuple):
        return join(fw[0], _reverse(bw[0], axis)), (fw[1], bw[1])
    return join(fw, _reverse(bw, axis))


def _mask_parent(node):
    """The mask input of a masked recurrent or attention node (None for any other node)."""
    if not node.opts.get("has_mask"):
        return None
    return node.parents[-1] if node.op == "multi_head_attention" else node.parents[1]


def _check_masks_reversed(out, reversed_nodes):
    """ValueError when a masked layer of the backward run reads the reversed input with a mask that is not reversed."""
    ids = {r.id for r in reversed_nodes}
    reads = lambda node: any(n.id in ids for n in node.nodes())    # noqa: E731  (node depends on a reversed one)
    for part in (out if isinstance(out, tuple) else (out,)):
        for node in part.nodes():
            m = _mask_parent(node)
            if m is not None and reads(node) and not reads(m):
                raise ValueError(f"bidirectional: the backward run's {node.op} layer takes a mask that is not reversed "
                                 f"with its input, so it would mask the wrong steps; give the mask to bidirectional: "
                                 f"axon.bidirectional(x, lambda s, m: s.{node.op}(..., mask=m), mask=...)")


def mask(x, eos_token=0, name=None) -> Axon:
    """A (batch, steps) mask of the real tokens, ``x != eos_token``, for ``lstm``/``gru``/attention ``mask=``.

    >>> import axon, numpy as np
    >>> tokens = axon.input((None, 4))
    >>> axon.predict(tokens.mask(0), {}, np.array([[5, 2, 0, 0]]))
    array([[ True,  True, False, False]])
    """
    return _node("mask", [x], lambda x, eos_token: x != eos_token, opts={"eos_token": eos_token}, name=name)


def _attention_call(x, *rest, has_context, has_mask, num_heads, causal, dropout_rate, training=False, key=None,
                    **params):
    context = rest[0] if has_context else x
    m = _mask_value(rest[-1]) if has_mask else None
    if m is not None and np.ndim(m) == 2:                      # (B, Tk) key padding -> (B, 1, 1, Tk)
        m = as_tensor(m).reshape(m.shape[0], 1, 1, m.shape[1])
    rate = dropout_rate if training else 0.0
    return L.multi_head_attention(x, context, context, params["query_kernel"], params["key_kernel"],
                                  params["value_kernel"], params["output_kernel"], num_heads,
                                  params.get("query_bias"), params.get("key_bias"), params.get("value_bias"),
                                  params.get("output_bias"), mask=m, causal=causal, dropout_rate=rate, key=key)


def multi_head_attention(x, num_heads, context=None, mask=None, causal=False, dropout_rate=0.0, head_size=None,
                         use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                         name=None) -> Axon:
    """Multi-head attention of ``x`` (batch, Tq, E) over itself, or over ``context`` (batch, Tk, Ec).

    ``mask``: a node of (batch, Tk) (True: a real key, as from ``x.mask(...)``) or broadcastable to
    (batch, heads, Tq, Tk); ``causal`` for decoders; ``dropout_rate`` on the attention weights while
    training. Params: query/key/value kernels (E or Ec, heads * head_size), output kernel
    (heads * head_size, E), and their biases; ``head_size`` defaults to E / heads.

    >>> import axon
    >>> x = axon.input((None, 6, 16))
    >>> y = x.multi_head_attention(4, causal=True)
    >>> y.shape, axon.count_params(y)["total"]              # 4 * (16*16 + 16)
    ((None, 6, 16), 1088)
    >>> x.multi_head_attention(4, context=axon.input((None, 9, 8), name="memory")).shape   # cross-attention
    (None, 6, 16)
    """
    E = x.shape[-1]
    D = head_size if head_size is not None else E // num_heads
    if head_size is None and E % num_heads:
        raise ValueError(f"multi_head_attention: the width {E} is not divisible by num_heads {num_heads}; "
                         f"give head_size")
    inner, Ec = num_heads * D, (context if context is not None else x).shape[-1]
    params = {"query_kernel": param((E, inner), kernel_initializer), "key_kernel": param((Ec, inner), kernel_initializer),
              "value_kernel": param((Ec, inner), kernel_initializer),
              "output_kernel": param((inner, E), kernel_initializer)}
    if use_bias:
        for p, n in (("query", inner), ("key", inner), ("value", inner), ("output", E)):
            params[f"{p}_bias"] = param((n,), bias_initializer)
    inputs = [x] + ([context] if context is not None else []) + ([mask] if mask is not None else [])
    opts = dict(has_context=context is not None, has_mask=mask is not None, num_heads=num_heads, causal=causal,
                dropout_rate=dropout_rate)
    return _layer("multi_head_attention", inputs, _attention_call, params, opts, name,
                  uses=("training", "key") if dropout_rate else ())


def transformer_block(x, num_heads, mlp_units, mask=None, causal=False, dropout_rate=0.0, activation="gelu",
                      epsilon=1e-5, name=None) -> Axon:
    """A pre-norm transformer block: ``h = x + attention(norm(x))``, then ``h + mlp(norm(h))``.

    The MLP is dense(mlp_units, activation) then dense(E). Built from the builders above, so the
    summary lists each part; with ``name``, the parts are called ``{name}_norm_1``, ``{name}_attention``, ...

    >>> import axon
    >>> y = axon.input((None, 8, 16)).transformer_block(num_heads=2, mlp_units=32, causal=True)
    >>> y.shape, axon.count_params(y)["total"]              # norms 2*32, attention 4*272, MLP 544 + 528
    ((None, 8, 16), 2224)
    """
    part = (lambda s: None) if name is None else (lambda s: f"{name}_{s}")
    E = x.shape[-1]
    h = x.layer_norm(epsilon, name=part("norm_1")).multi_head_attention(
        num_heads, mask=mask, causal=causal, dropout_rate=dropout_rate, name=part("attention"))
    if dropout_rate:
        h = h.dropout(dropout_rate, name=part("dropout_1"))
    h = add([x, h], name=part("residual_1"))
    m = h.layer_norm(epsilon, name=part("norm_2")).dense(mlp_units, name=part("mlp_1"))
    m = _activation_node(m, activation, name=part("activation")).dense(E, name=part("mlp_2"))
    if dropout_rate:
        m = m.dropout(dropout_rate, name=part("dropout_2"))
    return add([h, m], name=name)


# ---- activations as layers -------------------------------------------------------------------------
def _activation_node(x, activation, name=None, **opts) -> Axon:
    fn = A.get(activation) if isinstance(activation, str) else activation
    op = activation if isinstance(activation, str) else getattr(activation, "__name__", "activation")
    return _node(op, [x], fn, opts=opts, name=name)


def activation(x, activation, name=None, **opts) -> Axon:
    """An activation as a layer: ``axon.activation(x, "relu")`` or ``axon.activation(x, my_fn)``.

    >>> import axon, numpy as np
    >>> model = axon.activation(axon.input((None, 3)), "relu")
    >>> model.op, axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32))
    ('relu', array([[0., 0., 2.]], dtype=float32))
    """
    return _activation_node(x, activation, name, **opts)


def celu(x, name=None, **opts) -> Axon:
    """Continuously differentiable ELU: x for x > 0, alpha * (e^(x/alpha) - 1) otherwise.

    ``axon.activations.celu`` as a layer, ``x.celu(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).celu(alpha=2.0)
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.7869,  0.    ,  2.    ]], dtype=float32)
    """
    return _activation_node(x, "celu", name, **opts)


def elu(x, name=None, **opts) -> Axon:
    """Exponential linear unit: x for x > 0, alpha * (e^x - 1) otherwise.

    ``axon.activations.elu`` as a layer, ``x.elu(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).elu()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.6321,  0.    ,  2.    ]], dtype=float32)
    """
    return _activation_node(x, "elu", name, **opts)


def exp(x, name=None, **opts) -> Axon:
    """Exponential e^x.

    ``axon.activations.exp`` as a layer, ``x.exp(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).exp()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[0.3679, 1.    , 7.3891]], dtype=float32)
    """
    return _activation_node(x, "exp", name, **opts)


def gelu(x, name=None, **opts) -> Axon:
    """Gaussian error linear unit: x * Phi(x), with Phi the standard normal CDF.

    ``axon.activations.gelu`` as a layer, ``x.gelu(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).gelu(approximate=True)
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.1588,  0.    ,  1.9546]], dtype=float32)
    """
    return _activation_node(x, "gelu", name, **opts)


def hard_sigmoid(x, name=None, **opts) -> Axon:
    """Piecewise-linear sigmoid: clip(alpha * x + beta, 0, 1).

    ``axon.activations.hard_sigmoid`` as a layer, ``x.hard_sigmoid(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).hard_sigmoid(alpha=0.5, beta=0.5)
    >>> axon.predict(model, {}, np.array([[-2.0, 0.0, 0.5]], np.float32)).round(4)
    array([[0.  , 0.5 , 0.75]], dtype=float32)
    """
    return _activation_node(x, "hard_sigmoid", name, **opts)


def hard_silu(x, name=None, **opts) -> Axon:
    """Hard SiLU (hard swish): x * hard_sigmoid(x, alpha, beta).

    ``axon.activations.hard_silu`` as a layer, ``x.hard_silu(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).hard_silu()
    >>> axon.predict(model, {}, np.array([[-0.5, 1.0, 2.0]], np.float32)).round(4)
    array([[-0.05,  0.4 ,  1.2 ]], dtype=float32)
    """
    return _activation_node(x, "hard_silu", name, **opts)


def hard_tanh(x, name=None, **opts) -> Axon:
    """Hard hyperbolic tangent: clip(x, -1, 1).

    ``axon.activations.hard_tanh`` as a layer, ``x.hard_tanh(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).hard_tanh()
    >>> axon.predict(model, {}, np.array([[-3.0, 0.5, 2.0]], np.float32)).round(4)
    array([[-1. ,  0.5,  1. ]], dtype=float32)
    """
    return _activation_node(x, "hard_tanh", name, **opts)


def leaky_relu(x, name=None, **opts) -> Axon:
    """Leaky ReLU: x for x > 0, alpha * x otherwise.

    ``axon.activations.leaky_relu`` as a layer, ``x.leaky_relu(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).leaky_relu(alpha=0.1)
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.1,  0. ,  2. ]], dtype=float32)
    """
    return _activation_node(x, "leaky_relu", name, **opts)


def linear(x, name=None, **opts) -> Axon:
    """The identity: f(x) = x.

    ``axon.activations.linear`` as a layer, ``x.linear(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).linear()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-1.,  0.,  2.]], dtype=float32)
    """
    return _activation_node(x, "linear", name, **opts)


def log_sumexp(x, name=None, **opts) -> Axon:
    """log(sum(e^x)) over ``axis``, computed as m + log(sum(e^(x - m))) with m = max(x).

    ``axon.activations.log_sumexp`` as a layer, ``x.log_sumexp(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).log_sumexp()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[2.1698]], dtype=float32)
    """
    return _activation_node(x, "log_sumexp", name, **opts)


def log_sigmoid(x, name=None, **opts) -> Axon:
    """log(sigmoid(x)) = -softplus(-x), finite for any x.

    ``axon.activations.log_sigmoid`` as a layer, ``x.log_sigmoid(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).log_sigmoid()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-1.3133, -0.6931, -0.1269]], dtype=float32)
    """
    return _activation_node(x, "log_sigmoid", name, **opts)


def log_softmax(x, name=None, **opts) -> Axon:
    """log(softmax(x)) = x - m - log(sum(e^(x - m))) with m = max(x) over ``axis``; stable for any x.

    ``axon.activations.log_softmax`` as a layer, ``x.log_softmax(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).log_softmax()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-3.1698, -2.1698, -0.1698]], dtype=float32)
    """
    return _activation_node(x, "log_softmax", name, **opts)


def mish(x, name=None, **opts) -> Axon:
    """Mish: x * tanh(softplus(x)).

    ``axon.activations.mish`` as a layer, ``x.mish(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).mish()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.3034,  0.    ,  1.944 ]], dtype=float32)
    """
    return _activation_node(x, "mish", name, **opts)


def relu(x, name=None, **opts) -> Axon:
    """Rectified linear unit: max(x, 0) (gradient 0 at x = 0).

    ``axon.activations.relu`` as a layer, ``x.relu(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).relu()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[0., 0., 2.]], dtype=float32)
    """
    return _activation_node(x, "relu", name, **opts)


def relu6(x, name=None, **opts) -> Axon:
    """ReLU capped at 6: min(max(x, 0), 6).

    ``axon.activations.relu6`` as a layer, ``x.relu6(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).relu6()
    >>> axon.predict(model, {}, np.array([[-1.0, 3.0, 9.0]], np.float32)).round(4)
    array([[0., 3., 6.]], dtype=float32)
    """
    return _activation_node(x, "relu6", name, **opts)


def selu(x, name=None, **opts) -> Axon:
    """Scaled ELU: gamma * elu(x, alpha), with the self-normalizing constants as defaults.

    ``axon.activations.selu`` as a layer, ``x.selu(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).selu()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-1.1113,  0.    ,  2.1014]], dtype=float32)
    """
    return _activation_node(x, "selu", name, **opts)


def sigmoid(x, name=None, **opts) -> Axon:
    """Logistic sigmoid: 1 / (1 + e^-x), computed as (tanh(x/2) + 1)/2 so it never overflows.

    ``axon.activations.sigmoid`` as a layer, ``x.sigmoid(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).sigmoid()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[0.2689, 0.5   , 0.8808]], dtype=float32)
    """
    return _activation_node(x, "sigmoid", name, **opts)


def silu(x, name=None, **opts) -> Axon:
    """Sigmoid linear unit (swish): x * sigmoid(x).

    ``axon.activations.silu`` as a layer, ``x.silu(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).silu()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.2689,  0.    ,  1.7616]], dtype=float32)
    """
    return _activation_node(x, "silu", name, **opts)


def softmax(x, name=None, **opts) -> Axon:
    """e^x / sum(e^x) over ``axis`` (an int or a tuple), shifted by the max so it never overflows.

    ``axon.activations.softmax`` as a layer, ``x.softmax(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).softmax()
    >>> axon.predict(model, {}, np.array([[1.0, 2.0, 3.0]], np.float32)).round(4)
    array([[0.09  , 0.2447, 0.6652]], dtype=float32)
    """
    return _activation_node(x, "softmax", name, **opts)


def softplus(x, name=None, **opts) -> Axon:
    """log(1 + e^x), as max(x, 0) + log1p(e^-|x|): finite for any x; gradient sigmoid(x).

    ``axon.activations.softplus`` as a layer, ``x.softplus(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).softplus()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[0.3133, 0.6931, 2.1269]], dtype=float32)
    """
    return _activation_node(x, "softplus", name, **opts)


def softsign(x, name=None, **opts) -> Axon:
    """x / (1 + |x|).

    ``axon.activations.softsign`` as a layer, ``x.softsign(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).softsign()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.5   ,  0.    ,  0.6667]], dtype=float32)
    """
    return _activation_node(x, "softsign", name, **opts)


def tanh(x, name=None, **opts) -> Axon:
    """Hyperbolic tangent.

    ``axon.activations.tanh`` as a layer, ``x.tanh(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).tanh()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.7616,  0.    ,  0.964 ]], dtype=float32)
    """
    return _activation_node(x, "tanh", name, **opts)


def log1p(x, name=None, **opts) -> Axon:
    """log(1 + x), accurate for tiny x.

    ``axon.activations.log1p`` as a layer, ``x.log1p(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).log1p()
    >>> axon.predict(model, {}, np.array([[-0.5, 0.0, 1.0]], np.float32)).round(4)
    array([[-0.6931,  0.    ,  0.6931]], dtype=float32)
    """
    return _activation_node(x, "log1p", name, **opts)


def expm1(x, name=None, **opts) -> Axon:
    """e^x - 1, accurate for tiny x.

    ``axon.activations.expm1`` as a layer, ``x.expm1(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).expm1()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.6321,  0.    ,  6.3891]], dtype=float32)
    """
    return _activation_node(x, "expm1", name, **opts)


def erf(x, name=None, **opts) -> Axon:
    """The error function erf(x) = 2/sqrt(pi) * integral_0^x e^(-t^2) dt (the kernel ``axon.kernels.erf``).

    ``axon.activations.erf`` as a layer, ``x.erf(**opts)``.

    >>> import axon, numpy as np
    >>> model = axon.input((None, 3)).erf()
    >>> axon.predict(model, {}, np.array([[-1.0, 0.0, 2.0]], np.float32)).round(4)
    array([[-0.8427,  0.    ,  0.9953]], dtype=float32)
    """
    return _activation_node(x, "erf", name, **opts)


# name -> builder of every activation layer (the loader and the tests tell them from the other layers)
ACTIVATIONS = {f.__name__: f for f in (celu, elu, exp, gelu, hard_sigmoid, hard_silu, hard_tanh, leaky_relu,
                                       linear, log_sumexp, log_sigmoid, log_softmax, mish, relu, relu6, selu,
                                       sigmoid, silu, softmax, softplus, softsign, tanh, log1p, expm1, erf)}
__all__ += list(ACTIVATIONS)


# ---- every builder is also a method of the node: x.dense(128) is dense(x, 128) ----------------------
# (add, subtract and multiply are the operators a + b, a - b, a * b; concatenate takes a.concatenate(b, c))
Axon.dense = dense
Axon.bilinear = bilinear
Axon.embedding = embedding
Axon.conv = conv
Axon.conv_transpose = conv_transpose
Axon.depthwise_conv = depthwise_conv
Axon.separable_conv2d = separable_conv2d
Axon.separable_conv3d = separable_conv3d
Axon.max_pool = max_pool
Axon.avg_pool = avg_pool
Axon.lp_pool = lp_pool
Axon.adaptive_max_pool = adaptive_max_pool
Axon.adaptive_avg_pool = adaptive_avg_pool
Axon.adaptive_lp_pool = adaptive_lp_pool
Axon.global_max_pool = global_max_pool
Axon.global_avg_pool = global_avg_pool
Axon.global_lp_pool = global_lp_pool
Axon.blur_pool = blur_pool
Axon.batch_norm = batch_norm
Axon.layer_norm = layer_norm
Axon.group_norm = group_norm
Axon.instance_norm = instance_norm
Axon.rms_norm = rms_norm
Axon.dropout = dropout
Axon.alpha_dropout = alpha_dropout
Axon.feature_alpha_dropout = feature_alpha_dropout
Axon.spatial_dropout = spatial_dropout
Axon.flatten = flatten
Axon.reshape = reshape
Axon.transpose = transpose
Axon.pad = pad
Axon.resize = resize
Axon.concatenate = concatenate
Axon.activation = activation
Axon.lstm = lstm
Axon.gru = gru
Axon.conv_lstm = conv_lstm
Axon.bidirectional = bidirectional
Axon.mask = mask
Axon.multi_head_attention = multi_head_attention
Axon.transformer_block = transformer_block
Axon.celu = celu
Axon.elu = elu
Axon.exp = exp
Axon.gelu = gelu
Axon.hard_sigmoid = hard_sigmoid
Axon.hard_silu = hard_silu
Axon.hard_tanh = hard_tanh
Axon.leaky_relu = leaky_relu
Axon.linear = linear
Axon.log_sumexp = log_sumexp
Axon.log_sigmoid = log_sigmoid
Axon.log_softmax = log_softmax
Axon.mish = mish
Axon.relu = relu
Axon.relu6 = relu6
Axon.selu = selu
Axon.sigmoid = sigmoid
Axon.silu = silu
Axon.softmax = softmax
Axon.softplus = softplus
Axon.softsign = softsign
Axon.tanh = tanh
Axon.log1p = log1p
Axon.expm1 = expm1
Axon.erf = erf
