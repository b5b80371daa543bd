"""Normalization layers: ``batch_norm``, ``layer_norm``, ``group_norm``, ``instance_norm``, ``rms_norm``.

Each one standardizes ``x`` over some axes and then scales and shifts it per feature:

    y = (x - mean) / sqrt(var + epsilon) * gamma + beta        (var: the biased, 1/n variance)

They differ only in the axes: batch norm uses every axis but the channels (with running statistics
for inference), layer norm the feature axes of each example, instance norm the spatial axes of each
example and channel, group norm the spatial axes and a group of channels. RMS norm divides by the
root mean square and does not centre. ``gamma`` and ``beta`` are optional (``None``) everywhere.

>>> import numpy as np
>>> y = layer_norm(np.array([[1.0, 2.0, 3.0]]), epsilon=0.0)
>>> np.round(y.numpy(), 4)
array([[-1.2247,  0.    ,  1.2247]])
"""
from __future__ import annotations

import numbers

import numpy as np

from ... import kernels
from ...kernels import norm as norm_kernels
from ...kernels._common import on_backend_of
from ...autograd import Tensor, apply, as_tensor, astype, is_grad_enabled, mean, no_grad, primitive, reshape, sqrt
from ._utils import (channel_axis, check_channels, check_param, check_rank, check_spatial_input, from_channels_last,
                     param_shape, tensor, to_channels_last)

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm", "standardize",
           "batch_norm_output_shape", "layer_norm_output_shape", "group_norm_output_shape",
           "instance_norm_output_shape", "rms_norm_output_shape"]


# ---- the two normalizing primitives ----------------------------------------------------------------
# Forward on numpy arrays (a handful of passes, no graph), VJP in Tensor ops so grad-of-grad works.
# The VJP needs r = 1/sqrt(var + eps). In a plain backward pass it reuses the r saved by the forward;
# when the backward itself is being recorded (create_graph, grad of grad) it recomputes r from x with
# Tensor ops, so the second derivative sees how r depends on x.

def _inv_std(x, axes, epsilon):
    """``1 / sqrt(var(x) + eps)`` over ``axes`` (kept), as Tensor ops."""
    xc = x - mean(x, axes, keepdims=True)
    return 1.0 / sqrt(mean(xc * xc, axes, keepdims=True) + epsilon)


def _inv_rms(x, axes, epsilon):
    """``1 / sqrt(mean(x^2) + eps)`` over ``axes`` (kept), as Tensor ops."""
    return 1.0 / sqrt(mean(x * x, axes, keepdims=True) + epsilon)


def _standardize_forward(x, axes, epsilon):
    trailing = axes == tuple(range(x.ndim - len(axes), x.ndim))
    if trailing and x.dtype in (np.float32, np.float64) and x.size:    # layer norm: rows, one kernel pass
        k = int(np.prod([x.shape[a] for a in axes]))
        y, r = norm_kernels.standardize_rows(x.reshape(-1, k), epsilon)   # (M, K), (M, 1)
        return y.reshape(x.shape), r.reshape(x.shape[:x.ndim - len(axes)] + (1,) * len(axes))
    xc = x - x.mean(axis=axes, keepdims=True)
    r = 1.0 / np.sqrt(np.mean(xc * xc, axis=axes, keepdims=True) + epsilon)
    return xc * r, r


def _standardize_vjp(dy, y, x, axes, epsilon, saved):
    # y = (x - mu) r:  dx = r (dy - mean(dy) - y mean(dy y))
    r = _inv_std(x, axes, epsilon) if is_grad_enabled() else Tensor._wrap(saved)
    return (r * (dy - mean(dy, axes, keepdims=True) - y * mean(dy * y, axes, keepdims=True)),)


def _rms_forward(x, axes, epsilon):
    r = 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + epsilon)
    return x * r, r


def _rms_vjp(dy, y, x, axes, epsilon, saved):
    # y = x r:  dx = r (dy - y mean(dy y))
    r = _inv_rms(x, axes, epsilon) if is_grad_enabled() else Tensor._wrap(saved)
    return (r * (dy - y * mean(dy * y, axes, keepdims=True)),)


_standardize = primitive("standardize", _standardize_forward, _standardize_vjp, saves=True)
_rms_normalize = primitive("rms_normalize", _rms_forward, _rms_vjp, saves=True)


def standardize(x, axes, epsilon=1e-5):
    """``(x - mean) / sqrt(var + epsilon)`` over ``axes`` (biased variance), without scale or shift.

    >>> import numpy as np
    >>> standardize(np.array([[0.0, 2.0]]), axes=(1,), epsilon=0.0).numpy()
    array([[-1.,  1.]])
    """
    x = tensor("standardize", x)
    return apply(_standardize, x, axes=_axes("standardize", axes, x.ndim), epsilon=_epsilon("standardize", epsilon))


# ---- option checks ---------------------------------------------------------------------------------
def _axes(layer, axis, ndim) -> tuple:
    """``axis`` (an int or a sequence) as sorted non-negative axes, each within ``ndim``."""
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    if not axes or any(not isinstance(a, numbers.Integral) or not -ndim <= a < ndim for a in axes):
        raise ValueError(f"{layer}: axis {axis!r} is out of range for an input of rank {ndim}")
    out = tuple(sorted(int(a) % ndim for a in axes))
    if len(set(out)) != len(out):
        raise ValueError(f"{layer}: axis {axis!r} repeats an axis")
    return out


def _epsilon(layer, epsilon) -> float:
    if not isinstance(epsilon, numbers.Real) or epsilon < 0:
        raise ValueError(f"{layer}: epsilon must be a non-negative number, got {epsilon!r}")
    return float(epsilon)


def _check_params(layer, shape, axes, *params):
    """Each parameter (or None) must have the shape of the input along ``axes``; checked before computing."""
    sizes = tuple(shape[a] for a in axes)
    for name, p in params:
        check_param(layer, name, p, sizes)


def _affine(y, gamma, beta, axes):
    """``y * gamma + beta``, the (checked) parameters broadcast along ``axes`` of ``y``."""
    shape = param_shape(y.ndim, axes, tuple(y.shape[a] for a in axes))   # e.g. (1, C, 1, 1) for channels-first
    if gamma is not None:
        y = y * reshape(gamma, shape)
    if beta is not None:
        y = y + reshape(beta, shape)
    return y


# ---- the layers --------------------------------------------------------------------------------------
def layer_norm_output_shape(input_shape, **_) -> tuple:
    """Normalization keeps the shape (for ``batch_norm`` in training: the shape of ``y``).

    The same function is ``batch_norm_output_shape``, ``group_norm_output_shape``,
    ``instance_norm_output_shape`` and ``rms_norm_output_shape``; layer options are accepted and ignored.

    >>> layer_norm_output_shape((None, 10, 64)), group_norm_output_shape((None, 8, 8, 32), num_groups=4)
    ((None, 10, 64), (None, 8, 8, 32))
    """
    return tuple(input_shape)


batch_norm_output_shape = group_norm_output_shape = instance_norm_output_shape = rms_norm_output_shape = \
    layer_norm_output_shape


def _feature_axes(layer, x, axis, channels) -> tuple:
    """``axis`` if given, else the channel axis (as Axon's ``channel_index``)."""
    check_channels(layer, channels)
    check_rank(layer, x.shape, range(1, 33))
    return _axes(layer, channel_axis(x.ndim, channels) if axis is None else axis, x.ndim)


def layer_norm(x, gamma=None, beta=None, axis=None, epsilon=1e-5, channels="last"):
    """Layer normalization: standardize each example over its features.

    The features are the channel axis (the last one, or axis 1 with ``channels="first"``), or ``axis``
    (an int or a tuple) when given. ``gamma`` and ``beta`` have the shape of ``x`` along those axes.
    Matches ``torch.nn.functional.layer_norm(x, x.shape[-k:], gamma, beta, eps)`` for the last k axes.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    >>> y = layer_norm(x, np.ones(5, np.float32), np.zeros(5, np.float32))
    >>> bool(np.allclose(y.numpy().mean(-1), 0, atol=1e-6)), y.dtype
    (True, dtype('float32'))
    """
    x = tensor("layer_norm", x)
    axes = _feature_axes("layer_norm", x, axis, channels)
    _check_params("layer_norm", x.shape, axes, ("gamma", gamma), ("beta", beta))
    y = apply(_standardize, x, axes=axes, epsilon=_epsilon("layer_norm", epsilon))
    return _affine(y, gamma, beta, axes)


_UPCASTS = ("normalization", "all")


def rms_norm(x, gamma=None, axis=None, epsilon=1e-6, channels="last", shift=0.0, upcast="normalization"):
    """RMS normalization: ``y = x / sqrt(mean(x^2) + epsilon) * (shift + gamma)``; no centring, no bias.

    Over the channel axis, or ``axis`` when given (as ``layer_norm``).

    As Axon's ``rms_norm`` (default ``epsilon=1e-6``) and ``torch.nn.functional.rms_norm``. ``shift``
    is added to ``gamma`` (Gemma stores its scales as offsets from 1: ``shift=1.0``). ``upcast``, for
    inputs of less than 32 bits (float16): ``"normalization"`` computes the normalization in float32
    and scales by gamma in the input's dtype, ``"all"`` does both in float32; the result has the
    input's dtype. (Axon casts to float32 in any case; axon never lowers float64.)

    >>> import numpy as np
    >>> rms_norm(np.array([[3.0, 4.0]]), epsilon=0.0).numpy().round(4)
    array([[0.8485, 1.1314]])
    >>> rms_norm(np.array([[3.0, 4.0]]), np.array([0.0, 1.0]), epsilon=0.0, shift=1.0).numpy().round(4)
    array([[0.8485, 2.2627]])
    """
    x = tensor("rms_norm", x)
    axes = _feature_axes("rms_norm", x, axis, channels)
    _check_params("rms_norm", x.shape, axes, ("gamma", gamma))
    if upcast not in _UPCASTS:
        raise ValueError(f"rms_norm: upcast must be one of {_UPCASTS}, got {upcast!r}")
    if isinstance(shift, bool) or not isinstance(shift, numbers.Real):
        raise TypeError(f"rms_norm: shift must be a number, got {type(shift).__name__}")
    dtype = x.dtype
    low = np.dtype(dtype).kind == "f" and np.dtype(dtype).itemsize < 4        # float16: compute in float32
    if low:
        x = astype(x, np.float32)
    y = apply(_rms_normalize, x, axes=axes, epsilon=_epsilon("rms_norm", epsilon))
    if low and upcast == "normalization":
        y = astype(y, dtype)                                   # the scale by gamma in the input's dtype
    if gamma is not None and shift:
        gamma = as_tensor(gamma) + float(shift)
    elif gamma is None and shift:                              # no gamma is gamma = 1: the scale is 1 + shift
        y = y * (1.0 + float(shift))
    if gamma is not None and low:
        gamma = astype(as_tensor(gamma), y.dtype)
    y = _affine(y, gamma, None, axes)
    return astype(y, dtype) if y.dtype != dtype else y


def instance_norm(x, gamma=None, beta=None, epsilon=1e-5, channels="last"):
    """Instance normalization: standardize each example and channel over the spatial axes.

    ``x`` is (N, *spatial, C) (or (N, C, *spatial) with ``channels="first"``); ``gamma``, ``beta`` are (C,).
    Uses the statistics of the input itself, as ``torch.nn.functional.instance_norm`` without running stats.

    >>> import numpy as np
    >>> y = instance_norm(np.random.default_rng(0).standard_normal((2, 4, 4, 3)))
    >>> bool(np.allclose(y.numpy().mean(axis=(1, 2)), 0))
    True
    """
    x = tensor("instance_norm", x)
    check_spatial_input("instance_norm", x.shape, channels)
    c = channel_axis(x.ndim, channels)
    _check_params("instance_norm", x.shape, (c,), ("gamma", gamma), ("beta", beta))
    spatial = tuple(a for a in range(1, x.ndim) if a != c)
    y = apply(_standardize, x, axes=spatial, epsilon=_epsilon("instance_norm", epsilon))
    return _affine(y, gamma, beta, (c,))


def group_norm(x, gamma=None, beta=None, *, num_groups, epsilon=1e-5, channels="last"):
    """Group normalization: split the C channels into ``num_groups`` groups and standardize each
    example's group over its channels and the spatial axes; then scale and shift per channel.

    ``x`` is (N, ..., C) (or (N, C, ...) with ``channels="first"``); ``gamma``, ``beta`` are (C,).
    ``num_groups=1`` is layer norm over all non-batch axes; ``num_groups=C`` is instance norm.

    >>> import numpy as np
    >>> y = group_norm(np.random.default_rng(0).standard_normal((2, 3, 4)), num_groups=2)
    >>> y.shape
    (2, 3, 4)
    """
    x = tensor("group_norm", x)
    check_channels("group_norm", channels)
    check_rank("group_norm", x.shape, range(2, 33), layout="batch, ..., channels")
    c = channel_axis(x.ndim, channels)
    n_channels = x.shape[c]
    if not isinstance(num_groups, numbers.Integral) or num_groups < 1 or n_channels % num_groups:
        raise ValueError(f"group_norm: num_groups must be a positive divisor of the {n_channels} channels "
                         f"(input shape {x.shape}), got {num_groups!r}")
    _check_params("group_norm", x.shape, (c,), ("gamma", gamma), ("beta", beta))
    g = int(num_groups)
    if channels == "last":                                     # (N, *S, C) -> (N, *S, G, C/G)
        xg = reshape(x, x.shape[:-1] + (g, n_channels // g))
        axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)          # spatial axes and C/G
    else:                                                      # (N, C, *S) -> (N, G, C/G, *S)
        xg = reshape(x, (x.shape[0], g, n_channels // g) + x.shape[2:])
        axes = tuple(range(2, x.ndim + 1))
    y = reshape(apply(_standardize, xg, axes=axes, epsilon=_epsilon("group_norm", epsilon)), x.shape)
    return _affine(y, gamma, beta, (c,))


def batch_norm(x, gamma, beta, running_mean, running_var, training=False, momentum=0.1, epsilon=1e-5,
               channels="last"):
    """Batch normalization over every axis but the channels, as ``torch.nn.functional.batch_norm``.

    Inference (``training=False``) normalizes with the running statistics and returns ``y``:

        y = (x - running_mean) / sqrt(running_var + epsilon) * gamma + beta

    Training normalizes with the batch mean and biased variance (through the numba kernel) and
    returns ``(y, new_mean, new_var)``, the updated running statistics as Tensors (state, not
    differentiated, on x's backend), with PyTorch's convention for ``momentum`` and the *unbiased* batch variance:

        new_mean = (1 - momentum) running_mean + momentum mean
        new_var  = (1 - momentum) running_var  + momentum var n / (n - 1)     (n values per channel)

    ``x`` is (N, ..., C) (or (N, C, ...) with ``channels="first"``); ``gamma``, ``beta`` (or None) and the
    running statistics are (C,).

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    >>> c = np.ones(3, np.float32)
    >>> y, m, v = batch_norm(x, c, 0 * c, 0 * c, c, training=True)
    >>> y.shape, m.dtype
    ((8, 3), dtype('float32'))
    """
    x = tensor("batch_norm", x)
    check_channels("batch_norm", channels)
    check_rank("batch_norm", x.shape, range(2, 33), layout="batch, ..., channels")
    c = channel_axis(x.ndim, channels)
    n_channels = x.shape[c]
    _check_params("batch_norm", x.shape, (c,), ("gamma", gamma), ("beta", beta))
    running_mean = _state("running_mean", running_mean, n_channels, x)
    running_var = _state("running_var", running_var, n_channels, x)
    epsilon = _epsilon("batch_norm", epsilon)
    if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
        raise ValueError(f"batch_norm: momentum must be a number in [0, 1], got {momentum!r}")

    if not training:
        inv = 1.0 / sqrt(running_var + epsilon)                # (C,)
        scale = inv if gamma is None else as_tensor(gamma) * inv
        shift = -running_mean * scale if beta is None else as_tensor(beta) - running_mean * scale
        shape = param_shape(x.ndim, (c,), (n_channels,))
        return x * reshape(scale, shape) + reshape(shift, shape)

    if n_channels == 0:
        raise ValueError(f"batch_norm: the input has no channels (input shape {x.shape})")
    n = x.size // n_channels
    if n < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got input shape {x.shape}")
    gamma = on_backend_of(x, np.ones(n_channels, dtype=x.dtype)) if gamma is None else gamma
    beta = on_backend_of(x, np.zeros(n_channels, dtype=x.dtype)) if beta is None else beta
    y, batch_mean, batch_var = kernels.batch_norm_train(to_channels_last(x, channels), gamma, beta, epsilon)
    with no_grad():                                            # the running statistics are not differentiated
        new_mean = (1 - momentum) * running_mean + momentum * batch_mean.astype(running_mean.dtype)
        new_var = (1 - momentum) * running_var + momentum * (batch_var * (n / (n - 1))).astype(running_var.dtype)
    return from_channels_last(y, channels), new_mean, new_var


def _state(name, s, n_channels, x) -> Tensor:
    """A running statistic as a constant Tensor of shape (C,) on ``x``'s backend (a host array is moved there)."""
    if s is None:
        raise ValueError(f"batch_norm: {name} is required (an array of shape ({n_channels},))")
    s = Tensor._wrap(s.data) if isinstance(s, Tensor) else on_backend_of(x, s)
    if s.shape != (n_channels,):
        raise ValueError(f"batch_norm: {name} must have shape ({n_channels},) for input shape {x.shape}, "
                         f"got {s.shape}")
    return s
