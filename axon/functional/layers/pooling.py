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

import functools
import itertools
import numbers

import numpy as np

from ... import kernels
from ...kernels._common import on_backend_of
from ...autograd import ops
from ...autograd import max as tmax, mean as tmean, sum as tsum, where
from .convolution import conv
from ._utils import (channel_axis, check_rank, check_spatial_input, check_window_fits, from_channels_last,
                     resolve_padding, shape_from_last, shape_to_last, spatial_tuple, tensor, to_channels_last, window_output_size)

__all__ = ["max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool", "adaptive_lp_pool",
           "global_max_pool", "global_avg_pool", "global_lp_pool", "blur_pool", "blur_pool_output_shape",
           "max_pool_output_shape", "avg_pool_output_shape", "lp_pool_output_shape",
           "adaptive_max_pool_output_shape", "adaptive_avg_pool_output_shape", "adaptive_lp_pool_output_shape",
           "global_max_pool_output_shape", "global_avg_pool_output_shape", "global_lp_pool_output_shape"]


# ---- windowed pools ------------------------------------------------------------------------------------------
def _dilated_geometry(layer, input_shape, kernel_size, strides, padding, channels, window_dilations=1):
    """Check a windowed pool's options; return (window, strides, dilations, pads, output shape in ``channels`` layout).

    A window of ``k`` taps ``d`` apart spans ``d (k - 1) + 1`` inputs (its effective size), which sets the
    output size and ``"same"`` padding. Max pooling may pad up to the effective window on each side (a
    window of padding only gives -inf, as in Axon); average and LP pooling pad less than the window.
    """
    input_shape = tuple(input_shape)
    check_spatial_input(layer, input_shape, channels)
    last = shape_to_last(input_shape, channels)                # (N, *S, C)
    n = len(last) - 2
    window = spatial_tuple(layer, "kernel_size", kernel_size, n)
    dilations = spatial_tuple(layer, "window_dilations", window_dilations, n)
    span = tuple(d * (k - 1) + 1 for k, d in zip(window, dilations))        # effective window sizes
    strides = window if strides is None else spatial_tuple(layer, "strides", strides, n)
    pads = resolve_padding(layer, padding, last[1:-1], span, strides)
    if layer == "max_pool":
        if any(lo > e or hi > e for (lo, hi), e in zip(pads, span)):
            raise ValueError(f"{layer}: padding {pads} must be at most the window {span} on every side")
    elif any(lo >= e or hi >= e for (lo, hi), e in zip(pads, span)):
        raise ValueError(f"{layer}: padding {pads} must be smaller than the window {span} on every side "
                         f"(a window of padding only has no value)")
    check_window_fits(layer, last[1:-1], span, pads, f"input shape {input_shape}, padding {pads}", what="window")
    out = tuple(window_output_size(s, e, st, p) for s, e, st, p in zip(last[1:-1], span, strides, pads))
    return window, strides, dilations, pads, shape_from_last((last[0], *out, last[-1]), channels)


def _window_geometry(layer, input_shape, kernel_size, strides, padding, channels, window_dilations=1):
    """Check a windowed pool's options; return (window, strides, pads, output shape in ``channels`` layout)."""
    window, strides, _, pads, out = _dilated_geometry(layer, input_shape, kernel_size, strides, padding, channels,
                                                      window_dilations)
    return window, strides, pads, out


def _on_kernel(window, dilations, pads) -> bool:
    """Whether the numba kernels take this pool: contiguous windows, each holding an input."""
    return all(d == 1 for d in dilations) and all(lo < k and hi < k for (lo, hi), k in zip(pads, window))


def _taps(x, window, strides, dilations, pads, out_last, fill):
    """Each window's taps, one Tensor of the output's shape per offset in the window (prod(window) of them).

    Tap ``j`` of output ``o`` along an axis reads padded input ``o s + j d``: a strided slice.
    """
    xp = ops.pad(x, ((0, 0), *pads, (0, 0)), value=fill)      # (N, *S, C) -> (N, *(S + lo + hi), C)
    for offset in itertools.product(*(range(k) for k in window)):
        index = tuple(slice(j * d, j * d + (o - 1) * s + 1, s)
                      for j, d, o, s in zip(offset, dilations, out_last[1:-1], strides))
        yield xp[(slice(None), *index, slice(None))]           # (N, *out, C)


def _real_taps(x, window, strides, dilations, pads, out_last):
    """How many taps of each window are real inputs (not padding): a constant (1, *out, 1) on x's backend."""
    ones = on_backend_of(x, np.ones((1, *x.shape[1:-1], 1), x.dtype))
    return functools.reduce(ops.add, _taps(ones, window, strides, dilations, pads, out_last, 0.0))


def max_pool_output_shape(input_shape, kernel_size, strides=None, padding="valid", channels="last",
                          window_dilations=1) -> tuple:
    """Output shape of ``max_pool`` (and ``avg_pool``, ``lp_pool``): ``(n + lo + hi - k) // s + 1`` per axis.

    >>> max_pool_output_shape((None, 28, 28, 8), 2)
    (None, 14, 14, 8)
    """
    return _window_geometry("max_pool", input_shape, kernel_size, strides, padding, channels, window_dilations)[-1]


def avg_pool_output_shape(input_shape, kernel_size, strides=None, padding="valid", count_include_pad=True,
                          channels="last", window_dilations=1) -> tuple:
    """Output shape of ``avg_pool``.

    >>> avg_pool_output_shape((None, 28, 28, 8), 3, strides=2, padding="same")
    (None, 14, 14, 8)
    """
    return _window_geometry("avg_pool", input_shape, kernel_size, strides, padding, channels, window_dilations)[-1]


def lp_pool_output_shape(input_shape, kernel_size, strides=None, padding="valid", norm=2, channels="last",
                         window_dilations=1) -> tuple:
    """Output shape of ``lp_pool``.

    >>> lp_pool_output_shape((None, 10, 4), 2)
    (None, 5, 4)
    """
    return _window_geometry("lp_pool", input_shape, kernel_size, strides, padding, channels, window_dilations)[-1]


def _first_max(acc, tap):
    """The running max of a window's taps: a tap replaces it only when larger (or NaN), so the first maximum
    gets all the gradient, as in the kernel (``ops.maximum`` would split a tie half and half)."""
    return where((tap > acc) | (tap != tap), tap, acc)        # (N, *out, C)


def max_pool(x, kernel_size, strides=None, padding="valid", channels="last", window_dilations=1):
    """Largest value in each window: ``y[n, o, c] = max_k x[n, o s + k d - lo, c]`` (padding counts as -inf).

    The gradient goes to the position of each window's maximum. As ``torch.nn.functional.max_pool2d``
    (``window_dilations`` d is its ``dilation``). Padding may reach the window's size, as in Axon
    (PyTorch stops at half of it); a window of padding only gives -inf. Dilated or so padded windows
    are computed from strided slices with Tensor operations, with the same rule at ties: the gradient goes
    to the first maximum of each window (see "Gradients at ties" in ``axon.autograd.ops``).

    >>> import numpy as np
    >>> max_pool(np.array([[[1.0], [3.0], [2.0]]]), 2, strides=1).numpy().ravel()
    array([3., 3.])
    >>> max_pool(np.array([[[1.0], [3.0], [2.0], [0.0]]]), 2, strides=1, window_dilations=2).numpy().ravel()
    array([2., 3.])
    """
    x = tensor("max_pool", x)
    window, strides, dilations, pads, out = _dilated_geometry("max_pool", x.shape, kernel_size, strides, padding,
                                                              channels, window_dilations)
    x = to_channels_last(x, channels)
    if _on_kernel(window, dilations, pads):
        y = kernels.max_pool(x, window, strides, pads)
    else:
        y = functools.reduce(_first_max, _taps(x, window, strides, dilations, pads, shape_to_last(out, channels),
                                               -np.inf))
    return from_channels_last(y, channels)


def avg_pool(x, kernel_size, strides=None, padding="valid", count_include_pad=True, channels="last",
             window_dilations=1):
    """Mean of each window. Padding counts as zeros in the mean (``count_include_pad=True``, as Axon and
    PyTorch's default) or is left out of it (``False``). As ``torch.nn.functional.avg_pool2d``;
    ``window_dilations`` spaces the window's taps (Axon's option; PyTorch has none for averages).

    >>> import numpy as np
    >>> avg_pool(np.array([[[1.0], [3.0]]]), 2, padding=[(1, 1)], strides=2).numpy().ravel()
    array([0.5, 1.5])
    >>> avg_pool(np.array([[[1.0], [3.0], [5.0]]]), 2, strides=1, window_dilations=2).numpy().ravel()
    array([3.])
    """
    x = tensor("avg_pool", x)
    window, strides, dilations, pads, out = _dilated_geometry("avg_pool", x.shape, kernel_size, strides, padding,
                                                              channels, window_dilations)
    x = to_channels_last(x, channels)
    if _on_kernel(window, dilations, pads):
        y = kernels.avg_pool(x, window, strides, pads, count_include_pad=bool(count_include_pad))
    else:
        out_last = shape_to_last(out, channels)
        total = functools.reduce(ops.add, _taps(x, window, strides, dilations, pads, out_last, 0.0))
        count = (float(np.prod(window)) if count_include_pad
                 else _real_taps(x, window, strides, dilations, pads, out_last))
        y = total / count
    return from_channels_last(y, channels)


def _check_norm(layer, norm) -> float:
    if isinstance(norm, bool) or not isinstance(norm, numbers.Real) or not norm > 0:
        raise ValueError(f"{layer}: norm must be a positive number, got {norm!r}")
    return norm


def lp_pool(x, kernel_size, strides=None, padding="valid", norm=2, channels="last", window_dilations=1):
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
    window, strides, dilations, pads, out = _dilated_geometry("lp_pool", x.shape, kernel_size, strides, padding,
                                                              channels, window_dilations)
    x = to_channels_last(x, channels)
    if _on_kernel(window, dilations, pads):
        y = kernels.lp_pool(x, norm, window, strides, pads)
    else:
        taps = _taps(x, window, strides, dilations, pads, shape_to_last(out, channels), 0.0)
        y = _root(functools.reduce(ops.add, (t ** norm for t in taps)), norm)
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
    """Maximum over the spatial axes: (N, *spatial, C) -> (N, C). A reduction (``max`` over those axes), so
    tied maxima share the gradient evenly, as in ``axon.kernels.global_max_pool`` (see "Gradients at ties"
    in ``axon.autograd.ops``).

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


# ---- blur pool ----------------------------------------------------------------------------------------------
_BINOMIAL = np.array([1.0, 2.0, 1.0])                         # [1, 2, 1] (x) [1, 2, 1] / 16: a 3x3 low-pass filter


def blur_pool_output_shape(input_shape, channels="last") -> tuple:
    """``blur_pool`` keeps the shape (2 spatial axes).

    >>> blur_pool_output_shape((None, 8, 8, 3))
    (None, 8, 8, 3)
    """
    check_rank("blur_pool", tuple(input_shape), (4,), layout="batch, 2 spatial, channels")
    check_spatial_input("blur_pool", tuple(input_shape), channels)
    return tuple(input_shape)


def blur_pool(x, channels="last"):
    """Blur each channel with the 3x3 binomial filter ``[1, 2, 1]^T [1, 2, 1] / 16``, zero padded to the same size.

    A low-pass filter, applied before pooling or strided convolutions so they alias less (Zhang,
    2019). As Axon's ``blur_pool`` (after MosaicML's): a depthwise convolution with stride 1, the
    same as ``torch.nn.functional.conv2d(x, w, padding=1, groups=C)`` with that filter.

    >>> import numpy as np
    >>> x = np.zeros((1, 3, 3, 1)); x[0, 1, 1, 0] = 16.0     # an impulse spreads into the filter
    >>> blur_pool(x).numpy()[0, :, :, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    x = tensor("blur_pool", x)
    blur_pool_output_shape(x.shape, channels)
    c = x.shape[channel_axis(x.ndim, channels)]
    w = np.broadcast_to((np.outer(_BINOMIAL, _BINOMIAL) / 16.0)[:, :, None, None], (3, 3, 1, c))  # (3, 3, 1, C)
    return conv(x, on_backend_of(x, np.ascontiguousarray(w, dtype=x.dtype)), None, padding=[(1, 1), (1, 1)],
                feature_group_size=c, channels=channels)
