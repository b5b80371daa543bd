"""Pooling: windowed (``max_pool``, ``avg_pool``, ``lp_pool``), adaptive (``adaptive_*_pool``) and global
(``global_*_pool``).

Inputs are (N, *spatial, C) (or (N, C, *spatial) with ``channels="first"``), 1 to 3 spatial axes.
``kernel_size``, ``strides`` (default: the window, so windows tile the input) and ``padding`` (``"valid"``,
``"same"``, an int, or one int or (lo, hi) pair per axis) are as for ``conv``. Max pooling pads with
-inf, average pooling with zeros. The windowed and adaptive pools run the numba kernels in
``axon.kernels``; the global pools are one numpy reduction each (``mean``/``max``/``sum`` over the
spatial axes, which measured faster than a pooling kernel for this case).

>>> import numpy as np
>>> x = np.arange(16.0).reshape(1, 4, 4, 1)
>>> max_pool(x, 2).numpy()[0, :, :, 0]
array([[ 5.,  7.],
       [13., 15.]])
"""
from __future__ import annotations

import numbers

import numpy as np

from ... import kernels
from ...kernels._common import check_pool_padding, on_backend_of
from ...autograd import max as tmax, mean as tmean, sum as tsum, where
from ._utils import (check_spatial_input, check_window_fits, from_channels_last, resolve_padding, shape_from_last,
                     shape_to_last, spatial_tuple, tensor, to_channels_last, window_output_size)

__all__ = ["max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool", "adaptive_lp_pool",
           "global_max_pool", "global_avg_pool", "global_lp_pool",
           "max_pool_output_shape", "avg_pool_output_shape", "lp_pool_output_shape",
           "adaptive_max_pool_output_shape", "adaptive_avg_pool_output_shape", "adaptive_lp_pool_output_shape",
           "global_max_pool_output_shape", "global_avg_pool_output_shape", "global_lp_pool_output_shape"]


# ---- windowed pools ------------------------------------------------------------------------------------------
def _window_geometry(layer, input_shape, kernel_size, strides, padding, channels):
    """Check a windowed pool's options; return (window, strides, pads, output shape in ``channels`` layout)."""
    input_shape = tuple(input_shape)
    check_spatial_input(layer, input_shape, channels)
    last = shape_to_last(input_shape, channels)                # (N, *S, C)
    n = len(last) - 2
    window = spatial_tuple(layer, "kernel_size", kernel_size, n)
    strides = window if strides is None else spatial_tuple(layer, "strides", strides, n)
    pads = resolve_padding(layer, padding, last[1:-1], window, strides)
    check_pool_padding(layer, window, pads)
    check_window_fits(layer, last[1:-1], window, pads, f"input shape {input_shape}, padding {pads}", what="window")
    out = tuple(window_output_size(s, k, st, p) for s, k, st, p in zip(last[1:-1], window, strides, pads))
    return window, strides, pads, shape_from_last((last[0], *out, last[-1]), channels)


def max_pool_output_shape(input_shape, kernel_size, strides=None, padding="valid", channels="last") -> tuple:
    """Output shape of ``max_pool`` (and ``avg_pool``, ``lp_pool``): ``(n + lo + hi - k) // s + 1`` per axis.

    >>> max_pool_output_shape((None, 28, 28, 8), 2)
    (None, 14, 14, 8)
    """
    return _window_geometry("max_pool", input_shape, kernel_size, strides, padding, channels)[-1]


def avg_pool_output_shape(input_shape, kernel_size, strides=None, padding="valid", count_include_pad=True,
                          channels="last") -> tuple:
    """Output shape of ``avg_pool``.

    >>> avg_pool_output_shape((None, 28, 28, 8), 3, strides=2, padding="same")
    (None, 14, 14, 8)
    """
    return _window_geometry("avg_pool", input_shape, kernel_size, strides, padding, channels)[-1]


def lp_pool_output_shape(input_shape, kernel_size, strides=None, padding="valid", norm=2, channels="last") -> tuple:
    """Output shape of ``lp_pool``.

    >>> lp_pool_output_shape((None, 10, 4), 2)
    (None, 5, 4)
    """
    return _window_geometry("lp_pool", input_shape, kernel_size, strides, padding, channels)[-1]


def max_pool(x, kernel_size, strides=None, padding="valid", channels="last"):
    """Largest value in each window: ``y[n, o, c] = max_k x[n, o s + k - lo, c]`` (padding counts as -inf).

    The gradient goes to the position of each window's maximum. As ``torch.nn.functional.max_pool2d``.

    >>> import numpy as np
    >>> max_pool(np.array([[[1.0], [3.0], [2.0]]]), 2, strides=1).numpy().ravel()
    array([3., 3.])
    """
    x = tensor("max_pool", x)
    window, strides, pads, _ = _window_geometry("max_pool", x.shape, kernel_size, strides, padding, channels)
    y = kernels.max_pool(to_channels_last(x, channels), window, strides, pads)
    return from_channels_last(y, channels)


def avg_pool(x, kernel_size, strides=None, padding="valid", count_include_pad=True, channels="last"):
    """Mean of each window. Padding counts as zeros in the mean (``count_include_pad=True``, as Axon and
    PyTorch's default) or is left out of it (``False``). As ``torch.nn.functional.avg_pool2d``.

    >>> import numpy as np
    >>> avg_pool(np.array([[[1.0], [3.0]]]), 2, padding=[(1, 1)], strides=2).numpy().ravel()
    array([0.5, 1.5])
    """
    x = tensor("avg_pool", x)
    window, strides, pads, _ = _window_geometry("avg_pool", x.shape, kernel_size, strides, padding, channels)
    y = kernels.avg_pool(to_channels_last(x, channels), window, strides, pads, count_include_pad=bool(count_include_pad))
    return from_channels_last(y, channels)


def _check_norm(layer, norm) -> float:
    if isinstance(norm, bool) or not isinstance(norm, numbers.Real) or not norm > 0:
        raise ValueError(f"{layer}: norm must be a positive number, got {norm!r}")
    return norm


def lp_pool(x, kernel_size, strides=None, padding="valid", norm=2, channels="last"):
    """Power-average pooling: ``y = (sum_window x^p)^(1/p)`` with ``p = norm`` (padding adds zeros).

    ``p = 1`` sums the window, large ``p`` approaches max pooling (for positive inputs). As Axon's
    ``lp_pool`` and ``torch.nn.functional.lp_pool2d`` (which has no padding), except that a window of
    zeros (after a relu, say) gets gradient 0 rather than NaN.

    >>> import numpy as np
    >>> lp_pool(np.array([[[3.0], [4.0]]]), 2).numpy().ravel()
    array([5.])
    """
    x = tensor("lp_pool", x)
    norm = _check_norm("lp_pool", norm)
    window, strides, pads, _ = _window_geometry("lp_pool", x.shape, kernel_size, strides, padding, channels)
    y = kernels.lp_pool(to_channels_last(x, channels), norm, window, strides, pads)
    return from_channels_last(y, channels)


def _root(s, norm):
    """``s^(1/p)``, with gradient 0 where ``s == 0`` (instead of the root's infinite slope, which gives NaN)."""
    nonzero = s != 0
    safe = where(nonzero, s, 1.0)                              # the root is only differentiated where s != 0
    return where(nonzero, safe ** (1 / norm), 0.0)


# ---- adaptive pools ------------------------------------------------------------------------------------------
def _adaptive_geometry(layer, input_shape, output_size, channels):
    """Check an adaptive pool's options; return (output_size, output shape in ``channels`` layout).

    ``output_size`` is an int or one per spatial axis; ``None`` keeps that axis's input size.
    """
    input_shape = tuple(input_shape)
    check_spatial_input(layer, input_shape, channels)
    last = shape_to_last(input_shape, channels)
    n = len(last) - 2
    if isinstance(output_size, (list, tuple)) and len(output_size) == n:
        output_size = tuple(s if o is None else o for o, s in zip(output_size, last[1:-1]))
    size = spatial_tuple(layer, "output_size", output_size, n)
    if any(s == 0 for s in last[1:-1]):
        raise ValueError(f"{layer}: the input has an empty spatial axis (input shape {input_shape})")
    return size, shape_from_last((last[0], *size, last[-1]), channels)


def adaptive_max_pool_output_shape(input_shape, output_size, channels="last") -> tuple:
    """Output shape of the adaptive pools: the spatial sizes become ``output_size``.

    >>> adaptive_max_pool_output_shape((None, 7, 9, 3), (2, None))
    (None, 2, 9, 3)
    """
    return _adaptive_geometry("adaptive_max_pool", input_shape, output_size, channels)[-1]


def adaptive_avg_pool_output_shape(input_shape, output_size, channels="last") -> tuple:
    """Output shape of ``adaptive_avg_pool``.

    >>> adaptive_avg_pool_output_shape((None, 13, 17, 64), 7)
    (None, 7, 7, 64)
    """
    return _adaptive_geometry("adaptive_avg_pool", input_shape, output_size, channels)[-1]


def adaptive_lp_pool_output_shape(input_shape, output_size, norm=2, channels="last") -> tuple:
    """Output shape of ``adaptive_lp_pool``.

    >>> adaptive_lp_pool_output_shape((None, 10, 4), 5)
    (None, 5, 4)
    """
    return _adaptive_geometry("adaptive_lp_pool", input_shape, output_size, channels)[-1]


def adaptive_max_pool(x, output_size, channels="last"):
    """Max pooling into a fixed ``output_size``, with PyTorch's bins: along an axis of size ``n``, output
    ``i`` pools inputs ``floor(i n / o)`` to ``ceil((i + 1) n / o) - 1``. As ``adaptive_max_pool2d``.

    >>> import numpy as np
    >>> adaptive_max_pool(np.array([[[1.0], [5.0], [2.0]]]), 2).numpy().ravel()
    array([5., 5.])
    """
    x = tensor("adaptive_max_pool", x)
    size, _ = _adaptive_geometry("adaptive_max_pool", x.shape, output_size, channels)
    return from_channels_last(kernels.adaptive_max_pool(to_channels_last(x, channels), size), channels)


def adaptive_avg_pool(x, output_size, channels="last"):
    """Average pooling into a fixed ``output_size`` with PyTorch's bins (see ``adaptive_max_pool``).

    >>> import numpy as np
    >>> adaptive_avg_pool(np.array([[[1.0], [5.0], [3.0]]]), 2).numpy().ravel()
    array([3., 4.])
    """
    x = tensor("adaptive_avg_pool", x)
    size, _ = _adaptive_geometry("adaptive_avg_pool", x.shape, output_size, channels)
    return from_channels_last(kernels.adaptive_avg_pool(to_channels_last(x, channels), size), channels)


def _bin_counts(sizes, output_size) -> np.ndarray:
    """Number of inputs in each adaptive bin: (*output_size), the outer product of the per-axis counts."""
    counts = np.ones((), dtype=np.int64)
    for n, o in zip(sizes, output_size):
        i = np.arange(o)
        per_axis = -(-(i + 1) * n // o) - i * n // o               # ceil((i+1) n / o) - floor(i n / o)
        counts = np.multiply.outer(counts, per_axis)
    return counts


def adaptive_lp_pool(x, output_size, norm=2, channels="last"):
    """Power-average pooling into a fixed ``output_size``: ``(sum_bin x^p)^(1/p)`` over PyTorch's bins
    (a bin of zeros gets gradient 0).

    >>> import numpy as np
    >>> adaptive_lp_pool(np.array([[[3.0], [4.0]]]), 1).numpy().ravel()
    array([5.])
    """
    x = tensor("adaptive_lp_pool", x)
    norm = _check_norm("adaptive_lp_pool", norm)
    size, _ = _adaptive_geometry("adaptive_lp_pool", x.shape, output_size, channels)
    last = shape_to_last(x.shape, channels)
    counts = _bin_counts(last[1:-1], size).astype(x.dtype)    # (*size): the mean times the count is the sum
    counts = counts[..., None] if channels == "last" else counts[None]   # (*size, 1) or (1, *size)
    counts = on_backend_of(x, counts)
    return _root(adaptive_avg_pool(x ** norm, size, channels) * counts, norm)


# ---- global pools ----------------------------------------------------------------------------------------------
def _global_axes(layer, input_shape, channels) -> tuple:
    check_spatial_input(layer, input_shape, channels)
    return tuple(range(1, len(input_shape) - 1)) if channels == "last" else tuple(range(2, len(input_shape)))


def global_avg_pool_output_shape(input_shape, keep_axes=False, channels="last") -> tuple:
    """Output shape of the global pools: (N, C), or with ``keep_axes`` the spatial axes kept as 1s.

    >>> global_avg_pool_output_shape((None, 7, 7, 64)), global_avg_pool_output_shape((None, 7, 7, 64), True)
    ((None, 64), (None, 1, 1, 64))
    """
    axes = _global_axes("global_avg_pool", input_shape, channels)
    if keep_axes:
        return tuple(1 if a in axes else n for a, n in enumerate(input_shape))
    return tuple(n for a, n in enumerate(input_shape) if a not in axes)


global_max_pool_output_shape = global_avg_pool_output_shape


def global_lp_pool_output_shape(input_shape, norm=2, keep_axes=False, channels="last") -> tuple:
    """Output shape of ``global_lp_pool``.

    >>> global_lp_pool_output_shape((None, 7, 7, 64))
    (None, 64)
    """
    return global_avg_pool_output_shape(input_shape, keep_axes, channels)


def global_avg_pool(x, keep_axes=False, channels="last"):
    """Mean over the spatial axes: (N, *spatial, C) -> (N, C) (or (N, 1, ..., 1, C) with ``keep_axes``).

    >>> import numpy as np
    >>> global_avg_pool(np.arange(6.0).reshape(1, 3, 2)).numpy()
    array([[2., 3.]])
    """
    x = tensor("global_avg_pool", x)
    return tmean(x, _global_axes("global_avg_pool", x.shape, channels), keepdims=bool(keep_axes))


def global_max_pool(x, keep_axes=False, channels="last"):
    """Maximum over the spatial axes: (N, *spatial, C) -> (N, C). Ties share the gradient.

    >>> import numpy as np
    >>> global_max_pool(np.arange(6.0).reshape(1, 3, 2)).numpy()
    array([[4., 5.]])
    """
    x = tensor("global_max_pool", x)
    return tmax(x, _global_axes("global_max_pool", x.shape, channels), keepdims=bool(keep_axes))


def global_lp_pool(x, norm=2, keep_axes=False, channels="last"):
    """Power-average over the spatial axes: ``(sum x^p)^(1/p)``, (N, *spatial, C) -> (N, C) (all-zero maps get
    gradient 0).

    >>> import numpy as np
    >>> global_lp_pool(np.array([[[3.0], [4.0]]])).numpy()
    array([[5.]])
    """
    x = tensor("global_lp_pool", x)
    norm = _check_norm("global_lp_pool", norm)
    axes = _global_axes("global_lp_pool", x.shape, channels)
    return _root(tsum(x ** norm, axes, keepdims=bool(keep_axes)), norm)
