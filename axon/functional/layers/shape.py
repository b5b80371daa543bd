"""Shape layers: ``flatten``, ``reshape``, ``transpose``, ``pad``, ``resize``, ``concatenate``.

``flatten``, ``pad``, ``resize`` and ``concatenate`` never touch the batch axis (axis 0); ``reshape`` and
``transpose`` take numpy's full shapes and permutations, and by default ``transpose`` keeps the batch
axis first. Each has an ``*_output_shape`` twin for build-time shape inference.

>>> import numpy as np
>>> x = np.zeros((2, 3, 4), np.float32)
>>> flatten(x).shape, reshape(x, (2, 4, -1)).shape, transpose(x).shape
((2, 12), (2, 4, 3), (2, 4, 3))
"""
from __future__ import annotations

import numbers

import numpy as np

from ...autograd import as_tensor, concatenate as tconcatenate, getitem, matmul, pad as tpad
from ...autograd import reshape as treshape, transpose as ttranspose
from ...kernels._common import on_backend_of
from ._utils import (channel_axis, check_rank, check_spatial_input, resolve_padding, shape_from_last, shape_to_last,
                     spatial_tuple, tensor)

__all__ = ["flatten", "reshape", "transpose", "pad", "resize", "concatenate", "flatten_output_shape",
           "reshape_output_shape", "transpose_output_shape", "pad_output_shape", "resize_output_shape",
           "concatenate_output_shape"]


# ---- flatten, reshape, transpose ---------------------------------------------------------------------
def flatten_output_shape(input_shape) -> tuple:
    """``(N, d1, ..., dk) -> (N, d1 * ... * dk)``.

    >>> flatten_output_shape((None, 7, 7, 64))
    (None, 3136)
    """
    input_shape = tuple(input_shape)
    check_rank("flatten", input_shape, range(1, 33), layout="batch, ...")
    return (input_shape[0], int(np.prod(input_shape[1:], dtype=np.int64)))


def flatten(x):
    """Fold every axis but the batch axis into one: (N, ...) -> (N, features).

    >>> import numpy as np
    >>> flatten(np.arange(4.0).reshape(1, 2, 2)).numpy()
    array([[0., 1., 2., 3.]])
    """
    x = as_tensor(x)
    return treshape(x, flatten_output_shape(x.shape))


def reshape_output_shape(input_shape, shape) -> tuple:
    """``shape`` with its -1 (at most one) worked out from the input's size, as numpy.

    A ``None`` (unknown batch size) in both shapes' first entry passes through.

    >>> reshape_output_shape((None, 784), (None, 28, 28, 1)), reshape_output_shape((6, 4), (3, -1))
    ((None, 28, 28, 1), (3, 8))
    """
    input_shape = tuple(input_shape)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    batch = input_shape[:1] == (None,) and shape[:1] in ((None,), (-1,))
    if batch:                                                  # build time: sizes per example
        input_shape, shape = input_shape[1:], shape[1:]
    size = int(np.prod(input_shape, dtype=np.int64))
    known = int(np.prod([n for n in shape if n != -1], dtype=np.int64))
    if (sum(n == -1 for n in shape) > 1 or any(n is None or n < -1 for n in shape)
            or (-1 in shape and (known == 0 or size % known)) or (-1 not in shape and known != size)):
        raise ValueError(f"reshape: cannot reshape an input of shape {input_shape} ({size} elements) into {shape}")
    out = tuple(size // known if n == -1 else n for n in shape)
    return ((None,) + out) if batch else out


def reshape(x, shape):
    """The same elements in a new ``shape`` (batch axis included, one entry may be -1), as numpy.

    >>> import numpy as np
    >>> reshape(np.zeros((5, 6)), (5, 2, 3)).shape
    (5, 2, 3)
    """
    x = as_tensor(x)
    return treshape(x, reshape_output_shape(x.shape, shape))


def _permutation(input_shape, axes) -> tuple:
    check_rank("transpose", input_shape, range(1, 33), layout="batch, ...")
    ndim = len(input_shape)
    if axes is None:
        return (0,) + tuple(range(ndim - 1, 0, -1))
    axes = tuple(axes)
    if sorted(axes) != list(range(ndim)):
        raise ValueError(f"transpose: axes must be a permutation of {tuple(range(ndim))}, got {axes} "
                         f"(input shape {tuple(input_shape)})")
    return axes


def transpose_output_shape(input_shape, axes=None) -> tuple:
    """The input shape permuted by ``axes`` (default: batch first, the other axes reversed).

    >>> transpose_output_shape((None, 28, 28, 3), (0, 3, 1, 2)), transpose_output_shape((None, 10, 3))
    ((None, 3, 28, 28), (None, 3, 10))
    """
    input_shape = tuple(input_shape)
    return tuple(input_shape[a] for a in _permutation(input_shape, axes))


def transpose(x, axes=None):
    """Permute the axes as numpy (``axes`` includes the batch axis); by default keep the batch axis
    first and reverse the others.

    >>> import numpy as np
    >>> transpose(np.zeros((5, 2, 3, 4)), (0, 3, 1, 2)).shape, transpose(np.zeros((5, 2, 3))).shape
    ((5, 4, 2, 3), (5, 3, 2))
    """
    x = as_tensor(x)
    return ttranspose(x, _permutation(x.shape, axes))


# ---- pad ------------------------------------------------------------------------------------------------
def _pad_pairs(input_shape, padding, channels) -> tuple:
    check_spatial_input("pad", input_shape, channels)
    if isinstance(padding, str):
        raise ValueError(f"pad: padding must be an int or (lo, hi) pairs, got {padding!r}")
    n = len(input_shape) - 2
    return resolve_padding("pad", padding, (0,) * n, (1,) * n, (1,) * n)


def pad_output_shape(input_shape, padding, value=0.0, channels="last") -> tuple:
    """Each spatial axis grows by ``lo + hi``.

    >>> pad_output_shape((None, 28, 28, 3), 2), pad_output_shape((None, 10, 3), [(1, 0)])
    ((None, 32, 32, 3), (None, 11, 3))
    """
    input_shape = tuple(input_shape)
    pairs = _pad_pairs(input_shape, padding, channels)
    last = shape_to_last(input_shape, channels)
    return shape_from_last((last[0], *(n + lo + hi for n, (lo, hi) in zip(last[1:-1], pairs)), last[-1]), channels)


def pad(x, padding, value=0.0, channels="last"):
    """Pad the spatial axes with a constant: ``padding`` is an int (all sides) or one int or (lo, hi) per axis.

    >>> import numpy as np
    >>> pad(np.ones((1, 2, 1)), [(1, 0)]).numpy().ravel()
    array([0., 1., 1.])
    """
    x = tensor("pad", x)
    pairs = _pad_pairs(x.shape, padding, channels)
    c = channel_axis(x.ndim, channels)
    spatial = iter(pairs)
    width = tuple((0, 0) if a in (0, c) else next(spatial) for a in range(x.ndim))
    return tpad(x, width, value)


# ---- resize ------------------------------------------------------------------------------------------------
_METHODS = ("nearest", "bilinear", "linear", "trilinear", "bicubic", "lanczos3", "lanczos5")


def _triangle(t):
    return np.maximum(0.0, 1.0 - t)


def _keys_cubic(t):
    """Keys' cubic convolution kernel with a = -0.5 (Catmull-Rom), for t = |x|."""
    return np.where(t < 1, (1.5 * t - 2.5) * t * t + 1, np.where(t < 2, ((-0.5 * t + 2.5) * t - 4) * t + 2, 0.0))


def _lanczos(radius):
    def kernel(t):                                             # sinc(t) sinc(t / radius) on |t| <= radius
        with np.errstate(divide="ignore", invalid="ignore"):
            y = radius * np.sin(np.pi * t) * np.sin(np.pi * t / radius) / (np.pi * np.pi * t * t)
        return np.where(t > radius, 0.0, np.where(t == 0, 1.0, y))
    return kernel


_KERNELS = {"bilinear": _triangle, "linear": _triangle, "trilinear": _triangle, "bicubic": _keys_cubic,
            "lanczos3": _lanczos(3), "lanczos5": _lanczos(5)}


def _resize_weights(n_in: int, n_out: int, kernel, antialias: bool) -> np.ndarray:
    """The (n_out, n_in) matrix of one axis: output ``i`` samples ``(i + 0.5) n_in / n_out - 0.5``.

    Each row holds the kernel at the distances to every input, widened by ``n_in / n_out`` when
    downsampling with ``antialias``, and divided by its sum, so weights falling outside the input are
    dropped and the rest renormalised (JAX's ``jax.image.resize``, which Axon follows).
    """
    scale = n_out / n_in
    width = max(1.0 / scale, 1.0) if antialias else 1.0         # the kernel's stretch
    sample = (np.arange(n_out) + 0.5) / scale - 0.5                                   # (n_out,)
    w = kernel(np.abs(sample[:, None] - np.arange(n_in)[None, :]) / width)            # (n_out, n_in)
    total = w.sum(axis=1, keepdims=True)
    return np.where(np.abs(total) > 1000 * np.finfo(np.float32).eps, w / np.where(total != 0, total, 1), 0.0)


def _resize_size(input_shape, size, method, channels) -> tuple:
    check_spatial_input("resize", input_shape, channels)
    if method not in _METHODS:
        raise ValueError(f"resize: method must be one of {_METHODS}, got {method!r}")
    return spatial_tuple("resize", "size", size, len(input_shape) - 2)


def resize_output_shape(input_shape, size, method="nearest", channels="last", antialias=False) -> tuple:
    """The input shape with the spatial sizes replaced by ``size``.

    >>> resize_output_shape((None, 14, 14, 3), 28)
    (None, 28, 28, 3)
    """
    input_shape = tuple(input_shape)
    size = _resize_size(input_shape, size, method, channels)
    last = shape_to_last(input_shape, channels)
    return shape_from_last((last[0], *size, last[-1]), channels)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source of each output position, sampled at pixel centres: ``floor((i + 0.5) n_in / n_out)``."""
    return (2 * np.arange(n_out) + 1) * n_in // (2 * n_out)


def _linear_index(n_in: int, n_out: int, dtype):
    """Neighbours ``i0``, ``i1`` and weight ``w`` of ``i1`` for each output (half-pixel centres, clamped edges)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(dtype)


def resize(x, size, method="nearest", channels="last", antialias=False):
    """Resize the spatial axes to ``size`` (an int or one per axis) by sampling at pixel centres.

    - ``"nearest"``: output ``i`` copies input ``floor((i + 0.5) n_in / n_out)`` (Axon's nearest;
      ``torch.nn.functional.interpolate(mode="nearest-exact")``).
    - ``"bilinear"`` (also ``"linear"``, ``"trilinear"``): linear interpolation along each spatial axis at
      ``(i + 0.5) n_in / n_out - 0.5``, clamped at the edges, without antialiasing
      (``interpolate(mode="bilinear", align_corners=False)``).
    - ``"bicubic"`` (Keys' cubic, a = -0.5), ``"lanczos3"``, ``"lanczos5"``: a kernel sampled at the
      same points, as JAX's ``jax.image.resize`` and Axon: each output's weights are divided by their
      sum, so inputs past the edge are dropped rather than clamped. (PyTorch's bicubic uses a = -0.75
      and clamps; its ``antialias=True`` bicubic is this one.)
    - ``antialias=True``: when downsampling, the kernel is widened by ``n_in / n_out``, so it
      averages every input rather than skipping some (Axon's default is True; axon's, False).

    Each axis is one gather (two for linear) of whole slices, or with a kernel one product with an
    (n_out, n_in) weight matrix, so nothing loops over pixels.

    >>> import numpy as np
    >>> resize(np.array([[[0.0], [1.0]]]), 4, method="bilinear").numpy().ravel()
    array([0.  , 0.25, 0.75, 1.  ])
    """
    x = tensor("resize", x)
    size = _resize_size(x.shape, size, method, channels)
    c = channel_axis(x.ndim, channels)
    spatial_axes = [a for a in range(1, x.ndim) if a != c]
    for axis, n_out in zip(spatial_axes, size):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        lead = (slice(None),) * axis
        if method != "nearest" and (antialias or method in ("bicubic", "lanczos3", "lanczos5")):
            w = on_backend_of(x, _resize_weights(n_in, n_out, _KERNELS[method], bool(antialias)).T.astype(x.dtype))
            moved = tuple(a for a in range(x.ndim) if a != axis) + (axis,)
            y = matmul(ttranspose(x, moved), w)                # (..., n_in) @ (n_in, n_out): the axis last
            x = ttranspose(y, tuple(int(i) for i in np.argsort(moved)))
        elif method == "nearest":                              # (index arrays on x's backend, like x)
            x = getitem(x, lead + (on_backend_of(x, _nearest_index(n_in, n_out)),))   # n_in -> n_out along axis
        else:
            i0, i1, w = (on_backend_of(x, a) for a in _linear_index(n_in, n_out, x.dtype))
            w = w.reshape((-1,) + (1,) * (x.ndim - axis - 1))                # broadcast along axis
            x = getitem(x, lead + (i0,)) * (1 - w) + getitem(x, lead + (i1,)) * w
    return x


# ---- concatenate ----------------------------------------------------------------------------------------------
def concatenate_output_shape(input_shapes, axis=-1) -> tuple:
    """The shared shape, with the sizes along ``axis`` added.

    >>> concatenate_output_shape([(None, 8, 8, 3), (None, 8, 8, 16)])
    (None, 8, 8, 19)
    """
    shapes = [tuple(s) for s in input_shapes]
    if not shapes:
        raise ValueError("concatenate: needs at least one input")
    ndim = len(shapes[0])
    if not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim or axis % ndim == 0:
        raise ValueError(f"concatenate: axis must be a non-batch axis of inputs of rank {ndim}, got {axis!r}")
    a = axis % ndim
    rest = [s[:a] + s[a + 1:] for s in shapes]
    if any(len(s) != ndim for s in shapes) or any(r != rest[0] for r in rest):
        raise ValueError(f"concatenate: input shapes {shapes} must agree on every axis but {axis}")
    return shapes[0][:a] + (sum(s[a] for s in shapes),) + shapes[0][a + 1:]


def concatenate(xs, axis=-1):
    """Join inputs along a non-batch ``axis`` (default: the features, the last axis).

    >>> import numpy as np
    >>> concatenate([np.zeros((2, 3)), np.ones((2, 1))]).shape
    (2, 4)
    """
    xs = [as_tensor(x) for x in xs]
    concatenate_output_shape([x.shape for x in xs], axis)
    return tconcatenate(xs, axis=axis % xs[0].ndim)
